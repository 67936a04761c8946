//! Secondary audit sinks in a real server: a failing webhook and a syslog
//! receiver make `/readyz` "degraded" (still 200) and show in `/metrics`;
//! after a restart with a non-empty spool, the webhook receives every line
//! of the primary log, in order, and the spool drains.

use crate::common;

use common::bin;
use idmint_testkit::{free_port, IdmintServer, ServerSpec};
use serde_json::Value;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const DEADLINE: Duration = Duration::from_secs(30);

/// A minimal HTTP/1.1 receiver: answers 500 while `failing`, else stores
/// the body's lines and answers 204. One request per connection.
#[derive(Clone, Default)]
struct Receiver {
    failing: Arc<AtomicBool>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start(failing: bool) -> anyhow::Result<(Self, String)> {
        let r = Receiver::default();
        r.failing.store(failing, Ordering::SeqCst);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/ingest", listener.local_addr()?);
        let serving = r.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let r = serving.clone();
                tokio::spawn(async move {
                    let _ = r.handle(&mut conn).await;
                });
            }
        });
        Ok((r, url))
    }

    async fn handle(&self, conn: &mut tokio::net::TcpStream) -> anyhow::Result<()> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let (head_end, length) = loop {
            let n = conn.read(&mut chunk).await?;
            anyhow::ensure!(n > 0, "connection closed before the headers");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                break (i + 4, length);
            }
        };
        while buf.len() < head_end + length {
            let n = conn.read(&mut chunk).await?;
            anyhow::ensure!(n > 0, "connection closed mid-body");
            buf.extend_from_slice(&chunk[..n]);
        }
        let status = if self.failing.load(Ordering::SeqCst) {
            "500 Internal Server Error"
        } else {
            let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
            self.lines
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .extend(body.lines().map(str::to_string));
            "204 No Content"
        };
        conn.write_all(
            format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        Ok(())
    }

    fn seqs(&self) -> Vec<u64> {
        self.lines
            .lock()
            .map(|l| {
                l.iter()
                    .filter_map(|x| serde_json::from_str::<Value>(x).ok())
                    .filter_map(|v| v["seq"].as_u64())
                    .collect()
            })
            .unwrap_or_default()
    }
}

async fn eventually<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let start = Instant::now();
    while !check().await? {
        anyhow::ensure!(start.elapsed() < DEADLINE, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// `name{sink="siem"} value` from the metrics text.
fn metric(text: &str, name: &str) -> Option<f64> {
    let prefix = format!("{name}{{sink=\"siem\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_sinks_degrade_and_the_spool_is_delivered_after_restart() -> anyhow::Result<()> {
    let (receiver, url) = Receiver::start(true).await?;
    let syslog = UdpSocket::bind("127.0.0.1:0")?;
    syslog.set_read_timeout(Some(DEADLINE))?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config_path = ServerSpec::default().write(dir.path(), port)?;
    idmint_testkit::server::write_root_key(&dir.path().join("root.key"))?;
    let mut config = std::fs::read_to_string(&config_path)?;
    config.push_str(&format!(
        "\n[[audit.sinks]]\nkind = \"webhook\"\nname = \"siem\"\nurl = \"{url}\"\nspool_dir = \"spool\"\nbackoff_initial_ms = 50\nbackoff_max_seconds = 1\n\n[[audit.sinks]]\nkind = \"syslog\"\naddress = \"udp://{}\"\n",
        syslog.local_addr()?
    ));
    std::fs::write(&config_path, config)?;
    let audit_file = dir.path().join("audit.jsonl");
    let spool = dir.path().join("spool");
    let dir_path = dir.path().to_path_buf();
    let mut server =
        IdmintServer::start_with_config(bin(), dir, config_path, port, audit_file.clone(), vec![])
            .await?;

    // syslog: the server_start event as RFC 5424.
    let mut buf = vec![0u8; 65_536];
    let n = syslog.recv(&mut buf)?;
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(msg.starts_with("<86>1 "), "authpriv.info: {msg}");
    assert!(
        msg.contains(" server_start [idmint@32473 event_id=\"1\" hash=\""),
        "{msg}"
    );

    // The failing webhook degrades readiness but does not fail it.
    eventually("/readyz degraded", || async {
        let r = server.get("/readyz").await?;
        Ok(r.status == 200 && r.body["status"] == "degraded")
    })
    .await?;
    let r = server.get("/readyz").await?;
    assert!(
        r.text
            .contains("audit sink \\\"siem\\\" (webhook) degraded"),
        "{}",
        r.text
    );
    let m = server.get("/metrics").await?.text;
    assert!(
        metric(&m, "idmint_audit_sink_failures_total").is_some_and(|v| v >= 1.0),
        "{m}"
    );
    assert!(
        metric(&m, "idmint_audit_sink_spool_bytes").is_some_and(|v| v > 0.0),
        "{m}"
    );
    assert_eq!(metric(&m, "idmint_audit_sink_healthy"), Some(0.0), "{m}");
    assert!(
        std::fs::read_dir(&spool)?.count() > 0,
        "the spool holds the undelivered batches"
    );

    // Restart with a non-empty spool and a healthy receiver.
    server.stop()?;
    receiver.failing.store(false, Ordering::SeqCst);
    server.restart().await?;
    // Everything up to the restart's server_start (seq 1 = first start,
    // then the closing checkpoint, then the second start), at least once and
    // in order; no traffic after it, so the file is complete.
    let expected: Vec<u64> = std::fs::read_to_string(&audit_file)?
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["seq"].as_u64())
        .collect();
    assert!(expected.len() >= 3, "{expected:?}");
    eventually("every line delivered and the spool drained", || async {
        let empty = std::fs::read_dir(dir_path.join("spool"))?.count() == 0;
        // At least once: a batch re-sent after a lost acknowledgement shows
        // up twice; what must hold is the order of first deliveries.
        let mut seen = std::collections::HashSet::new();
        let mut first: Vec<u64> = receiver.seqs();
        first.retain(|s| seen.insert(*s));
        Ok(empty && first.starts_with(&expected))
    })
    .await?;
    eventually("/readyz ready again", || async {
        let r = server.get("/readyz").await?;
        Ok(r.status == 200 && r.body["status"] == "ready")
    })
    .await?;
    Ok(())
}
