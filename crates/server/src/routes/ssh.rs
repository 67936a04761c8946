//! `POST /api/v1/ssh/sessions`, `POST /api/v1/ssh/sign/{role}`,
//! `GET /api/v1/ssh/ca`, `POST /api/v1/ssh/hosts/{host}/join-token`.

use super::{is_admin, json_error, PeerAddr, ReqId};
use crate::audit_events::audit_identity;
use crate::error::ApiError;
use crate::session_auth::Session;
use crate::ssh::host_registry::HostRegistry;
use crate::ssh::session::{self, audited, SessionInput};
use crate::ssh::sign::{self, SignInput};
use crate::state::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::{Extension, Json};
use idmint_audit::AuditEvent;
use idmint_core::UnixTime;
use idmint_proto::ssh::{
    JoinTokenResponse, SshCaKeys, SshIssuerCa, SshSessionRequest, SshSessionResponse,
    SshSignRequest, SshSignResponse,
};
use std::sync::Arc;

/// A bad request body, audited like every other refusal.
async fn bad_body(
    state: &AppState,
    rid: &str,
    s: &Session,
    event: &str,
    e: JsonRejection,
) -> ApiError {
    let base = AuditEvent {
        request_id: Some(rid.to_string()),
        event: event.into(),
        identity: Some(audit_identity(&s.0.identity)),
        ..Default::default()
    };
    audited(state, &base, "denied", json_error(e))
        .await
        .with_request_id(rid)
}

pub async fn sessions(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    s: Session,
    body: Result<Json<SshSessionRequest>, JsonRejection>,
) -> Result<Json<SshSessionResponse>, ApiError> {
    let request = match body {
        Ok(Json(r)) => r,
        Err(e) => return Err(bad_body(&state, rid.as_str(), &s, "ssh_grant_decided", e).await),
    };
    let input = SessionInput {
        identity: &s.0.identity,
        request,
        source_ip: peer.ip(),
        request_id: &rid,
        session_token_id: s.0.token_id.as_str(),
    };
    session::open(&state, input)
        .await
        .map(Json)
        .map_err(|e| e.with_request_id(rid.as_str()))
}

pub async fn sign_role(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    Path(role): Path<String>,
    s: Session,
    body: Result<Json<SshSignRequest>, JsonRejection>,
) -> Result<Json<SshSignResponse>, ApiError> {
    let request = match body {
        Ok(Json(r)) => r,
        Err(e) => {
            return Err(bad_body(&state, rid.as_str(), &s, "ssh_certificate_issued", e).await)
        }
    };
    let input = SignInput {
        identity: &s.0.identity,
        role: &role,
        request,
        source_ip: peer.ip(),
        request_id: &rid,
        session_token_id: s.0.token_id.as_str(),
    };
    sign::sign(&state, input)
        .await
        .map(Json)
        .map_err(|e| e.with_request_id(rid.as_str()))
}

/// Public: CA keys are what hosts and clients must trust, not secrets.
pub async fn ca(State(state): State<Arc<AppState>>) -> Json<SshCaKeys> {
    Json(SshCaKeys {
        issuers: state
            .ssh
            .services
            .iter()
            .map(|s| SshIssuerCa {
                issuer: s.name().to_string(),
                user_ca: s.authority.user_ca_line().to_string(),
                host_ca: s.authority.host_ca_line().to_string(),
            })
            .collect(),
    })
}

pub async fn join_token(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    Path(host): Path<String>,
    s: Session,
) -> Result<Json<JoinTokenResponse>, ApiError> {
    let mut base = AuditEvent {
        request_id: Some(rid.to_string()),
        event: "ssh_join_token_created".into(),
        identity: Some(audit_identity(&s.0.identity)),
        action: Some("admin".into()),
        detail: Some(serde_json::json!({ "host": host.chars().take(253).collect::<String>() })),
        ..Default::default()
    };
    let fail = |base: AuditEvent, e: ApiError| {
        let state = state.clone();
        let rid = rid.clone();
        async move {
            audited(&state, &base, "denied", e)
                .await
                .with_request_id(rid.as_str())
        }
    };
    if !is_admin(&state, &s.0.identity) {
        let e = ApiError::forbidden(
            "not_admin",
            "creating host join tokens needs the admin action in policy",
        );
        return Err(fail(base, e).await);
    }
    let Some((service, entry)) = state.ssh.host(&host) else {
        let e = ApiError::not_found(
            "unknown_host",
            format!(
                "host {:?} is not configured in any [[issuer.ssh]]; add it to idmint.toml first",
                host.chars().take(253).collect::<String>()
            ),
        );
        return Err(fail(base, e).await);
    };
    let now = UnixTime::now();
    let expires_at = now.plus(service.config.join_token_ttl.as_duration());
    let token = HostRegistry::create_join_token(
        state.store.as_ref(),
        &state.envelope,
        &entry.config.name,
        expires_at.secs(),
        now.secs(),
    )
    .await
    .map_err(|e| ApiError::store_unavailable(e).with_request_id(rid.as_str()))?;
    base.outcome = "success".into();
    base.fingerprint = Some(state.fingerprints.fingerprint(token.as_bytes()));
    base.detail =
        Some(serde_json::json!({ "host": entry.config.name, "expires_at": expires_at.secs() }));
    state
        .audit
        .append(base)
        .await
        .map_err(|_| ApiError::audit_unavailable().with_request_id(rid.as_str()))?;
    Ok(Json(JoinTokenResponse {
        host: entry.config.name.clone(),
        join_token: token,
        expires_at: expires_at.secs(),
    }))
}
