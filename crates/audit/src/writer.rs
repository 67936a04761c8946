//! The dedicated writer thread: group commit.
//!
//! Appenders send their event with a oneshot reply channel and await the
//! reply asynchronously, so the tokio runtime never blocks on disk I/O. The
//! thread blocks for the first queued command, then takes everything else
//! already queued (up to `max_batch`) and commits it as one batch: one
//! write, one fdatasync, then every reply. Under load, batches grow by
//! themselves — the more concurrent appends, the more share each fsync.

use crate::batch::BatchWriter;
use crate::error::AuditError;
use crate::event::{AuditEvent, Receipt};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::{mpsc, oneshot};

pub(crate) type AppendReply = oneshot::Sender<Result<Receipt, AuditError>>;
pub(crate) type CloseReply = oneshot::Sender<Result<(), AuditError>>;
pub(crate) type AppendAllReply = oneshot::Sender<Vec<Result<Receipt, AuditError>>>;

// The large variant is the hot one; boxing it would add an allocation per
// event only to shrink the rare `Close`.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Command {
    Append {
        event: AuditEvent,
        reply: AppendReply,
    },
    /// Several events written in the same batch, in order, with one reply
    /// carrying one result per event.
    AppendAll {
        events: Vec<AuditEvent>,
        reply: AppendAllReply,
    },
    /// Write everything queued before it plus a final checkpoint, then stop.
    Close { reply: CloseReply },
}

/// State shared between the handles and the writer thread.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub queued: AtomicU64,
    pub written: AtomicU64,
    pub batches: AtomicU64,
    /// Appends that returned an error (counted by the handles).
    pub failures: AtomicU64,
    pub broken: AtomicBool,
    pub closed: AtomicBool,
}

pub(crate) fn spawn(
    rx: mpsc::Receiver<Command>,
    writer: BatchWriter,
    counters: Arc<Counters>,
    max_batch: usize,
) -> Result<(), AuditError> {
    std::thread::Builder::new()
        .name("idmint-audit-writer".into())
        .spawn(move || run(rx, writer, &counters, max_batch))
        .map(|_detached| ())
        .map_err(AuditError::Spawn)
}

fn run(
    mut rx: mpsc::Receiver<Command>,
    mut writer: BatchWriter,
    counters: &Counters,
    max_batch: usize,
) {
    let mut commands = Vec::with_capacity(max_batch);
    let mut events = Vec::with_capacity(max_batch);
    let mut replies: Vec<Reply> = Vec::with_capacity(max_batch);
    // `None` once every handle is gone: nothing more can arrive.
    while let Some(first) = rx.blocking_recv() {
        commands.push(first);
        while commands.len() < max_batch {
            match rx.try_recv() {
                Ok(c) => commands.push(c),
                Err(_) => break,
            }
        }
        counters
            .queued
            .fetch_sub(commands.len() as u64, Ordering::Relaxed);

        let mut close_reply: Option<CloseReply> = None;
        for command in commands.drain(..) {
            match command {
                Command::Append { event, reply } if close_reply.is_none() => {
                    events.push(event);
                    replies.push(Reply::One(reply));
                }
                Command::AppendAll {
                    events: mut all,
                    reply,
                } if close_reply.is_none() => {
                    replies.push(Reply::All(all.len(), reply));
                    events.append(&mut all);
                }
                // Queued after the close: not written.
                Command::Append { reply, .. } => {
                    let _ = reply.send(Err(AuditError::Closed));
                }
                Command::AppendAll { events: all, reply } => {
                    let _ = reply.send(all.iter().map(|_| Err(AuditError::Closed)).collect());
                }
                Command::Close { reply } if close_reply.is_none() => close_reply = Some(reply),
                Command::Close { reply } => {
                    let _ = reply.send(Ok(()));
                }
            }
        }

        let time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let outcome = writer.commit(std::mem::take(&mut events), close_reply.is_some(), &time);
        if outcome.attempted_write {
            counters.batches.fetch_add(1, Ordering::Relaxed);
        }
        counters
            .written
            .fetch_add(outcome.lines_written, Ordering::Relaxed);
        if writer.broken_reason().is_some() {
            counters.broken.store(true, Ordering::Release);
        }
        let mut results = outcome.results.into_iter();
        for reply in replies.drain(..) {
            // The appender may have given up waiting; the event is written
            // anyway. `commit` returns one result per event, so `results`
            // cannot run short; if it did, the missing ones count as failed.
            match reply {
                Reply::One(reply) => {
                    let _ = reply.send(results.next().unwrap_or_else(missing_result));
                }
                Reply::All(n, reply) => {
                    let batch = (0..n)
                        .map(|_| results.next().unwrap_or_else(missing_result))
                        .collect();
                    let _ = reply.send(batch);
                }
            }
        }

        if let Some(reply) = close_reply {
            counters.closed.store(true, Ordering::Release);
            let result = match writer.broken_reason() {
                Some(reason) => Err(AuditError::unavailable(reason)),
                None => Ok(()),
            };
            let _ = reply.send(result);
            refuse_remaining(&mut rx, counters);
            return;
        }
    }
}

/// Where the results of one batch go, in event order.
enum Reply {
    One(AppendReply),
    /// The next `n` results, for one [`Command::AppendAll`].
    All(usize, AppendAllReply),
}

fn missing_result() -> Result<Receipt, AuditError> {
    Err(AuditError::unavailable(
        "internal error: the audit batch returned fewer results than events",
    ))
}

/// After close: stop accepting and fail whatever is still queued.
fn refuse_remaining(rx: &mut mpsc::Receiver<Command>, counters: &Counters) {
    rx.close();
    while let Some(command) = rx.blocking_recv() {
        counters.queued.fetch_sub(1, Ordering::Relaxed);
        match command {
            Command::Append { reply, .. } => {
                let _ = reply.send(Err(AuditError::Closed));
            }
            Command::AppendAll { events, reply } => {
                let _ = reply.send(events.iter().map(|_| Err(AuditError::Closed)).collect());
            }
            Command::Close { reply } => {
                let _ = reply.send(Ok(()));
            }
        }
    }
}
