//! `POST /api/v1/ssh/sign/{role}`: a certificate for a certificate-mode
//! role's static principals. No agent and no account, so nothing exists
//! outside idmint until the response leaves: the lease is written once,
//! after signing (like oauth tokens). The hot path reads no store: the
//! session token opens in memory, the role and policy come from the loaded
//! bundle; it writes the lease row and the audit event, nothing else.

use super::session::{
    audited, bounded_expiry, certificate_detail, narrowed, screened, source_cidr,
};
use crate::audit_events::{audit_identity, decision_of};
use crate::error::ApiError;
use crate::routes::login::parse_ttl;
use crate::state::AppState;
use idmint_audit::AuditEvent;
use idmint_core::role::SshMode;
use idmint_core::{
    Identity, Lease, LeaseId, LeaseState, RequestContext, RequestId, RevocationHandle, UnixTime,
};
use idmint_issuers::ssh::{Ed25519PublicKey, UserCertRequest, SSH_CERT_HANDLE};
use idmint_proto::ssh::{SshSignRequest, SshSignResponse};
use std::net::IpAddr;

pub struct SignInput<'a> {
    pub identity: &'a Identity,
    pub role: &'a str,
    pub request: SshSignRequest,
    pub source_ip: IpAddr,
    pub request_id: &'a RequestId,
    pub session_token_id: &'a str,
}

pub async fn sign(state: &AppState, input: SignInput<'_>) -> Result<SshSignResponse, ApiError> {
    let started = std::time::Instant::now();
    let mut base = AuditEvent {
        request_id: Some(input.request_id.to_string()),
        event: "ssh_certificate_issued".into(),
        identity: Some(audit_identity(input.identity)),
        action: Some("issue".into()),
        role: Some(input.role.chars().take(128).collect()),
        source_ip: Some(input.source_ip.to_string()),
        detail: Some(serde_json::json!({ "session_token_id": input.session_token_id })),
        ..Default::default()
    };
    let key = match Ed25519PublicKey::parse_openssh(&input.request.public_key) {
        Ok(k) => k,
        Err(e) => {
            let err = ApiError::bad_request("invalid_public_key", e.to_string());
            return Err(audited(state, &base, "denied", err).await);
        }
    };
    let ttl = match parse_ttl(input.request.ttl.as_deref()) {
        Ok(t) => t,
        Err(e) => return Err(audited(state, &base, "denied", e).await),
    };
    let bundle = state.bundle.load_full();
    let Some(role) = bundle.role(input.role) else {
        let err = ApiError::not_found(
            "unknown_role",
            format!(
                "role {:?} does not exist in the active policy bundle",
                base.role.as_deref().unwrap_or_default()
            ),
        );
        return Err(audited(state, &base, "denied", err).await);
    };
    let template = role.ssh.as_ref().filter(|t| t.mode == SshMode::Certificate);
    let (Some(template), Some(service)) = (template, state.ssh.service(&role.issuer)) else {
        let err = ApiError::bad_request("wrong_role", format!(
            "role {:?} is not a certificate-mode ssh role; for just-in-time accounts use `idmint ssh {}@HOST`",
            role.name, role.name
        ));
        return Err(audited(state, &base, "denied", err).await);
    };
    let now = UnixTime::now();
    let ctx = RequestContext {
        ttl_seconds: ttl.unwrap_or_else(|| role.default_ttl()).as_secs(),
        source_ip: Some(input.source_ip),
        now: now.secs(),
        ..Default::default()
    };
    let decision = bundle.evaluate(input.identity, "issue", Some(role), &ctx);
    base.decision = Some(decision_of(&decision));
    if !decision.allowed {
        crate::metrics::Metrics::count(&state.metrics.decisions, "deny");
        base.event = "decision".into();
        let err = ApiError::forbidden(
            "policy_denied",
            format!("policy denied issuing this role: {}", decision.explain()),
        );
        return Err(audited(state, &base, "denied", err).await);
    }
    crate::metrics::Metrics::count(&state.metrics.decisions, "allow");
    let grant = narrowed(state, &mut base, role, ttl, decision.ttl_cap).await?;
    screened(
        state,
        &base,
        input.identity,
        role,
        input.source_ip,
        input.request_id,
    )
    .await?;
    let expires_at = bounded_expiry(state, &base, now, &grant, input.identity).await?;
    let lease_id = LeaseId::generate().map_err(|e| ApiError::internal(e.to_string()))?;
    base.lease_id = Some(lease_id.to_string());
    let key_id = format!("{} {}", input.request_id, input.identity.subject);
    let cert = service.authority.sign_user(&UserCertRequest {
        key: &key,
        key_id: &key_id,
        principals: &template.principals,
        now: now.secs(),
        expires_at: expires_at.secs(),
        force_command: template.force_command.as_deref(),
        source_address: template
            .bind_source_address
            .then(|| source_cidr(input.source_ip)),
        extensions: &template.extensions,
    });
    let cert = match cert {
        Ok(c) => c,
        Err(e) => {
            return Err(audited(state, &base, "error", ApiError::internal(e.to_string())).await)
        }
    };
    let fingerprint = state.fingerprints.fingerprint(&cert.certificate.blob);
    base.fingerprint = Some(fingerprint.clone());
    let lease = Lease {
        id: lease_id.clone(),
        request_id: input.request_id.clone(),
        role: role.name.clone(),
        issuer: role.issuer.clone(),
        principal: input.identity.principal_key(),
        policy_version: bundle.version,
        created_at: now,
        expires_at,
        state: LeaseState::Active,
        revocation: RevocationHandle {
            kind: SSH_CERT_HANDLE.to_string(),
            value: cert.serial.to_string(),
        },
        fingerprint: Some(fingerprint.clone()),
        attempts: 0,
        next_attempt_at: now,
        last_error: None,
    };
    if let Err(e) = state.store.insert_lease(&lease).await {
        return Err(audited(state, &base, "error", ApiError::store_unavailable(e)).await);
    }
    base.outcome = "success".into();
    base.detail = Some(certificate_detail(
        input.session_token_id,
        "",
        &template.principals,
        &cert,
        &key,
        template,
        expires_at,
    ));
    if let Some(serde_json::Value::Object(d)) = &mut base.detail {
        d.remove("host");
        d.remove("sudo");
    }
    if state.audit.append(base).await.is_err() {
        let _ = state
            .store
            .transition_lease(
                &lease_id,
                LeaseState::Active,
                LeaseState::Revoked,
                None,
                Some("audit log unavailable at issuance"),
            )
            .await;
        return Err(ApiError::audit_unavailable());
    }
    state
        .metrics
        .issuance_seconds
        .get_or_create(&crate::metrics::IssuerLabel {
            issuer: role.issuer.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    Ok(SshSignResponse {
        lease_id: lease_id.to_string(),
        request_id: input.request_id.to_string(),
        role: role.name.clone(),
        certificate: cert.certificate.line,
        principals: template.principals.clone(),
        serial: cert.serial,
        valid_after: i64::try_from(cert.valid_after).unwrap_or(i64::MAX),
        valid_before: i64::try_from(cert.valid_before).unwrap_or(i64::MAX),
        policy_version: bundle.version,
        fingerprint,
        key_fingerprint: key.fingerprint(),
    })
}
