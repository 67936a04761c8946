//! The hash chain: how a line's `hash` is computed and checked.
//!
//! **Canonical form.** A line's hash is the hex SHA-256 of
//! `serde_json::to_vec(event)` with `hash` set to `""` and `sig` set to
//! `None`. Because `hash` is serialized second to last and `sig` (skipped
//! when `None`) last, the canonical form of a written line is exactly its
//! bytes up to and including `,"hash":"` followed by `"}`. The writer uses
//! that to serialize each event once and splice the hash in; the verifier
//! uses it to hash the bytes *as written*, so no JSON re-serialization (with
//! its float-formatting and escaping subtleties) is ever involved in
//! checking integrity, and any byte-level edit is detected.
//!
//! **Links.** `prev` is the previous line's `hash` (64 zeros on the first
//! line). Since `prev` is inside the hashed bytes, removing, inserting or
//! reordering lines breaks a link even when the attacker recomputes hashes;
//! only rewriting everything after the edit — which the signed checkpoints
//! make detectable — hides it.

use crate::checkpoint::CheckpointSigner;
use crate::event::AuditEvent;
use ring::digest::{Context, SHA256};

/// `prev` of the first line of a chain.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where the hash value starts. `,"` cannot occur inside a JSON string (the
/// quote would be escaped), so in a line this only matches a key; the *last*
/// match is the top-level `hash` because only `sig` (base64url) follows it.
const HASH_KEY: &[u8] = b",\"hash\":\"";
/// How the canonical serialization (hash `""`, no sig) ends.
const CANONICAL_TAIL: &[u8] = b",\"hash\":\"\"}";
const SIG_KEY: &[u8] = b",\"sig\":\"";

/// Why an event could not be turned into a line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LineError {
    #[error("event cannot be serialized: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error(
        "serialized event does not end with the hash field; the AuditEvent field order was changed"
    )]
    Layout,
}

/// Appends `event` as one line (with trailing newline) to `buf` and returns
/// its hash. `event.hash` and `event.sig` are ignored (treated as empty);
/// with `signer`, the line gets a `sig` over its hash (checkpoints). On
/// error `buf` is left as it was.
pub(crate) fn write_line(
    buf: &mut Vec<u8>,
    event: &AuditEvent,
    signer: Option<&CheckpointSigner>,
) -> Result<String, LineError> {
    let start = buf.len();
    let result = write_line_inner(buf, start, event, signer);
    if result.is_err() {
        buf.truncate(start);
    }
    result
}

fn write_line_inner(
    buf: &mut Vec<u8>,
    start: usize,
    event: &AuditEvent,
    signer: Option<&CheckpointSigner>,
) -> Result<String, LineError> {
    if !event.hash.is_empty() || event.sig.is_some() {
        // The writer always passes a cleared event; anyone else gets the
        // canonical form from a cleared copy.
        let canonical = AuditEvent {
            hash: String::new(),
            sig: None,
            ..event.clone()
        };
        serde_json::to_writer(&mut *buf, &canonical)?;
    } else {
        serde_json::to_writer(&mut *buf, event)?;
    }
    let line = buf.get(start..).unwrap_or_default();
    if !line.ends_with(CANONICAL_TAIL) {
        return Err(LineError::Layout);
    }
    let hash = sha256_hex(&[line]);
    // Drop the closing `"}` and splice in the hash (and signature).
    buf.truncate(buf.len() - 2);
    buf.extend_from_slice(hash.as_bytes());
    buf.push(b'"');
    if let Some(signer) = signer {
        buf.extend_from_slice(SIG_KEY);
        buf.extend_from_slice(signer.sign(&hash).as_bytes());
        buf.push(b'"');
    }
    buf.extend_from_slice(b"}\n");
    Ok(hash)
}

/// The integrity-relevant parts of a written line, found without parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SealedLine<'a> {
    /// The line up to and including `,"hash":"`.
    prefix: &'a [u8],
    /// The stored hash value.
    pub hash: &'a str,
    /// The stored signature, if any.
    pub sig: Option<&'a str>,
}

