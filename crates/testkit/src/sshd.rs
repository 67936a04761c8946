//! The real OpenSSH server inside a [`JitNamespace`], and the keys and
//! certificates a test needs to log in to it (TESTBED §3).
//!
//! sshd must run in the same mount namespace as the accounts (it looks
//! them up in that `/etc/passwd`); the client can run on the host because
//! the network is shared. sshd is a foreground child (`-D -e`), killed on
//! drop; its log is kept for failure messages.

use crate::error::{Result, TestkitError};
use crate::jit_ns::JitNamespace;
use crate::process::{free_port, tail_of_file, Peer, POLL_INTERVAL};
use std::fs::File;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";
const READY_LIMIT: Duration = Duration::from_secs(10);

/// A throwaway Ed25519 key pair made with `ssh-keygen`.
#[derive(Debug)]
pub struct SshKey {
    _dir: tempfile::TempDir,
    private: PathBuf,
}

impl SshKey {
    /// A new key; `comment` ends up in the public key line.
    pub fn generate(comment: &str) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("sshkey-")
            .tempdir_in("/tmp")
            .map_err(|e| TestkitError::io("creating a key directory", e))?;
        let private = dir.path().join("key");
        run_tool(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(&private),
            "ssh-keygen -t ed25519",
        )?;
        Ok(Self { _dir: dir, private })
    }

    pub fn private_key_path(&self) -> &Path {
        &self.private
    }

    pub fn public_key_path(&self) -> PathBuf {
        with_suffix(&self.private, ".pub")
    }

    /// Where `ssh-keygen -s` puts the certificate of this key.
    pub fn certificate_path(&self) -> PathBuf {
        with_suffix(&self.private, "-cert.pub")
    }

    /// The public key line (`ssh-ed25519 AAAA… comment`).
    pub fn public_key_line(&self) -> Result<String> {
        std::fs::read_to_string(self.public_key_path())
            .map(|s| s.trim().to_string())
            .map_err(|e| TestkitError::io("reading a public key", e))
    }

    /// Sign `subject`'s public key as a *user* certificate for
    /// `principals`, valid for `validity` (`ssh-keygen -V`, e.g. `+5m`).
    /// The certificate is written next to `subject`'s key.
    pub fn sign_user_key(
        &self,
        subject: &SshKey,
        key_id: &str,
        principals: &str,
        validity: &str,
    ) -> Result<PathBuf> {
        run_tool(
            Command::new("ssh-keygen")
                .arg("-q")
                .arg("-s")
                .arg(&self.private)
                .args(["-I", key_id, "-n", principals, "-V", validity])
                .arg(subject.public_key_path()),
            "ssh-keygen -s (user certificate)",
        )?;
        Ok(subject.certificate_path())
    }
}

/// How to configure the sshd.
#[derive(Debug, Clone, Default)]
pub struct SshdOptions {
    /// `TrustedUserCAKeys`: the user CA's public key file.
    pub trusted_user_ca: PathBuf,
    /// `UsePAM` (default no: certificate logins need `-p '*'` accounts).
    pub use_pam: bool,
    /// Listen on this port (e.g. one already written into a server's host
    /// config) instead of a free one; no retry on "address in use" then.
    pub port: Option<u16>,
    /// `HostKey` (private key file, mode 0600) instead of a generated one.
    pub host_key: Option<PathBuf>,
    /// `HostCertificate` for that host key (e.g. from `idmint agent enroll`).
    pub host_certificate: Option<PathBuf>,
}

impl SshdOptions {
    /// Defaults, trusting the user CA in `trusted_user_ca`.
    pub fn trusting(trusted_user_ca: impl Into<PathBuf>) -> Self {
        Self {
            trusted_user_ca: trusted_user_ca.into(),
            ..Self::default()
        }
    }
}

/// sshd running in a namespace on a free loopback port.
#[derive(Debug)]
pub struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    peer: Peer,
    log: PathBuf,
    known_hosts: PathBuf,
}

impl Sshd {
    /// Start sshd in `ns` trusting the user CA in `trusted_user_ca`.
    pub fn start(ns: &JitNamespace, trusted_user_ca: &Path) -> Result<Self> {
        Self::start_with(ns, SshdOptions::trusting(trusted_user_ca))
    }

