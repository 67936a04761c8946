//! Where the agent's operating-system effects land.
//!
//! Production uses [`HostSystem::local`]: files under `/`, programs run
//! directly. [`HostSystem::mount_namespace_of`] points everything at the
//! mount namespace of another process instead: files through
//! `/proc/PID/root` (the kernel resolves those paths in that namespace) and
//! programs through `nsenter -t PID -m`, because a multithreaded process
//! cannot `setns()` into a mount namespace itself. Processes (`/proc`) and
//! the network are shared either way.

use crate::error::{AgentError, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Most stderr a failed command contributes to an error message.
const MAX_STDERR_IN_ERROR: usize = 2000;

/// The root directory files are resolved under and the prefix programs are
/// run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSystem {
    root: PathBuf,
    command_prefix: Vec<OsString>,
    proc_dir: PathBuf,
}

/// What a finished command printed and how it ended.
#[derive(Debug, Clone)]
pub struct CommandResult {
    pub success: bool,
    /// `exit status: N` or `signal: N`.
    pub status: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl HostSystem {
    /// The machine the agent runs on.
    pub fn local() -> Self {
        Self {
            root: PathBuf::from("/"),
            command_prefix: Vec::new(),
            proc_dir: PathBuf::from("/proc"),
        }
    }

    /// The mount namespace of process `pid` (e.g. a test's namespace
    /// holder): files through `/proc/PID/root`, commands through
    /// `nsenter -t PID -m --`.
    pub fn mount_namespace_of(pid: u32) -> Self {
        Self {
            root: PathBuf::from(format!("/proc/{pid}/root")),
            command_prefix: ["/usr/bin/nsenter", "-t", &pid.to_string(), "-m", "--"]
                .iter()
                .map(OsString::from)
                .collect(),
            proc_dir: PathBuf::from("/proc"),
        }
    }

    /// Any root and command prefix (a chroot-like directory in unit tests).
    pub fn with_root(root: impl Into<PathBuf>, command_prefix: Vec<OsString>) -> Self {
        Self {
            root: root.into(),
            command_prefix,
            proc_dir: PathBuf::from("/proc"),
        }
    }

    /// The host-side path of `inside`, an absolute path as seen by the
    /// managed system (`/etc/passwd`).
    pub fn path(&self, inside: impl AsRef<Path>) -> PathBuf {
        let inside = inside.as_ref();
        let relative = inside.strip_prefix("/").unwrap_or(inside);
        self.root.join(relative)
    }

    /// The `/proc` of the (shared) pid namespace.
    pub fn proc_dir(&self) -> &Path {
        &self.proc_dir
    }

    /// Whether `program` (an absolute path on the managed system) exists.
    pub fn has_program(&self, program: &str) -> bool {
        self.path(program).is_file()
    }

    /// Run `program` with `args` on the managed system and return how it
    /// ended, whether it succeeded or not. Paths in `args` are the managed
    /// system's own. The environment is reduced to a fixed `PATH` and
    /// `LC_ALL=C`, so messages are stable and nothing of the agent's
    /// environment leaks into `useradd` and friends.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<CommandResult> {
        let mut command = match self.command_prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(program);
                c
            }
            None => Command::new(program),
        };
        let output: Output = command
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .map_err(|source| AgentError::Spawn {
                program: program.to_string(),
                source,
            })?;
        Ok(CommandResult {
            success: output.status.success(),
            status: output.status.to_string(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// [`run`](Self::run), failing with [`AgentError::Command`] unless the
    /// program exits with 0.
    pub fn run_checked(&self, program: &str, args: &[&str]) -> Result<CommandResult> {
        let result = self.run(program, args)?;
        if result.success {
            Ok(result)
        } else {
            Err(result.into_error(program, args))
        }
    }
}

impl CommandResult {
    /// The error for this (failed) result of `program args…`.
    pub fn into_error(self, program: &str, args: &[&str]) -> AgentError {
        let mut stderr = self.stderr.trim().to_string();
        if stderr.len() > MAX_STDERR_IN_ERROR {
            let mut cut = MAX_STDERR_IN_ERROR;
            while !stderr.is_char_boundary(cut) {
                cut -= 1;
            }
            stderr.truncate(cut);
            stderr.push('…');
        }
        AgentError::Command {
            command: std::iter::once(program)
                .chain(args.iter().copied())
                .collect::<Vec<_>>()
                .join(" "),
            status: self.status,
            stderr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_under_the_root() {
        let h = HostSystem::mount_namespace_of(42);
        assert_eq!(
            h.path("/etc/passwd"),
            PathBuf::from("/proc/42/root/etc/passwd")
        );
        assert_eq!(
            HostSystem::local().path("/etc/passwd"),
            PathBuf::from("/etc/passwd")
        );
    }

    #[test]
    fn commands_report_failures_with_stderr() {
        let h = HostSystem::local();
        let ok = h.run_checked("/bin/sh", &["-c", "echo hi"]).unwrap();
        assert_eq!(ok.stdout, "hi\n");
        let err = h
            .run_checked("/bin/sh", &["-c", "echo nope >&2; exit 3"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nope") && err.contains("exit status: 3"),
            "{err}"
        );
        // The agent's environment does not leak into commands.
        let env = h.run_checked("/usr/bin/env", &[]).unwrap().stdout;
        assert!(!env.contains("CARGO"), "{env}");
    }

    #[test]
    fn the_prefix_wraps_the_program() {
        let h = HostSystem::with_root("/", vec!["/usr/bin/env".into(), "X_PREFIX=1".into()]);
        let out = h.run_checked("/bin/sh", &["-c", "echo $X_PREFIX"]).unwrap();
        assert_eq!(out.stdout, "1\n");
    }
}
