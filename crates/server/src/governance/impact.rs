//! "What would this draft decide differently?": recent real issuance
//! requests from the audit log, replayed against the active bundle and the
//! draft.
//!
//! The audit log records, for every issuance decision, the verified
//! identity (claims used), the role and the request parameters; that is
//! exactly what a decision needs, so the replay is faithful except for
//! `context.now` (evaluated at replay time).

use idmint_audit::AuditEvent;
use idmint_core::{Identity, IdentityKind, PolicyBundle, RequestContext, UnixTime};
use idmint_proto::governance::DraftImpact;
use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Bytes read from the end of the audit file at most: recent decisions are
/// at the end, and a draft must not read a multi-gigabyte log.
const MAX_TAIL_BYTES: u64 = 16 * 1024 * 1024;

/// One recorded issuance request.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub identity: Identity,
    pub role: String,
    pub ttl_seconds: Option<u64>,
    pub scopes: Option<Vec<String>>,
    pub audience: Option<String>,
    pub source_ip: Option<std::net::IpAddr>,
}

/// The last `limit` issuance decisions in the audit file (oldest first).
/// An unreadable or missing file yields none: impact is advisory.
pub fn recorded_requests(path: &Path, limit: usize) -> Vec<RecordedRequest> {
    let Ok(text) = read_tail(path) else {
        return Vec::new();
    };
    let mut out: Vec<RecordedRequest> = text
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<AuditEvent>(line).ok())
        .filter_map(recorded)
        .take(limit)
        .collect();
    out.reverse();
    out
}

fn read_tail(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(MAX_TAIL_BYTES);
    f.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    f.take(MAX_TAIL_BYTES).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    // A tail that starts mid-line: drop the partial first line.
    Ok(if start > 0 {
        text.split_once('\n')
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_default()
    } else {
        text
    })
}

fn recorded(ev: AuditEvent) -> Option<RecordedRequest> {
    if ev.action.as_deref() != Some("issue") || ev.decision.is_none() {
        return None;
    }
    let id = ev.identity?;
    let kind: IdentityKind = serde_json::from_value(serde_json::Value::String(id.kind)).ok()?;
    Some(RecordedRequest {
        identity: Identity {
            kind,
            subject: id.subject,
            issuer: id.issuer,
            method: id.method,
            auth: id.auth,
            attributes: id.claims_used,
            proof_id: id.proof_id,
            expires_at: UnixTime(i64::MAX),
        },
        role: ev.role?,
        ttl_seconds: ev.ttl_seconds,
        scopes: ev.scopes,
        audience: ev.audience,
        source_ip: ev.source_ip.and_then(|s| s.parse().ok()),
    })
}

/// Whether `bundle` allows `req`; a role the bundle lacks is a deny.
fn allows(bundle: &PolicyBundle, req: &RecordedRequest, now: i64) -> Option<bool> {
    let role = bundle.role(&req.role)?;
    let ctx = RequestContext {
        ttl_seconds: req
            .ttl_seconds
            .unwrap_or_else(|| role.default_ttl().as_secs()),
        scopes: req.scopes.clone().unwrap_or_else(|| role.scopes.clone()),
        audience: req
            .audience
            .clone()
            .or_else(|| role.audiences.first().cloned()),
        source_ip: req.source_ip,
        now,
        host: None,
    };
    Some(
        bundle
            .evaluate(&req.identity, "issue", Some(role), &ctx)
            .allowed,
    )
}

/// Replays `requests` against `active` and `draft`.
pub fn compare(
    active: &PolicyBundle,
    draft: &PolicyBundle,
    requests: &[RecordedRequest],
) -> DraftImpact {
    let now = UnixTime::now().secs();
    let mut newly_denied = BTreeSet::new();
    let mut newly_allowed = BTreeSet::new();
    let mut unknown_roles = 0;
    for req in requests {
        let before = allows(active, req, now).unwrap_or(false);
        let after = match allows(draft, req, now) {
            Some(a) => a,
            None => {
                unknown_roles += 1;
                false
            }
        };
        let who = req.identity.principal_key();
        match (before, after) {
            (true, false) => {
                newly_denied.insert(who);
            }
            (false, true) => {
                newly_allowed.insert(who);
            }
            _ => {}
        }
    }
    DraftImpact {
        requests_evaluated: requests.len() as u64,
        newly_denied: newly_denied.into_iter().collect(),
        newly_allowed: newly_allowed.into_iter().collect(),
        unknown_roles,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idmint_core::policy::SourceFile;

    const ROLES: &str = "[[role]]\nname='api'\nissuer='oauth'\nmax_ttl='10m'\n";

    fn bundle(cedar: &str) -> PolicyBundle {
        PolicyBundle::from_sources(
            1,
            vec![
                SourceFile {
                    name: "roles.toml".into(),
                    text: ROLES.into(),
                },
                SourceFile {
                    name: "p.cedar".into(),
                    text: cedar.into(),
                },
            ],
        )
        .unwrap()
    }

    fn line(actor: &str, allowed: bool) -> String {
        serde_json::json!({
            "seq": 1, "time": "t", "event": "decision", "outcome": "denied",
            "identity": {"subject": format!("user:{actor}"), "issuer": "https://idp", "method": "oidc",
                         "auth": "gh", "kind": "ci", "claims_used": {"actor": actor}, "proof_id": "p"},
            "action": "issue", "role": "api",
            "decision": {"allowed": allowed, "policy_ids": [], "bundle_version": 1, "errors": []},
            "prev": "0", "hash": "0"
        })
        .to_string()
    }

    #[test]
    fn replays_recorded_decisions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let text = [
            line("alice", true),
            "not json".to_string(),
            line("bob", true),
            line("carol", false),
            r#"{"seq":2,"time":"t","event":"login","outcome":"success","prev":"0","hash":"0"}"#
                .to_string(),
        ]
        .join("\n");
        std::fs::write(&path, text).unwrap();
        let reqs = recorded_requests(&path, 100);
        assert_eq!(reqs.len(), 3);
        assert_eq!(recorded_requests(&path, 2).len(), 2, "the limit applies");
        let active =
            bundle(r#"permit (principal, action, resource) when { principal.actor != "carol" };"#);
        let draft =
            bundle(r#"permit (principal, action, resource) when { principal.actor == "carol" };"#);
        let impact = compare(&active, &draft, &reqs);
        assert_eq!(impact.requests_evaluated, 3);
        assert_eq!(
            impact.newly_denied,
            vec!["https://idp|user:alice", "https://idp|user:bob"]
        );
        assert_eq!(impact.newly_allowed, vec!["https://idp|user:carol"]);
        assert!(recorded_requests(&dir.path().join("missing"), 10).is_empty());
    }
}
