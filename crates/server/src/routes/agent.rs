//! The host agent's endpoints: `POST /api/v1/agent/enroll`,
//! `GET /api/v1/agent/grants`, `POST /api/v1/agent/events`.
//!
//! Every request but enrollment is signed by the agent's key (see
//! [`crate::ssh::agent_auth`]); the host it speaks for is the one its key
//! was enrolled for, never a value from the body.

use super::ReqId;
use crate::error::ApiError;
use crate::ssh::agent_auth::{self, AgentAuthError};
use crate::ssh::host_registry::{HostRegistry, RegistryError};
use crate::ssh::session::audited;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::{Extension, Json};
use idmint_audit::AuditEvent;
use idmint_core::{LeaseId, LeaseState, UnixTime};
use idmint_issuers::ssh::{Ed25519PublicKey, SSH_ACCOUNT_HANDLE};
use idmint_proto::ssh::{
    AgentEvent, AgentEventAck, AgentEventKind, AgentGrants, EnrollRequest, EnrollResponse,
};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Longest long poll. Kept below the default `[server] request_timeout`
/// (30 s), which would otherwise cut the poll off with a 408.
pub const MAX_POLL_WAIT_SECS: u64 = 25;

pub(crate) fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            "the request body is larger than this server accepts ([server] max_body_bytes)",
        );
    }
    ApiError::bad_request(
        "invalid_request",
        format!("cannot read the request body: {e}"),
    )
}

fn agent_event(rid: &str, event: &str, host: &str) -> AuditEvent {
    AuditEvent {
        request_id: Some(rid.to_string()),
        event: event.into(),
        action: Some("agent".into()),
        detail: Some(json!({ "host": host.chars().take(253).collect::<String>() })),
        ..Default::default()
    }
}

