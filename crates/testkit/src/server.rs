//! [`IdmintServer`]: the real `idmint` binary, started per test on a free
//! loopback port with its own data directory.
//!
//! The server's stdout and stderr go to files in its temp dir; when a test
//! fails (the server is dropped while the thread panics) their tails are
//! printed, so the failure shows what the server said.

use crate::api::{ApiResponse, RawApi};
use crate::audit;
use crate::config::ServerSpec;
use crate::error::{Result, TestkitError};
use crate::process::{free_port, Peer, POLL_INTERVAL};
use idmint_client::{ClientOptions, IdmintClient};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer `/healthz` after spawning.
const START_LIMIT: Duration = Duration::from_secs(30);
/// How long SIGTERM may take before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Attempts when the chosen port was taken by someone else meanwhile.
const PORT_ATTEMPTS: usize = 3;

/// A running idmint server. Killed on drop.
pub struct IdmintServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    config_path: PathBuf,
    port: u16,
    audit_file: PathBuf,
    env: Vec<(String, String)>,
    peer: Option<Peer>,
    api: RawApi,
    /// Incremented per spawn so each run gets its own log files.
    runs: u32,
}

impl std::fmt::Debug for IdmintServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdmintServer")
            .field("base_url", &self.base_url())
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

/// Write 32 random bytes to `path` with mode 0600: the seal root key.
pub fn write_root_key(path: &Path) -> Result<()> {
    let mut key = [0u8; 32];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| TestkitError::Key("the system random number generator failed".into()))?;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| TestkitError::io(format!("creating {}", path.display()), e))?;
    f.write_all(&key)
        .map_err(|e| TestkitError::io(format!("writing {}", path.display()), e))
}

fn mentions_port_in_use(log: &str) -> bool {
    let l = log.to_ascii_lowercase();
    l.contains("address already in use") || l.contains("addrinuse") || l.contains("cannot listen")
}