    pub fn start_with(ns: &JitNamespace, options: SshdOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("sshd-")
            .tempdir_in("/tmp")
            .map_err(|e| TestkitError::io("creating the sshd directory", e))?;
        let host_key = match &options.host_key {
            Some(k) => k.clone(),
            None => {
                let k = dir.path().join("host_key");
                run_tool(
                    Command::new("ssh-keygen")
                        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test-host", "-f"])
                        .arg(&k),
                    "ssh-keygen (host key)",
                )?;
                k
            }
        };
        let host_pub = std::fs::read_to_string(with_suffix(&host_key, ".pub"))
            .map_err(|e| TestkitError::io("reading the host public key", e))?;
        let host_pub: String = host_pub
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        // One retry with a new port if another process took the first.
        let mut last_error = None;
        let attempts = if options.port.is_some() { 1 } else { 2 };
        for _ in 0..attempts {
            let port = match options.port {
                Some(p) => p,
                None => free_port()?,
            };
            let config = dir.path().join("sshd_config");
            std::fs::write(
                &config,
                render_config(port, dir.path(), &host_key, &options),
            )
            .map_err(|e| TestkitError::io("writing sshd_config", e))?;
            let check = ns
                .run(SSHD, &["-t", "-f", &config.to_string_lossy()])
                .map_err(|e| TestkitError::Protocol {
                    peer: "sshd -t".into(),
                    message: e.to_string(),
                })?;
            if !check.status.success() {
                return Err(TestkitError::Protocol {
                    peer: "sshd -t".into(),
                    message: String::from_utf8_lossy(&check.stderr).into_owned(),
                });
            }
            let log = dir.path().join(format!("sshd-{port}.log"));
            let log_file =
                File::create(&log).map_err(|e| TestkitError::io("creating sshd's log", e))?;
            let child = ns
                .command(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn()
                .map_err(|e| TestkitError::io("starting sshd in the namespace", e))?;
            let mut peer = Peer::new("sshd", child, vec![log.clone()]);
            match wait_for_port(port, &mut peer) {
                Ok(()) => {
                    let known_hosts = dir.path().join("known_hosts");
                    std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_pub}\n"))
                        .map_err(|e| TestkitError::io("writing known_hosts", e))?;
                    return Ok(Self {
                        dir,
                        port,
                        peer,
                        log,
                        known_hosts,
                    });
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or(TestkitError::Protocol {
            peer: "sshd".into(),
            message: "did not start".into(),
        }))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `known_hosts` trusting this sshd's host key on `[127.0.0.1]:PORT`.
    pub fn known_hosts_path(&self) -> &Path {
        &self.known_hosts
    }

    /// sshd's log so far (`-e`: it logs to stderr).
    pub fn log(&self) -> String {
        tail_of_file(&self.log, 200)
    }

    /// Fails if sshd has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        self.peer.ensure_running()
    }

    /// An `ssh` client command logging in as `user` with `key` and its
    /// certificate (`key.certificate_path()`), strict host key checking
    /// against [`known_hosts_path`](Self::known_hosts_path), never
    /// prompting. Append the remote command with `.arg(…)`.
    pub fn ssh_command(&self, user: &str, key: &SshKey) -> Command {
        let mut c = Command::new("ssh");
        c.args(["-F", "none", "-p", &self.port.to_string(), "-i"])
            .arg(key.private_key_path())
            .arg("-o")
            .arg(format!(
                "CertificateFile={}",
                key.certificate_path().display()
            ))
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "IdentityAgent=none",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "ConnectTimeout=5",
                "-o",
                "LogLevel=ERROR",
                "-o",
            ])
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .arg(format!("{user}@127.0.0.1"));
        c
    }
}

fn render_config(port: u16, dir: &Path, host_key: &Path, options: &SshdOptions) -> String {
    let host_certificate = options
        .host_certificate
        .as_ref()
        .map(|c| format!("HostCertificate {}\n", c.display()))
        .unwrap_or_default();
    format!(
        "Port {port}\n\
         ListenAddress 127.0.0.1\n\
         HostKey {}\n\
         PidFile {}\n\
         TrustedUserCAKeys {}\n\
         AuthorizedKeysFile none\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin no\n\
         UsePAM {}\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         LogLevel VERBOSE\n\
         {host_certificate}",
        host_key.display(),
        dir.join(format!("sshd-{port}.pid")).display(),
        options.trusted_user_ca.display(),
        if options.use_pam { "yes" } else { "no" },
    )
}

fn wait_for_port(port: u16, peer: &mut Peer) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < READY_LIMIT {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        peer.ensure_running()?;
        std::thread::sleep(POLL_INTERVAL);
    }
    Err(TestkitError::Timeout {
        what: format!("sshd to listen on 127.0.0.1:{port}"),
        waited_ms: started.elapsed().as_millis(),
        detail: peer.log_tail(20),
    })
}

fn run_tool(command: &mut Command, what: &str) -> Result<()> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| TestkitError::io(format!("running {what}"), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(TestkitError::Protocol {
            peer: what.to_string(),
            message: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}