/// Verify the signed request; returns the enrolled host it speaks for.
pub(crate) async fn authenticate(
    state: &AppState,
    rid: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, ApiError> {
    let now = UnixTime::now().secs();
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let result = agent_auth::parse_header(header).and_then(|h| {
        let key = state
            .ssh
            .host(&h.host)
            .and_then(|_| state.ssh.registry.key_of(&h.host))
            .ok_or_else(|| AgentAuthError::NotEnrolled(h.host.clone()))?;
        let target = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        agent_auth::verify_signature(&h, &key, method.as_str(), target, body, now)?;
        state.ssh.nonces.check_and_insert(&h.host, &h.nonce, now)?;
        Ok(h.host)
    });
    match result {
        Ok(host) => Ok(host),
        Err(e) => {
            let claimed = agent_auth::parse_header(header)
                .map(|h| h.host)
                .unwrap_or_default();
            let status = if e == AgentAuthError::Overloaded {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::UNAUTHORIZED
            };
            let err = ApiError::new(status, "agent_auth_failed", e.to_string());
            Err(audited(
                state,
                &agent_event(rid, "agent_auth_failed", &claimed),
                "denied",
                err,
            )
            .await)
        }
    }
}

pub async fn enroll(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    body: Result<Json<EnrollRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<EnrollResponse>, ApiError> {
    let rid_s = rid.as_str();
    let req = match body {
        Ok(Json(r)) => r,
        Err(e) => {
            let ev = agent_event(rid_s, "ssh_host_enrolled", "");
            return Err(audited(&state, &ev, "denied", super::json_error(e))
                .await
                .with_request_id(rid_s));
        }
    };
    let mut ev = agent_event(rid_s, "ssh_host_enrolled", &req.host);
    let Some((service, entry)) = state.ssh.host(&req.host) else {
        let e = ApiError::not_found(
            "unknown_host",
            "this host is not configured in any [[issuer.ssh]] of this server",
        );
        return Err(audited(&state, &ev, "denied", e)
            .await
            .with_request_id(rid_s));
    };
    let keys = Ed25519PublicKey::parse_openssh(&req.agent_public_key)
        .map_err(|e| format!("agent_public_key: {e}"))
        .and_then(|a| {
            Ed25519PublicKey::parse_openssh(&req.host_public_key)
                .map(|h| (a, h))
                .map_err(|e| format!("host_public_key: {e}"))
        });
    let (agent_key, host_key) = match keys {
        Ok(k) => k,
        Err(m) => {
            let e = ApiError::bad_request("invalid_public_key", m);
            return Err(audited(&state, &ev, "denied", e)
                .await
                .with_request_id(rid_s));
        }
    };
    let now = UnixTime::now().secs();
    match HostRegistry::redeem_join_token(
        state.store.as_ref(),
        &state.envelope,
        &entry.config.name,
        &req.join_token,
        now,
    )
    .await
    {
        Ok(()) => {}
        Err(RegistryError::BadJoinToken) => {
            let e = ApiError::unauthorized(
                "invalid_join_token",
                RegistryError::BadJoinToken.to_string(),
            );
            return Err(audited(&state, &ev, "denied", e)
                .await
                .with_request_id(rid_s));
        }
        Err(e) => return Err(ApiError::store_unavailable(e).with_request_id(rid_s)),
    }
    let cert = service
        .authority
        .sign_host(&entry.config, &host_key, now)
        .map_err(|e| ApiError::internal(e.to_string()).with_request_id(rid_s))?;
    state
        .ssh
        .registry
        .register(
            state.store.as_ref(),
            &state.envelope,
            &entry.config.name,
            &agent_key,
            now,
        )
        .await
        .map_err(|e| ApiError::store_unavailable(e).with_request_id(rid_s))?;
    ev.outcome = "success".into();
    ev.detail = Some(json!({
        "host": entry.config.name,
        "issuer": service.name(),
        "agent_key_fingerprint": agent_key.fingerprint(),
        "host_key_fingerprint": host_key.fingerprint(),
        "host_certificate_serial": cert.serial,
        "valid_before": cert.valid_before,
    }));
    state
        .audit
        .append(ev)
        .await
        .map_err(|_| ApiError::audit_unavailable().with_request_id(rid_s))?;
    Ok(Json(EnrollResponse {
        host: entry.config.name.clone(),
        host_certificate: cert.certificate.line,
        user_ca: service.authority.user_ca_line().to_string(),
    }))
}

/// `?since=R&wait=S`, both optional; anything else is refused so a typo is
/// not silently a busy loop.
fn poll_params(uri: &Uri) -> Result<(u64, u64), ApiError> {
    let (mut since, mut wait) = (0u64, 0u64);
    for pair in uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let n = v.parse::<u64>().map_err(|_| {
            ApiError::bad_request(
                "invalid_request",
                format!("{k} must be a non-negative integer"),
            )
        })?;
        match k {
            "since" => since = n,
            "wait" => wait = n.min(MAX_POLL_WAIT_SECS),
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    format!(
                        "unknown query parameter {:?}; use since and wait",
                        k.chars().take(32).collect::<String>()
                    ),
                ))
            }
        }
    }
    Ok((since, wait))
}

