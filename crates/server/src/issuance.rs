//! The issuance path shared by `POST /api/v1/creds/{role}` and RFC 8693
//! token exchange: decision → narrowing → write-ahead lease → mint → audit.
//!
//! Invariant: a credential leaves this module only after (1) its lease row
//! exists and (2) its audit event is durable. Any failure after minting
//! revokes what was minted before the error is returned.

use crate::audit_events::{audit_identity, decision_of};
use crate::state::AppState;
use idmint_audit::{AuditErrorInfo, AuditEvent};
use idmint_core::role::{Grant, GrantRequest, NarrowError};
use idmint_core::{
    Decision, Identity, Lease, LeaseId, LeaseState, RequestContext, RequestId, UnixTime,
};
use idmint_issuers::{IssueError, IssueRequest, Minted};
use std::net::IpAddr;
use std::time::Instant;

/// One issuance request, already authenticated.
pub struct IssueInput<'a> {
    pub identity: &'a Identity,
    pub role: &'a str,
    pub request: GrantRequest,
    pub source_ip: Option<IpAddr>,
    pub request_id: &'a RequestId,
    /// The idmint session the caller used, for audit trace.
    pub session_token_id: Option<&'a str>,
    /// RFC 8693 `act` claim.
    pub actor: Option<serde_json::Value>,
    /// Audit event name: `credential_issued` or `token_exchange`.
    pub event: &'static str,
    /// The verified public key of the request's CSR (`x509` roles only).
    pub csr: Option<idmint_authn::mtls::csr::CsrPublicKey>,
}

pub struct IssueOutcome {
    pub lease: Lease,
    pub minted: Minted,
    pub grant: Grant,
    pub decision: Decision,
    pub fingerprint: String,
}

/// Why issuance failed; each entry point renders it in its own error format.
#[derive(Debug)]
pub enum IssueFailure {
    UnknownRole(String),
    Denied(Decision),
    Narrow(NarrowError),
    Issuer(IssueError),
    Store(String),
    Audit,
    Internal(String),
    /// An anomaly signal requires a second admin's approval first
    /// (`[[anomaly.rule]] action = "require_approval"`).
    ApprovalRequired {
        id: String,
        signals: Vec<String>,
        expires_at: i64,
    },
}

impl IssueFailure {
    fn code(&self) -> &'static str {
        match self {
            IssueFailure::UnknownRole(_) => "unknown_role",
            IssueFailure::Denied(_) => "policy_denied",
            IssueFailure::Narrow(NarrowError::ScopeNotAllowed(..)) => "invalid_scope",
            IssueFailure::Narrow(_) => "invalid_target",
            IssueFailure::Issuer(e) => e.api_code().unwrap_or("issuer_failed"),
            IssueFailure::Store(_) => "store_unavailable",
            IssueFailure::Audit => "audit_unavailable",
            IssueFailure::Internal(_) => "internal",
            IssueFailure::ApprovalRequired { .. } => "approval_required",
        }
    }
    pub fn message(&self) -> String {
        match self {
            IssueFailure::UnknownRole(r) => format!("role {r:?} does not exist in the active policy bundle; list roles in your policy's roles.toml"),
            IssueFailure::Denied(d) => format!("policy denied issuing this role: {}", d.explain()),
            IssueFailure::Narrow(e) => e.to_string(),
            IssueFailure::Issuer(e) => e.to_string(),
            IssueFailure::Store(e) => format!("the idmint store failed: {e}; retry later"),
            IssueFailure::Audit => "the audit log cannot be written, so no credential was issued; an operator must fix the audit sink".into(),
            IssueFailure::Internal(e) => e.clone(),
            IssueFailure::ApprovalRequired { id, signals, expires_at } => format!(
                "this request raised anomaly signals ({}) that need a second admin's approval: approval {id}; ask an admin other than you to run `idmint approvals approve {id}` before {}, then retry",
                signals.join(", "),
                idmint_core::UnixTime(*expires_at).rfc3339()
            ),
        }
    }
}

