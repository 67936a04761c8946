//! `POST /api/v1/ssh/sessions`: a one-time certificate and a just-in-time
//! account on one host.
//!
//! Order (each step audited; a failure after the lease is written always
//! withdraws the grant so the agent removes whatever it created):
//! resolve host → parse key → pick role (explicit or the single permitted
//! one) → host selector → Cedar with the host in context → narrow TTL →
//! audit the decision → agent connected? → write-ahead lease (pending) →
//! sign → publish the grant → wait for `AccountReady` → audit the
//! certificate (fail closed) → lease active → respond.

use super::{HostEntry, SshService};
use crate::audit_events::{audit_identity, decision_of};
use crate::error::ApiError;
use crate::routes::login::parse_ttl;
use crate::state::AppState;
use idmint_audit::{AuditErrorInfo, AuditEvent};
use idmint_core::role::{SshMode, SshTemplate};
use idmint_core::{
    Decision, Grant, GrantRequest, HostContext, Identity, Lease, LeaseId, LeaseState,
    RequestContext, RequestId, RevocationHandle, Role, Ttl, UnixTime,
};
use idmint_issuers::ssh::{
    account_for_lease, Ed25519PublicKey, UserCertRequest, SSH_ACCOUNT_HANDLE,
};
use idmint_proto::ssh::{HostGrant, SshSessionRequest, SshSessionResponse};
use serde_json::{json, Value};
use std::net::IpAddr;

/// An authenticated session request.
pub struct SessionInput<'a> {
    pub identity: &'a Identity,
    pub request: SshSessionRequest,
    pub source_ip: IpAddr,
    pub request_id: &'a RequestId,
    pub session_token_id: &'a str,
}

/// Audits `err` on top of `base` and returns it; if even the audit fails,
/// the caller learns that instead (fail closed).
pub(crate) async fn audited(
    state: &AppState,
    base: &AuditEvent,
    outcome: &str,
    err: ApiError,
) -> ApiError {
    let mut ev = base.clone();
    ev.outcome = outcome.to_string();
    ev.error = Some(AuditErrorInfo {
        code: err.code.to_string(),
        message: err.message.clone(),
    });
    if state.audit.append(ev).await.is_err() {
        return ApiError::audit_unavailable();
    }
    err
}

/// `role` narrowed to the requested `ttl` under the policy's `ttl_cap`,
/// recorded in `base`; a request the role cannot satisfy is audited as
/// denied.
pub(crate) async fn narrowed(
    state: &AppState,
    base: &mut AuditEvent,
    role: &Role,
    ttl: Option<Ttl>,
    ttl_cap: Option<Ttl>,
) -> Result<Grant, ApiError> {
    let request = GrantRequest {
        ttl,
        ..Default::default()
    };
    match role.narrow(&request, ttl_cap) {
        Ok(grant) => {
            base.ttl_seconds = Some(grant.ttl.as_secs());
            Ok(grant)
        }
        Err(e) => {
            let err = ApiError::bad_request("invalid_request", e.to_string());
            Err(audited(state, base, "denied", err).await)
        }
    }
}

/// The anomaly signals (`[anomaly]`) for an SSH issuance that policy
/// allowed, exactly as on the generic issuance path: audited, or refused
/// with `approval_required` until a second admin approves.
pub(crate) async fn screened(
    state: &AppState,
    base: &AuditEvent,
    identity: &Identity,
    role: &Role,
    source_ip: IpAddr,
    request_id: &RequestId,
) -> Result<(), ApiError> {
    let screen = crate::anomaly::Screen {
        identity,
        role: &role.name,
        source_ip: Some(source_ip),
        request_id: request_id.as_str(),
    };
    match crate::anomaly::screen(state, &screen).await {
        Ok(()) => Ok(()),
        Err(f) => {
            let err = crate::routes::login::issue_failure_to_api(f);
            Err(audited(state, base, "denied", err).await)
        }
    }
}

/// When a certificate for `grant` issued `now` expires: never after the
/// caller's proof does. A proof that already expired is audited as denied.
pub(crate) async fn bounded_expiry(
    state: &AppState,
    base: &AuditEvent,
    now: UnixTime,
    grant: &Grant,
    identity: &Identity,
) -> Result<UnixTime, ApiError> {
    let expires_at = now.plus(grant.ttl.as_duration()).min(identity.expires_at);
    if expires_at <= now {
        let err = ApiError::unauthorized(
            "token_expired",
            "the proof behind this session has expired; log in again",
        );
        return Err(audited(state, base, "denied", err).await);
    }
    Ok(expires_at)
}

