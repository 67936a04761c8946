//! Bindings: which identity a local process gets.
//!
//! The first `[[bindings]]` entry whose selectors all match wins, so order
//! specific bindings before general ones. A process matching none has no
//! identity and every request from it is refused.

use crate::config::Binding;
use crate::peer::{PeerError, ProcessInfo};
use std::path::Path;

/// Whether a cgroup path is `selector` or lies below it.
fn cgroup_matches(selector: &str, cgroup: &str) -> bool {
    let selector = selector.trim_end_matches('/');
    cgroup == selector
        || cgroup
            .strip_prefix(selector)
            .is_some_and(|rest| rest.starts_with('/'))
        || selector.is_empty()
}

/// Find the binding for `process`. `exe_sha256` is called only if a
/// candidate binding pins the executable's hash (hashing costs a read of
/// the whole binary).
pub fn find_binding<'a>(
    bindings: &'a [Binding],
    process: &ProcessInfo,
    mut exe_sha256: impl FnMut() -> Result<String, PeerError>,
) -> Result<Option<&'a Binding>, PeerError> {
    let mut hash: Option<String> = None;
    for b in bindings {
        if b.uid.is_some_and(|uid| uid != process.uid) {
            continue;
        }
        if b.exe
            .as_deref()
            .is_some_and(|exe| exe != Path::new(&process.exe))
        {
            continue;
        }
        if b.cgroup
            .as_deref()
            .is_some_and(|cg| !cgroup_matches(cg, &process.cgroup))
        {
            continue;
        }
        if let Some(want) = &b.exe_sha256 {
            if hash.is_none() {
                hash = Some(exe_sha256()?);
            }
            if hash.as_deref() != Some(want.as_str()) {
                continue;
            }
        }
        return Ok(Some(b));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(identity: &str) -> Binding {
        Binding {
            identity: identity.into(),
            exe: None,
            exe_sha256: None,
            uid: None,
            cgroup: None,
        }
    }

    fn process() -> ProcessInfo {
        ProcessInfo {
            pid: 1,
            uid: 1000,
            gid: 1000,
            exe: "/usr/bin/curl".into(),
            cgroup: "/user.slice/app.service".into(),
            start_time: 1,
            socket_inode: 1,
            exe_sha256: None,
        }
    }

    #[test]
    fn all_selectors_must_match_and_first_wins() {
        let a = Binding {
            exe: Some("/usr/bin/python3".into()),
            ..binding("py")
        };
        let b = Binding {
            exe: Some("/usr/bin/curl".into()),
            uid: Some(1000),
            cgroup: Some("/user.slice".into()),
            ..binding("curl")
        };
        let c = Binding {
            uid: Some(1000),
            ..binding("any")
        };
        let list = vec![a, b, c];
        let found = find_binding(&list, &process(), || unreachable!()).unwrap();
        assert_eq!(found.map(|b| b.identity.as_str()), Some("curl"));
        let mut other = process();
        other.cgroup = "/user.slicer".into();
        let found = find_binding(&list, &other, || unreachable!()).unwrap();
        assert_eq!(found.map(|b| b.identity.as_str()), Some("any"));
        other.uid = 0;
        assert!(find_binding(&list, &other, || unreachable!())
            .unwrap()
            .is_none());
    }

    #[test]
    fn hash_is_checked_only_when_pinned() {
        let list = vec![Binding {
            exe_sha256: Some("ab".repeat(32)),
            ..binding("pinned")
        }];
        assert!(find_binding(&list, &process(), || Ok("cd".repeat(32)))
            .unwrap()
            .is_none());
        assert!(find_binding(&list, &process(), || Ok("ab".repeat(32)))
            .unwrap()
            .is_some());
    }
}
