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

/// Verifies a log read from `r`.
///
/// With `public_key` (raw 32-byte Ed25519), checkpoints must be signed by
/// it. Without, each checkpoint is checked against the key embedded in its
/// own `detail.public_key` — which proves the checkpoints are intact, not
/// who made them; `key_source` says which was done.
pub fn verify_reader(r: impl BufRead, public_key: Option<&[u8]>) -> VerifyReport {
    let mut report = VerifyReport {
        key_source: match public_key {
            Some(k) => format!("the given public key {}", encode_public_key(k)),
            None => "the key embedded in each checkpoint (detail.public_key): this shows the \
                     checkpoints are intact, not who signed them; pass the server's audit public \
                     key to check that"
                .into(),
        },
        ..VerifyReport::default()
    };
    let mut reader = LineReader::new(r);
    let mut buf = Vec::new();
    let mut prev = Previous {
        hash: Some(GENESIS_PREV.to_string()),
        seq: None,
    };
    loop {
        let info = match reader.next_into(&mut buf) {
            Ok(Some(info)) => info,
            Ok(None) => break,
            Err(e) => {
                report.problem(
                    reader.lines_read() + 1,
                    None,
                    ProblemKind::Malformed,
                    format!("reading the log failed: {e}; verification stopped here"),
                );
                break;
            }
        };
        if info.too_long {
            report.problem(
                info.number,
                None,
                ProblemKind::Malformed,
                "line is longer than any audit event".into(),
            );
            prev = Previous {
                hash: None,
                seq: None,
            };
            continue;
        }
        prev = check_line(&buf, info.number, prev, public_key, &mut report);
    }
    report
}

/// Verifies the log file at `path`. Errors only if it cannot be opened.
pub fn verify_file(path: &Path, public_key: Option<&[u8]>) -> std::io::Result<VerifyReport> {
    let file = std::fs::File::open(path)?;
    Ok(verify_reader(
        std::io::BufReader::with_capacity(1 << 20, file),
        public_key,
    ))
}

fn check_line(
    line: &[u8],
    number: usize,
    prev: Previous,
    public_key: Option<&[u8]>,
    report: &mut VerifyReport,
) -> Previous {
    let sealed = SealedLine::split(line);
    let event: AuditEvent = match serde_json::from_slice(line) {
        Ok(ev) => ev,
        Err(e) => {
            let what = if line.is_empty() {
                "empty line".to_string()
            } else {
                format!("not a valid audit event: {e}")
            };
            report.problem(number, None, ProblemKind::Malformed, what);
            // The next line can still be linked if this one's hash is legible.
            return Previous {
                hash: sealed.map(|s| s.hash.to_string()),
                seq: None,
            };
        }
    };
    let seq = Some(event.seq);
    report.events += 1;
    report.last_seq = seq;

    match sealed {
        Some(s) if s.hash != event.hash => report.problem(
            number,
            seq,
            ProblemKind::Malformed,
            "the hash field is not where the writer puts it".into(),
        ),
        Some(s) if !s.hash_is_valid() => report.problem(
            number,
            seq,
            ProblemKind::HashMismatch,
            format!(
                "content does not match its hash (stored {}, computed {}): the line was edited",
                short(s.hash),
                short(&s.recompute_hash())
            ),
        ),
        Some(_) => {}
        None => report.problem(
            number,
            seq,
            ProblemKind::Malformed,
            "line does not end with the hash (and signature) fields".into(),
        ),
    }

    if let Some(expected) = &prev.hash {
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
    if let Some(p) = prev.seq {
        if Some(event.seq) != p.checked_add(1) {
            report.problem(
                number,
                seq,
                ProblemKind::SeqGap,
                format!("seq {} follows seq {p}", event.seq),
            );
        }
    }

    if event.event == kinds::CHECKPOINT {
        check_checkpoint(&event, number, public_key, report);
        report.checkpoints += 1;
        report.last_checkpoint_seq = seq;
        report.unsigned_tail = 0;
    } else {
        report.unsigned_tail += 1;
        if event.sig.is_some() {
            report.problem(
                number,
                seq,
                ProblemKind::Malformed,
                "only checkpoints carry a signature".into(),
            );
        }
    }

    Previous {
        hash: Some(event.hash),
        seq,
    }
}

fn check_checkpoint(
    event: &AuditEvent,
    number: usize,
    public_key: Option<&[u8]>,
    report: &mut VerifyReport,
) {
    let seq = Some(event.seq);
    let embedded_b64 = event
        .detail
        .as_ref()
        .and_then(|d| d.get(detail_keys::PUBLIC_KEY))
        .and_then(|k| k.as_str());
    let embedded = embedded_b64.and_then(decode_public_key);
    if let Some(b64) = embedded_b64 {
        if embedded.is_some() && !report.checkpoint_keys.iter().any(|k| k == b64) {
            report.checkpoint_keys.push(b64.to_string());
        }
    }
    let key: Vec<u8> = match (public_key, embedded) {
        (Some(given), Some(emb)) if emb.as_slice() != given => {
            report.problem(
                number,
                seq,
                ProblemKind::UnknownCheckpointKey,
                format!(
                    "checkpoint was signed by key {}, not the given key",
                    encode_public_key(&emb)
                ),
            );
            return;
        }
        (Some(given), _) => given.to_vec(),
        (None, Some(emb)) => emb,
        (None, None) => {
            report.problem(
                number,
                seq,
                ProblemKind::UnknownCheckpointKey,
                "checkpoint has no usable detail.public_key and no key was given".into(),
            );
            return;
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
        report.problem(number, seq, ProblemKind::BadCheckpointSignature, why.into());
    }
}

/// First 12 hex digits: enough to tell hashes apart in a message.
fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}