/// `source-address` value for a caller's address.
pub(crate) fn source_cidr(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}/32"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("{v4}/32"),
            None => format!("{v6}/128"),
        },
    }
}

fn host_context(entry: &HostEntry) -> HostContext {
    HostContext {
        name: entry.config.name.clone(),
        labels: entry.config.labels.clone(),
    }
}

fn jit_template<'r>(role: &'r Role, service: &SshService) -> Option<&'r SshTemplate> {
    role.ssh
        .as_ref()
        .filter(|t| role.issuer == service.name() && t.mode == SshMode::Jit)
}

/// The role to use and Cedar's decision on it.
fn choose_role<'b>(
    bundle: &'b idmint_core::PolicyBundle,
    input: &SessionInput<'_>,
    service: &SshService,
    entry: &HostEntry,
    ctx_for: &dyn Fn(&Role) -> RequestContext,
) -> Result<(&'b Role, Decision), ApiError> {
    let host = &entry.config.name;
    if let Some(name) = &input.request.role {
        let role = bundle.role(name).ok_or_else(|| {
            ApiError::not_found(
                "unknown_role",
                format!("role {name:?} does not exist in the active policy bundle"),
            )
        })?;
        let template = match role.ssh.as_ref() {
            Some(t) if t.mode == SshMode::Certificate && role.issuer == service.name() => {
                return Err(ApiError::bad_request("wrong_role", format!(
                    "role {name:?} is a certificate-mode role (static principals, no account): use `idmint ssh sign {name}`"
                )))
            }
            _ => jit_template(role, service).ok_or_else(|| {
                ApiError::bad_request("wrong_role", format!(
                    "role {name:?} is not a just-in-time ssh role of issuer {:?}, which host {host:?} belongs to",
                    service.name()
                ))
            })?,
        };
        if let Some((key, want, found)) = template.unmatched_label(&entry.config.labels) {
            let found = found.map_or_else(
                || format!("has no label {key:?}"),
                |f| format!("has {key}={f}"),
            );
            return Err(ApiError::forbidden("host_not_allowed", format!(
                "role {name:?} may only be used on hosts labelled {key}={want}; host {host:?} {found}"
            )));
        }
        let decision = bundle.evaluate(input.identity, "issue", Some(role), &ctx_for(role));
        return Ok((role, decision));
    }
    let candidates: Vec<&Role> = bundle
        .roles
        .values()
        .filter(|r| {
            jit_template(r, service)
                .is_some_and(|t| t.unmatched_label(&entry.config.labels).is_none())
        })
        .collect();
    let mut permitted: Vec<(&Role, Decision)> = candidates
        .iter()
        .map(|r| {
            (
                *r,
                bundle.evaluate(input.identity, "issue", Some(r), &ctx_for(r)),
            )
        })
        .filter(|(_, d)| d.allowed)
        .collect();
    match permitted.len() {
        1 => Ok(permitted.remove(0)),
        0 => Err(ApiError::forbidden("policy_denied", format!(
            "no ssh role permits you a session on host {host:?} (roles for this host: {}; bundle v{})",
            if candidates.is_empty() { "none".to_string() } else { candidates.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ") },
            bundle.version
        ))),
        _ => Err(ApiError::bad_request("ambiguous_role", format!(
            "several ssh roles permit a session on host {host:?}: {}; choose one with ROLE@{host}",
            permitted.iter().map(|(r, _)| r.name.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Take the grant back after a failure. If the agent may have seen it, the
/// lease stays live and becomes due now, so the reaper revokes it through
/// the agent (confirmed removal); otherwise nothing exists and the lease is
/// revoked at once.
async fn abandon(state: &AppState, entry: &HostEntry, lease: &Lease, account: &str, why: &str) {
    entry.board.withdraw(account);
    if entry.board.was_delivered(account) {
        let _ = state.store.extend_lease(&lease.id, UnixTime::now()).await;
        let _ = state
            .store
            .record_revoke_failure(&lease.id, UnixTime::now(), why)
            .await;
    } else {
        entry.board.mark_removed(account, Some(why.to_string()));
        let _ = state
            .store
            .transition_lease(
                &lease.id,
                LeaseState::Pending,
                LeaseState::Revoked,
                None,
                Some(why),
            )
            .await;
    }
}

pub async fn open(
    state: &AppState,
    input: SessionInput<'_>,
) -> Result<SshSessionResponse, ApiError> {
    let req = &input.request;
    let mut base = AuditEvent {
        request_id: Some(input.request_id.to_string()),
        event: "ssh_grant_decided".into(),
        identity: Some(audit_identity(input.identity)),
        action: Some("ssh_session".into()),
        role: req.role.as_ref().map(|r| r.chars().take(128).collect()),
        source_ip: Some(input.source_ip.to_string()),
        detail: Some(json!({
            "session_token_id": input.session_token_id,
            "host": req.host.chars().take(253).collect::<String>(),
        })),
        ..Default::default()
    };
    let Some((service, entry)) = state.ssh.host(&req.host) else {
        let err = ApiError::not_found(
            "unknown_host",
            format!(
                "host {:?} is not configured in any [[issuer.ssh]] of this server",
                req.host.chars().take(253).collect::<String>()
            ),
        );
        return Err(audited(state, &base, "denied", err).await);
    };
    let key = match Ed25519PublicKey::parse_openssh(&req.public_key) {
        Ok(k) => k,
        Err(e) => {
            let err = ApiError::bad_request("invalid_public_key", e.to_string());
            return Err(audited(state, &base, "denied", err).await);
        }
    };
    let ttl = match parse_ttl(req.ttl.as_deref()) {
        Ok(t) => t,
        Err(e) => return Err(audited(state, &base, "denied", e).await),
    };
    let bundle = state.bundle.load_full();
    let now = UnixTime::now();
    let host_ctx = host_context(entry);
    let ctx_for = |role: &Role| RequestContext {
        ttl_seconds: ttl.unwrap_or_else(|| role.default_ttl()).as_secs(),
        source_ip: Some(input.source_ip),
        now: now.secs(),
        host: Some(host_ctx.clone()),
        ..Default::default()
    };
    let (role, decision) = match choose_role(&bundle, &input, service, entry, &ctx_for) {
        Ok(r) => r,
        Err(e) => return Err(audited(state, &base, "denied", e).await),
    };
    base.role = Some(role.name.clone());
    base.decision = Some(decision_of(&decision));
    if !decision.allowed {
        crate::metrics::Metrics::count(&state.metrics.decisions, "deny");
        let err = ApiError::forbidden(
            "policy_denied",
            format!(
                "policy denied a session on host {:?} with role {:?}: {}",
                entry.config.name,
                role.name,
                decision.explain()
            ),
        );
        return Err(audited(state, &base, "denied", err).await);
    }
    crate::metrics::Metrics::count(&state.metrics.decisions, "allow");
    let template = jit_template(role, service)
        .ok_or_else(|| ApiError::internal("the chosen role lost its ssh template"))?;
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
    let mut decided = base.clone();
    decided.outcome = "success".into();
    state
        .audit
        .append(decided)
        .await
        .map_err(|_| ApiError::audit_unavailable())?;

    base.event = "ssh_certificate_issued".into();
    if !entry.board.agent_connected(now.secs()) {
        let err = ApiError::unavailable("agent_unavailable", format!(
            "the idmint agent on host {:?} is not connected, so no account can be created there; check `idmint agent` on that host (nothing was issued)",
            entry.config.name
        ));
        return Err(audited(state, &base, "error", err).await);
    }
    let expires_at = bounded_expiry(state, &base, now, &grant, input.identity).await?;
    let lease_id = LeaseId::generate().map_err(|e| ApiError::internal(e.to_string()))?;
    let account = account_for_lease(&lease_id);
    base.lease_id = Some(lease_id.to_string());
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
        revocation: RevocationHandle {
            kind: SSH_ACCOUNT_HANDLE.to_string(),
            value: format!("{}/{account}", entry.config.name),
        },
        fingerprint: None,
        attempts: 0,
        next_attempt_at: now,
        last_error: None,
    };
    // Write-ahead: the lease exists before the agent creates anything.
    if let Err(e) = state.store.insert_lease(&lease).await {
        return Err(audited(state, &base, "error", ApiError::store_unavailable(e)).await);
    }
    let key_id = format!("{} {}", input.request_id, input.identity.subject);
    let principals = vec![account.clone()];
    let cert = service.authority.sign_user(&UserCertRequest {
        key: &key,
        key_id: &key_id,
        principals: &principals,
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
            abandon(state, entry, &lease, &account, "signing failed").await;
            return Err(audited(state, &base, "error", ApiError::internal(e.to_string())).await);
        }
    };
    let fingerprint = state.fingerprints.fingerprint(&cert.certificate.blob);
    base.fingerprint = Some(fingerprint.clone());
    let host_grant = HostGrant {
        lease_id: lease_id.to_string(),
        account: account.clone(),
        shell: template.shell().to_string(),
        sudo: template.sudo.clone(),
        created_at: now.secs(),
        expires_at: expires_at.secs(),
        key_id: key_id.clone(),
    };
    if let Err(e) = entry.board.publish(host_grant) {
        let _ = state
            .store
            .transition_lease(
                &lease_id,
                LeaseState::Pending,
                LeaseState::Revoked,
                None,
                Some(&e.to_string()),
            )
            .await;
        return Err(audited(state, &base, "error", ApiError::internal(e.to_string())).await);
    }
    let timeout = service.config.ready_timeout.as_duration();
    match entry.board.wait_ready(&account, timeout).await {
        super::grant_board::ReadyOutcome::Ready => {}
        super::grant_board::ReadyOutcome::Failed(reason) => {
            abandon(state, entry, &lease, &account, &reason).await;
            let err = ApiError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                "target_failed",
                format!(
                    "the agent on host {:?} could not create the account: {reason}",
                    entry.config.name
                ),
            );
            return Err(audited(state, &base, "error", err).await);
        }
        super::grant_board::ReadyOutcome::TimedOut => {
            abandon(
                state,
                entry,
                &lease,
                &account,
                "the agent did not report the account ready in time",
            )
            .await;
            let err = ApiError::unavailable("agent_timeout", format!(
                "the idmint agent on host {:?} did not report the account ready within {}; nothing was issued (check the agent's log on that host)",
                entry.config.name, service.config.ready_timeout
            ));
            return Err(audited(state, &base, "error", err).await);
        }
    }
    let mut issued = base.clone();
    issued.outcome = "success".into();
    issued.detail = Some(certificate_detail(
        input.session_token_id,
        &entry.config.name,
        &principals,
        &cert,
        &key,
        template,
        expires_at,
    ));
    // Fail closed: no durable audit event, no certificate.
    if state.audit.append(issued).await.is_err() {
        abandon(
            state,
            entry,
            &lease,
            &account,
            "audit log unavailable at issuance",
        )
        .await;
        return Err(ApiError::audit_unavailable());
    }
    crate::issuance::mark_active(state, &mut lease, &fingerprint).await;
    Ok(SshSessionResponse {
        lease_id: lease_id.to_string(),
        request_id: input.request_id.to_string(),
        role: role.name.clone(),
        host: entry.config.name.clone(),
        account,
        certificate: cert.certificate.line,
        address: entry.config.address.clone(),
        port: entry.config.port,
        expires_at: expires_at.secs(),
        known_hosts: entry.known_hosts.clone(),
        sudo: template.sudo.clone(),
        policy_version: bundle.version,
        fingerprint,
    })
}

/// The `detail` of `ssh_certificate_issued`: everything needed to find the
/// certificate in sshd's logs (serial, key fingerprint), never the key.
pub(crate) fn certificate_detail(
    session_token_id: &str,
    host: &str,
    principals: &[String],
    cert: &idmint_issuers::ssh::IssuedCertificate,
    key: &Ed25519PublicKey,
    template: &SshTemplate,
    expires_at: UnixTime,
) -> Value {
    json!({
        "session_token_id": session_token_id,
        "host": host,
        "serial": cert.serial,
        "principals": principals,
        "valid_after": cert.valid_after,
        "valid_before": cert.valid_before,
        "key_fingerprint": key.fingerprint(),
        "extensions": template.extensions,
        "force_command": template.force_command,
        "source_address": template.bind_source_address,
        "sudo": template.sudo,
        "expires_at": expires_at.secs(),
    })
}
