//! Turning a batch of events into chained lines and making them durable.
//!
//! [`BatchWriter`] owns the chain head. It assigns seq/time/prev, computes
//! hashes, inserts due checkpoints, then hands the whole batch to each sink
//! as one write and one sync. The head only advances after every sink has
//! synced, and the first failure makes the writer *broken* for good: after a
//! failed or partial write we no longer know what the file ends with, and
//! extending it could build on a half-written line. A restart runs recovery,
//! which cuts a torn line and checks the head.

use crate::chain;
use crate::checkpoint::CheckpointSigner;
use crate::error::AuditError;
use crate::event::{detail_keys, kinds, outcomes, AuditEvent, Receipt, SCHEMA_VERSION};
use crate::forward::Forwarders;
use crate::recovery::ChainHead;
use crate::sink::Sink;
use serde_json::{Map, Value};

/// Above this, the reusable batch buffer is released after a batch instead
/// of being kept for the next one.
const KEEP_BUFFER_BYTES: usize = 32 * 1024 * 1024;

/// The result of one [`BatchWriter::commit`].
pub(crate) struct BatchOutcome {
    /// One entry per input event, in order.
    pub results: Vec<Result<Receipt, AuditError>>,
    /// Lines made durable, checkpoints included.
    pub lines_written: u64,
    /// Whether a sink write happened in this batch (successful or not).
    pub attempted_write: bool,
}

pub(crate) struct BatchWriter {
    sinks: Vec<Box<dyn Sink>>,
    head: ChainHead,
    since_checkpoint: u64,
    checkpoint_every: u64,
    signer: CheckpointSigner,
    buf: Vec<u8>,
    broken: Option<String>,
    /// Secondary sinks, fed each batch once it is durable.
    forwarders: Option<Forwarders>,
}

impl BatchWriter {
    pub fn new(
        sinks: Vec<Box<dyn Sink>>,
        head: ChainHead,
        checkpoint_every: u64,
        signer: CheckpointSigner,
    ) -> Self {
        Self {
            sinks,
            head,
            since_checkpoint: 0,
            checkpoint_every: checkpoint_every.max(1),
            signer,
            buf: Vec::new(),
            broken: None,
            forwarders: None,
        }
    }

    /// Copies every durable batch to `forwarders` (best-effort).
    pub fn with_forwarders(mut self, forwarders: Forwarders) -> Self {
        self.forwarders = Some(forwarders);
        self
    }

