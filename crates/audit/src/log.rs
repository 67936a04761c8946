//! [`AuditLog`]: the handle the server appends through.

use crate::batch::BatchWriter;
use crate::checkpoint::CheckpointSigner;
use crate::error::AuditError;
use crate::event::{kinds, AuditEvent, Receipt};
use crate::forward::{ForwardStatus, Forwarders, SinkConfig, SinkStatus};
use crate::recovery::{open_log_file, ChainHead, Recovery};
use crate::sink::{FileSink, Sink, StdoutSink};
use crate::writer::{self, Command, Counters};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

pub const DEFAULT_CHECKPOINT_EVERY: u64 = 1000;
pub const DEFAULT_MAX_BATCH: usize = 4096;
/// Upper bound for `max_batch`: beyond this a batch only adds latency.
pub const MAX_MAX_BATCH: usize = 65_536;
/// The queue holds this many batches before appenders wait (asynchronously)
/// for room: backpressure instead of unbounded memory growth.
const QUEUE_BATCHES: usize = 16;

/// Where and how the log is written.
///
/// Every configured sink must accept a batch for its events to count as
/// durable: if either the file or stdout fails, the appends fail and the log
/// is broken (fail closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// The append-only JSON-lines file. Created with mode 0600.
    pub file: Option<PathBuf>,
    /// Also write every line to stdout (flushed per batch, not fsync'd).
    /// With `file: None` this is the only sink and an append counts as
    /// durable once stdout is flushed; the chain then restarts from
    /// genesis on every start, since stdout cannot be read back.
    pub stdout: bool,
    /// A signed checkpoint after this many events (default 1000).
    pub checkpoint_every: u64,
    /// Most events per write+fsync (default 4096).
    pub max_batch: usize,
    /// Best-effort copies (`[[audit.sinks]]`): fed after the primary is
    /// durable, never able to block or fail an append.
    pub sinks: Vec<SinkConfig>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            file: None,
            stdout: false,
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
            max_batch: DEFAULT_MAX_BATCH,
            sinks: Vec::new(),
        }
    }
}

impl AuditConfig {
    fn validate(&self) -> Result<(), AuditError> {
        if self.file.is_none() && !self.stdout {
            return Err(AuditError::Config(
                "no audit sink: set [audit] file and/or stdout = true; idmint refuses to run without an audit log".into(),
            ));
        }
        if self.file.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(AuditError::Config("[audit] file is an empty path".into()));
        }
        if self.checkpoint_every == 0 {
            return Err(AuditError::Config(
                "[audit] checkpoint_every must be at least 1 (default 1000)".into(),
            ));
        }
        if self.max_batch == 0 || self.max_batch > MAX_MAX_BATCH {
            return Err(AuditError::Config(format!(
                "[audit] max_batch must be between 1 and {MAX_MAX_BATCH} (default {DEFAULT_MAX_BATCH}), got {}",
                self.max_batch
            )));
        }
        for sink in &self.sinks {
            sink.validate()?;
        }
        Ok(())
    }
}

/// Counters for metrics and health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditStats {
    /// Commands waiting for the writer right now.
    pub queued: u64,
    /// Lines made durable since open, checkpoints included.
    pub written: u64,
    /// Write+sync rounds since open.
    pub batches: u64,
    /// Appends that returned an error.
    pub failures: u64,
}

/// A cheap, cloneable handle to the audit log.
///
/// All clones share one writer thread. The log is fail-closed: `append`
/// returns only once the event is durable, and after the first failed write
/// every append fails until the process restarts (so a chain whose end is
/// unknown is never extended). Call [`AuditLog::close`] on shutdown to write
/// a final checkpoint; dropping every handle stops the writer without one.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Command>,
    inner: Arc<Inner>,
}

struct Inner {
    counters: Arc<Counters>,
    public_key: Vec<u8>,
    recovery: Recovery,
    forward: ForwardStatus,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("healthy", &self.is_healthy())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens or creates the file (0600), recovers the chain from its last
    /// line, and starts the writer thread. Writes nothing yet.
    ///
    /// A torn final line (no trailing newline: a crash mid-write) is cut off
    /// and reported with `tracing::warn` and in [`AuditLog::recovery`]. A
    /// last line that fails its hash check makes `open` fail with
    /// [`AuditError::Corrupt`]. `signer_pkcs8` is the Ed25519 PKCS#8 key
    /// that signs checkpoints.
    pub fn open(cfg: AuditConfig, signer_pkcs8: &[u8]) -> Result<Self, AuditError> {
        cfg.validate()?;
        let signer = CheckpointSigner::from_pkcs8(signer_pkcs8)?;
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        let (head, recovery) = match &cfg.file {
            Some(path) => {
                let opened = open_log_file(path)?;
                sinks.push(Box::new(FileSink::new(
                    opened.file,
                    path.clone(),
                    opened.regular,
                )));
                (opened.head, opened.recovery)
            }
            None => (ChainHead::genesis(), Recovery::default()),
        };
        if cfg.stdout {
            sinks.push(Box::new(StdoutSink));
        }
        Self::start(&cfg, signer, sinks, head, recovery)
    }