impl IdmintServer {
    /// Render `spec` into a fresh temp dir (config, policy, root key) and
    /// start `<bin> server --config <dir>/idmint.toml`, waiting for
    /// `/healthz`.
    pub async fn start(bin: &Path, spec: ServerSpec) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("idmint-srv-")
            .tempdir()
            .map_err(|e| TestkitError::io("creating the server temp dir", e))?;
        write_root_key(&dir.path().join("root.key"))?;
        let audit_file = spec
            .audit_file
            .clone()
            .unwrap_or_else(|| dir.path().join("audit.jsonl"));
        let port = free_port()?;
        let config_path = spec.write(dir.path(), port)?;
        let mut server =
            Self::unstarted(bin, dir, config_path, port, audit_file, spec.env.clone())?;
        let mut attempt = 1;
        loop {
            match server.spawn_and_wait().await {
                Ok(()) => return Ok(server),
                // Someone took the port between free_port() and bind: move.
                Err(e) if attempt < PORT_ATTEMPTS && mentions_port_in_use(&e.to_string()) => {
                    attempt += 1;
                    server.stop()?;
                    let port = free_port()?;
                    server.config_path = spec.write(server.dir.path(), port)?;
                    server.port = port;
                    server.api = RawApi::new(&server.base_url())?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Start a server from a config file a test wrote itself (e.g. a copy
    /// of an example). The config must listen on `127.0.0.1:<port>` with
    /// plain HTTP; `audit_file` is where the test expects the audit log.
    pub async fn start_with_config(
        bin: &Path,
        dir: tempfile::TempDir,
        config_path: PathBuf,
        port: u16,
        audit_file: PathBuf,
        env: Vec<(String, String)>,
    ) -> Result<Self> {
        let mut server = Self::unstarted(bin, dir, config_path, port, audit_file, env)?;
        server.spawn_and_wait().await?;
        Ok(server)
    }

    fn unstarted(
        bin: &Path,
        dir: tempfile::TempDir,
        config_path: PathBuf,
        port: u16,
        audit_file: PathBuf,
        env: Vec<(String, String)>,
    ) -> Result<Self> {
        if !bin.exists() {
            return Err(TestkitError::Missing {
                what: "the idmint binary",
                path: bin.to_path_buf(),
                hint: "build it first (`cargo test -p idmint` builds it for integration tests)",
            });
        }
        Ok(Self {
            bin: bin.to_path_buf(),
            dir,
            config_path,
            port,
            audit_file,
            env,
            peer: None,
            api: RawApi::new(&format!("http://127.0.0.1:{port}"))?,
            runs: 0,
        })
    }

    async fn spawn_and_wait(&mut self) -> Result<()> {
        self.runs += 1;
        let stdout = self
            .dir
            .path()
            .join(format!("server.{}.stdout.log", self.runs));
        let stderr = self
            .dir
            .path()
            .join(format!("server.{}.stderr.log", self.runs));
        let create = |p: &Path| {
            std::fs::File::create(p)
                .map_err(|e| TestkitError::io(format!("creating {}", p.display()), e))
        };
        let mut cmd = Command::new(&self.bin);
        cmd.arg("server")
            .arg("--config")
            .arg(&self.config_path)
            .current_dir(self.dir.path())
            .env(
                "IDMINT_LOG",
                std::env::var("IDMINT_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(create(&stdout)?)
            .stderr(create(&stderr)?);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .map_err(|e| TestkitError::io(format!("starting {}", self.bin.display()), e))?;
        self.peer = Some(Peer::new(
            format!("idmint server on port {}", self.port),
            child,
            vec![stdout, stderr],
        ));
        self.wait_healthy(START_LIMIT).await
    }

    /// Poll `/healthz` until it answers 200; fails early (with the server's
    /// output) if the process exits.
    pub async fn wait_healthy(&mut self, limit: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Some(peer) = self.peer.as_mut() {
                peer.ensure_running()?;
            }
            let last = match self.api.get("/healthz", None).await {
                Ok(r) if r.status == 200 => return Ok(()),
                Ok(r) => r.summary(),
                Err(e) => e.to_string(),
            };
            if started.elapsed() >= limit {
                return Err(TestkitError::Timeout {
                    what: format!("idmint on port {} to answer /healthz", self.port),
                    waited_ms: started.elapsed().as_millis(),
                    detail: format!("{last}\n{}", self.log_tail(40)),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's temp dir (config, policy, database, root key, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where the database and keys live (same as [`Self::dir`]).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn audit_file(&self) -> &Path {
        &self.audit_file
    }

    /// Every audit event so far.
    pub fn audit_events(&self) -> Result<Vec<Value>> {
        audit::read_events(&self.audit_file)
    }

    /// A client library instance for this server, without a session.
    pub fn client(&self) -> Result<IdmintClient> {
        IdmintClient::new(&self.base_url(), ClientOptions::default())
            .map_err(|e| TestkitError::http("BUILD", self.base_url(), e))
    }

    /// Raw HTTP access (exact statuses and bodies).
    pub fn api(&self) -> &RawApi {
        &self.api
    }

    /// `GET path` (no session).
    pub async fn get(&self, path: &str) -> Result<ApiResponse> {
        self.api.get(path, None).await
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.peer.as_ref().and_then(Peer::id)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> Result<bool> {
        match self.peer.as_mut() {
            Some(p) => Ok(p.try_wait()?.is_none()),
            None => Ok(false),
        }
    }

    /// SIGTERM (graceful: the audit log is closed with a checkpoint), then
    /// SIGKILL after a grace period. Returns whether it exited by itself.
    pub fn stop(&mut self) -> Result<Option<std::process::ExitStatus>> {
        match self.peer.as_mut() {
            Some(p) => p.terminate(STOP_GRACE),
            None => Ok(None),
        }
    }

    /// SIGKILL now, like a crash: no graceful shutdown, in-flight requests
    /// are cut off. [`Self::restart`] starts it again on the same data.
    pub fn kill(&mut self) -> Result<Option<std::process::ExitStatus>> {
        match self.peer.as_mut() {
            Some(p) => p.kill(),
            None => Ok(None),
        }
    }

    /// Stop and start again with the same config, data dir and port.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.spawn_and_wait().await
    }

    /// The tail of the server's output (current run).
    pub fn log_tail(&self, lines: usize) -> String {
        self.peer
            .as_ref()
            .map(|p| p.log_tail(lines))
            .unwrap_or_default()
    }
}

impl Drop for IdmintServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "=== idmint server {} (dir {}) output ===\n{}",
                self.base_url(),
                self.dir.path().display(),
                self.log_tail(120)
            );
        }
        if let Some(mut p) = self.peer.take() {
            let _ = p.kill();
        }
    }
}
