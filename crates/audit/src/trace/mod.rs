//! From one reference to the whole story of a credential.
//!
//! Given a lease id (`lse_…`), a token id / jti (`tok_…`), a request id
//! (`req_…`), a fingerprint (`fp_…`), or an issuer-specific name recorded in
//! an event's `detail` — an SSH certificate `serial`, a JIT `account`, an
//! AWS access key id or role session name, a database `username` —
//! [`trace_file`] returns every event of the chain it belongs to: the login
//! that produced the session used, the decision, the issuance, the lease's
//! end, and the governance event that activated the policy version the
//! decision used (whose `detail.approvers` names who approved it).
//!
//! Streaming passes, bounded memory (only matching events are kept):
//! 1. find the events that mention the reference (as lease id, token id,
//!    fingerprint, request id, `detail.session_token_id`, any string in
//!    `detail`, or `detail.serial`) and collect their request ids, lease
//!    ids, token ids and session token ids;
//! 2. keep every event sharing one of those request, lease or token ids,
//!    plus the `login` events that created those sessions;
//! 3. if the chain has decisions, keep the policy activations
//!    ([`POLICY_EVENTS`]) whose `detail.new_version` is one of their bundle
//!    versions.
//!
//! Each pass parses only lines that contain one of the ids as text, so
//! tracing a multi-gigabyte log costs little more than reading it.

mod render;
mod summary;

pub use render::render;
pub use summary::{
    summarize, CredentialLink, DecisionLink, EndLink, IdentityLink, PolicyLink, TraceSummary,
};

use crate::error::AuditError;
use crate::event::{kinds, AuditEvent};
use crate::lines::LineReader;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

/// Ids collected in pass 1.
#[derive(Debug, Default)]
struct Related {
    request_ids: BTreeSet<String>,
    lease_ids: BTreeSet<String>,
    token_ids: BTreeSet<String>,
    session_token_ids: BTreeSet<String>,
}

impl Related {
    fn collect(&mut self, ev: &AuditEvent) {
        if let Some(r) = &ev.request_id {
            self.request_ids.insert(r.clone());
        }
        if let Some(l) = &ev.lease_id {
            self.lease_ids.insert(l.clone());
        }
        if let Some(t) = &ev.token_id {
            self.token_ids.insert(t.clone());
        }
        if let Some(s) = ev.session_token_id() {
            self.session_token_ids.insert(s.to_string());
        }
    }

    fn includes(&self, ev: &AuditEvent, reference: &str) -> bool {
        let in_set = |set: &BTreeSet<String>, v: &Option<String>| {
            v.as_ref().is_some_and(|v| set.contains(v))
        };
        mentions(ev, reference)
            || in_set(&self.request_ids, &ev.request_id)
            || in_set(&self.lease_ids, &ev.lease_id)
            || in_set(&self.token_ids, &ev.token_id)
            || (ev.event == kinds::LOGIN && in_set(&self.session_token_ids, &ev.token_id))
    }

    fn all_ids(&self) -> impl Iterator<Item = &String> {
        self.request_ids
            .iter()
            .chain(&self.lease_ids)
            .chain(&self.token_ids)
            .chain(&self.session_token_ids)
    }
}

/// Governance events that put a policy version in force.
pub const POLICY_EVENTS: [&str; 2] = [kinds::POLICY_ACTIVATED, "policy_break_glass"];

/// How deep [`detail_mentions`] looks into nested `detail` values.
const DETAIL_DEPTH: usize = 4;

/// Whether `ev` refers to `reference` directly.
fn mentions(ev: &AuditEvent, reference: &str) -> bool {
    let is = |v: &Option<String>| v.as_deref() == Some(reference);
    if ev.event == kinds::CHECKPOINT {
        return false;
    }
    is(&ev.lease_id)
        || is(&ev.token_id)
        || is(&ev.fingerprint)
        || is(&ev.request_id)
        || ev
            .detail
            .as_ref()
            .is_some_and(|d| detail_mentions(d, reference, DETAIL_DEPTH))
}

/// Whether a string anywhere in `detail` equals `reference`, or the
/// numeric SSH certificate `serial` does. Other numbers are not matched:
/// small values such as uids or versions would tie unrelated events.
fn detail_mentions(detail: &Value, reference: &str, depth: usize) -> bool {
    match detail {
        Value::String(s) => s == reference,
        Value::Array(items) if depth > 0 => items
            .iter()
            .any(|v| detail_mentions(v, reference, depth - 1)),
        Value::Object(map) if depth > 0 => map.iter().any(|(k, v)| match v {
            Value::Number(n) => k == "serial" && n.to_string() == reference,
            other => detail_mentions(other, reference, depth - 1),
        }),
        _ => false,
    }
}

