//! Background WAL checkpoints, off the writer thread.
//!
//! SQLite's default is to checkpoint inside the commit that pushes the WAL
//! past 1000 pages, i.e. on the writer thread, stalling every write queued
//! behind it (a checkpoint copies pages into the database file and, with
//! `synchronous = FULL`, fsyncs it). Here the writer's auto-checkpoint is
//! raised to a safety-net threshold and this thread runs PASSIVE checkpoints
//! on its own connection instead: PASSIVE never blocks the writer or readers,
//! it copies what it can and leaves the rest for the next round.

use rusqlite::Connection;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the WAL is folded back into the database file. Short enough
/// that the WAL stays small under sustained load (it is reused from the
/// start once fully checkpointed), long enough to cost nothing when idle.
pub(crate) const INTERVAL: Duration = Duration::from_millis(200);

/// Handle to the checkpoint thread; dropping it stops the thread and waits.
pub(crate) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub(crate) fn start(conn: Connection) -> Result<Self, crate::StoreError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("idmint-sqlite-checkpoint".into())
            .spawn(move || {
                // Any message or a closed channel means stop.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                    checkpoint(&conn);
                }
            })
            .map_err(|e| {
                crate::StoreError::Backend(format!(
                    "cannot start the SQLite checkpoint thread: {e}"
                ))
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the SQLite checkpoint thread panicked");
            }
        }
    }
}

fn checkpoint(conn: &Connection) {
    // Columns: busy flag, WAL frames, frames checkpointed.
    let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    });
    match result {
        Ok((_, wal_frames, done)) if done < wal_frames => {
            tracing::trace!(wal_frames, done, "partial WAL checkpoint; will continue");
        }
        Ok(_) => {}
        // Not fatal: the next round or the writer's safety net catches up.
        Err(e) => tracing::warn!(error = %e, "SQLite WAL checkpoint failed"),
    }
}
