//! Offline verification of a log: hashes, links, sequence, checkpoints.
//!
//! Streams the input line by line with bounded memory, so it works on
//! multi-gigabyte logs. Every problem is reported with its 1-based line
//! number and kind; verification never stops at the first problem.
//!
//! What each kind means for an investigator:
//! - `HashMismatch`: the line's content was edited after it was written.
//! - `BrokenLink`: `prev` does not match the line before — a line was
//!   removed, inserted or reordered just before this one.
//! - `SeqGap`: seq does not follow the previous line's seq by one.
//! - `BadCheckpointSignature` / `UnknownCheckpointKey`: a checkpoint was
//!   forged, or signed by a key other than the one you trust.
//!
//! A hash chain cannot show that lines were cut off *at the end*; compare
//! `last_seq` and `last_checkpoint_seq` with what the server reported (a log
//! closed cleanly ends with a checkpoint: `unsigned_tail == 0`).

use crate::chain::{SealedLine, GENESIS_PREV};
use crate::checkpoint::{decode_public_key, encode_public_key, signature_is_valid};
use crate::event::{detail_keys, kinds, AuditEvent};
use crate::line_view::LineView;
use crate::lines::LineReader;
use std::fmt;
use std::io::BufRead;
use std::path::Path;

/// Reports stop collecting details beyond this many problems (they are
/// still counted in `problems_omitted`), so a wrecked file cannot exhaust
/// memory.
pub const MAX_REPORTED_PROBLEMS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// Not a well-formed audit line (bad JSON, missing fields, too long,
    /// empty, or unreadable input).
    Malformed,
    /// The content does not match its `hash`: the line was edited.
    HashMismatch,
    /// `prev` does not match the previous line's `hash`.
    BrokenLink,
    /// `seq` is not the previous line's seq + 1.
    SeqGap,
    /// A checkpoint's signature is missing or does not verify.
    BadCheckpointSignature,
    /// A checkpoint was signed by a key other than the one given, or carries
    /// no usable key when none was given.
    UnknownCheckpointKey,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line number.
    pub line: usize,
    pub seq: Option<u64>,
    pub kind: ProblemKind,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(seq) = self.seq {
            write!(f, " (seq {seq})")?;
        }
        write!(f, ": {:?}: {}", self.kind, self.message)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Lines that parsed as events (checkpoints included).
    pub events: u64,
    pub checkpoints: u64,
    pub last_seq: Option<u64>,
    pub last_checkpoint_seq: Option<u64>,
    /// Events after the last checkpoint, not covered by any signature.
    pub unsigned_tail: u64,
    pub problems: Vec<Problem>,
    /// Problems found beyond [`MAX_REPORTED_PROBLEMS`].
    pub problems_omitted: u64,
    /// Which key checkpoint signatures were checked against.
    pub key_source: String,
    /// Distinct base64url public keys embedded in checkpoints, in order of
    /// first appearance. More than one means the signing key changed.
    pub checkpoint_keys: Vec<String>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty() && self.problems_omitted == 0
    }

    fn problem(&mut self, line: usize, seq: Option<u64>, kind: ProblemKind, message: String) {
        if self.problems.len() < MAX_REPORTED_PROBLEMS {
            self.problems.push(Problem {
                line,
                seq,
                kind,
                message,
            });
        } else {
            self.problems_omitted += 1;
        }
    }
}

/// What the next line must link to.
struct Previous {
    /// Stored hash of the previous line; `None` if it was unreadable, in
    /// which case the next link cannot be checked (the damage is already
    /// reported).
    hash: Option<String>,
    seq: Option<u64>,
}

/// Lines handed to a worker thread at once: large enough that channel
/// traffic is noise, small enough that a few in flight stay a few MiB.
const CHUNK_LINES: usize = 2048;
const CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// Chunks queued per worker (and results queued per worker) at most, which
/// with [`CHUNK_BYTES`] bounds memory whatever the file size.
const QUEUE_PER_WORKER: usize = 2;
/// More workers than this gain nothing: the sequential stages (reading and
/// splitting lines, linking) become the bottleneck.
const MAX_WORKERS: usize = 8;

