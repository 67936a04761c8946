//! A private mount namespace for just-in-time account tests (TESTBED §3).
//!
//! `useradd`, `visudo`, `sudo` and `sshd` run for real, but inside a mount
//! namespace where `/etc` is an overlay over the real one (every write lands
//! in the test's directory), and `/home`, `/var/log` and `/var/spool` are
//! the test's own directories. The host's account databases never change.
//!
//! The namespace is held open by a `sleep` child of the test ("the
//! holder"). Commands enter it with `nsenter -t HOLDER -m` — a
//! multithreaded process (a test) cannot `setns()` into a mount namespace
//! itself. From the host, the namespace's files are visible under
//! `/proc/HOLDER/root`. Dropping the [`JitNamespace`] kills every process in
//! the namespace (sshd, sessions, anything they started) and removes the
//! directory.

use crate::error::{Result, TestkitError};
use crate::process::{tail_of_file, POLL_INTERVAL};
use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long the namespace may take to come up.
const START_LIMIT: Duration = Duration::from_secs(10);
/// Kill rounds when stopping (processes may fork while being killed).
const STOP_ROUNDS: usize = 50;

/// The holder's script: mounts, then `exec sleep` so the holder's pid is
/// the namespace's first process.
const HOLDER_SCRIPT: &str = r#"set -e
d=$1
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$d/etc-upper,workdir=$d/etc-work" /etc
mount --bind "$d/home" /home
mount --bind "$d/log" /var/log
mount --bind "$d/spool" /var/spool
mkdir -p /var/spool/cron/crontabs /var/spool/cron/atjobs
touch "$d/ready"
exec sleep 86400
"#;

/// A private mount namespace with throwaway `/etc`, `/home`, `/var/log`
/// and `/var/spool`. Needs root (`unshare`, `mount`).
#[derive(Debug)]
pub struct JitNamespace {
    dir: Option<tempfile::TempDir>,
    holder: Option<Child>,
    holder_pid: u32,
    /// `readlink /proc/HOLDER/ns/mnt`, e.g. `mnt:[4026532201]`.
    ns_id: String,
}