pub async fn issue(state: &AppState, input: IssueInput<'_>) -> Result<IssueOutcome, IssueFailure> {
    let started = Instant::now();
    let bundle = state.bundle.load_full();
    let now = UnixTime::now();
    let mut base = AuditEvent {
        request_id: Some(input.request_id.to_string()),
        event: input.event.to_string(),
        identity: Some(audit_identity(input.identity)),
        action: Some("issue".into()),
        role: Some(input.role.to_string()),
        source_ip: input.source_ip.map(|i| i.to_string()),
        detail: input
            .session_token_id
            .map(|t| serde_json::json!({ "session_token_id": t })),
        ..Default::default()
    };

    let Some(role) = bundle.role(input.role) else {
        let f = IssueFailure::UnknownRole(input.role.to_string());
        audit_failure(state, &base, "denied", &f).await?;
        return Err(f);
    };
    let Some(issuer) = state.issuers.get(&role.issuer).cloned() else {
        let f = IssueFailure::Internal(format!(
            "role {:?} names issuer {:?}, which is not configured in idmint.toml",
            role.name, role.issuer
        ));
        audit_failure(state, &base, "error", &f).await?;
        return Err(f);
    };
    if input.csr.is_some() && issuer.kind() != "x509" {
        let f = IssueFailure::Issuer(IssueError::Refused {
            code: "csr_not_applicable",
            message: format!(
                "a csr only applies to x509 roles; role {:?} is issued by the {} issuer {:?}: drop --csr",
                role.name,
                issuer.kind(),
                role.issuer
            ),
        });
        audit_failure(state, &base, "denied", &f).await?;
        return Err(f);
    }

    let ctx = RequestContext {
        ttl_seconds: input
            .request
            .ttl
            .unwrap_or_else(|| role.default_ttl())
            .as_secs(),
        scopes: input
            .request
            .scopes
            .clone()
            .unwrap_or_else(|| role.scopes.clone()),
        audience: input
            .request
            .audience
            .clone()
            .or_else(|| role.audiences.first().cloned()),
        source_ip: input.source_ip,
        now: now.secs(),
        host: None,
    };
    let decision = bundle.evaluate(input.identity, "issue", Some(role), &ctx);
    base.decision = Some(decision_of(&decision));
    if !decision.allowed {
        crate::metrics::Metrics::count(&state.metrics.decisions, "deny");
        let f = IssueFailure::Denied(decision);
        audit_failure(state, &base, "denied", &f).await?;
        return Err(f);
    }
    crate::metrics::Metrics::count(&state.metrics.decisions, "allow");

    let grant = match role.narrow(&input.request, decision.ttl_cap) {
        Ok(g) => g,
        Err(e) => {
            let f = IssueFailure::Narrow(e);
            audit_failure(state, &base, "denied", &f).await?;
            return Err(f);
        }
    };
    base.ttl_seconds = Some(grant.ttl.as_secs());
    base.scopes = Some(grant.scopes.clone());
    base.audience = grant.audience.clone();

    // Anomaly signals, for requests policy allows and narrowing accepts:
    // audited, or held for a second admin's approval.
    let screen = crate::anomaly::Screen {
        identity: input.identity,
        role: &role.name,
        source_ip: input.source_ip,
        request_id: input.request_id.as_str(),
    };
    if let Err(f) = crate::anomaly::screen(state, &screen).await {
        audit_failure(state, &base, "denied", &f).await?;
        return Err(f);
    }

    let lease_id = LeaseId::generate().map_err(|e| IssueFailure::Internal(e.to_string()))?;
    base.lease_id = Some(lease_id.to_string());
    let plan = idmint_issuers::PlanRequest {
        lease_id: &lease_id,
        role,
        identity: input.identity,
    };
    let revocation = match issuer.plan(&plan) {
        Ok(h) => h,
        Err(e) => {
            let f = IssueFailure::Issuer(e);
            audit_failure(state, &base, "error", &f).await?;
            return Err(f);
        }
    };
    if revocation.kind == "token_id" {
        base.token_id = Some(revocation.value.clone());
    }
    // The handle names what the issuer creates (database user, AWS role
    // session, key id…), never a secret; recording it lets
    // `idmint audit trace <db user>` find this chain.
    let handle = serde_json::json!({ "kind": revocation.kind, "value": revocation.value });
    match &mut base.detail {
        Some(serde_json::Value::Object(d)) => {
            d.insert("revocation".into(), handle);
        }
        _ => base.detail = Some(serde_json::json!({ "revocation": handle })),
    }
    let expires_at = now
        .plus(grant.ttl.as_duration())
        .min(input.identity.expires_at);
    let mut lease = Lease {
        id: lease_id.clone(),
        request_id: input.request_id.clone(),
        role: role.name.clone(),
        issuer: role.issuer.clone(),
        principal: input.identity.principal_key(),
        policy_version: bundle.version,
        created_at: now,
        expires_at,
        state: LeaseState::Pending,
        revocation: revocation.clone(),
        fingerprint: None,
        attempts: 0,
        next_attempt_at: now,
        last_error: None,
    };
    // Write-ahead: the lease exists before anything is created at the target.
    let write_ahead = issuer.mints_externally();
    if write_ahead {
        if let Err(e) = state.store.insert_lease(&lease).await {
            let f = IssueFailure::Store(e.to_string());
            audit_failure(state, &base, "error", &f).await?;
            return Err(f);
        }
    }

    let req = IssueRequest {
        lease_id: &lease_id,
        request_id: input.request_id,
        identity: input.identity,
        role,
        grant: &grant,
        policy_version: bundle.version,
        now,
        actor: input.actor.clone(),
        revocation: &revocation,
        csr: input.csr.as_ref(),
    };
    let minted = match issuer.issue(&req).await {
        Ok(m) => m,
        Err(e) => {
            // The issuer refused this caller (a static secret outside
            // `idmint proxy`): a denial, not a failure.
            let outcome = if matches!(e, IssueError::Refused { .. }) {
                "denied"
            } else {
                "error"
            };
            // Whatever the target may have half-created is revoked now, and
            // the lease stays pending: a statement that timed out here can
            // still complete at the target later, so the reaper revokes
            // again once `pending_grace` has passed (revocation is
            // idempotent). Nothing is ever forgotten.
            if write_ahead {
                let _ = issuer.revoke(&revocation).await;
                let _ = state
                    .store
                    .transition_lease(
                        &lease_id,
                        LeaseState::Pending,
                        LeaseState::Pending,
                        None,
                        Some(&format!("minting failed: {e}")),
                    )
                    .await;
            }
            let f = IssueFailure::Issuer(e);
            audit_failure(state, &base, outcome, &f).await?;
            return Err(f);
        }
    };
    let fingerprint = state
        .fingerprints
        .fingerprint(minted.secret_material.expose());
    lease.fingerprint = Some(fingerprint.clone());
    if !write_ahead {
        // Nothing exists outside this process yet: record the lease, already
        // active, before the credential can leave.
        lease.state = LeaseState::Active;
        if let Err(e) = state.store.insert_lease(&lease).await {
            let f = IssueFailure::Store(e.to_string());
            audit_failure(state, &base, "error", &f).await?;
            return Err(f);
        }
    }
    base.fingerprint = Some(fingerprint.clone());
    base.outcome = "success".into();
    let mut event = base;
    if let Some(serde_json::Value::Object(d)) = &mut event.detail {
        d.insert("expires_at".into(), expires_at.secs().into());
    } else {
        event.detail = Some(serde_json::json!({ "expires_at": expires_at.secs() }));
    }
    // Fail closed: no durable audit event, no credential.
    if state.audit.append(event).await.is_err() {
        let _ = issuer.revoke(&revocation).await;
        let _ = state
            .store
            .transition_lease(
                &lease_id,
                lease.state,
                LeaseState::Revoked,
                None,
                Some("audit log unavailable at issuance"),
            )
            .await;
        return Err(IssueFailure::Audit);
    }
    if write_ahead {
        mark_active(state, &mut lease, &fingerprint).await;
    }
    state
        .metrics
        .issuance_seconds
        .get_or_create(&crate::metrics::IssuerLabel {
            issuer: role.issuer.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    Ok(IssueOutcome {
        lease,
        minted,
        grant,
        decision,
        fingerprint,
    })
}

/// Audits a failed issuance. If even that cannot be written, the failure
/// becomes an audit failure (503): the caller must learn the log is down.
/// Moves a write-ahead lease from pending to active once its credential is
/// audited. A store failure is only logged: the credential is audited and
/// its lease row exists (pending), so the reaper still revokes it at
/// expiry, and the credential can be handed out.
pub(crate) async fn mark_active(state: &AppState, lease: &mut Lease, fingerprint: &str) {
    match state
        .store
        .transition_lease(
            &lease.id,
            LeaseState::Pending,
            LeaseState::Active,
            Some(fingerprint),
            None,
        )
        .await
    {
        Ok(_) => lease.state = LeaseState::Active,
        Err(e) => {
            tracing::warn!(lease = %lease.id, error = %e, "lease activation failed; it stays pending and is reaped at expiry")
        }
    }
}

async fn audit_failure(
    state: &AppState,
    base: &AuditEvent,
    outcome: &str,
    failure: &IssueFailure,
) -> Result<(), IssueFailure> {
    let mut ev = base.clone();
    if ev.event == "credential_issued" {
        ev.event = if matches!(failure, IssueFailure::Denied(_)) {
            "decision".into()
        } else {
            "issue_failed".into()
        };
    }
    ev.outcome = outcome.to_string();
    ev.error = Some(AuditErrorInfo {
        code: failure.code().to_string(),
        message: failure.message(),
    });
    state
        .audit
        .append(ev)
        .await
        .map(|_| ())
        .map_err(|_| IssueFailure::Audit)
}