/// Verifies a log read from `r`.
///
/// With `public_key` (raw 32-byte Ed25519), checkpoints must be signed by
/// it. Without, each checkpoint is checked against the key embedded in its
/// own `detail.public_key` — which proves the checkpoints are intact, not
/// who made them; `key_source` says which was done.
///
/// How it is fast enough for logs of millions of events: the calling thread
/// only reads and splits lines; worker threads (one per core, up to
/// [`MAX_WORKERS`]) check each line on its own — its JSON shape, its hash,
/// a checkpoint's signature — in chunks; one more thread takes the chunks'
/// results back in file order and does what depends on the line before
/// (links, sequence numbers, counts). The JSON shape is checked without
/// building the event ([`LineView`]): same rules as parsing an
/// [`AuditEvent`], none of its allocations.
pub fn verify_reader(mut r: impl BufRead, public_key: Option<&[u8]>) -> VerifyReport {
    let report = VerifyReport {
        key_source: match public_key {
            Some(k) => format!("the given public key {}", encode_public_key(k)),
            None => "the key embedded in each checkpoint (detail.public_key): this shows the \
                     checkpoints are intact, not who signed them; pass the server's audit public \
                     key to check that"
                .into(),
        },
        ..VerifyReport::default()
    };
    let mut chain = ChainCheck::new(report);
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, MAX_WORKERS);
    // One core: threads would only add hand-over costs. A thread that cannot
    // be started fails the parallel attempt before it read anything.
    if workers == 1 || verify_parallel(&mut r, public_key, workers, &mut chain).is_err() {
        read_chunks(&mut r, |chunk| {
            chain.take(examine_chunk(chunk, public_key));
            true
        });
    }
    chain.report
}

/// A thread could not be started; nothing was read yet.
struct NoThreads;

/// The calling thread's part: read and split lines into chunks and deal
/// them round-robin to the workers; results come back in the same order.
fn verify_parallel(
    r: impl BufRead,
    public_key: Option<&[u8]>,
    workers: usize,
    chain: &mut ChainCheck,
) -> Result<(), NoThreads> {
    use std::sync::mpsc::sync_channel;
    std::thread::scope(|scope| {
        let mut to_workers = Vec::with_capacity(workers);
        let mut from_workers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (chunk_tx, chunk_rx) = sync_channel::<Chunk>(QUEUE_PER_WORKER);
            let (done_tx, done_rx) = sync_channel::<Checked>(QUEUE_PER_WORKER);
            let spawned = std::thread::Builder::new()
                .name("idmint-audit-verify".into())
                .spawn_scoped(scope, move || {
                    for chunk in chunk_rx {
                        if done_tx.send(examine_chunk(chunk, public_key)).is_err() {
                            return;
                        }
                    }
                });
            if spawned.is_err() {
                return Err(NoThreads);
            }
            to_workers.push(chunk_tx);
            from_workers.push(done_rx);
        }
        let linker = std::thread::Builder::new()
            .name("idmint-audit-link".into())
            .spawn_scoped(scope, move || {
                // Round-robin in dealing order: chunk i is on worker i % n.
                for rx in from_workers.iter().cycle() {
                    match rx.recv() {
                        Ok(checked) => chain.take(checked),
                        Err(_) => return,
                    }
                }
            });
        if linker.is_err() {
            return Err(NoThreads);
        }
        read_chunks(r, |chunk| {
            // A worker only stops early if the linker is gone, which only
            // happens after every worker stopped: nothing left to do.
            let i = chunk.index;
            to_workers
                .get(i % workers)
                .is_some_and(|tx| tx.send(chunk).is_ok())
        });
        drop(to_workers);
        Ok(())
    })
}

