//! Revoking one lease: through its issuer, then in the store, then audited.
//! Shared by the API (`leases revoke`) and the [`crate::reaper::LeaseReaper`].

use crate::metrics::Metrics;
use crate::state::AppState;
use idmint_audit::{AuditErrorInfo, AuditEvent};
use idmint_core::{Lease, LeaseId, LeaseState, UnixTime};
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
    state
        .audit
        .append(revoked_event(lease, reason, request_id, actor))
        .await
        .map_err(|_| RevokeError::Audit)?;
    Ok(out)
}

/// The audit event of one revocation, the same whether it was revoked alone
/// ([`revoke`]) or in a batch ([`revoke_local_batch`]).
fn revoked_event(
    lease: &Lease,
    reason: RevokeReason,
    request_id: Option<&str>,
    actor: Option<&str>,
) -> AuditEvent {
    AuditEvent {
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
    }
}

/// Whether revoking `lease` involves nothing outside idmint: its issuer
/// mints self-contained credentials (signed tokens, certificates, static
/// secrets: [`idmint_issuers::Issuer::mints_externally`] is false), whose
/// revocation only marks the lease. Such leases can be revoked in bulk by
/// [`revoke_local_batch`]; the others need one call to their target each.
pub fn revokes_locally(state: &AppState, lease: &Lease) -> bool {
    state
        .issuers
        .get(&lease.issuer)
        .is_some_and(|issuer| !issuer.mints_externally())
}

/// Revokes many leases whose revocation is local ([`revokes_locally`]) at
/// once: each issuer's `revoke` (which contacts nothing), then **one** store
/// write that moves all of them to `revoked` (per-lease compare-and-set, so
/// a lease revoked meanwhile by an API call or another server is left
/// alone and not audited twice), then one audit event per lease that
/// changed, appended as one durable batch. Same order and guarantees as
/// [`revoke`] one by one — the store change is durable before its event is
/// written, and a lease counts as revoked only once its event is durable —
/// at the cost of two fsyncs per batch instead of per lease.
///
/// Every failure is recorded per lease with [`record_failure`] (retry with
/// backoff, then `irrevocable`), as the reaper does for [`revoke`]. Returns
/// how many leases are done: revoked here, or found already revoked.
pub async fn revoke_local_batch(
    state: &AppState,
    leases: &[Lease],
    reason: RevokeReason,
    actor: Option<&str>,
    max_attempts: u32,
) -> usize {
    if leases.is_empty() {
        return 0;
    }
    // Local revocations contact nothing and return at once (that is what
    // `revokes_locally` selects), so awaiting them in turn costs nothing.
    let mut ready = Vec::with_capacity(leases.len());
    for lease in leases {
        let outcome = match state.issuers.get(&lease.issuer) {
            None => Err(RevokeError::UnknownIssuer(lease.issuer.clone())),
            Some(issuer) => issuer.revoke(&lease.revocation).await.map_err(|e| {
                Metrics::count(&state.metrics.revocations, "failure");
                RevokeError::Issuer(e.to_string())
            }),
        };
        match outcome {
            Ok(()) => ready.push(lease),
            Err(e) => record_failure(state, lease, &e.to_string(), max_attempts).await,
        }
    }
    if ready.is_empty() {
        return 0;
    }

    let transitions: Vec<(LeaseId, LeaseState)> = ready
        .iter()
        .map(|lease| (lease.id.clone(), lease.state))
        .collect();
    let changed = match state
        .store
        .transition_leases(&transitions, LeaseState::Revoked)
        .await
    {
        Ok(changed) if changed.len() == ready.len() => changed,
        Ok(changed) => {
            let e = RevokeError::Store(format!(
                "the store answered {} results for {} leases",
                changed.len(),
                ready.len()
            ));
            for lease in &ready {
                record_failure(state, lease, &e.to_string(), max_attempts).await;
            }
            return 0;
        }
        Err(e) => {
            let e = RevokeError::Store(e.to_string()).to_string();
            for lease in &ready {
                record_failure(state, lease, &e, max_attempts).await;
            }
            return 0;
        }
    };

    // Leases another revoker got to first are done, with no second event.
    let mut done = changed.iter().filter(|c| !**c).count();
    let revoked: Vec<&Lease> = ready
        .iter()
        .zip(&changed)
        .filter(|(_, changed)| **changed)
        .map(|(lease, _)| *lease)
        .collect();
    if revoked.is_empty() {
        return done;
    }
    for _ in &revoked {
        Metrics::count(&state.metrics.revocations, "success");
    }
    let events = revoked
        .iter()
        .map(|lease| revoked_event(lease, reason, None, actor))
        .collect();
    match state.audit.append_all(events).await {
        Ok(results) => {
            for (lease, result) in revoked.iter().zip(results) {
                match result {
                    Ok(_) => done += 1,
                    Err(_) => {
                        let e = RevokeError::Audit.to_string();
                        record_failure(state, lease, &e, max_attempts).await;
                    }
                }
            }
        }
        Err(_) => {
            let e = RevokeError::Audit.to_string();
            for lease in &revoked {
                record_failure(state, lease, &e, max_attempts).await;
            }
        }
    }
    done
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
