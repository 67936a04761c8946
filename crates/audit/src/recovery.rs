//! Opening the log file and finding where the chain continues.
//!
//! Only the end of the file is read, so opening a multi-gigabyte log is
//! instant. The full-file check is `verify`; here we make sure we never
//! extend a chain whose head we cannot vouch for: the last line must pass its
//! hash check, or `open` refuses (fail closed) rather than silently starting
//! a second chain in the same file.

use crate::chain::{SealedLine, GENESIS_PREV};
use crate::error::AuditError;
use crate::event::{kinds, AuditEvent};
use crate::lines::MAX_LINE_BYTES;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Every line the writer produces starts like this; used to recognise a torn
/// audit line before truncating anything.
const LINE_START: &[u8] = b"{\"seq\":";
/// How far back to scan per read when looking for a line break.
const SCAN_CHUNK: u64 = 64 * 1024;

/// Where the next event goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainHead {
    pub next_seq: u64,
    pub last_hash: String,
    /// True if the last line is a checkpoint, i.e. nothing is unsigned.
    pub last_is_checkpoint: bool,
}

impl ChainHead {
    pub fn genesis() -> Self {
        Self {
            next_seq: 1,
            last_hash: GENESIS_PREV.to_string(),
            last_is_checkpoint: false,
        }
    }

    /// Whether any event has been written to this chain.
    pub fn is_empty(&self) -> bool {
        self.next_seq <= 1
    }
}

/// What [`crate::AuditLog::open`] found in an existing file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Seq of the last line already in the file; `None` for a new chain.
    pub resumed_after_seq: Option<u64>,
    /// Bytes of a torn final line (a crash mid-write) that were cut off.
    /// Those events were never acknowledged, so no credential depended on
    /// them.
    pub truncated_bytes: u64,
}

pub(crate) struct OpenedFile {
    pub file: File,
    /// Regular files get fdatasync; devices and pipes cannot be synced.
    pub regular: bool,
    pub head: ChainHead,
    pub recovery: Recovery,
}

/// Opens (or creates, mode 0600) the log file and recovers the chain head.
pub(crate) fn open_log_file(path: &Path) -> Result<OpenedFile, AuditError> {
    let open_err = |source: io::Error| AuditError::Open {
        path: path.to_path_buf(),
        source,
    };
    let (file, created) = open_or_create(path).map_err(open_err)?;
    if created {
        // Make the new directory entry durable too, or a crash could lose
        // the whole file even though its contents were fsync'd.
        sync_parent_dir(path).map_err(open_err)?;
    }
    let meta = file.metadata().map_err(open_err)?;
    if !meta.is_file() {
        tracing::info!(
            path = %path.display(),
            "audit log is not a regular file: starting a new chain, writes are not fsync'd"
        );
        return Ok(OpenedFile {
            file,
            regular: false,
            head: ChainHead::genesis(),
            recovery: Recovery::default(),
        });
    }
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "audit log is readable by other users; chmod 600 it"
        );
    }
    let (head, recovery) = recover_head(&file, meta.len(), path)?;
    Ok(OpenedFile {
        file,
        regular: true,
        head,
        recovery,
    })
}

fn open_or_create(path: &Path) -> io::Result<(File, bool)> {
    match OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => Ok((f, true)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let f = OpenOptions::new().read(true).append(true).open(path)?;
            Ok((f, false))
        }
        Err(e) => Err(e),
    }
}

fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