/// Reads `r` into chunks of whole lines and hands each to `deal` (which
/// returns false to stop). A read error ends the input with a
/// [`Chunk::failure`].
fn read_chunks(r: impl BufRead, mut deal: impl FnMut(Chunk) -> bool) {
    let mut reader = LineReader::new(r);
    let mut index = 0;
    let mut chunk = Chunk::new(index);
    loop {
        let start = chunk.data.len();
        match reader.append_next(&mut chunk.data) {
            Ok(Some(info)) => {
                chunk.lines.push(ChunkLine {
                    start,
                    end: chunk.data.len(),
                    number: info.number,
                    too_long: info.too_long,
                });
                if chunk.lines.len() >= CHUNK_LINES || chunk.data.len() >= CHUNK_BYTES {
                    index += 1;
                    let full = std::mem::replace(&mut chunk, Chunk::new(index));
                    if !deal(full) {
                        return;
                    }
                }
            }
            Ok(None) => break,
            Err(e) => {
                chunk.failure = Some((
                    reader.lines_read() + 1,
                    format!("reading the log failed: {e}; verification stopped here"),
                ));
                break;
            }
        }
    }
    if !chunk.lines.is_empty() || chunk.failure.is_some() {
        deal(chunk);
    }
}

/// Consecutive lines of the log, copied out of the reader's buffer.
struct Chunk {
    index: usize,
    data: Vec<u8>,
    lines: Vec<ChunkLine>,
    /// The input failed after these lines: line number and message.
    failure: Option<(usize, String)>,
}

impl Chunk {
    fn new(index: usize) -> Self {
        Self {
            index,
            data: Vec::with_capacity(CHUNK_BYTES + 64 * 1024),
            lines: Vec::with_capacity(CHUNK_LINES),
            failure: None,
        }
    }
}

struct ChunkLine {
    start: usize,
    end: usize,
    number: usize,
    too_long: bool,
}

/// A chunk's lines, each checked on its own.
struct Checked {
    lines: Vec<LineCheck>,
    failure: Option<(usize, String)>,
}

/// Everything about one line that does not depend on the lines around it.
struct LineCheck {
    number: usize,
    /// Problems found in the line itself, reported before its link.
    own: Vec<(ProblemKind, String)>,
    /// `None` when the line is not a well-formed event.
    event: Option<LineFacts>,
    /// The stored hash when the line is malformed but its hash legible, so
    /// the next line can still be linked.
    legible_hash: Option<String>,
    too_long: bool,
}

struct LineFacts {
    seq: u64,
    prev: String,
    hash: String,
    checkpoint: Option<CheckpointFacts>,
    /// Problems reported after the link checks (checkpoint signature, a
    /// signature on an ordinary event).
    late: Vec<(ProblemKind, String)>,
}

struct CheckpointFacts {
    /// A well-formed embedded public key (base64url), for
    /// [`VerifyReport::checkpoint_keys`].
    embedded_key: Option<String>,
}

fn examine_chunk(chunk: Chunk, public_key: Option<&[u8]>) -> Checked {
    let lines = chunk
        .lines
        .iter()
        .map(|l| {
            if l.too_long {
                return LineCheck {
                    number: l.number,
                    own: Vec::new(),
                    event: None,
                    legible_hash: None,
                    too_long: true,
                };
            }
            let bytes = chunk.data.get(l.start..l.end).unwrap_or_default();
            examine_line(bytes, l.number, public_key)
        })
        .collect();
    Checked {
        lines,
        failure: chunk.failure,
    }
}