impl JitNamespace {
    /// Create the namespace and wait until its mounts are in place.
    pub fn start() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("jitns-")
            .tempdir_in("/tmp")
            .map_err(|e| TestkitError::io("creating the namespace directory in /tmp", e))?;
        let d = dir.path();
        for sub in ["etc-upper", "etc-work", "home", "log", "spool"] {
            std::fs::create_dir_all(d.join(sub))
                .map_err(|e| TestkitError::io(format!("creating {}", d.join(sub).display()), e))?;
        }
        // sshd's privilege-separation directory (normally made by its init script).
        std::fs::create_dir_all("/run/sshd")
            .map_err(|e| TestkitError::io("creating /run/sshd", e))?;
        let log_path = d.join("holder.log");
        let log = File::create(&log_path)
            .map_err(|e| TestkitError::io("creating the holder's log", e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| TestkitError::io("duplicating the holder's log", e))?;
        let mut holder = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                HOLDER_SCRIPT,
                "sh",
            ])
            .arg(d)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| TestkitError::io("starting unshare (is util-linux installed?)", e))?;
        let started = Instant::now();
        while !d.join("ready").exists() {
            let exited = holder
                .try_wait()
                .map_err(|e| TestkitError::io("checking the namespace holder", e))?;
            if let Some(status) = exited {
                return Err(TestkitError::EarlyExit {
                    peer: "namespace holder (unshare; needs root)".into(),
                    status: status.to_string(),
                    log_tail: tail_of_file(&log_path, 20),
                });
            }
            if started.elapsed() > START_LIMIT {
                let _ = holder.kill();
                let _ = holder.wait();
                return Err(TestkitError::Timeout {
                    what: "the mount namespace to come up".into(),
                    waited_ms: started.elapsed().as_millis(),
                    detail: tail_of_file(&log_path, 20),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        let holder_pid = holder.id();
        let ns_id = std::fs::read_link(format!("/proc/{holder_pid}/ns/mnt"))
            .map_err(|e| TestkitError::io("reading the holder's mount namespace", e))?
            .to_string_lossy()
            .into_owned();
        Ok(Self {
            dir: Some(dir),
            holder: Some(holder),
            holder_pid,
            ns_id,
        })
    }

    /// Pid of the process holding the namespace open (`nsenter -t` target).
    pub fn holder_pid(&self) -> u32 {
        self.holder_pid
    }

    /// The test's directory for this namespace (upper layer of `/etc`,
    /// `home/`, `log/`, `spool/`).
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .unwrap_or(Path::new("/nonexistent"))
    }

    /// The host-side path of `inside` (an absolute path in the namespace),
    /// through `/proc/HOLDER/root`.
    pub fn host_path(&self, inside: impl AsRef<Path>) -> PathBuf {
        let inside = inside.as_ref();
        let relative = inside.strip_prefix("/").unwrap_or(inside);
        PathBuf::from(format!("/proc/{}/root", self.holder_pid)).join(relative)
    }

    /// A command that runs `program` inside the namespace, in the caller's
    /// working directory (`nsenter -m` would reset it to `/`). `nsenter`
    /// execs, so the spawned child *is* `program`.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t").arg(self.holder_pid.to_string()).arg("-m");
        if let Ok(cwd) = std::env::current_dir() {
            let mut wd = std::ffi::OsString::from("--wd=");
            wd.push(cwd.as_os_str());
            c.arg(wd);
        }
        c.arg("--").arg(program);
        c
    }

    /// Run `program args…` inside the namespace and collect its output.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<Output> {
        self.command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| TestkitError::io(format!("running {program} in the namespace"), e))
    }

    /// Pids of every process in the namespace (the holder included).
    pub fn processes(&self) -> Vec<u32> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
                    .map(|l| l.to_string_lossy() == self.ns_id)
                    .unwrap_or(false)
            })
            .collect()
    }

    /// Kill every process in the namespace, reap the holder and remove the
    /// directory. Also done on drop.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut holder) = self.holder.take() else {
            return Ok(());
        };
        for _ in 0..STOP_ROUNDS {
            let pids: Vec<String> = self
                .processes()
                .into_iter()
                .filter(|p| *p != self.holder_pid)
                .map(|p| p.to_string())
                .collect();
            if pids.is_empty() {
                break;
            }
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(&pids)
                .stderr(Stdio::null())
                .status();
            std::thread::sleep(POLL_INTERVAL);
        }
        let _ = holder.kill();
        let _ = holder.wait();
        if let Some(dir) = self.dir.take() {
            dir.close()
                .map_err(|e| TestkitError::io("removing the namespace directory", e))?;
        }
        Ok(())
    }
}

impl Drop for JitNamespace {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        // Running as root is what the testbed provides; without it the
        // namespace cannot exist and the failure says so.
        std::fs::read_to_string("/proc/self/status")
            .map(|s| {
                s.lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
            })
            .unwrap_or(false)
    }

    #[test]
    fn etc_writes_stay_in_the_namespace_and_stop_kills_everything() {
        assert!(
            is_root(),
            "the JIT namespace tests need root (see TESTBED.md §3)"
        );
        let host_passwd = std::fs::read("/etc/passwd").unwrap();
        let mut ns = JitNamespace::start().unwrap();
        let out = ns
            .run("/bin/sh", &["-c", "echo 'wl_nsonly:x:2999999:2999999::/home/wl_nsonly:/bin/sh' >> /etc/passwd; grep -c wl_nsonly /etc/passwd"])
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
        assert_eq!(std::fs::read("/etc/passwd").unwrap(), host_passwd);
        let seen = std::fs::read_to_string(ns.host_path("/etc/passwd")).unwrap();
        assert!(seen.contains("wl_nsonly"));
        let mut child = ns.command("sleep").arg("300").spawn().unwrap();
        let pid = child.id();
        // nsenter enters the namespace right after the spawn: poll for it.
        let started = Instant::now();
        while !ns.processes().contains(&pid) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sleep never entered the namespace"
            );
            std::thread::sleep(POLL_INTERVAL);
        }
        let dir = ns.dir().to_path_buf();
        ns.stop().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "the sleep inside was killed");
        assert!(!dir.exists());
    }
}
