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
            kill_if_owned_by(proc_dir, *pid, uid);
        }
        std::thread::sleep(KILL_ROUND_PAUSE);
        left = pids_of_uid(proc_dir, uid);
    }
    left
}

/// SIGKILL `pid` if it (still) belongs to `uid`. The pid is pinned with a
/// pidfd first and its owner checked afterwards, so a pid reused by another
/// process between the scan and the kill is never signalled. Kernels
/// without pidfds (< 5.3) fall back to a plain `kill`.
fn kill_if_owned_by(proc_dir: &Path, pid: u32, uid: u32) {
    use rustix::process::{kill_process, pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};
    let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return;
    };
    let owned = || {
        std::fs::read_to_string(proc_dir.join(pid.to_string()).join("status"))
            .ok()
            .and_then(|s| parse_status(&s))
            .is_some_and(|i| i.uids.contains(&uid))
    };
    match pidfd_open(p, PidfdFlags::empty()) {
        Ok(fd) => {
            if owned() {
                // ESRCH (already gone) is the outcome we want anyway.
                let _ = pidfd_send_signal(&fd, Signal::KILL);
            }
        }
        Err(rustix::io::Errno::NOSYS) => {
            if owned() {
                let _ = kill_process(p, Signal::KILL);
            }
        }
        // Gone already (ESRCH) or not ours to see.
        Err(_) => {}
    }
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
    fn kills_only_processes_of_the_uid() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let me = rustix::process::getuid().as_raw();
        // Not owned by this (unused) uid: left alone.
        kill_if_owned_by(Path::new("/proc"), pid, me.wrapping_add(12345));
        assert!(child.try_wait().unwrap().is_none());
        kill_if_owned_by(Path::new("/proc"), pid, me);
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9));
    }

    #[test]
    fn finds_own_process() {
        let me = std::process::id();
        let uid = rustix::process::getuid().as_raw();
        assert!(pids_of_uid(Path::new("/proc"), uid).contains(&me));
    }
}