impl<'a> SealedLine<'a> {
    /// Splits a line (without its newline). `None` if the line does not end
    /// the way the writer ends every line.
    pub fn split(line: &'a [u8]) -> Option<Self> {
        let key_at = rfind(line, HASH_KEY)?;
        let (prefix, rest) = line.split_at(key_at + HASH_KEY.len());
        let close = rest.iter().position(|&b| b == b'"')?;
        let (hash, rest) = rest.split_at(close);
        let hash = std::str::from_utf8(hash).ok()?;
        let sig = match rest {
            b"\"}" => None,
            _ => {
                let sig = rest.strip_prefix(b"\"")?.strip_prefix(SIG_KEY)?;
                let sig = sig.strip_suffix(b"\"}")?;
                if !sig
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
                {
                    return None;
                }
                Some(std::str::from_utf8(sig).ok()?)
            }
        };
        Some(Self { prefix, hash, sig })
    }

    /// The hash of the canonical form, recomputed from the bytes.
    pub fn recompute_hash(&self) -> String {
        sha256_hex(&[self.prefix, b"\"}"])
    }

    /// Whether the stored hash matches the content.
    pub fn hash_is_valid(&self) -> bool {
        self.recompute_hash() == self.hash
    }
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::rfind(haystack, needle)
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut ctx = Context::new(&SHA256);
    for p in parts {
        ctx.update(p);
    }
    idmint_core::ids::hex(ctx.finish().as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> AuditEvent {
        AuditEvent {
            seq: 7,
            time: "2026-01-01T00:00:00.000Z".into(),
            event: "login".into(),
            outcome: "success".into(),
            // A nested "hash" key must not confuse the splitter.
            detail: Some(json!({"hash": "x", "n": 1.5, "s": "a\"b,\"hash\":\"c"})),
            prev: GENESIS_PREV.into(),
            ..AuditEvent::default()
        }
    }

    #[test]
    fn line_hash_matches_spec_definition() {
        let ev = sample();
        let mut buf = Vec::new();
        let hash = write_line(&mut buf, &ev, None).unwrap();
        // Spec: sha256 over serde_json::to_vec(event with hash "" and sig None).
        let canonical = serde_json::to_vec(&ev).unwrap();
        assert_eq!(hash, sha256_hex(&[&canonical]));
        assert!(buf.ends_with(b"\n"));
        let line = &buf[..buf.len() - 1];
        let parsed: AuditEvent = serde_json::from_slice(line).unwrap();
        assert_eq!(parsed.hash, hash);
        assert_eq!(parsed.detail, ev.detail);
        let sealed = SealedLine::split(line).unwrap();
        assert_eq!(sealed.hash, hash);
        assert!(sealed.hash_is_valid());
        assert_eq!(sealed.sig, None);
    }

    #[test]
    fn stale_hash_and_sig_on_input_are_ignored() {
        let mut ev = sample();
        let mut clean = Vec::new();
        let h1 = write_line(&mut clean, &ev, None).unwrap();
        ev.hash = "bogus".into();
        ev.sig = Some("bogus".into());
        let mut dirty = Vec::new();
        let h2 = write_line(&mut dirty, &ev, None).unwrap();
        assert_eq!(h1, h2);
        assert_eq!(clean, dirty);
    }

    #[test]
    fn edits_are_detected() {
        let mut buf = Vec::new();
        write_line(&mut buf, &sample(), None).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let edited = text.trim_end().replace("\"login\"", "\"logon\"");
        let sealed = SealedLine::split(edited.as_bytes()).unwrap();
        assert!(!sealed.hash_is_valid());
    }

    #[test]
    fn split_rejects_foreign_endings() {
        assert!(SealedLine::split(b"{}").is_none());
        assert!(SealedLine::split(b"{\"a\":1,\"hash\":\"ab\"} ").is_none());
        assert!(SealedLine::split(b"{\"a\":1,\"hash\":\"ab\",\"sig\":\"a b\"}").is_none());
        let ok = SealedLine::split(b"{\"a\":1,\"hash\":\"ab\",\"sig\":\"a-b_\"}").unwrap();
        assert_eq!((ok.hash, ok.sig), ("ab", Some("a-b_")));
    }
}
