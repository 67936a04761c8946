//! Conversions from domain values to audit records.

use idmint_audit::{AuditDecision, AuditIdentity};
use idmint_core::{Decision, Identity};

pub fn audit_identity(i: &Identity) -> AuditIdentity {
    AuditIdentity {
        subject: i.subject.clone(),
        issuer: i.issuer.clone(),
        method: i.method.clone(),
        auth: i.auth.clone(),
        kind: i.kind.as_str().to_string(),
        claims_used: i.attributes.clone(),
        proof_id: i.proof_id.clone(),
    }
}

pub fn decision_of(d: &Decision) -> AuditDecision {
    AuditDecision {
        allowed: d.allowed,
        policy_ids: d.policy_ids.clone(),
        bundle_version: d.bundle_version,
        errors: d.errors.clone(),
    }
}
