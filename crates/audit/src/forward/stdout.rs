//! `kind = "stdout"`: the batch as JSON lines on standard output.

use super::{Batch, SinkCounters};
use std::io::Write as _;
use std::sync::mpsc::Receiver;

pub(super) fn run(rx: Receiver<Batch>, counters: &SinkCounters) {
    while let Ok(batch) = rx.recv() {
        let mut out = std::io::stdout().lock();
        match out.write_all(&batch).and_then(|()| out.flush()) {
            Ok(()) => counters.succeed(),
            Err(e) => counters.fail(format!("writing to stdout failed: {e}")),
        }
    }
}
