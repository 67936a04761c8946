//! The webhook's on-disk spool: a directory of batch files, oldest first.
//!
//! Each batch is one file named by a zero-padded, increasing counter
//! (`00000000000000000042.ndjson`), written to a `.tmp` name, fsync'd and
//! renamed, so a crash leaves either a whole batch or none (stray `.tmp`
//! files are removed on open). Delivery takes files in name order and
//! deletes them only after the receiver acknowledged them: at-least-once, in
//! order, across restarts. The total size is bounded: a batch that does not
//! fit is refused (the caller counts it as dropped) rather than evicting
//! older ones, so what is delivered is always a contiguous prefix of the
//! log followed by a visible gap, never a hole in the middle.
//!
//! One deliverer per spool: the directory itself is `flock`ed for as long as
//! a [`Spool`] lives. Without it, a sink thread of a log that is being
//! reopened in the same process (or a second server pointed at the same
//! directory) would deliver and delete files that the new one has indexed,
//! duplicating batches and leaving the new index pointing at nothing.

use crate::AuditError;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

const SUFFIX: &str = ".ndjson";

pub(crate) struct Spool {
    dir: PathBuf,
    /// The directory handle holding the exclusive lock; released on drop.
    _lock: File,
    max_bytes: u64,
    /// id → size, in delivery order.
    files: BTreeMap<u64, u64>,
    bytes: u64,
    next_id: u64,
}

impl Spool {
    /// Creates (mode 0700) the spool directory: done when the log opens, so
    /// a bad `spool_dir` fails the start rather than the sink thread.
    pub(crate) fn prepare(dir: &Path) -> Result<(), AuditError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| AuditError::Open {
                path: dir.to_path_buf(),
                source: e,
            })
    }

    /// Takes the spool's exclusive lock (waiting for a previous holder to
    /// finish) and indexes what a previous run left behind.
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> Result<Self, AuditError> {
        let err = |e: io::Error| AuditError::Open {
            path: dir.to_path_buf(),
            source: e,
        };
        Self::prepare(dir)?;
        let lock = File::open(dir).map_err(err)?;
        lock.lock().map_err(err)?;
        let mut files = BTreeMap::new();
        for entry in fs::read_dir(dir).map_err(err)? {
            let entry = entry.map_err(err)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let Some(id) = name
                .strip_suffix(SUFFIX)
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let len = entry.metadata().map_err(err)?.len();
            files.insert(id, len);
        }
        let bytes = files.values().sum();
        let next_id = files
            .keys()
            .next_back()
            .map_or(1, |last| last.saturating_add(1));
        Ok(Self {
            dir: dir.to_path_buf(),
            _lock: lock,
            max_bytes,
            files,
            bytes,
            next_id,
        })
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Stores `batch` durably. `Ok(false)` if it does not fit the bound.
    pub(crate) fn push(&mut self, batch: &[u8]) -> io::Result<bool> {
        let len = batch.len() as u64;
        if self.bytes.saturating_add(len) > self.max_bytes {
            return Ok(false);
        }
        let id = self.next_id;
        let path = self.path_of(id);
        let tmp = path.with_extension("tmp");
        let write = || -> io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(batch)?;
            f.sync_data()?;
            fs::rename(&tmp, &path)?;
            // Make the rename itself durable.
            File::open(&self.dir)?.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.next_id = id.saturating_add(1);
        self.files.insert(id, len);
        self.bytes = self.bytes.saturating_add(len);
        Ok(true)
    }

    /// The oldest batches, concatenated, up to `max_bytes` (always at least
    /// one batch), and their ids for [`Spool::remove`].
    /// A batch file that vanished (an operator cleaned the directory) is
    /// forgotten rather than retried forever, which would wedge delivery of
    /// everything after it.
    pub(crate) fn oldest(&mut self, max_bytes: u64) -> io::Result<(Vec<u64>, Vec<u8>)> {
        let mut ids = Vec::new();
        let mut body = Vec::new();
        let mut vanished = Vec::new();
        for (&id, &len) in &self.files {
            if !ids.is_empty() && (body.len() as u64).saturating_add(len) > max_bytes {
                break;
            }
            match fs::read(self.path_of(id)) {
                Ok(bytes) => body.extend_from_slice(&bytes),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    vanished.push(id);
                    continue;
                }
                Err(e) => return Err(e),
            }
            ids.push(id);
        }
        for id in vanished {
            if let Some(len) = self.files.remove(&id) {
                self.bytes = self.bytes.saturating_sub(len);
            }
        }
        Ok((ids, body))
    }

    /// Deletes delivered batches.
    pub(crate) fn remove(&mut self, ids: &[u64]) -> io::Result<()> {
        for id in ids {
            match fs::remove_file(self.path_of(*id)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            if let Some(len) = self.files.remove(id) {
                self.bytes = self.bytes.saturating_sub(len);
            }
        }
        Ok(())
    }

    fn path_of(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}{SUFFIX}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_ordered_and_persistent() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 10).unwrap();
        assert!(s.push(b"aaaa\n").unwrap());
        assert!(s.push(b"bbbb\n").unwrap());
        assert!(!s.push(b"c\n").unwrap(), "over the bound");
        assert_eq!(s.bytes(), 10);
        fs::write(dir.path().join("x.tmp"), b"torn").unwrap();
        drop(s);
        let mut s = Spool::open(dir.path(), 10).unwrap();
        assert!(!dir.path().join("x.tmp").exists());
        assert_eq!(s.bytes(), 10);
        let (ids, body) = s.oldest(5).unwrap();
        assert_eq!((ids.len(), body.as_slice()), (1, &b"aaaa\n"[..]));
        let (ids, body) = s.oldest(100).unwrap();
        assert_eq!(body, b"aaaa\nbbbb\n");
        s.remove(&ids).unwrap();
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0);
        assert!(s.push(b"c\n").unwrap());
        drop(s);
        let mut s = Spool::open(dir.path(), 10).unwrap();
        assert_eq!(s.oldest(100).unwrap().1, b"c\n");
    }

    #[test]
    fn a_vanished_batch_is_skipped_not_retried_forever() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 100).unwrap();
        assert!(s.push(b"a\n").unwrap());
        assert!(s.push(b"b\n").unwrap());
        fs::remove_file(s.path_of(1)).unwrap();
        let (ids, body) = s.oldest(100).unwrap();
        assert_eq!((ids, body.as_slice()), (vec![2], &b"b\n"[..]));
        assert_eq!(s.bytes(), 2);
    }

    #[test]
    fn a_second_opener_waits_for_the_first_to_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = Spool::open(dir.path(), 100).unwrap();
        assert!(first.push(b"a\n").unwrap());
        let path = dir.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let s = Spool::open(&path, 100).map(|s| s.bytes());
            let _ = tx.send(());
            s
        });
        // While `first` lives the second open cannot have returned.
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_err());
        let (ids, _) = first.oldest(100).unwrap();
        first.remove(&ids).unwrap();
        drop(first);
        assert_eq!(
            waiter.join().unwrap().unwrap(),
            0,
            "indexed after the delivery"
        );
    }
}
