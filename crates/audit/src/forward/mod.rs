//! Secondary audit sinks: best-effort copies of the log for collectors.
//!
//! The primary file (and `[audit] stdout`) is fail-closed: no durable line,
//! no credential. The sinks here are *copies*: once a batch is durable in the
//! primary, the writer thread hands its bytes to every secondary sink through
//! a bounded queue ([`Forwarders::publish`] never blocks). Each sink runs on
//! its own thread, so a slow or dead collector can never delay issuance. A
//! failure is counted per sink ([`SinkStatus`]) for `/metrics` and `/readyz`;
//! the primary file remains the source of truth and `idmint audit verify`
//! still covers everything.
//!
//! - [`SinkConfig::Stdout`]: JSON lines on standard output.
//! - [`SinkConfig::Syslog`]: RFC 5424 over UDP or a Unix datagram socket.
//! - [`SinkConfig::Webhook`]: batched HTTP POST, at-least-once, with an
//!   on-disk spool that survives restarts ([`spool`]).

mod config;
mod spool;
mod stdout;
mod syslog;
mod webhook;

pub use config::{SinkConfig, StdoutConfig, SyslogConfig, WebhookConfig};
pub use syslog::format_rfc5424;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

/// Batches a sink may lag behind before new ones are dropped (and counted).
const QUEUE_BATCHES: usize = 1024;

/// One batch of complete, newline-terminated log lines.
pub(crate) type Batch = Arc<[u8]>;

/// What `/metrics` and `/readyz` report about one secondary sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkStatus {
    /// `stdout`, `syslog` or `webhook`.
    pub kind: &'static str,
    /// The configured name (defaults to the kind).
    pub name: String,
    /// Deliveries that failed (each retry counts) plus batches dropped
    /// because the queue or the spool was full.
    pub failures: u64,
    /// Batches dropped for good (queue or spool full).
    pub dropped: u64,
    /// Bytes waiting in the on-disk spool (webhook only).
    pub spool_bytes: u64,
    /// False while the last delivery attempt failed.
    pub healthy: bool,
    /// The last delivery error, for `/readyz`.
    pub last_error: Option<String>,
}

/// Counters shared between a sink thread and the status readers.
#[derive(Debug, Default)]
pub(crate) struct SinkCounters {
    failures: AtomicU64,
    dropped: AtomicU64,
    spool_bytes: AtomicU64,
    unhealthy: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl SinkCounters {
    pub(crate) fn fail(&self, error: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.unhealthy.store(true, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error);
        }
    }

    pub(crate) fn drop_batch(&self, why: &str) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.fail(format!("a batch was dropped: {why}"));
    }

    pub(crate) fn succeed(&self) {
        self.unhealthy.store(false, Ordering::Relaxed);
    }

    pub(crate) fn set_spool_bytes(&self, bytes: u64) {
        self.spool_bytes.store(bytes, Ordering::Relaxed);
    }
}

struct Running {
    kind: &'static str,
    name: String,
    tx: SyncSender<Batch>,
    counters: Arc<SinkCounters>,
}

/// The running secondary sinks. Owned by the writer thread; dropping it
/// disconnects the sink threads, which finish their queue and exit (a
/// webhook leaves undelivered batches in its spool for the next start).
pub(crate) struct Forwarders {
    sinks: Vec<Running>,
}

/// Read-only view of the sinks' counters, held by [`crate::AuditLog`].
#[derive(Debug, Clone, Default)]
pub(crate) struct ForwardStatus {
    sinks: Vec<(&'static str, String, Arc<SinkCounters>)>,
}

impl ForwardStatus {
    pub(crate) fn snapshot(&self) -> Vec<SinkStatus> {
        self.sinks
            .iter()
            .map(|(kind, name, c)| SinkStatus {
                kind,
                name: name.clone(),
                failures: c.failures.load(Ordering::Relaxed),
                dropped: c.dropped.load(Ordering::Relaxed),
                spool_bytes: c.spool_bytes.load(Ordering::Relaxed),
                healthy: !c.unhealthy.load(Ordering::Relaxed),
                last_error: c.last_error.lock().ok().and_then(|l| l.clone()),
            })
            .collect()
    }
}

impl Forwarders {
    /// Validates every config and starts one thread per sink.
    pub(crate) fn start(
        configs: &[SinkConfig],
    ) -> Result<(Self, ForwardStatus), crate::AuditError> {
        let mut sinks = Vec::with_capacity(configs.len());
        let mut status = ForwardStatus::default();
        for cfg in configs {
            cfg.validate()?;
            let counters = Arc::new(SinkCounters::default());
            let (tx, rx) = sync_channel::<Batch>(QUEUE_BATCHES);
            let name = cfg.name().to_string();
            spawn_sink(cfg, rx, Arc::clone(&counters))?;
            status
                .sinks
                .push((cfg.kind(), name.clone(), Arc::clone(&counters)));
            sinks.push(Running {
                kind: cfg.kind(),
                name,
                tx,
                counters,
            });
        }
        Ok((Self { sinks }, status))
    }

    /// Hands a durable batch to every sink without waiting.
    pub(crate) fn publish(&self, bytes: &[u8]) {
        if self.sinks.is_empty() {
            return;
        }
        let batch: Batch = Arc::from(bytes);
        for sink in &self.sinks {
            match sink.tx.try_send(Arc::clone(&batch)) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    tracing::warn!(sink = %sink.name, kind = sink.kind, "audit sink is too far behind; batch dropped (the primary log has it)");
                    sink.counters.drop_batch("the sink's queue is full");
                }
                Err(TrySendError::Disconnected(_)) => {
                    sink.counters.drop_batch("the sink's thread has stopped");
                }
            }
        }
    }
}

fn spawn_sink(
    cfg: &SinkConfig,
    rx: Receiver<Batch>,
    counters: Arc<SinkCounters>,
) -> Result<(), crate::AuditError> {
    let thread_name = format!("idmint-audit-{}", cfg.kind());
    let builder = std::thread::Builder::new().name(thread_name);
    let spawned = match cfg.clone() {
        SinkConfig::Stdout(_) => builder.spawn(move || stdout::run(rx, &counters)),
        SinkConfig::Syslog(c) => {
            let sender = syslog::SyslogSender::connect(&c)?;
            builder.spawn(move || syslog::run(rx, sender, &counters))
        }
        SinkConfig::Webhook(c) => {
            spool::Spool::prepare(&c.spool_dir)?;
            // The spool is locked inside the thread: a previous sink thread
            // of the same directory (a log reopened in this process) may
            // still be delivering, and the writer must not wait for it.
            builder.spawn(
                move || match spool::Spool::open(&c.spool_dir, c.spool_max_bytes) {
                    Ok(spool) => {
                        counters.set_spool_bytes(spool.bytes());
                        webhook::run(rx, &c, spool, &counters)
                    }
                    Err(e) => counters.fail(format!("opening the spool failed: {e}")),
                },
            )
        }
    };
    spawned
        .map(|_detached| ())
        .map_err(crate::AuditError::Spawn)
}

/// Splits a batch into its lines (without the newline), skipping empties.
pub(crate) fn lines(batch: &[u8]) -> impl Iterator<Item = &[u8]> {
    batch.split(|b| *b == b'\n').filter(|l| !l.is_empty())
}
