//! A structured summary of a traced chain, for `idmint audit trace -o json`:
//! the links a reviewer follows — proof, identity, decision, the policy
//! version and its approvers, what was handed out, and how it ended.

use super::activated_version;
use crate::event::{kinds, outcomes, AuditEvent};
use serde::Serialize;
use serde_json::Value;

/// The chain behind one credential, each link with the seq it came from.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TraceSummary {
    pub identity: Option<IdentityLink>,
    pub decision: Option<DecisionLink>,
    /// Every policy activation of a version the chain's decisions used.
    pub policies: Vec<PolicyLink>,
    pub credential: Option<CredentialLink>,
    /// The lease or session end event, if the log has it.
    pub end: Option<EndLink>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IdentityLink {
    pub seq: u64,
    pub subject: String,
    pub issuer: String,
    pub kind: String,
    pub method: String,
    pub auth: String,
    pub proof_id: String,
    /// The session token the login created, when the link is a login.
    pub session_token_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DecisionLink {
    pub seq: u64,
    pub allowed: bool,
    pub policy_ids: Vec<String>,
    pub bundle_version: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PolicyLink {
    pub seq: u64,
    pub event: String,
    pub version: u64,
    pub author: Option<String>,
    pub approvers: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CredentialLink {
    pub seq: u64,
    pub event: String,
    pub role: Option<String>,
    pub fingerprint: Option<String>,
    pub lease_id: Option<String>,
    pub token_id: Option<String>,
    /// Issuer-specific names from `detail` (serial, account, username,
    /// access key id, …), verbatim.
    pub references: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EndLink {
    pub seq: u64,
    pub event: String,
    pub outcome: String,
}

/// `detail` keys copied into [`CredentialLink::references`].
const REFERENCE_KEYS: &[&str] = &[
    "serial",
    "revocation",
    "principals",
    "account",
    "username",
    "access_key_id",
    "role_session_name",
    "session_name",
    "session_token_id",
];

/// Summarizes a chain returned by [`super::trace_file`].
pub fn summarize(events: &[AuditEvent]) -> TraceSummary {
    let identity = events
        .iter()
        .find(|e| e.event == kinds::LOGIN && e.identity.is_some())
        .or_else(|| events.iter().find(|e| e.identity.is_some()))
        .and_then(|e| {
            e.identity.as_ref().map(|id| IdentityLink {
                seq: e.seq,
                subject: id.subject.clone(),
                issuer: id.issuer.clone(),
                kind: id.kind.clone(),
                method: id.method.clone(),
                auth: id.auth.clone(),
                proof_id: id.proof_id.clone(),
                session_token_id: (e.event == kinds::LOGIN)
                    .then(|| e.token_id.clone())
                    .flatten(),
            })
        });
    let decision = events.iter().rev().find_map(|e| {
        e.decision.as_ref().map(|d| DecisionLink {
            seq: e.seq,
            allowed: d.allowed,
            policy_ids: d.policy_ids.clone(),
            bundle_version: d.bundle_version,
        })
    });
    let policies = events
        .iter()
        .filter_map(|e| {
            let version = activated_version(e)?;
            let detail = e.detail.as_ref();
            Some(PolicyLink {
                seq: e.seq,
                event: e.event.clone(),
                version,
                author: detail
                    .and_then(|d| d.get("author"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
                approvers: detail
                    .and_then(|d| d.get("approvers"))
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect();
    let credential = events
        .iter()
        .find(|e| {
            e.outcome == outcomes::SUCCESS
                && (e.fingerprint.is_some() || e.lease_id.is_some())
                && e.event != kinds::LOGIN
        })
        .map(|e| CredentialLink {
            seq: e.seq,
            event: e.event.clone(),
            role: e.role.clone(),
            fingerprint: e.fingerprint.clone(),
            lease_id: e.lease_id.clone(),
            token_id: e.token_id.clone(),
            references: e
                .detail
                .as_ref()
                .and_then(Value::as_object)
                .map(|d| {
                    d.iter()
                        .filter(|(k, v)| REFERENCE_KEYS.contains(&k.as_str()) && !v.is_null())
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default(),
        });
    let end = events
        .iter()
        .rev()
        .find(|e| {
            matches!(
                e.event.as_str(),
                kinds::LEASE_REVOKED
                    | kinds::LEASE_EXPIRED
                    | kinds::REVOKE_FAILED
                    | kinds::SESSION_REVOKED
            )
        })
        .map(|e| EndLink {
            seq: e.seq,
            event: e.event.clone(),
            outcome: e.outcome.clone(),
        });
    TraceSummary {
        identity,
        decision,
        policies,
        credential,
        end,
    }
}
