//! [`RedisServer`]: a throwaway Redis 7 (`redis-server` from Debian's
//! `redis-server` package) on a free loopback port, for the Redis issuer's
//! tests.
//!
//! The server runs in the foreground as a child of the test ([`Peer`]), with
//! persistence off and its working dir in a temp dir, so dropping it is the
//! whole teardown. The `default` user is disabled (unauthenticated clients get
//! `NOAUTH`) and one admin user with every permission is created on the
//! command line, as in TESTBED.md section "Redis 7.0".

use crate::error::{Result, TestkitError};
use crate::process::{free_port, Peer};
use crate::wait::poll_until;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Where Debian's `redis-server` package installs the server.
pub const REDIS_SERVER_BIN: &str = "/usr/bin/redis-server";

/// How long a start may take (normally about 50 ms).
const START_LIMIT: Duration = Duration::from_secs(15);

/// How many times a start is retried when the free port was taken meanwhile.
const PORT_ATTEMPTS: usize = 3;

/// A running Redis server with one admin user. Killed on drop.
pub struct RedisServer {
    peer: Option<Peer>,
    port: u16,
    admin_user: String,
    admin_password: String,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .field("admin_user", &self.admin_user)
            .finish_non_exhaustive()
    }
}

impl RedisServer {
    /// Start a server with admin user `admin` / password `adminpw`.
    pub async fn start() -> Result<Self> {
        Self::start_with("admin", "adminpw").await
    }

    /// Start a server whose only enabled user is `admin_user` with
    /// `admin_password` and every permission (`~* &* +@all`).
    pub async fn start_with(admin_user: &str, admin_password: &str) -> Result<Self> {
        let bin = Path::new(REDIS_SERVER_BIN);
        if !bin.exists() {
            return Err(TestkitError::Missing {
                what: "redis-server",
                path: bin.to_path_buf(),
                hint: "apt-get install -y --no-install-recommends redis-server",
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("idmint-redis-")
            .tempdir()
            .map_err(|e| TestkitError::io("creating the Redis temp dir", e))?;
        let mut server = Self {
            peer: None,
            port: 0,
            admin_user: admin_user.to_string(),
            admin_password: admin_password.to_string(),
            dir,
        };
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            server.port = free_port()?;
            match server.spawn_and_wait().await {
                Ok(()) => return Ok(server),
                // Most likely the port was taken between free_port and bind.
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| TestkitError::Protocol {
            peer: "redis-server".into(),
            message: "no start attempt was made".into(),
        }))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Spawn `redis-server` on `self.port` and wait until it answers.
    async fn spawn_and_wait(&mut self) -> Result<()> {
        let log = self.log_path();
        let stdout = File::create(self.dir.path().join("stdout.log"))
            .map_err(|e| TestkitError::io("creating redis stdout log", e))?;
        let child = Command::new(REDIS_SERVER_BIN)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--logfile")
            .arg(&log)
            .args(["--user", "default", "off"])
            .args(["--user", &self.admin_user, "on"])
            .arg(format!(">{}", self.admin_password))
            .args(["~*", "&*", "+@all"])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| TestkitError::io(format!("spawning {REDIS_SERVER_BIN}"), e))?;
        let mut peer = Peer::new(
            format!("redis-server :{}", self.port),
            child,
            vec![log, self.dir.path().join("stdout.log")],
        );
        let port = self.port;
        let ready = poll_until(
            &format!("redis-server on 127.0.0.1:{port} to answer PING"),
            START_LIMIT,
            || {
                let exited = peer.ensure_running();
                async move {
                    exited?;
                    Ok(ping_answers(port).await.then_some(()))
                }
            },
        )
        .await;
        match ready {
            Ok(()) => {
                self.peer = Some(peer);
                Ok(())
            }
            Err(e) => {
                let _ = peer.kill();
                Err(e)
            }
        }
    }

    /// Start again on the same port (after [`RedisServer::kill`]), with the
    /// same admin user but an empty data set and `admin_password`.
    pub async fn restart_with_password(&mut self, admin_password: &str) -> Result<()> {
        self.kill()?;
        self.admin_password = admin_password.to_string();
        self.spawn_and_wait().await
    }

    /// Kill the server now (SIGKILL), e.g. to test a target that is down.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut peer) = self.peer.take() {
            peer.kill()?;
        }
        Ok(())
    }

    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn admin_user(&self) -> &str {
        &self.admin_user
    }

    /// The admin password the server was started with (a later
    /// `ACL SETUSER … resetpass` is not tracked here).
    pub fn admin_password(&self) -> &str {
        &self.admin_password
    }

    /// `redis://admin:pw@127.0.0.1:PORT/` for the initial admin password.
    pub fn admin_url(&self) -> String {
        format!(
            "redis://{}:{}@127.0.0.1:{}/",
            self.admin_user, self.admin_password, self.port
        )
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        match &self.peer {
            Some(p) => p.log_tail(lines),
            None => crate::process::tail_of_file(&self.log_path(), lines),
        }
    }
}

/// Whether something on `port` answers an inline `PING` with a RESP reply.
/// With the default user off the answer is `-NOAUTH …`, which still proves
/// the server is up and serving commands.
async fn ping_answers(port: u16) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).await.ok()?;
        Some(line.starts_with('+') || line.starts_with('-'))
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_answers_and_dies_on_drop() {
        let server = RedisServer::start().await.unwrap();
        let port = server.port();
        assert!(ping_answers(port).await);
        drop(server);
        assert!(!ping_answers(port).await);
    }
}