/// The per-line checks, in the order they are reported.
fn examine_line(line: &[u8], number: usize, public_key: Option<&[u8]>) -> LineCheck {
    let sealed = SealedLine::split(line);
    let mut check = LineCheck {
        number,
        own: Vec::new(),
        event: None,
        legible_hash: None,
        too_long: false,
    };
    // One UTF-8 check for the whole line instead of one per string; an
    // invalid line goes through `from_slice` for its exact error message.
    let parsed = match std::str::from_utf8(line) {
        Ok(text) => serde_json::from_str::<LineView<'_>>(text),
        Err(_) => serde_json::from_slice::<LineView<'_>>(line),
    };
    let view = match parsed {
        Ok(view) => view,
        Err(e) => {
            let what = if line.is_empty() {
                "empty line".to_string()
            } else {
                format!("not a valid audit event: {e}")
            };
            check.own.push((ProblemKind::Malformed, what));
            // The next line can still be linked if this one's hash is legible.
            check.legible_hash = sealed.map(|s| s.hash.to_string());
            return check;
        }
    };

    match sealed {
        Some(s) if s.hash != view.hash => check.own.push((
            ProblemKind::Malformed,
            "the hash field is not where the writer puts it".into(),
        )),
        Some(s) if !s.hash_is_valid() => check.own.push((
            ProblemKind::HashMismatch,
            format!(
                "content does not match its hash (stored {}, computed {}): the line was edited",
                short(s.hash),
                short(&s.recompute_hash())
            ),
        )),
        Some(_) => {}
        None => check.own.push((
            ProblemKind::Malformed,
            "line does not end with the hash (and signature) fields".into(),
        )),
    }

    let mut late = Vec::new();
    let checkpoint = if view.event == kinds::CHECKPOINT {
        // One line in `checkpoint_every`: the full event is cheap enough.
        match serde_json::from_slice::<AuditEvent>(line) {
            Ok(event) => Some(check_checkpoint(&event, public_key, &mut late)),
            // Cannot happen when the view parsed (same rules); reported
            // rather than trusted.
            Err(e) => {
                late.push((
                    ProblemKind::Malformed,
                    format!("not a valid audit event: {e}"),
                ));
                Some(CheckpointFacts { embedded_key: None })
            }
        }
    } else {
        if view.sig.is_some() {
            late.push((
                ProblemKind::Malformed,
                "only checkpoints carry a signature".into(),
            ));
        }
        None
    };
    check.event = Some(LineFacts {
        seq: view.seq,
        prev: view.prev.into_owned(),
        hash: view.hash.into_owned(),
        checkpoint,
        late,
    });
    check
}

/// The checks that follow the chain from line to line, fed in file order.
struct ChainCheck {
    report: VerifyReport,
    prev: Previous,
}

impl ChainCheck {
    fn new(report: VerifyReport) -> Self {
        Self {
            report,
            prev: Previous {
                hash: Some(GENESIS_PREV.to_string()),
                seq: None,
            },
        }
    }

    fn take(&mut self, checked: Checked) {
        for line in checked.lines {
            self.line(line);
        }
        if let Some((number, message)) = checked.failure {
            self.report
                .problem(number, None, ProblemKind::Malformed, message);
        }
    }

    fn line(&mut self, line: LineCheck) {
        let report = &mut self.report;
        let number = line.number;
        if line.too_long {
            report.problem(
                number,
                None,
                ProblemKind::Malformed,
                "line is longer than any audit event".into(),
            );
            self.prev = Previous {
                hash: None,
                seq: None,
            };
            return;
        }
        let Some(event) = line.event else {
            for (kind, message) in line.own {
                report.problem(number, None, kind, message);
            }
            self.prev = Previous {
                hash: line.legible_hash,
                seq: None,
            };
            return;
        };
        let seq = Some(event.seq);
        report.events += 1;
        report.last_seq = seq;
        for (kind, message) in line.own {
            report.problem(number, seq, kind, message);
        }
        if let Some(expected) = &self.prev.hash {
            if event.prev != *expected {
                report.problem(
                    number,
                    seq,
                    ProblemKind::BrokenLink,
                    format!(
                        "prev {} does not match the previous line's hash {}: a line was removed, inserted or reordered before this one",
                        short(&event.prev),
                        short(expected)
                    ),
                );
            }
        }
        if let Some(p) = self.prev.seq {
            if Some(event.seq) != p.checked_add(1) {
                report.problem(
                    number,
                    seq,
                    ProblemKind::SeqGap,
                    format!("seq {} follows seq {p}", event.seq),
                );
            }
        }
        match &event.checkpoint {
            Some(facts) => {
                if let Some(b64) = &facts.embedded_key {
                    if !report.checkpoint_keys.iter().any(|k| k == b64) {
                        report.checkpoint_keys.push(b64.clone());
                    }
                }
                for (kind, message) in event.late {
                    report.problem(number, seq, kind, message);
                }
                report.checkpoints += 1;
                report.last_checkpoint_seq = seq;
                report.unsigned_tail = 0;
            }
            None => {
                report.unsigned_tail += 1;
                for (kind, message) in event.late {
                    report.problem(number, seq, kind, message);
                }
            }
        }
        self.prev = Previous {
            hash: Some(event.hash),
            seq,
        };
    }
}