pub async fn grants(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<AgentGrants>, ApiError> {
    let rid_s = rid.as_str();
    let host = authenticate(&state, rid_s, &method, &uri, &headers, b"")
        .await
        .map_err(|e| e.with_request_id(rid_s))?;
    let (since, wait) = poll_params(&uri).map_err(|e| e.with_request_id(rid_s))?;
    let (_, entry) = state.ssh.host(&host).ok_or_else(|| {
        ApiError::internal("the enrolled host vanished from the config").with_request_id(rid_s)
    })?;
    let (revision, grants) = entry
        .board
        .wait_for_change(since, Duration::from_secs(wait), UnixTime::now().secs())
        .await;
    Ok(Json(AgentGrants {
        revision,
        grants,
        now: UnixTime::now().secs(),
    }))
}

pub async fn events(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AgentEventAck>, ApiError> {
    let rid_s = rid.as_str();
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let ev = agent_event(rid_s, "agent_event_rejected", "");
            return Err(audited(&state, &ev, "denied", body_error(e))
                .await
                .with_request_id(rid_s));
        }
    };
    let host = authenticate(&state, rid_s, &method, &uri, &headers, &body)
        .await
        .map_err(|e| e.with_request_id(rid_s))?;
    let mut ev = agent_event(rid_s, "agent_event_rejected", &host);
    let event: AgentEvent = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            let err = ApiError::bad_request(
                "invalid_request",
                format!("the body is not a valid agent event: {e}"),
            );
            return Err(audited(&state, &ev, "denied", err)
                .await
                .with_request_id(rid_s));
        }
    };
    ev.lease_id = Some(event.lease_id.chars().take(64).collect());
    // The lease must be a just-in-time lease of this very host and account.
    let lease = match LeaseId::parse(&event.lease_id) {
        Some(id) => state
            .store
            .get_lease(&id)
            .await
            .map_err(|e| ApiError::store_unavailable(e).with_request_id(rid_s))?,
        None => None,
    };
    let expected = format!("{host}/{}", event.account);
    let lease = match lease {
        Some(l) if l.revocation.kind == SSH_ACCOUNT_HANDLE && l.revocation.value == expected => l,
        _ => {
            let err = ApiError::forbidden("wrong_host", format!(
                "lease {:?} is not a session of account {:?} on host {host:?}; an agent may only report on its own host's grants",
                event.lease_id.chars().take(64).collect::<String>(),
                event.account.chars().take(64).collect::<String>()
            ));
            return Err(audited(&state, &ev, "denied", err)
                .await
                .with_request_id(rid_s));
        }
    };
    let (_, entry) = state.ssh.host(&host).ok_or_else(|| {
        ApiError::internal("the enrolled host vanished from the config").with_request_id(rid_s)
    })?;
    ev.role = Some(lease.role.clone());
    ev.fingerprint = lease.fingerprint.clone();
    ev.outcome = "success".into();
    let mut detail = json!({ "host": host, "account": event.account, "agent_time": event.at });
    let revoke = |why: Option<&str>| {
        let state = state.clone();
        let id = lease.id.clone();
        let why = why.map(str::to_string);
        async move {
            // Irrevocable too: an agent back after a long outage still
            // closes the lease it was flagged for.
            for from in [
                LeaseState::Active,
                LeaseState::Pending,
                LeaseState::Irrevocable,
            ] {
                if let Ok(true) = state
                    .store
                    .transition_lease(&id, from, LeaseState::Revoked, None, why.as_deref())
                    .await
                {
                    return;
                }
            }
        }
    };
    match &event.kind {
        AgentEventKind::AccountReady { uid, sudo_rules } => {
            entry.board.mark_ready(&event.account);
            ev.event = "ssh_account_ready".into();
            detail["uid"] = json!(uid);
            detail["sudo_rules"] = json!(sudo_rules);
        }
        AgentEventKind::AccountFailed { reason } => {
            let reason: String = reason.chars().take(1024).collect();
            entry
                .board
                .mark_removed(&event.account, Some(reason.clone()));
            revoke(Some(&reason)).await;
            ev.event = "ssh_account_failed".into();
            ev.outcome = "error".into();
            detail["reason"] = json!(reason);
        }
        AgentEventKind::SessionStarted { source } => {
            ev.event = "ssh_session_started".into();
            detail["source"] = json!(source
                .as_ref()
                .map(|s| s.chars().take(128).collect::<String>()));
        }
        AgentEventKind::SessionEnded {
            duration_secs,
            reason,
        } => {
            ev.event = "ssh_session_ended".into();
            detail["duration_secs"] = json!(duration_secs);
            detail["reason"] = json!(reason.chars().take(64).collect::<String>());
        }
        AgentEventKind::AccountRemoved { residue } => {
            entry.board.mark_removed(&event.account, None);
            revoke(None).await;
            ev.event = "ssh_account_removed".into();
            if !residue.clean || !residue.remaining.is_empty() {
                ev.outcome = "error".into();
                tracing::error!(host = %host, account = %event.account, remaining = ?residue.remaining, "ssh account removal left residue on the host");
            }
            detail["residue"] = json!(residue);
        }
    }
    ev.detail = Some(detail);
    state
        .audit
        .append(ev)
        .await
        .map_err(|_| ApiError::audit_unavailable().with_request_id(rid_s))?;
    Ok(Json(AgentEventAck { accepted: true }))
}
