//! Human rendering of a traced chain.

use crate::event::{kinds, AuditEvent};
use std::fmt::Write as _;

/// Renders a chain as a one-line summary — proof → identity → decision
/// (bundle version) → credential → end — followed by every event with the
/// fields that matter for its step.
pub fn render(events: &[AuditEvent]) -> String {
    if events.is_empty() {
        return "no audit events found for this reference\n".into();
    }
    let mut out = String::new();
    let _ = writeln!(out, "chain: {}", summary(events).join(" → "));
    let _ = writeln!(out);
    for ev in events {
        render_event(&mut out, ev);
    }
    out
}

fn summary(events: &[AuditEvent]) -> Vec<String> {
    let mut steps = Vec::new();
    match events.iter().find_map(|e| e.identity.as_ref()) {
        Some(id) => {
            steps.push(format!(
                "proof {} ({} via {})",
                id.proof_id, id.method, id.auth
            ));
            steps.push(format!(
                "identity {} {} ({})",
                id.kind, id.subject, id.issuer
            ));
        }
        None => steps.push("proof/identity not recorded".into()),
    }
    match events.iter().rev().find_map(|e| e.decision.as_ref()) {
        Some(d) => steps.push(format!(
            "decision {} (bundle v{})",
            if d.allowed { "allowed" } else { "denied" },
            d.bundle_version
        )),
        None => steps.push("no decision recorded".into()),
    }
    for ev in events {
        if let Some(v) = super::activated_version(ev) {
            let approvers = approvers(ev);
            steps.push(format!(
                "policy v{v} via {} approved by {}",
                ev.event,
                if approvers.is_empty() {
                    "(none recorded)".to_string()
                } else {
                    approvers.join(", ")
                }
            ));
        }
    }
    let issued = events.iter().find(|e| {
        (e.event == kinds::CREDENTIAL_ISSUED
            || e.event == kinds::TOKEN_EXCHANGE
            || e.event == "ssh_certificate_issued")
            && e.outcome == crate::event::outcomes::SUCCESS
    });
    match issued {
        Some(e) => {
            let mut s = format!(
                "credential {}",
                e.fingerprint.as_deref().unwrap_or("(no fingerprint)")
            );
            if let Some(l) = &e.lease_id {
                let _ = write!(s, " lease {l}");
            }
            if let Some(t) = &e.token_id {
                let _ = write!(s, " token {t}");
            }
            steps.push(s);
        }
        None => steps.push("no credential issued".into()),
    }
    let end = events.iter().rev().find(|e| {
        matches!(
            e.event.as_str(),
            kinds::LEASE_REVOKED
                | kinds::LEASE_EXPIRED
                | kinds::REVOKE_FAILED
                | kinds::SESSION_REVOKED
        )
    });
    match (end, issued) {
        (Some(e), _) => steps.push(format!("end: {} ({})", e.event, e.outcome)),
        (None, Some(_)) => {
            steps.push("end: not recorded (still active, or ended after this log)".into())
        }
        (None, None) => {}
    }
    steps
}

fn render_event(out: &mut String, ev: &AuditEvent) {
    let _ = write!(out, "#{} {} {} {}", ev.seq, ev.time, ev.event, ev.outcome);
    if let Some(r) = &ev.request_id {
        let _ = write!(out, " {r}");
    }
    let _ = writeln!(out);
    let mut field = |label: &str, value: String| {
        let _ = writeln!(out, "    {label:<10} {value}");
    };
    if let Some(id) = &ev.identity {
        field(
            "proof",
            format!("{} ({} via {})", id.proof_id, id.method, id.auth),
        );
        field(
            "identity",
            format!("{} {} (issuer {})", id.kind, id.subject, id.issuer),
        );
    }
    if ev.event == kinds::LOGIN {
        if let Some(t) = &ev.token_id {
            field("session", t.clone());
        }
    } else if let Some(s) = ev.session_token_id() {
        field("session", s.to_string());
    }
    if ev.action.is_some() || ev.role.is_some() {
        field(
            "request",
            format!(
                "action {} role {}",
                ev.action.as_deref().unwrap_or("-"),
                ev.role.as_deref().unwrap_or("-")
            ),
        );
    }
    if let Some(d) = &ev.decision {
        let verdict = if d.allowed { "allowed" } else { "denied" };
        let by = if d.policy_ids.is_empty() {
            String::from("no policy (default deny)")
        } else {
            d.policy_ids.join(", ")
        };
        field(
            "decision",
            format!("{verdict} by {by} (bundle v{})", d.bundle_version),
        );
        if !d.errors.is_empty() {
            field("policy err", d.errors.join("; "));
        }
    }
    if let Some(fp) = &ev.fingerprint {
        field("credential", fp.clone());
    }
    if let Some(l) = &ev.lease_id {
        field("lease", l.clone());
    }
    if ev.event != kinds::LOGIN {
        if let Some(t) = &ev.token_id {
            field("token", t.clone());
        }
    }
    if let Some(ttl) = ev.ttl_seconds {
        field("ttl", format!("{ttl}s"));
    }
    if let Some(s) = &ev.scopes {
        field("scopes", s.join(" "));
    }
    if let Some(a) = &ev.audience {
        field("audience", a.clone());
    }
    if let Some(ip) = &ev.source_ip {
        field("source ip", ip.clone());
    }
    if let Some(e) = &ev.error {
        field("error", format!("{}: {}", e.code, e.message));
    }
    if let Some(d) = ev.detail.as_ref().and_then(|d| d.as_object()) {
        for key in CREDENTIAL_DETAIL_KEYS {
            if let Some(v) = d.get(*key).filter(|v| !v.is_null()) {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                field(key, text);
            }
        }
    }
    if super::activated_version(ev).is_some() {
        field("approvers", approvers(ev).join(", "));
    }
}

/// `detail` keys that name the credential or account an issuer created;
/// shown so the trace says *what* was handed out, not just its fingerprint.
const CREDENTIAL_DETAIL_KEYS: &[&str] = &[
    "serial",
    "revocation",
    "principals",
    "account",
    "username",
    "access_key_id",
    "role_session_name",
    "session_name",
    "new_version",
    "author",
];

fn approvers(ev: &AuditEvent) -> Vec<String> {
    ev.detail
        .as_ref()
        .and_then(|d| d.get("approvers"))
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
