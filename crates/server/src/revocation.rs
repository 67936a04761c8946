//! Revoking one lease: through its issuer, then in the store, then audited.
//! Shared by the API (`leases revoke`) and the [`crate::reaper::LeaseReaper`].

use crate::metrics::Metrics;
use crate::state::AppState;
use idmint_audit::{AuditErrorInfo, AuditEvent};
use idmint_core::{Lease, LeaseState, UnixTime};
use std::time::Duration;

#[derive(Debug)]
pub enum RevokeError {
    /// The issuer could not revoke; the lease stays live for a retry.
    Issuer(String),
    Store(String),
    Audit,
    UnknownIssuer(String),
}

impl std::fmt::Display for RevokeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RevokeError::Issuer(e) => write!(f, "the issuer failed to revoke the credential: {e}"),
            RevokeError::Store(e) => write!(f, "the store failed: {e}"),
            RevokeError::Audit => f.write_str("the audit log cannot be written"),
            RevokeError::UnknownIssuer(i) => write!(
                f,
                "issuer {i:?} is no longer configured, so the credential cannot be revoked"
            ),
        }
    }
}

/// Why a lease is being revoked; becomes the audit event name.
#[derive(Debug, Clone, Copy)]
pub enum RevokeReason {
    Requested,
    Expired,
}

/// Exponential backoff for failed revocations: 5s, 10s, 20s … capped at 10m.
pub fn backoff(attempts: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << attempts.min(7));
    Duration::from_secs(secs.min(600))
}

pub async fn revoke(
    state: &AppState,
    lease: &Lease,
    reason: RevokeReason,
    request_id: Option<&str>,
    actor: Option<&str>,
) -> Result<Lease, RevokeError> {
    let issuer = state
        .issuers
        .get(&lease.issuer)
        .ok_or_else(|| RevokeError::UnknownIssuer(lease.issuer.clone()))?;
    if let Err(e) = issuer.revoke(&lease.revocation).await {
        Metrics::count(&state.metrics.revocations, "failure");
        return Err(RevokeError::Issuer(e.to_string()));
    }
    let changed = state
        .store
        .transition_lease(&lease.id, lease.state, LeaseState::Revoked, None, None)
        .await
        .map_err(|e| RevokeError::Store(e.to_string()))?;
    let mut out = lease.clone();
    out.state = LeaseState::Revoked;
    if !changed {
        // Someone else (another request or the reaper) got there first.
        return Ok(out);
    }
    Metrics::count(&state.metrics.revocations, "success");
    let event = AuditEvent {
        request_id: request_id.map(str::to_string),
        event: match reason {
            RevokeReason::Requested => "lease_revoked",
            RevokeReason::Expired => "lease_expired",
        }
        .into(),
        outcome: "success".into(),
        role: Some(lease.role.clone()),
        lease_id: Some(lease.id.to_string()),
        fingerprint: lease.fingerprint.clone(),
        token_id: (lease.revocation.kind == "token_id").then(|| lease.revocation.value.clone()),
        detail: Some(serde_json::json!({
            "principal": lease.principal,
            "revoked_by": actor,
            "lived_seconds": UnixTime::now().secs() - lease.created_at.secs(),
        })),
        ..Default::default()
    };
    state
        .audit
        .append(event)
        .await
        .map_err(|_| RevokeError::Audit)?;
    Ok(out)
}

/// A revocation someone asked for failed: the lease becomes due now, so the
/// reaper retries it with backoff instead of waiting for its natural expiry.
pub async fn retry_requested(state: &AppState, lease: &Lease, error: &str, max_attempts: u32) {
    let now = UnixTime::now();
    if lease.expires_at > now {
        let _ = state.store.extend_lease(&lease.id, now).await;
    }
    record_failure(state, lease, error, max_attempts).await;
}

/// Records a failed attempt; past the budget the lease is flagged
/// irrevocable, audited and logged at error level: never silently dropped.
pub async fn record_failure(state: &AppState, lease: &Lease, error: &str, max_attempts: u32) {
    let attempts = lease.attempts + 1;
    if attempts >= max_attempts {
        let _ = state
            .store
            .transition_lease(
                &lease.id,
                lease.state,
                LeaseState::Irrevocable,
                None,
                Some(error),
            )
            .await;
        tracing::error!(lease = %lease.id, role = %lease.role, error, "lease could not be revoked after {attempts} attempts: flagged irrevocable, operator action needed");
        let event = AuditEvent {
            event: "revoke_failed".into(),
            outcome: "error".into(),
            role: Some(lease.role.clone()),
            lease_id: Some(lease.id.to_string()),
            fingerprint: lease.fingerprint.clone(),
            error: Some(AuditErrorInfo {
                code: "irrevocable".into(),
                message: error.to_string(),
            }),
            ..Default::default()
        };
        let _ = state.audit.append(event).await;
    } else {
        let next = UnixTime::now().plus(backoff(attempts));
        let _ = state
            .store
            .record_revoke_failure(&lease.id, next, error)
            .await;
        tracing::warn!(lease = %lease.id, attempt = attempts, error, "revocation failed; will retry");
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;
    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0).as_secs(), 5);
        assert_eq!(backoff(1).as_secs(), 10);
        assert_eq!(backoff(3).as_secs(), 40);
        assert_eq!(backoff(50).as_secs(), 600);
    }
}
