//! Finding and killing the processes of a uid through `/proc`.
//!
//! Processes are matched by *numeric* uid (real, effective or saved), never
//! by name: the name may already be gone from `/etc/passwd`, and a process
//! that dropped privileges partially still counts. Zombies are ignored:
//! they run nothing and disappear when their parent reaps them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

/// How often [`kill_all_of_uid`] kills and looks again, and the pause
/// between rounds (to let the kernel tear killed processes down).
const KILL_ROUNDS: usize = 100;
const KILL_ROUND_PAUSE: Duration = Duration::from_millis(20);

/// Live (non-zombie) processes by uid, for the uids `wanted` accepts.
pub fn scan(proc_dir: &Path, wanted: impl Fn(u32) -> bool) -> BTreeMap<u32, BTreeSet<u32>> {
    let mut by_uid: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(proc_dir) else {
        return by_uid;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // The process may exit between readdir and read: skip it then.
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let Some(info) = parse_status(&status) else {
            continue;
        };
        if info.zombie {
            continue;
        }
        for uid in info.uids {
            if wanted(uid) {
                by_uid.entry(uid).or_default().insert(pid);
            }
        }
    }
    by_uid
}

/// Pids of live processes of `uid`.
pub fn pids_of_uid(proc_dir: &Path, uid: u32) -> BTreeSet<u32> {
    scan(proc_dir, |u| u == uid)
        .remove(&uid)
        .unwrap_or_default()
}

/// SIGKILL every process of `uid` until none is left (bounded). Returns the
/// pids still alive after the last round (empty on success).
///
/// Killing repeats because a process may fork between the scan and the
/// kill; the account is locked before this runs, so no new login can add
/// processes.
pub fn kill_all_of_uid(proc_dir: &Path, uid: u32) -> BTreeSet<u32> {
    let mut left = pids_of_uid(proc_dir, uid);
    if uid < MIN_KILLABLE_UID {
        // Never mass-kill root or system users, whatever the caller thinks.
        return left;
    }
    for _ in 0..KILL_ROUNDS {
        if left.is_empty() {
            break;
        }
        for pid in &left {
            if let Some(p) = i32::try_from(*pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                // ESRCH (already gone) is the outcome we want anyway.
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
        std::thread::sleep(KILL_ROUND_PAUSE);
        left = pids_of_uid(proc_dir, uid);
    }
    left
}

/// Uids below this are system accounts; the agent never kills them.
const MIN_KILLABLE_UID: u32 = 1000;

struct StatusInfo {
    uids: BTreeSet<u32>,
    zombie: bool,
}

/// `Uid:` (real, effective, saved, fs) and `State:` of `/proc/PID/status`.
fn parse_status(status: &str) -> Option<StatusInfo> {
    let mut uids = None;
    let mut zombie = false;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("Uid:") {
            uids = Some(
                rest.split_whitespace()
                    .take(3)
                    .filter_map(|u| u.parse().ok())
                    .collect(),
            );
        } else if let Some(rest) = line.strip_prefix("State:") {
            let state = rest.trim_start();
            zombie = state.starts_with('Z') || state.starts_with('X');
        }
    }
    Some(StatusInfo {
        uids: uids?,
        zombie,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uids_and_zombies() {
        let s = "Name:\tsleep\nState:\tS (sleeping)\nUid:\t1000\t1001\t1002\t1003\n";
        let i = parse_status(s).unwrap();
        assert_eq!(i.uids, [1000, 1001, 1002].into());
        assert!(!i.zombie);
        let z = parse_status("State:\tZ (zombie)\nUid:\t5\t5\t5\t5\n").unwrap();
        assert!(z.zombie);
        assert!(parse_status("Name: x\n").is_none());
    }

    #[test]
    fn finds_own_process() {
        let me = std::process::id();
        let uid = rustix::process::getuid().as_raw();
        assert!(pids_of_uid(Path::new("/proc"), uid).contains(&me));
    }
}