/// Bundle versions the chain's decisions used.
fn decision_versions(chain: &[AuditEvent]) -> BTreeSet<u64> {
    chain
        .iter()
        .filter_map(|ev| ev.decision.as_ref().map(|d| d.bundle_version))
        .collect()
}

/// The policy version a governance event put in force.
pub fn activated_version(ev: &AuditEvent) -> Option<u64> {
    if !POLICY_EVENTS.contains(&ev.event.as_str()) {
        return None;
    }
    ev.detail.as_ref()?.get("new_version")?.as_u64()
}

/// All events of the chain `reference` belongs to, ordered by seq.
/// An empty result means the reference does not occur in the log.
pub fn trace_file(path: &Path, reference: &str) -> Result<Vec<AuditEvent>, AuditError> {
    let reference = reference.trim();
    if reference.is_empty() {
        return Err(AuditError::InvalidReference(reference.to_string()));
    }
    let reference_needle = json_needle(reference);

    let mut related = Related::default();
    // Pass 2 reads a superset of pass 1's candidates, so it alone counts
    // the lines that could not be parsed.
    let mut unparsable_first = 0u64;
    for_each_candidate(
        path,
        std::slice::from_ref(&reference_needle),
        &mut unparsable_first,
        |ev| {
            if mentions(&ev, reference) {
                related.collect(&ev);
            }
        },
    )?;

    let mut needles: Vec<Vec<u8>> = related.all_ids().map(|id| json_needle(id)).collect();
    needles.push(reference_needle);
    needles.sort();
    needles.dedup();
    let mut chain = Vec::new();
    let mut unparsable = 0u64;
    for_each_candidate(path, &needles, &mut unparsable, |ev| {
        if related.includes(&ev, reference) {
            chain.push(ev);
        }
    })?;
    let versions = decision_versions(&chain);
    if !versions.is_empty() {
        let needles: Vec<Vec<u8>> = POLICY_EVENTS.iter().map(|k| json_needle(k)).collect();
        let mut ignored = 0u64;
        for_each_candidate(path, &needles, &mut ignored, |ev| {
            if activated_version(&ev).is_some_and(|v| versions.contains(&v)) {
                chain.push(ev);
            }
        })?;
    }
    if unparsable > 0 {
        tracing::warn!(
            path = %path.display(),
            lines = unparsable,
            "some audit lines could not be parsed and were skipped; run `idmint audit verify`"
        );
    }
    chain.sort_by_key(|ev| ev.seq);
    Ok(chain)
}

/// Streams `path`, parsing only lines that contain one of `needles`.
fn for_each_candidate(
    path: &Path,
    needles: &[Vec<u8>],
    unparsable: &mut u64,
    mut visit: impl FnMut(AuditEvent),
) -> Result<(), AuditError> {
    let read_err = |source| AuditError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let mut reader = LineReader::new(BufReader::with_capacity(1 << 20, file));
    let mut buf = Vec::new();
    while let Some(info) = reader.next_into(&mut buf).map_err(read_err)? {
        if info.too_long || !needles.iter().any(|n| contains(&buf, n)) {
            continue;
        }
        match serde_json::from_slice::<AuditEvent>(&buf) {
            Ok(ev) => visit(ev),
            Err(_) => *unparsable += 1,
        }
    }
    Ok(())
}

/// How `s` appears inside a JSON string in the log (escaped, unquoted).
fn json_needle(s: &str) -> Vec<u8> {
    let quoted = serde_json::to_vec(s).unwrap_or_else(|_| s.as_bytes().to_vec());
    match quoted.as_slice() {
        [b'"', inner @ .., b'"'] => inner.to_vec(),
        other => other.to_vec(),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_strings_and_serials_are_references() {
        let d = serde_json::json!({"serial": 1234567, "uid": 5, "principals": ["jit-ab12"], "nested": {"username": "v_ro_x"}});
        assert!(detail_mentions(&d, "1234567", DETAIL_DEPTH));
        assert!(detail_mentions(&d, "jit-ab12", DETAIL_DEPTH));
        assert!(detail_mentions(&d, "v_ro_x", DETAIL_DEPTH));
        assert!(
            !detail_mentions(&d, "5", DETAIL_DEPTH),
            "only serial is numeric"
        );
        let mut ev = AuditEvent::new(kinds::POLICY_ACTIVATED, "success");
        ev.detail = Some(serde_json::json!({"new_version": 7, "approvers": ["a"]}));
        assert_eq!(activated_version(&ev), Some(7));
        ev.event = kinds::LOGIN.into();
        assert_eq!(activated_version(&ev), None);
    }

    #[test]
    fn needles_match_escaped_text() {
        assert_eq!(json_needle("lse_1"), b"lse_1".to_vec());
        assert_eq!(json_needle("a\"b"), b"a\\\"b".to_vec());
        assert!(contains(b"{\"x\":\"a\\\"b\"}", &json_needle("a\"b")));
        assert!(!contains(b"abc", b"abd"));
    }
}
