//! Where batches go: the log file and/or stdout.
//!
//! Each batch is handed to every sink as one buffer: one `write_all` and one
//! `sync` per sink per batch. That is what makes group commit cheap — the
//! fdatasync, which dominates the cost, is shared by every event in it.

use std::fs::File;
use std::io::{self, Write as _};
use std::path::PathBuf;

/// A destination for whole batches of lines.
pub(crate) trait Sink: Send {
    /// Names the sink in error messages (a path, or `stdout`).
    fn describe(&self) -> String;
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes what was written durable (or as durable as the sink allows).
    fn sync(&mut self) -> io::Result<()>;
}

/// The append-only log file.
pub(crate) struct FileSink {
    file: File,
    path: PathBuf,
    /// Devices and pipes (e.g. `/dev/full` in tests, a FIFO to a shipper)
    /// cannot be fsync'd; for them "written" is as durable as it gets.
    regular: bool,
}

impl FileSink {
    pub fn new(file: File, path: PathBuf, regular: bool) -> Self {
        Self {
            file,
            path,
            regular,
        }
    }
}

impl Sink for FileSink {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        if self.regular {
            // fdatasync: the data and the size, not the mtime.
            self.file.sync_data()
        } else {
            Ok(())
        }
    }
}

/// Standard output, for containers whose log collector is the durable store.
/// "Durable" here means flushed to the stdout file descriptor.
pub(crate) struct StdoutSink;

impl Sink for StdoutSink {
    fn describe(&self) -> String {
        "stdout".into()
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        io::stdout().lock().write_all(bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        io::stdout().lock().flush()
    }
}
