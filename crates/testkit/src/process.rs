//! Child processes that never outlive their test.
//!
//! Every peer runs as a foreground child of the test process (never
//! daemonised), so killing the child is all the teardown there is. [`Peer`]
//! kills and reaps on drop, which also runs when a test panics.

use crate::error::{Result, TestkitError};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// How often process and port waits look again. Short, because every wait
/// also has a deadline; there are no fixed sleeps anywhere.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A spawned peer process, killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct Peer {
    name: String,
    child: Option<Child>,
    /// Where the peer's output goes, for error messages.
    logs: Vec<PathBuf>,
}

impl Peer {
    /// Wrap a freshly spawned child. `logs` are files its output is
    /// redirected to; their tails are shown when it exits unexpectedly.
    pub fn new(name: impl Into<String>, child: Child, logs: Vec<PathBuf>) -> Self {
        Self {
            name: name.into(),
            child: Some(child),
            logs,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Process id, while the peer runs.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Ok(None)` while running, the exit status once it has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        match &mut self.child {
            Some(c) => c.try_wait().map_err(|e| {
                TestkitError::io(format!("checking whether {} is running", self.name), e)
            }),
            None => Ok(None),
        }
    }

    /// Fails with [`TestkitError::EarlyExit`] (including the log tails) if
    /// the peer has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.try_wait()? {
            return Err(TestkitError::EarlyExit {
                peer: self.name.clone(),
                status: status.to_string(),
                log_tail: self.log_tail(60),
            });
        }
        Ok(())
    }

    /// The last `lines` lines of each log file, labelled.
    pub fn log_tail(&self, lines: usize) -> String {
        self.logs
            .iter()
            .map(|p| format!("--- {} ---\n{}", p.display(), tail_of_file(p, lines)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Ask the peer to stop with SIGTERM (so it can flush and close its
    /// logs), wait up to `grace`, then SIGKILL. Returns the exit status.
    pub fn terminate(&mut self, grace: Duration) -> Result<Option<ExitStatus>> {
        let Some(child) = &mut self.child else {
            return Ok(None);
        };
        if let Some(status) = child
            .try_wait()
            .map_err(|e| TestkitError::io(format!("checking {}", self.name), e))?
        {
            self.child = None;
            return Ok(Some(status));
        }
        // std has no SIGTERM; `kill(1)` is always there and needs no libc
        // dependency.
        let sent = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .map_err(|e| TestkitError::io("running kill -TERM", e))?;
        let deadline = Instant::now() + grace;
        if sent.success() {
            while Instant::now() < deadline {
                if let Some(status) = child
                    .try_wait()
                    .map_err(|e| TestkitError::io(format!("waiting for {}", self.name), e))?
                {
                    self.child = None;
                    return Ok(Some(status));
                }
                std::thread::sleep(POLL_INTERVAL);
            }
        }
        self.kill()
    }

    /// SIGKILL and reap now.
    pub fn kill(&mut self) -> Result<Option<ExitStatus>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        // Already exited is fine; the wait below reaps it either way.
        let _ = child.kill();
        child
            .wait()
            .map(Some)
            .map_err(|e| TestkitError::io(format!("reaping {}", self.name), e))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago. Another process may
/// take it before the peer binds it, so callers retry on "address in use".
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| TestkitError::io("binding 127.0.0.1:0 to find a free port", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| TestkitError::io("reading the bound port", e))
}

/// The last `lines` lines of a (possibly large, possibly missing) text file.
pub fn tail_of_file(path: &Path, lines: usize) -> String {
    const MAX_TAIL_BYTES: u64 = 64 * 1024;
    let Ok(mut f) = File::open(path) else {
        return "(no output file)".into();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(MAX_TAIL_BYTES);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return "(unreadable)".into();
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return "(unreadable)".into();
    }
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    all.get(from..).map(|l| l.join("\n")).unwrap_or_default()
}

/// Locate the workspace root from this crate's manifest directory
/// (`<root>/crates/testkit`).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn free_ports_are_bindable() {
        let port = free_port().unwrap();
        assert!(port > 0);
        TcpListener::bind(("127.0.0.1", port)).unwrap();
    }

    #[test]
    fn drop_kills_the_child() {
        let child = Command::new("sleep")
            .arg("30")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        drop(Peer::new("sleep", child, vec![]));
        // Reaped, so /proc/<pid> is gone (pids are not reused this fast).
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn terminate_sends_sigterm_first() {
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        let mut peer = Peer::new("sleep", child, vec![]);
        let status = peer.terminate(Duration::from_secs(5)).unwrap().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(15), "{status:?}");
        assert!(peer.id().is_none());
    }

    #[test]
    fn early_exit_shows_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("out.log");
        let f = File::create(&log).unwrap();
        let mut child = Command::new("sh")
            .args(["-c", "echo first; echo boom; exit 3"])
            .stdout(f)
            .spawn()
            .unwrap();
        child.wait().unwrap();
        let mut peer = Peer::new("sh", child, vec![log]);
        // The child was already reaped by the explicit wait above, but
        // try_wait keeps reporting its status.
        let err = peer.ensure_running().unwrap_err().to_string();
        assert!(
            err.contains("boom") && err.contains("exit status: 3"),
            "{err}"
        );
    }

    #[test]
    fn tail_takes_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail_of_file(&p, 2), "c\nd");
        assert_eq!(
            tail_of_file(&dir.path().join("missing"), 2),
            "(no output file)"
        );
    }

    #[test]
    fn workspace_root_has_the_testbed() {
        assert!(workspace_root()
            .join("testbed/oidc-idp/oidc-idp.mjs")
            .exists());
    }
}
