//! A small pool of read connections used from `spawn_blocking`.
//!
//! In WAL mode readers never block the writer nor each other, so reads run
//! on their own connections in parallel with the writer thread, off the
//! tokio worker threads.

use crate::error::StoreError;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

pub(crate) struct Readers {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    /// Opens `size` read connections to `path` up front, so a broken
    /// database is reported at start rather than on the first read.
    pub(crate) fn open(path: &Path, size: usize) -> Result<Self, StoreError> {
        let size = size.max(1);
        let idle = (0..size)
            .map(|_| super::open_reader(path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            path: path.to_path_buf(),
            idle: Arc::new(Mutex::new(idle)),
            permits: Arc::new(Semaphore::new(size)),
        })
    }

    /// Runs `op` on an idle connection in a blocking task.
    pub(crate) async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Backend("the SQLite reader pool is closed".into()))?;
        let idle = Arc::clone(&self.idle);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let taken = idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            // A connection is missing only if an earlier read panicked while
            // holding it; replace it instead of shrinking the pool.
            let conn = match taken {
                Some(conn) => conn,
                None => super::open_reader(&path)?,
            };
            let result = op(&conn);
            idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("a SQLite read task failed: {e}")))?
    }
}