/// Verifies the log file at `path`. Errors only if it cannot be opened.
pub fn verify_file(path: &Path, public_key: Option<&[u8]>) -> std::io::Result<VerifyReport> {
    let file = std::fs::File::open(path)?;
    Ok(verify_reader(
        std::io::BufReader::with_capacity(1 << 20, file),
        public_key,
    ))
}

/// A checkpoint's signature checks; problems go to `late`.
fn check_checkpoint(
    event: &AuditEvent,
    public_key: Option<&[u8]>,
    late: &mut Vec<(ProblemKind, String)>,
) -> CheckpointFacts {
    let embedded_b64 = event
        .detail
        .as_ref()
        .and_then(|d| d.get(detail_keys::PUBLIC_KEY))
        .and_then(|k| k.as_str());
    let embedded = embedded_b64.and_then(decode_public_key);
    let facts = CheckpointFacts {
        embedded_key: embedded_b64
            .filter(|_| embedded.is_some())
            .map(str::to_string),
    };
    let key: Vec<u8> = match (public_key, embedded) {
        (Some(given), Some(emb)) if emb.as_slice() != given => {
            late.push((
                ProblemKind::UnknownCheckpointKey,
                format!(
                    "checkpoint was signed by key {}, not the given key",
                    encode_public_key(&emb)
                ),
            ));
            return facts;
        }
        (Some(given), _) => given.to_vec(),
        (None, Some(emb)) => emb,
        (None, None) => {
            late.push((
                ProblemKind::UnknownCheckpointKey,
                "checkpoint has no usable detail.public_key and no key was given".into(),
            ));
            return facts;
        }
    };
    let valid = event
        .sig
        .as_deref()
        .is_some_and(|sig| signature_is_valid(&key, &event.hash, sig));
    if !valid {
        let why = if event.sig.is_none() {
            "checkpoint has no signature"
        } else {
            "checkpoint signature does not verify: the checkpoint or the hash it signs was forged"
        };
        late.push((ProblemKind::BadCheckpointSignature, why.into()));
    }
    facts
}

