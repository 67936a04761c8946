//! The zero-residue check that ends every account removal.
//!
//! After the removal steps ran, everything an account can leave behind is
//! looked for again: its entries in the account databases, its home, its
//! sudoers drop-in, processes, crontab, at jobs, linger flag, and files it
//! owns in the world-writable directories. What is found is removed and
//! then looked for once more; the result becomes the
//! [`ResidueReport`](idmint_proto::ssh::ResidueReport) sent to the server.
//!
//! The sweep runs after every process of the uid was killed and the
//! account deleted, so nothing can race it by swapping files for symlinks;
//! it still never follows symlinks and never leaves the file system of the
//! directory it scans.

use crate::account_name::AccountName;
use crate::error::{AgentError, Result};
use crate::host::HostSystem;
use crate::passwd;
use crate::processes;
use idmint_proto::ssh::ResidueReport;
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Directories every user can write to, scanned for files of the uid.
pub const SHARED_WRITABLE_DIRS: [&str; 3] = ["/tmp", "/var/tmp", "/dev/shm"];
/// Where cron keeps per-user crontabs (Debian) and at keeps its jobs.
pub const CRONTAB_DIR: &str = "/var/spool/cron/crontabs";
pub const AT_JOBS_DIR: &str = "/var/spool/cron/atjobs";
/// systemd's per-user "keep my services running after logout" flag.
pub const LINGER_DIR: &str = "/var/lib/systemd/linger";

/// How deep and how much of the shared directories the sweep looks at.
const MAX_DEPTH: usize = 8;
const MAX_ENTRIES: usize = 200_000;

/// One thing an account left behind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ResidueItem {
    /// A line for the account in `/etc/passwd`, `/etc/shadow`, `/etc/group`,
    /// `/etc/gshadow`, `/etc/subuid` or `/etc/subgid`.
    DatabaseEntry {
        file: &'static str,
    },
    Home {
        path: PathBuf,
    },
    SudoersFile {
        path: PathBuf,
    },
    Processes {
        pids: BTreeSet<u32>,
    },
    Crontab {
        path: PathBuf,
    },
    AtJob {
        path: PathBuf,
    },
    Linger {
        path: PathBuf,
    },
    OwnedFile {
        path: PathBuf,
    },
}

const DATABASES: [&str; 6] = [
    "/etc/passwd",
    "/etc/shadow",
    "/etc/group",
    "/etc/gshadow",
    "/etc/subuid",
    "/etc/subgid",
];

impl ResidueItem {
    /// Whether `other` is the same leftover (processes of the uid are one
    /// leftover, whatever their pids).
    fn same_thing(&self, other: &ResidueItem) -> bool {
        match (self, other) {
            (ResidueItem::Processes { .. }, ResidueItem::Processes { .. }) => true,
            _ => self == other,
        }
    }

