//! Reading the account databases (`/etc/passwd`, `/etc/group`, …) of the
//! managed system. Writing them is left to shadow's tools (`useradd`,
//! `userdel`), which lock and replace the files atomically.

use crate::error::{AgentError, Result};
use crate::host::HostSystem;
use std::collections::HashSet;

/// One line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// Every parseable entry of `/etc/passwd`. Malformed lines are skipped:
/// they cannot be a `wl_` account this agent made.
pub fn read_passwd(host: &HostSystem) -> Result<Vec<PasswdEntry>> {
    Ok(read_lines(host, "/etc/passwd")?
        .iter()
        .filter_map(|line| parse_passwd_line(line))
        .collect())
}

fn parse_passwd_line(line: &str) -> Option<PasswdEntry> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() != 7 {
        return None;
    }
    Some(PasswdEntry {
        name: f.first()?.to_string(),
        uid: f.get(2)?.parse().ok()?,
        gid: f.get(3)?.parse().ok()?,
        home: f.get(5)?.to_string(),
        shell: f.get(6)?.to_string(),
    })
}

/// Numeric ids in use as uid (`/etc/passwd`) or gid (`/etc/group`): the
/// allocator skips both, so that `useradd -U` can give the new group the
/// same number as the user.
pub fn ids_in_use(host: &HostSystem) -> Result<HashSet<u32>> {
    let mut ids: HashSet<u32> = read_passwd(host)?.iter().map(|e| e.uid).collect();
    for line in read_lines(host, "/etc/group")? {
        if let Some(gid) = line.split(':').nth(2).and_then(|g| g.parse().ok()) {
            ids.insert(gid);
        }
    }
    Ok(ids)
}

/// Whether `file` (`/etc/shadow`, `/etc/group`, `/etc/subuid`, …) has an
/// entry whose first field is `name`. A missing file has no entries.
pub fn has_entry(host: &HostSystem, file: &str, name: &str) -> Result<bool> {
    Ok(read_lines(host, file)?
        .iter()
        .any(|line| line.split(':').next() == Some(name)))
}

fn read_lines(host: &HostSystem, file: &str) -> Result<Vec<String>> {
    let path = host.path(file);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.lines().map(str::to_string).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(AgentError::io("reading an account database", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_and_ids() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\nbroken line\nwl_abc123:x:2000001:2000001:idmint:/home/wl_abc123:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let host = HostSystem::with_root(dir.path(), vec![]);
        let entries = read_passwd(&host).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].uid, 2_000_001);
        assert_eq!(entries[1].shell, "/bin/sh");
        let ids = ids_in_use(&host).unwrap();
        assert!(ids.contains(&50) && ids.contains(&2_000_001));
        assert!(has_entry(&host, "/etc/group", "staff").unwrap());
        assert!(!has_entry(&host, "/etc/group", "staf").unwrap());
        assert!(!has_entry(&host, "/etc/subuid", "x").unwrap());
    }
}