/// First 12 hex digits: enough to tell hashes apart in a message.
fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::RecordingSink;
    use crate::batch::BatchWriter;
    use crate::checkpoint::{generate_signing_key, CheckpointSigner};
    use crate::event::outcomes;
    use crate::recovery::ChainHead;

    /// A valid log of `n` events (checkpoint every 100) spanning several
    /// [`CHUNK_LINES`] chunks, and its public key.
    fn log(n: usize) -> (Vec<u8>, Vec<u8>) {
        let key = generate_signing_key().unwrap();
        let signer = CheckpointSigner::from_pkcs8(key.expose()).unwrap();
        let public = signer.public_key().to_vec();
        let sink = RecordingSink::default();
        let mut w = BatchWriter::new(
            vec![Box::new(sink.clone())],
            ChainHead::genesis(),
            100,
            signer,
        );
        let events = (0..n)
            .map(|i| AuditEvent {
                lease_id: Some(format!("lse_{i}")),
                ..AuditEvent::new(kinds::LEASE_EXPIRED, outcomes::SUCCESS)
            })
            .collect();
        let out = w.commit(events, true, "2026-01-01T00:00:00.000Z");
        assert!(out.results.iter().all(Result::is_ok));
        let bytes = sink.state.lock().unwrap().bytes.clone();
        (bytes, public)
    }

    /// The reference: every line checked on this thread, one at a time.
    fn sequential(bytes: &[u8], key: Option<&[u8]>) -> VerifyReport {
        let mut chain = ChainCheck::new(VerifyReport::default());
        read_chunks(bytes, |chunk| {
            chain.take(examine_chunk(chunk, key));
            true
        });
        chain.report
    }

    fn lines_of(bytes: &[u8]) -> Vec<Vec<u8>> {
        bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    }

    fn join(lines: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for l in lines {
            out.extend_from_slice(l);
            out.push(b'\n');
        }
        out
    }

    #[test]
    fn many_chunks_verify_like_one_thread() {
        let (bytes, key) = log(3 * CHUNK_LINES + 17);
        let report = verify_reader(&bytes[..], Some(&key));
        assert!(report.is_ok(), "{:?}", report.problems);
        let lines = (3 * CHUNK_LINES + 17) as u64;
        assert_eq!(report.checkpoints, lines / 100 + 1);
        assert_eq!(report.events, lines + report.checkpoints);
        assert_eq!(report.unsigned_tail, 0);
        assert_eq!(report.checkpoint_keys.len(), 1);
        let mut reference = sequential(&bytes, Some(&key));
        reference.key_source = report.key_source.clone();
        assert_eq!(report, reference);
    }

    #[test]
    fn damage_far_apart_is_reported_in_order_with_line_numbers() {
        let (bytes, key) = log(3 * CHUNK_LINES);
        let mut lines = lines_of(&bytes);
        // An edit in the second chunk, a removal in the third, a torn
        // checkpoint signature and garbage in the last.
        let edited = CHUNK_LINES + 10;
        let text = String::from_utf8(lines[edited - 1].clone()).unwrap();
        lines[edited - 1] = text.replace("lease_expired", "lease_revoked").into_bytes();
        lines.remove(2 * CHUNK_LINES + 5 - 1);
        let last = lines.len();
        lines.insert(last - 3, b"{not json".to_vec());
        let tampered = join(&lines);
        let report = verify_reader(&tampered[..], Some(&key));
        let found: Vec<(usize, ProblemKind)> =
            report.problems.iter().map(|p| (p.line, p.kind)).collect();
        assert_eq!(
            found,
            vec![
                (edited, ProblemKind::HashMismatch),
                (2 * CHUNK_LINES + 5, ProblemKind::BrokenLink),
                (2 * CHUNK_LINES + 5, ProblemKind::SeqGap),
                (last - 2, ProblemKind::Malformed),
            ]
        );
        let mut reference = sequential(&tampered, Some(&key));
        reference.key_source = report.key_source.clone();
        assert_eq!(report, reference);
    }

    /// Fails after `ok` bytes, like a disk error in the middle of a file.
    struct FailingReader {
        data: Vec<u8>,
        at: usize,
        ok: usize,
    }

    impl std::io::Read for FailingReader {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.at >= self.ok {
                return Err(std::io::Error::other("injected: device error"));
            }
            let end = self.ok.min(self.at + buf.len()).min(self.data.len());
            let n = end - self.at;
            buf[..n].copy_from_slice(&self.data[self.at..end]);
            self.at = end;
            Ok(n)
        }
    }

    #[test]
    fn a_read_error_is_reported_after_the_lines_before_it() {
        let (bytes, key) = log(2 * CHUNK_LINES);
        let lines = lines_of(&bytes);
        let whole = 2 * CHUNK_LINES + 3;
        let ok: usize = lines[..whole].iter().map(|l| l.len() + 1).sum();
        let reader = std::io::BufReader::with_capacity(
            4096,
            FailingReader {
                data: bytes,
                at: 0,
                ok,
            },
        );
        let report = verify_reader(reader, Some(&key));
        assert_eq!(report.events, whole as u64);
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        let p = &report.problems[0];
        assert_eq!((p.line, p.kind), (whole + 1, ProblemKind::Malformed));
        assert!(
            p.message.contains("injected: device error"),
            "{}",
            p.message
        );
    }

    #[test]
    fn empty_input_is_an_empty_report() {
        let report = verify_reader(&b""[..], None);
        assert!(report.is_ok());
        assert_eq!((report.events, report.last_seq), (0, None));
    }
}