    /// Why the writer stopped accepting events, if it did.
    pub fn broken_reason(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// Writes `events`, any checkpoint that falls due, and — with
    /// `final_checkpoint` — a closing checkpoint if anything is unsigned, as
    /// one durable batch stamped with `time`.
    pub fn commit(
        &mut self,
        events: Vec<AuditEvent>,
        final_checkpoint: bool,
        time: &str,
    ) -> BatchOutcome {
        if let Some(reason) = &self.broken {
            return BatchOutcome {
                results: events
                    .iter()
                    .map(|_| Err(AuditError::unavailable(reason.clone())))
                    .collect(),
                lines_written: 0,
                attempted_write: false,
            };
        }
        self.buf.clear();
        // Work on a copy: the real head advances only once the batch is durable.
        let mut head = self.head.clone();
        let mut since = self.since_checkpoint;
        let mut lines = 0u64;
        let mut results = Vec::with_capacity(events.len());
        for mut event in events {
            event.seq = head.next_seq;
            event.time = time.to_string();
            event.prev = head.last_hash.clone();
            event.hash.clear();
            event.sig = None;
            event.schema_version = Some(SCHEMA_VERSION);
            match chain::write_line(&mut self.buf, &event, None) {
                Ok(hash) => {
                    results.push(Ok(Receipt {
                        seq: event.seq,
                        hash: hash.clone(),
                    }));
                    advance(&mut head, hash, false);
                    lines += 1;
                    since += 1;
                    if since >= self.checkpoint_every && self.write_checkpoint(&mut head, time) {
                        lines += 1;
                        since = 0;
                    }
                }
                Err(e) => results.push(Err(AuditError::InvalidEvent(e.to_string()))),
            }
        }
        if final_checkpoint
            && !head.is_empty()
            && !head.last_is_checkpoint
            && self.write_checkpoint(&mut head, time)
        {
            lines += 1;
            since = 0;
        }
        if lines == 0 {
            return BatchOutcome {
                results,
                lines_written: 0,
                attempted_write: false,
            };
        }
        let flushed = self.flush();
        if flushed.is_ok() {
            if let Some(f) = &self.forwarders {
                f.publish(&self.buf);
            }
        }
        if self.buf.capacity() > KEEP_BUFFER_BYTES {
            self.buf = Vec::new();
        }
        match flushed {
            Ok(()) => {
                self.head = head;
                self.since_checkpoint = since;
                BatchOutcome {
                    results,
                    lines_written: lines,
                    attempted_write: true,
                }
            }
            Err(reason) => {
                tracing::error!(
                    reason = %reason,
                    "audit log write failed; refusing all further audit events (and so all credentials) until restart"
                );
                let results = results
                    .into_iter()
                    .map(|r| r.and(Err(AuditError::unavailable(reason.clone()))))
                    .collect();
                self.broken = Some(reason);
                BatchOutcome {
                    results,
                    lines_written: 0,
                    attempted_write: true,
                }
            }
        }
    }

    /// Appends a signed checkpoint covering everything up to `head`.
    /// Returns false (and logs) in the impossible case that it cannot be
    /// serialized; the events themselves are still written.
    fn write_checkpoint(&mut self, head: &mut ChainHead, time: &str) -> bool {
        let mut detail = Map::new();
        detail.insert(
            detail_keys::PUBLIC_KEY.into(),
            Value::String(self.signer.public_key_b64().to_string()),
        );
        detail.insert(
            detail_keys::COVERS_SEQ.into(),
            Value::from(head.next_seq.saturating_sub(1)),
        );
        let event = AuditEvent {
            seq: head.next_seq,
            time: time.to_string(),
            event: kinds::CHECKPOINT.into(),
            outcome: outcomes::SUCCESS.into(),
            detail: Some(Value::Object(detail)),
            prev: head.last_hash.clone(),
            schema_version: Some(SCHEMA_VERSION),
            ..AuditEvent::default()
        };
        match chain::write_line(&mut self.buf, &event, Some(&self.signer)) {
            Ok(hash) => {
                advance(head, hash, true);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize an audit checkpoint");
                false
            }
        }
    }

    /// One write and one sync per sink for the whole batch.
    fn flush(&mut self) -> Result<(), String> {
        for sink in &mut self.sinks {
            sink.write_all(&self.buf)
                .map_err(|e| format!("writing to audit sink {} failed: {e}", sink.describe()))?;
            sink.sync()
                .map_err(|e| format!("syncing audit sink {} failed: {e}", sink.describe()))?;
        }
        Ok(())
    }
}

fn advance(head: &mut ChainHead, hash: String, is_checkpoint: bool) {
    // 2^64 events cannot be reached; saturating keeps this panic-free.
    head.next_seq = head.next_seq.saturating_add(1);
    head.last_hash = hash;
    head.last_is_checkpoint = is_checkpoint;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::checkpoint::generate_signing_key;
    use std::io;
    use std::sync::{Arc, Mutex};

    /// Records every call; fails when told to.
    #[derive(Clone, Default)]
    pub(crate) struct RecordingSink {
        pub state: Arc<Mutex<Recorded>>,
    }

    #[derive(Default)]
    pub(crate) struct Recorded {
        pub writes: usize,
        pub syncs: usize,
        pub bytes: Vec<u8>,
        /// Fail every write from this (0-based) write call on.
        pub fail_from_write: Option<usize>,
    }

    impl Sink for RecordingSink {
        fn describe(&self) -> String {
            "recording".into()
        }
        fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
            let mut s = self.state.lock().unwrap();
            let n = s.writes;
            s.writes += 1;
            if s.fail_from_write.is_some_and(|f| n >= f) {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "injected: no space left",
                ));
            }
            s.bytes.extend_from_slice(bytes);
            Ok(())
        }
        fn sync(&mut self) -> io::Result<()> {
            self.state.lock().unwrap().syncs += 1;
            Ok(())
        }
    }

    fn writer(sink: &RecordingSink, every: u64) -> BatchWriter {
        let key = generate_signing_key().unwrap();
        let signer = CheckpointSigner::from_pkcs8(key.expose()).unwrap();
        BatchWriter::new(
            vec![Box::new(sink.clone())],
            ChainHead::genesis(),
            every,
            signer,
        )
    }

    fn events(n: usize) -> Vec<AuditEvent> {
        (0..n)
            .map(|i| AuditEvent {
                request_id: Some(format!("req_{i}")),
                ..AuditEvent::new(kinds::LOGIN, outcomes::SUCCESS)
            })
            .collect()
    }

    #[test]
    fn one_write_and_one_sync_per_batch_of_4096() {
        let sink = RecordingSink::default();
        let mut w = writer(&sink, 1000);
        let out = w.commit(events(4096), false, "2026-01-01T00:00:00.000Z");
        assert_eq!(out.results.len(), 4096);
        assert!(out.results.iter().all(Result::is_ok));
        // 4096 events + checkpoints after events 1000, 2000, 3000, 4000.
        assert_eq!(out.lines_written, 4100);
        let s = sink.state.lock().unwrap();
        assert_eq!((s.writes, s.syncs), (1, 1));
        let report = crate::verify::verify_reader(&s.bytes[..], Some(w.signer.public_key()));
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!((report.events, report.checkpoints), (4100, 4));
        let seqs: Vec<u64> = out
            .results
            .iter()
            .map(|r| r.as_ref().unwrap().seq)
            .collect();
        assert_eq!(seqs.first(), Some(&1));
        assert_eq!(seqs.last(), Some(&4100));
    }

    #[test]
    fn final_checkpoint_only_when_something_is_unsigned() {
        let sink = RecordingSink::default();
        let mut w = writer(&sink, 2);
        let out = w.commit(Vec::new(), true, "t");
        assert_eq!((out.lines_written, out.attempted_write), (0, false));
        let out = w.commit(events(2), true, "t");
        // The periodic checkpoint after event 2 already covers everything.
        assert_eq!(out.lines_written, 3);
        let out = w.commit(events(1), true, "t");
        assert_eq!(out.lines_written, 2);
        assert_eq!(sink.state.lock().unwrap().writes, 2);
    }

    #[test]
    fn failure_breaks_the_writer_for_good() {
        let sink = RecordingSink::default();
        sink.state.lock().unwrap().fail_from_write = Some(1);
        let mut w = writer(&sink, 1000);
        assert!(w
            .commit(events(3), false, "t")
            .results
            .iter()
            .all(Result::is_ok));
        let out = w.commit(events(3), false, "t");
        assert!(out
            .results
            .iter()
            .all(|r| matches!(r, Err(AuditError::Unavailable { .. }))));
        assert!(w.broken_reason().unwrap().contains("no space left"));
        // Later batches fail without touching the sink.
        let out = w.commit(events(1), false, "t");
        assert!(matches!(
            out.results[0],
            Err(AuditError::Unavailable { .. })
        ));
        assert!(!out.attempted_write);
        assert_eq!(sink.state.lock().unwrap().writes, 2);
        // The chain head did not advance past the failed batch.
        assert_eq!(w.head.next_seq, 4);
    }
}
