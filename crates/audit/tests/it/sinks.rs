//! Secondary sinks against real receivers: a UDP socket for syslog and an
//! axum HTTP server for the webhook.

use crate::common;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use common::{config, event, read_lines, signing_key};
use idmint_audit::{
    AuditConfig, AuditEvent, AuditLog, SinkConfig, SinkStatus, SyslogConfig, WebhookConfig,
};
use std::net::UdpSocket;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `check` until it holds or the deadline passes.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A parsed RFC 5424 message (the subset idmint emits).
struct Syslog5424 {
    pri: u16,
    version: String,
    timestamp: String,
    app: String,
    msgid: String,
    sd: String,
    msg: String,
}

fn parse_5424(s: &str) -> Syslog5424 {
    let rest = s.strip_prefix('<').expect("PRI starts with <");
    let (pri, rest) = rest.split_once('>').expect("PRI ends with >");
    let mut parts = rest.splitn(7, ' ');
    let mut next = || parts.next().expect("header field").to_string();
    let (version, timestamp, _host, app, _procid, msgid, tail) =
        (next(), next(), next(), next(), next(), next(), next());
    let end = tail.find("] ").expect("structured data ends with ]");
    Syslog5424 {
        pri: pri.parse().expect("numeric PRI"),
        version,
        timestamp,
        app,
        msgid,
        sd: tail[..=end].to_string(),
        msg: tail[end + 2..].to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_udp_receives_rfc5424_with_seq_and_hash() {
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver.set_read_timeout(Some(DEADLINE)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut syslog = SyslogConfig::new(format!("udp://{}", receiver.local_addr().unwrap()));
    syslog.hostname = Some("testhost".into());
    let cfg = AuditConfig {
        sinks: vec![SinkConfig::Syslog(syslog)],
        ..config(&path, 1000)
    };
    let log = AuditLog::open(cfg, &signing_key()).unwrap();
    let mut receipts = vec![];
    for i in 0..3 {
        receipts.push(log.append(event(i)).await.unwrap());
    }
    let mut denied = AuditEvent::new("credential_issued", "denied");
    denied.request_id = Some("req_denied".into());
    receipts.push(log.append(denied).await.unwrap());
    let lines = read_lines(&path);
    let mut buf = vec![0u8; 65_536];
    for (receipt, line) in receipts.iter().zip(&lines) {
        let n = receiver.recv(&mut buf).unwrap();
        let m = parse_5424(std::str::from_utf8(&buf[..n]).unwrap());
        assert_eq!(m.version, "1");
        assert_eq!(m.app, "idmint");
        let ev: AuditEvent = serde_json::from_str(&m.msg).unwrap();
        assert_eq!(&m.msg, line, "MSG is the primary log line verbatim");
        assert_eq!(m.timestamp, ev.time);
        assert_eq!(m.msgid, ev.event);
        assert_eq!(
            m.sd,
            format!(
                "[idmint@32473 event_id=\"{}\" hash=\"{}\"]",
                receipt.seq, receipt.hash
            )
        );
        let severity = if ev.outcome == "denied" { 5 } else { 6 };
        assert_eq!(m.pri, 10 * 8 + severity, "authpriv facility");
    }
    assert!(log
        .sink_statuses()
        .iter()
        .all(|s| s.healthy && s.failures == 0));
    assert!(log.is_healthy());
}

/// An HTTP receiver that fails the first `fail_first` POSTs with 500.
#[derive(Clone, Default)]
struct Receiver {
    fail_first: Arc<AtomicUsize>,
    posts: Arc<AtomicUsize>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start(fail_first: usize) -> (Self, String) {
        let r = Receiver {
            fail_first: Arc::new(AtomicUsize::new(fail_first)),
            ..Receiver::default()
        };
        let app = Router::new()
            .route("/audit", post(receive))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/audit", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (r, url)
    }

    fn seqs(&self) -> Vec<u64> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str::<AuditEvent>(l).unwrap().seq)
            .collect()
    }
}

async fn receive(State(r): State<Receiver>, body: String) -> StatusCode {
    r.posts.fetch_add(1, Ordering::SeqCst);
    let failing = r
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    r.lines
        .lock()
        .unwrap()
        .extend(body.lines().map(str::to_string));
    StatusCode::NO_CONTENT
}

fn webhook(url: &str, spool: &Path) -> WebhookConfig {
    let mut w = WebhookConfig::new(url, spool);
    w.backoff_initial_ms = 10;
    w.backoff_max_seconds = 1;
    w
}

fn spool_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn status(log: &AuditLog) -> SinkStatus {
    log.sink_statuses().into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_recovers_in_order_and_drains_the_spool() {
    let (receiver, url) = Receiver::start(3).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let spool = dir.path().join("spool");
    let cfg = AuditConfig {
        sinks: vec![SinkConfig::Webhook(webhook(&url, &spool))],
        ..config(&path, 1000)
    };
    let log = AuditLog::open(cfg, &signing_key()).unwrap();
    for i in 0..10 {
        log.append(event(i)).await.unwrap();
    }
    eventually("all 10 events delivered", || receiver.seqs().len() >= 10).await;
    eventually("spool drained", || {
        status(&log).spool_bytes == 0 && spool_files(&spool) == 0
    })
    .await;
    // 500s are not stored, so after recovery every event arrives exactly once.
    assert_eq!(receiver.seqs(), (1..=10).collect::<Vec<_>>());
    assert_eq!(
        receiver.lines.lock().unwrap().as_slice(),
        read_lines(&path).as_slice()
    );
    let s = status(&log);
    assert!(s.failures >= 3, "{s:?}");
    assert!(s.healthy && s.dropped == 0, "{s:?}");
    assert!(receiver.posts.load(Ordering::SeqCst) >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_spool_is_bounded_and_issuance_continues() {
    let (receiver, url) = Receiver::start(usize::MAX).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let spool = dir.path().join("spool");
    let mut w = webhook(&url, &spool);
    w.spool_max_bytes = 2_000;
    w.batch_max_bytes = 1_000;
    let cfg = AuditConfig {
        sinks: vec![SinkConfig::Webhook(w)],
        ..config(&path, 1000)
    };
    let log = AuditLog::open(cfg, &signing_key()).unwrap();
    for i in 0..20 {
        // Every append succeeds: the dead receiver never blocks the primary.
        log.append(event(i)).await.unwrap();
    }
    eventually("every batch spooled or dropped", || {
        let s = status(&log);
        spool_files(&spool) as u64 + s.dropped == 20
    })
    .await;
    let on_disk: u64 = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let s = status(&log);
    assert!(on_disk <= 2_000, "spool holds {on_disk} bytes");
    assert_eq!(s.spool_bytes, on_disk);
    assert!(s.dropped > 0 && !s.healthy, "{s:?}");
    assert!(
        log.is_healthy(),
        "a secondary sink never makes the log unhealthy"
    );
    assert!(receiver.seqs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_spool_survives_restart() {
    let (receiver, url) = Receiver::start(usize::MAX).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let spool = dir.path().join("spool");
    let cfg = AuditConfig {
        sinks: vec![SinkConfig::Webhook(webhook(&url, &spool))],
        ..config(&path, 1000)
    };
    let log = AuditLog::open(cfg.clone(), &signing_key()).unwrap();
    for i in 0..5 {
        log.append(event(i)).await.unwrap();
    }
    log.close().await.unwrap();
    // 5 events + the closing checkpoint, one batch each.
    eventually("6 batches spooled", || spool_files(&spool) == 6).await;
    drop(log);

    receiver.fail_first.store(0, Ordering::SeqCst);
    let log = AuditLog::open(cfg, &signing_key()).unwrap();
    log.append(event(99)).await.unwrap();
    eventually("the old spool and the new event delivered", || {
        receiver.seqs().len() >= 7
    })
    .await;
    eventually("spool drained", || spool_files(&spool) == 0).await;
    assert_eq!(receiver.seqs(), (1..=7).collect::<Vec<_>>());
}
