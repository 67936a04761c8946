//! The single writer thread and its group commit.
//!
//! SQLite allows one writer at a time, and with `synchronous = FULL` every
//! commit costs an fsync. So all writes go to one dedicated thread owning
//! the write connection: it takes every job waiting in its queue (up to
//! [`MAX_BATCH`]), runs them in one transaction and commits once. Under load
//! many lease inserts share one fsync (group commit); when idle, a lone
//! write commits immediately. Callers get their result only after the
//! commit, so `Ok` always means durable.
//!
//! A failing job (a duplicate lease id) is rolled back alone and does not
//! fail its batch neighbours: a job made of one write statement relies on
//! SQLite's statement-level rollback (an aborted statement leaves no trace
//! and the transaction stays open); a job with several writes is submitted
//! with [`Writer::submit_atomic`] and runs inside its own savepoint. The
//! savepoint is not used for every job because each page first modified
//! under a savepoint is copied to a sub-journal, a measurable cost on the
//! lease hot path.

use super::rows::sql_error;
use crate::error::StoreError;
use rusqlite::Connection;
use std::panic::AssertUnwindSafe;
use std::thread::JoinHandle;
use tokio::sync::{mpsc, oneshot};

/// Most jobs committed in one transaction: bounds the latency a job can add
/// to its neighbours and the size of one WAL append.
const MAX_BATCH: usize = 1024;
/// Queue depth before `submit` waits: backpressure instead of unbounded
/// memory when the disk is slower than the request rate.
const QUEUE_DEPTH: usize = 8192;

/// One write operation queued for the writer thread.
trait WriteJob: Send {
    /// Whether the job must run inside its own savepoint (it writes more
    /// than once, so a failure could leave half of it applied).
    fn needs_savepoint(&self) -> bool;
    /// Runs the operation inside the batch transaction. Returns whether it
    /// succeeded; on failure the writer rolls back its savepoint.
    fn apply(&mut self, conn: &Connection) -> bool;
    /// Delivers the outcome once the batch commit (`commit`) is known.
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
}

struct Job<T, F> {
    atomic: bool,
    op: Option<F>,
    outcome: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> WriteJob for Job<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn needs_savepoint(&self) -> bool {
        self.atomic
    }

    fn apply(&mut self, conn: &Connection) -> bool {
        let outcome = match self.op.take() {
            Some(op) => op(conn),
            None => Err(StoreError::Backend(
                "internal: write job applied twice".into(),
            )),
        };
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        let result = match (self.outcome, commit) {
            // A failed job's own error explains it best, whatever the batch did.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (_, Err(e)) => Err(e),
            (None, Ok(())) => Err(StoreError::Backend(
                "internal: write job was not run".into(),
            )),
        };
        // The caller may have given up waiting (its future was dropped); the
        // write is committed either way, which is what the lease protocol
        // needs (a lease row without a credential is harmless).
        let _ = self.reply.send(result);
    }
}

/// Handle to the writer thread. Dropping it lets the thread finish its
/// queued jobs and waits for it, so the database file is closed when the
/// store is gone.
pub(crate) struct Writer {
    queue: Option<mpsc::Sender<Box<dyn WriteJob>>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread, which owns `conn` from now on.
    pub(crate) fn start(conn: Connection) -> Result<Self, StoreError> {
        let (queue, jobs) = mpsc::channel(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("idmint-sqlite-writer".into())
            .spawn(move || writer_loop(conn, jobs))
            .map_err(|e| {
                StoreError::Backend(format!("cannot start the SQLite writer thread: {e}"))
            })?;
        Ok(Self {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Runs `op`, which must execute at most one write statement, in the
    /// next group-commit batch and returns its result once the batch is
    /// committed. `op` must only touch the connection it is given and must
    /// not start or end transactions itself.
    pub(crate) async fn submit<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.enqueue(false, op).await
    }

    /// Like [`Writer::submit`], for an `op` that writes several times: it
    /// runs in its own savepoint, so it applies entirely or not at all.
    pub(crate) async fn submit_atomic<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.enqueue(true, op).await
    }

    async fn enqueue<T, F>(&self, atomic: bool, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let stopped = || StoreError::Backend("the SQLite writer thread has stopped".into());
        let queue = self.queue.as_ref().ok_or_else(stopped)?;
        let (reply, result) = oneshot::channel();
        let job: Box<dyn WriteJob> = Box::new(Job {
            atomic,
            op: Some(op),
            outcome: None,
            reply,
        });
        queue.send(job).await.map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the loop after the jobs already queued.
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the SQLite writer thread panicked");
            }
        }
    }
}

fn writer_loop(conn: Connection, mut jobs: mpsc::Receiver<Box<dyn WriteJob>>) {
    let mut batch: Vec<Box<dyn WriteJob>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = jobs.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let commit = run_batch(&conn, &mut batch);
        if let Err(e) = &commit {
            tracing::error!(error = %e, jobs = batch.len(), "SQLite write batch failed");
        }
        for job in batch.drain(..) {
            job.finish(commit.clone());
        }
    }
}

/// Runs every job of `batch` in one transaction and commits it. On error the
/// whole transaction is rolled back and the error is every job's outcome
/// (except for jobs that failed on their own).
fn run_batch(conn: &Connection, batch: &mut [Box<dyn WriteJob>]) -> Result<(), StoreError> {
    let result = apply_and_commit(conn, batch);
    if result.is_err() && !conn.is_autocommit() {
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            tracing::error!(error = %e, "rolling back a failed SQLite write batch failed");
        }
    }
    result
}

fn apply_and_commit(conn: &Connection, batch: &mut [Box<dyn WriteJob>]) -> Result<(), StoreError> {
    exec(conn, "BEGIN IMMEDIATE")?;
    for job in batch.iter_mut() {
        let savepoint = job.needs_savepoint();
        if savepoint {
            exec(conn, "SAVEPOINT job")?;
        }
        // A panic must not kill the writer thread (every later write would
        // fail); it fails this batch instead, whose transaction state is
        // unknown and is rolled back by the caller.
        let ok = std::panic::catch_unwind(AssertUnwindSafe(|| job.apply(conn))).map_err(|_| {
            StoreError::Backend(
                "internal error: a write operation panicked; its batch was rolled back".into(),
            )
        })?;
        if !ok && conn.is_autocommit() {
            // Some errors (disk full, I/O error) make SQLite roll back the
            // whole transaction: the jobs before this one are gone too.
            return Err(StoreError::Backend(
                "SQLite rolled back the write transaction after an error; no write in this batch was saved".into(),
            ));
        }
        match (savepoint, ok) {
            (true, true) => exec(conn, "RELEASE job")?,
            (true, false) => {
                exec(conn, "ROLLBACK TO job")?;
                exec(conn, "RELEASE job")?;
            }
            // A single failed statement was already undone by SQLite.
            (false, _) => {}
        }
    }
    exec(conn, "COMMIT")
}

/// Runs a transaction-control statement through the statement cache, so
/// batches and savepoints cost no SQL parsing.
fn exec(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut stmt| stmt.execute([]))
        .map(|_| ())
        .map_err(|e| sql_error(&format!("running {sql}"), e))
}
