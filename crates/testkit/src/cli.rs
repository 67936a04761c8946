//! [`Cli`]: runs the real `idmint` binary as a user would, in a hermetic
//! environment (its own HOME and XDG cache/config directories, no inherited
//! `IDMINT_*` or CI variables), with a deadline.

use crate::error::{Result, TestkitError};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Longest a single CLI invocation may take.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// What one invocation did.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The command line, for messages.
    pub command: String,
}

impl CliOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout parsed as JSON.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(self.stdout.trim()).map_err(|e| TestkitError::Protocol {
            peer: self.command.clone(),
            message: format!("stdout is not JSON ({e}):\n{}", self.summary()),
        })
    }

    /// Exit code, stdout and stderr, for assertion messages.
    pub fn summary(&self) -> String {
        format!(
            "$ {}\nexit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

/// A user of the `idmint` CLI with a private home directory.
#[derive(Debug)]
pub struct Cli {
    bin: PathBuf,
    home: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Cli {
    pub fn new(bin: &Path) -> Result<Self> {
        let home = tempfile::Builder::new()
            .prefix("idmint-cli-")
            .tempdir()
            .map_err(|e| TestkitError::io("creating the CLI home dir", e))?;
        Ok(Self {
            bin: bin.to_path_buf(),
            home,
            env: Vec::new(),
        })
    }

    /// The private `HOME`.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// `XDG_CACHE_HOME` (`$HOME/.cache`).
    pub fn cache_dir(&self) -> PathBuf {
        self.home.path().join(".cache")
    }

    /// Set a variable for every later run.
    pub fn set_env(&mut self, key: &str, value: &str) -> &mut Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub async fn run(&self, args: &[&str]) -> Result<CliOutput> {
        self.run_full(args, &[], None).await
    }

    /// Run with extra variables for this run only.
    pub async fn run_env(&self, args: &[&str], env: &[(String, String)]) -> Result<CliOutput> {
        self.run_full(args, env, None).await
    }

    /// Run with `stdin` as standard input.
    pub async fn run_stdin(&self, args: &[&str], stdin: &str) -> Result<CliOutput> {
        self.run_full(args, &[], Some(stdin)).await
    }

    async fn run_full(
        &self,
        args: &[&str],
        env: &[(String, String)],
        stdin: Option<&str>,
    ) -> Result<CliOutput> {
        let command = format!("idmint {}", args.join(" "));
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(args)
            .env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
            )
            .env("HOME", self.home.path())
            .env("XDG_CACHE_HOME", self.cache_dir())
            .env("XDG_CONFIG_HOME", self.home.path().join(".config"))
            .env("NO_COLOR", "1")
            .current_dir(self.home.path())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in self.env.iter().chain(env) {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| TestkitError::io(format!("starting {}", self.bin.display()), e))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .await
                .map_err(|e| TestkitError::io("writing the CLI's stdin", e))?;
            drop(pipe);
        }
        let out = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
            .await
            .map_err(|_| TestkitError::Timeout {
                what: command.clone(),
                waited_ms: RUN_LIMIT.as_millis(),
                detail: "the CLI hung (killed)".into(),
            })?
            .map_err(|e| TestkitError::io(format!("running {command}"), e))?;
        Ok(CliOutput {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            command,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_hermetically_with_a_deadline() {
        // `env` stands in for the idmint binary: it prints its environment.
        let mut cli = Cli::new(Path::new("/usr/bin/env")).unwrap();
        cli.set_env("IDMINT_SERVER", "http://x");
        let out = cli.run(&[]).await.unwrap();
        assert!(out.success(), "{}", out.summary());
        assert!(out.stdout.contains("IDMINT_SERVER=http://x"));
        assert!(out
            .stdout
            .contains(&format!("HOME={}", cli.home().display())));
        assert!(
            !out.stdout.contains("CARGO_"),
            "inherited variables must not leak: {}",
            out.stdout
        );
        let cat = Cli::new(Path::new("/bin/cat")).unwrap();
        let out = cat.run_stdin(&[], "{\"a\": 1}").await.unwrap();
        assert_eq!(out.json().unwrap()["a"], 1);
    }
}