fn recover_head(file: &File, len: u64, path: &Path) -> Result<(ChainHead, Recovery), AuditError> {
    let corrupt = |reason: String| AuditError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let read_err = |source: io::Error| AuditError::Read {
        path: path.to_path_buf(),
        source,
    };
    if len == 0 {
        return Ok((ChainHead::genesis(), Recovery::default()));
    }
    let max_scan = MAX_LINE_BYTES as u64 + 1;

    // End of the last complete line (just past its newline).
    let complete_end = match rfind_newline(file, len, max_scan).map_err(read_err)? {
        Some(p) => p + 1,
        None if len <= max_scan => 0,
        None => {
            return Err(corrupt(format!(
                "the last {max_scan} bytes contain no line break; this is not an idmint audit log"
            )))
        }
    };

    let head = if complete_end == 0 {
        None
    } else {
        Some(read_last_line_head(file, complete_end - 1, path)?)
    };

    let torn = len - complete_end;
    if torn > 0 {
        // Only cut what is recognisably a torn audit line; never truncate a
        // file that is not ours because of a misconfigured path.
        let mut start = vec![0u8; LINE_START.len().min(torn as usize)];
        file.read_exact_at(&mut start, complete_end)
            .map_err(read_err)?;
        if head.is_none() && !LINE_START.starts_with(&start) {
            return Err(corrupt(
                "the file has no complete line and does not start like an audit event".into(),
            ));
        }
        file.set_len(complete_end)
            .and_then(|()| file.sync_all())
            .map_err(|source| AuditError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        tracing::warn!(
            path = %path.display(),
            truncated_bytes = torn,
            "audit log ended with a torn line (crash during a write); it was cut off. \
             Its events were never acknowledged, so no credential depended on them"
        );
    }

    let recovery = Recovery {
        resumed_after_seq: head.as_ref().map(|h| h.next_seq - 1),
        truncated_bytes: torn,
    };
    Ok((head.unwrap_or_else(ChainHead::genesis), recovery))
}

/// Reads the line ending at `newline_at` (exclusive) and checks its hash.
fn read_last_line_head(file: &File, newline_at: u64, path: &Path) -> Result<ChainHead, AuditError> {
    let corrupt = |reason: String| AuditError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let read_err = |source: io::Error| AuditError::Read {
        path: path.to_path_buf(),
        source,
    };
    let max_scan = MAX_LINE_BYTES as u64 + 1;
    let start = match rfind_newline(file, newline_at, max_scan).map_err(read_err)? {
        Some(p) => p + 1,
        None if newline_at <= max_scan => 0,
        None => {
            return Err(corrupt(
                "the last line is longer than any audit event".into(),
            ))
        }
    };
    let line_len = usize::try_from(newline_at - start)
        .map_err(|_| corrupt("the last line is longer than any audit event".into()))?;
    let mut line = vec![0u8; line_len];
    file.read_exact_at(&mut line, start).map_err(read_err)?;

    let sealed = SealedLine::split(&line)
        .ok_or_else(|| corrupt("the last line is not an audit event".into()))?;
    if !sealed.hash_is_valid() {
        return Err(corrupt(
            "the last line fails its hash check (it was modified after being written)".into(),
        ));
    }
    let event: AuditEvent = serde_json::from_slice(&line)
        .map_err(|e| corrupt(format!("the last line is not a valid audit event: {e}")))?;
    if event.hash != sealed.hash {
        return Err(corrupt(
            "the last line has an inconsistent hash field".into(),
        ));
    }
    let next_seq = event
        .seq
        .checked_add(1)
        .ok_or_else(|| corrupt("the last line's seq is at its maximum".into()))?;
    Ok(ChainHead {
        next_seq,
        last_is_checkpoint: event.event == kinds::CHECKPOINT,
        last_hash: event.hash,
    })
}

/// Position of the last `\n` in `[end - limit, end)`, scanning backwards.
fn rfind_newline(file: &File, end: u64, limit: u64) -> io::Result<Option<u64>> {
    let floor = end.saturating_sub(limit);
    let mut pos = end;
    let mut chunk = Vec::new();
    while pos > floor {
        let size = (pos - floor).min(SCAN_CHUNK);
        let from = pos - size;
        // `size` is at most SCAN_CHUNK, so it fits in usize.
        chunk.resize(size as usize, 0);
        file.read_exact_at(&mut chunk, from)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(from + i as u64));
        }
        pos = from;
    }
    Ok(None)
}