    /// A human-readable description, as it appears in the report.
    pub fn describe(&self, name: &AccountName, uid: u32) -> String {
        match self {
            ResidueItem::DatabaseEntry { file } => format!("{file} entry {name}"),
            ResidueItem::Home { path } => format!("home directory {}", path.display()),
            ResidueItem::SudoersFile { path } => format!("sudoers drop-in {}", path.display()),
            ResidueItem::Processes { pids } => format!(
                "processes of uid {uid}: {}",
                pids.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            ResidueItem::Crontab { path } => format!("crontab {}", path.display()),
            ResidueItem::AtJob { path } => format!("at job {}", path.display()),
            ResidueItem::Linger { path } => format!("linger flag {}", path.display()),
            ResidueItem::OwnedFile { path } => {
                format!("{} owned by uid {uid}", path.display())
            }
        }
    }
}

/// The home directory the agent gives every account: `/home/<name>`.
pub fn home_of(name: &AccountName) -> PathBuf {
    PathBuf::from(format!("/home/{name}"))
}

pub fn sudoers_path_of(name: &AccountName) -> PathBuf {
    PathBuf::from(format!("/etc/sudoers.d/{name}"))
}

/// Everything of `name`/`uid` still on the system. Paths are the managed
/// system's own (`/tmp/x`).
pub fn find(host: &HostSystem, name: &AccountName, uid: u32) -> Result<Vec<ResidueItem>> {
    let mut items = Vec::new();
    for file in DATABASES {
        if passwd::has_entry(host, file, name.as_str())? {
            items.push(ResidueItem::DatabaseEntry { file });
        }
    }
    let home = home_of(name);
    if exists(host, &home) {
        items.push(ResidueItem::Home { path: home });
    }
    let sudoers = sudoers_path_of(name);
    if exists(host, &sudoers) {
        items.push(ResidueItem::SudoersFile { path: sudoers });
    }
    let pids = processes::pids_of_uid(host.proc_dir(), uid);
    if !pids.is_empty() {
        items.push(ResidueItem::Processes { pids });
    }
    let crontab = Path::new(CRONTAB_DIR).join(name.as_str());
    if exists(host, &crontab) {
        items.push(ResidueItem::Crontab { path: crontab });
    }
    for path in owned_entries_in(host, Path::new(AT_JOBS_DIR), uid) {
        items.push(ResidueItem::AtJob { path });
    }
    let linger = Path::new(LINGER_DIR).join(name.as_str());
    if exists(host, &linger) {
        items.push(ResidueItem::Linger { path: linger });
    }
    for dir in SHARED_WRITABLE_DIRS {
        for path in owned_files_under(host, Path::new(dir), uid) {
            items.push(ResidueItem::OwnedFile { path });
        }
    }
    Ok(items)
}

/// Remove one residue item.
pub fn remove(host: &HostSystem, name: &AccountName, uid: u32, item: &ResidueItem) -> Result<()> {
    match item {
        ResidueItem::DatabaseEntry { file } => match *file {
            "/etc/passwd" | "/etc/shadow" => {
                host.run_checked("/usr/sbin/userdel", &["-f", name.as_str()])?;
                Ok(())
            }
            "/etc/group" | "/etc/gshadow" => {
                host.run_checked("/usr/sbin/groupdel", &[name.as_str()])?;
                Ok(())
            }
            other => Err(AgentError::Config(format!(
                "{other} still lists {name}; remove that line by hand (the agent creates accounts without subordinate ids)"
            ))),
        },
        ResidueItem::Home { path } => remove_path(host, path),
        ResidueItem::SudoersFile { path }
        | ResidueItem::Crontab { path }
        | ResidueItem::AtJob { path }
        | ResidueItem::Linger { path }
        | ResidueItem::OwnedFile { path } => remove_path(host, path),
        ResidueItem::Processes { .. } => {
            let left = processes::kill_all_of_uid(host.proc_dir(), uid);
            if left.is_empty() {
                Ok(())
            } else {
                Err(AgentError::Config(format!(
                    "processes of uid {uid} survived SIGKILL: {left:?}"
                )))
            }
        }
    }
}

/// Find, remove, and look again: the report of one account removal.
pub fn sweep(host: &HostSystem, name: &AccountName, uid: u32) -> ResidueReport {
    let mut report = ResidueReport::default();
    let found = match find(host, name, uid) {
        Ok(found) => found,
        Err(e) => {
            report.remaining.push(format!("residue check failed: {e}"));
            return report;
        }
    };
    let mut failures = Vec::new();
    for item in &found {
        if let Err(e) = remove(host, name, uid, item) {
            failures.push(format!("{}: {e}", item.describe(name, uid)));
        }
    }
    match find(host, name, uid) {
        Ok(still) => {
            report.removed = found
                .iter()
                .filter(|item| !still.iter().any(|s| s.same_thing(item)))
                .map(|item| item.describe(name, uid))
                .collect();
            report.remaining = still.iter().map(|i| i.describe(name, uid)).collect();
        }
        Err(e) => report
            .remaining
            .push(format!("residue re-check failed: {e}")),
    }
    if !report.remaining.is_empty() {
        report.remaining.extend(failures);
    }
    report.clean = report.remaining.is_empty();
    report
}

fn exists(host: &HostSystem, inside: &Path) -> bool {
    host.path(inside).symlink_metadata().is_ok()
}

fn remove_path(host: &HostSystem, inside: &Path) -> Result<()> {
    let path = host.path(inside);
    let meta = match path.symlink_metadata() {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(AgentError::io("inspecting residue", path, e)),
    };
    let result = if meta.is_dir() {
        // std's remove_dir_all never follows symlinks.
        std::fs::remove_dir_all(&path)
    } else {
        std::fs::remove_file(&path)
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(AgentError::io("removing residue", path, e)),
    }
}

/// Direct entries of `dir` owned by `uid`.
fn owned_entries_in(host: &HostSystem, dir: &Path, uid: u32) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(host.path(dir)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.metadata().map(|m| m.uid() == uid).unwrap_or(false))
        .map(|e| dir.join(e.file_name()))
        .collect()
}

/// Entries owned by `uid` under `root`. A user can only have created files
/// where it could write: in world-writable directories (like `/tmp`
/// itself) and in its own directories, which are reported whole. So the
/// walk descends only into world-writable directories, on the same file
/// system, without following symlinks.
fn owned_files_under(host: &HostSystem, root: &Path, uid: u32) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(root_meta) = host.path(root).symlink_metadata() else {
        return found;
    };
    let device = root_meta.dev();
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    let mut visited = 0usize;
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(host.path(&dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            visited += 1;
            if visited > MAX_ENTRIES {
                return found;
            }
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            let inside = dir.join(entry.file_name());
            if meta.uid() == uid {
                found.push(inside);
            } else if meta.is_dir()
                && meta.mode() & 0o002 != 0
                && meta.dev() == device
                && depth < MAX_DEPTH
            {
                stack.push((inside, depth + 1));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn finds_files_of_the_uid_in_world_writable_dirs_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let tmp = root.join("tmp");
        std::fs::create_dir_all(tmp.join("shared/deeper")).unwrap();
        std::fs::create_dir_all(tmp.join("private")).unwrap();
        std::fs::set_permissions(tmp.join("shared"), std::fs::Permissions::from_mode(0o1777))
            .unwrap();
        std::fs::set_permissions(
            tmp.join("shared/deeper"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        for f in ["a", "shared/b", "shared/deeper/c", "private/d"] {
            std::fs::write(tmp.join(f), b"x").unwrap();
        }
        let uid = 3_999_991;
        for f in ["a", "shared/b", "shared/deeper/c", "private/d"] {
            std::os::unix::fs::lchown(tmp.join(f), Some(uid), None).unwrap();
        }
        let host = HostSystem::with_root(root, vec![]);
        let mut found = owned_files_under(&host, Path::new("/tmp"), uid);
        found.sort();
        // deeper/ and private/ are not writable by the user: it cannot have
        // created files there, so the walk does not look.
        assert_eq!(
            found,
            vec![PathBuf::from("/tmp/a"), PathBuf::from("/tmp/shared/b")]
        );
        remove_path(&host, Path::new("/tmp/shared/b")).unwrap();
        assert!(!tmp.join("shared/b").exists());
    }
}