    pub(crate) fn start(
        cfg: &AuditConfig,
        signer: CheckpointSigner,
        sinks: Vec<Box<dyn Sink>>,
        head: ChainHead,
        recovery: Recovery,
    ) -> Result<Self, AuditError> {
        let public_key = signer.public_key().to_vec();
        let (forwarders, forward) = Forwarders::start(&cfg.sinks)?;
        let batch_writer =
            BatchWriter::new(sinks, head, cfg.checkpoint_every, signer).with_forwarders(forwarders);
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel(cfg.max_batch.saturating_mul(QUEUE_BATCHES));
        writer::spawn(rx, batch_writer, Arc::clone(&counters), cfg.max_batch)?;
        Ok(Self {
            tx,
            inner: Arc::new(Inner {
                counters,
                public_key,
                recovery,
                forward,
            }),
        })
    }

    /// Durably appends `event` and returns its place in the chain.
    ///
    /// Resolves only after the event has been written and fsync'd (shared
    /// with whatever else was queued: group commit). Fails with
    /// [`AuditError::Unavailable`] if that failed, now or earlier; the
    /// caller must then not hand out the credential. `seq`, `time`, `prev`,
    /// `hash` and `sig` are assigned by the log. Cancel-safe: dropping the
    /// future after the event was queued still writes it.
    pub async fn append(&self, event: AuditEvent) -> Result<Receipt, AuditError> {
        let result = self.append_inner(event).await;
        if result.is_err() {
            self.inner.counters.failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn append_inner(&self, event: AuditEvent) -> Result<Receipt, AuditError> {
        check_kind(&event)?;
        self.check_open()?;
        let (reply, done) = oneshot::channel();
        self.send(Command::Append { event, reply }).await?;
        done.await
            .map_err(|_| AuditError::unavailable("the audit writer thread stopped"))?
    }

    /// Durably appends `events`, in order and contiguously (no other event
    /// is interleaved). Each event is its own line with its own seq, hash
    /// and link, exactly as from as many [`AuditLog::append`] calls, but the
    /// batch is queued as one unit and written and fsync'd together: one
    /// write and one sync for the whole batch instead of one group commit
    /// per `max_batch` concurrent appenders.
    ///
    /// For bulk producers such as the lease reaper. `Err` means nothing was
    /// queued: an invalid event (empty kind, or the reserved `checkpoint`;
    /// the message names its index), or a log already broken or closed.
    /// Otherwise one result per event, in order, fail-closed like `append`:
    /// an `Ok` receipt means that event is durable, and after a failed write
    /// every result is an error. Cancel-safe like `append`.
    pub async fn append_all(
        &self,
        events: Vec<AuditEvent>,
    ) -> Result<Vec<Result<Receipt, AuditError>>, AuditError> {
        let n = events.len() as u64;
        let result = self.append_all_inner(events).await;
        let failed = match &result {
            Ok(results) => results.iter().filter(|r| r.is_err()).count() as u64,
            Err(_) => n,
        };
        if failed > 0 {
            self.inner
                .counters
                .failures
                .fetch_add(failed, Ordering::Relaxed);
        }
        result
    }

    async fn append_all_inner(
        &self,
        events: Vec<AuditEvent>,
    ) -> Result<Vec<Result<Receipt, AuditError>>, AuditError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        for (i, event) in events.iter().enumerate() {
            check_kind(event).map_err(|e| match e {
                AuditError::InvalidEvent(m) => {
                    AuditError::InvalidEvent(format!("event {i} of the batch: {m}"))
                }
                other => other,
            })?;
        }
        self.check_open()?;
        let (reply, done) = oneshot::channel();
        self.send(Command::AppendAll { events, reply }).await?;
        done.await
            .map_err(|_| AuditError::unavailable("the audit writer thread stopped"))
    }

    /// Fails fast when the log is broken or closed, before queueing.
    fn check_open(&self) -> Result<(), AuditError> {
        let counters = &self.inner.counters;
        if counters.broken.load(Ordering::Acquire) {
            return Err(AuditError::unavailable(
                "an earlier audit write failed (see the error logged then)",
            ));
        }
        if counters.closed.load(Ordering::Acquire) {
            return Err(AuditError::Closed);
        }
        Ok(())
    }

    /// Queues a command, waiting asynchronously while the queue is full.
    async fn send(&self, command: Command) -> Result<(), AuditError> {
        let counters = &self.inner.counters;
        let permit = self.tx.reserve().await.map_err(|_| {
            if counters.closed.load(Ordering::Acquire) {
                AuditError::Closed
            } else {
                AuditError::unavailable("the audit writer thread is not running")
            }
        })?;
        counters.queued.fetch_add(1, Ordering::Relaxed);
        permit.send(command);
        Ok(())
    }

    /// Raw 32-byte Ed25519 public key that verifies this log's checkpoints.
    pub fn public_key(&self) -> Vec<u8> {
        self.inner.public_key.clone()
    }

    pub fn stats(&self) -> AuditStats {
        let c = &self.inner.counters;
        AuditStats {
            queued: c.queued.load(Ordering::Relaxed),
            written: c.written.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
        }
    }

    /// False once a write failed, the log was closed, or the writer thread
    /// is gone: `/readyz` should then fail.
    pub fn is_healthy(&self) -> bool {
        let c = &self.inner.counters;
        !c.broken.load(Ordering::Acquire)
            && !c.closed.load(Ordering::Acquire)
            && !self.tx.is_closed()
    }

    /// The secondary sinks' counters, in configuration order. Their
    /// failures never affect [`AuditLog::is_healthy`]: report them as
    /// degraded, not unready.
    pub fn sink_statuses(&self) -> Vec<SinkStatus> {
        self.inner.forward.snapshot()
    }

    /// What `open` found in an existing file.
    pub fn recovery(&self) -> &Recovery {
        &self.inner.recovery
    }

    /// Writes everything queued, then a final signed checkpoint, and stops
    /// the writer. Later appends fail with [`AuditError::Closed`]. Calling it
    /// again is a no-op. Fails with [`AuditError::Unavailable`] if the log
    /// is broken or the final write fails.
    pub async fn close(&self) -> Result<(), AuditError> {
        let (reply, done) = oneshot::channel();
        match self.send(Command::Close { reply }).await {
            Ok(()) => {}
            Err(AuditError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        }
        done.await
            .map_err(|_| AuditError::unavailable("the audit writer thread stopped"))?
    }
}

/// Callers may write any kind except the log's own `checkpoint`, and never
/// an empty one.
fn check_kind(event: &AuditEvent) -> Result<(), AuditError> {
    if event.event.trim().is_empty() {
        return Err(AuditError::InvalidEvent(
            "the event kind is empty; use one of audit::kinds".into(),
        ));
    }
    if event.event == kinds::CHECKPOINT {
        return Err(AuditError::InvalidEvent(
            "event kind \"checkpoint\" is reserved for the log's own signed checkpoints".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::RecordingSink;
    use crate::checkpoint::generate_signing_key;
    use crate::event::outcomes;

    fn start_with(sink: &RecordingSink) -> AuditLog {
        let key = generate_signing_key().unwrap();
        let signer = CheckpointSigner::from_pkcs8(key.expose()).unwrap();
        AuditLog::start(
            &AuditConfig::default(),
            signer,
            vec![Box::new(sink.clone())],
            ChainHead::genesis(),
            Recovery::default(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn fails_closed_when_the_sink_fails_midway() {
        let sink = RecordingSink::default();
        sink.state.lock().unwrap().fail_from_write = Some(2);
        let log = start_with(&sink);
        let ev = || AuditEvent::new(kinds::LOGIN, outcomes::SUCCESS);
        assert_eq!(log.append(ev()).await.unwrap().seq, 1);
        assert_eq!(log.append(ev()).await.unwrap().seq, 2);
        assert!(log.is_healthy());
        let err = log.append(ev()).await.unwrap_err();
        assert!(matches!(err, AuditError::Unavailable { .. }), "{err}");
        assert!(err.to_string().contains("no space left"));
        assert!(!log.is_healthy());
        for _ in 0..3 {
            assert!(matches!(
                log.append(ev()).await,
                Err(AuditError::Unavailable { .. })
            ));
        }
        // The fast path refuses without bothering the writer.
        assert_eq!(sink.state.lock().unwrap().writes, 3);
        assert_eq!(log.stats().failures, 4);
        assert!(matches!(
            log.close().await,
            Err(AuditError::Unavailable { .. })
        ));
    }

    #[tokio::test]
    async fn append_all_writes_one_contiguous_durable_batch() {
        let sink = RecordingSink::default();
        let log = start_with(&sink);
        let ev = |i: usize| AuditEvent {
            lease_id: Some(format!("lse_{i}")),
            ..AuditEvent::new(kinds::LEASE_EXPIRED, outcomes::SUCCESS)
        };
        assert_eq!(log.append(ev(0)).await.unwrap().seq, 1);
        let writes_before = sink.state.lock().unwrap().writes;
        let receipts = log
            .append_all((1..=2500).map(ev).collect())
            .await
            .expect("queued");
        assert_eq!(receipts.len(), 2500);
        let seqs: Vec<u64> = receipts.iter().map(|r| r.as_ref().unwrap().seq).collect();
        // One line each, in order, no gap except the checkpoints the log
        // inserts every 1000 events.
        assert!(seqs.windows(2).all(|w| w[0] < w[1] && w[1] - w[0] <= 2));
        assert_eq!(
            sink.state.lock().unwrap().writes,
            writes_before + 1,
            "the whole batch is one write and one sync"
        );
        assert!(log.append_all(Vec::new()).await.unwrap().is_empty());
        log.close().await.unwrap();
        let bytes = sink.state.lock().unwrap().bytes.clone();
        let report = crate::verify::verify_reader(&bytes[..], Some(&log.public_key()));
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(report.events - report.checkpoints, 2501);
        let text = String::from_utf8(bytes).unwrap();
        let order: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split("\"lease_id\":\"").nth(1))
            .map(|rest| rest.split('"').next().unwrap())
            .collect();
        let expected: Vec<String> = (0..=2500).map(|i| format!("lse_{i}")).collect();
        assert_eq!(order, expected, "events keep their order");
    }

    #[tokio::test]
    async fn append_all_refuses_invalid_batches_whole_and_fails_closed() {
        let sink = RecordingSink::default();
        let log = start_with(&sink);
        let ok = || AuditEvent::new(kinds::LEASE_EXPIRED, outcomes::SUCCESS);
        let err = log
            .append_all(vec![
                ok(),
                AuditEvent::new(kinds::CHECKPOINT, outcomes::SUCCESS),
            ])
            .await
            .unwrap_err();
        assert!(
            matches!(err, AuditError::InvalidEvent(ref m) if m.contains("event 1")),
            "{err}"
        );
        assert_eq!(
            sink.state.lock().unwrap().writes,
            0,
            "nothing of it is written"
        );
        assert!(log.is_healthy());

        sink.state.lock().unwrap().fail_from_write = Some(0);
        let results = log.append_all(vec![ok(), ok(), ok()]).await.unwrap();
        assert_eq!(results.len(), 3);
        assert!(results
            .iter()
            .all(|r| matches!(r, Err(AuditError::Unavailable { .. }))));
        assert!(!log.is_healthy());
        assert!(matches!(
            log.append_all(vec![ok()]).await,
            Err(AuditError::Unavailable { .. })
        ));
        assert_eq!(log.stats().failures, 6);
    }

    #[tokio::test]
    async fn close_checkpoints_then_refuses() {
        let sink = RecordingSink::default();
        let log = start_with(&sink);
        log.append(AuditEvent::new(kinds::ADMIN, outcomes::SUCCESS))
            .await
            .unwrap();
        log.close().await.unwrap();
        assert!(!log.is_healthy());
        assert!(matches!(
            log.append(AuditEvent::new(kinds::ADMIN, outcomes::SUCCESS))
                .await,
            Err(AuditError::Closed)
        ));
        log.close().await.unwrap();
        let bytes = sink.state.lock().unwrap().bytes.clone();
        let report = crate::verify::verify_reader(&bytes[..], Some(&log.public_key()));
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(
            (report.events, report.checkpoints, report.last_seq),
            (2, 1, Some(2))
        );
    }

    #[tokio::test]
    async fn rejects_reserved_kind_and_bad_config() {
        let log = start_with(&RecordingSink::default());
        let err = log
            .append(AuditEvent::new(kinds::CHECKPOINT, outcomes::SUCCESS))
            .await
            .unwrap_err();
        assert!(matches!(err, AuditError::InvalidEvent(_)));
        let err = log
            .append(AuditEvent::new(" ", outcomes::SUCCESS))
            .await
            .unwrap_err();
        assert!(matches!(err, AuditError::InvalidEvent(_)));
        assert!(log.is_healthy(), "a rejected event does not break the log");
        let key = generate_signing_key().unwrap();
        for cfg in [
            AuditConfig::default(),
            AuditConfig {
                stdout: true,
                checkpoint_every: 0,
                ..AuditConfig::default()
            },
            AuditConfig {
                stdout: true,
                max_batch: 0,
                ..AuditConfig::default()
            },
        ] {
            assert!(matches!(
                AuditLog::open(cfg, key.expose()),
                Err(AuditError::Config(_))
            ));
        }
    }
}
