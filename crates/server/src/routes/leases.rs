//! `GET /api/v1/leases`, `POST /api/v1/leases/{id}/revoke`,
//! `GET /api/v1/audit/trace/{ref}`.

use super::{is_admin, ReqId};
use crate::audit_events::audit_identity;
use crate::error::ApiError;
use crate::revocation::{self, RevokeError, RevokeReason};
use crate::session_auth::Session;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use idmint_audit::AuditEvent;
use idmint_core::{Lease, LeaseId};
use idmint_proto::{LeaseInfo, LeaseList, TraceResponse};
use idmint_store::LeaseFilter;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseQuery {
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub role_prefix: Option<String>,
    #[serde(default)]
    pub live: bool,
    #[serde(default)]
    pub limit: Option<usize>,
}

pub fn lease_info(l: &Lease) -> LeaseInfo {
    LeaseInfo {
        id: l.id.to_string(),
        role: l.role.clone(),
        issuer: l.issuer.clone(),
        principal: l.principal.clone(),
        state: l.state.as_str().to_string(),
        policy_version: l.policy_version,
        created_at: l.created_at.secs(),
        expires_at: l.expires_at.secs(),
        fingerprint: l.fingerprint.clone(),
        last_error: l.last_error.clone(),
    }
}

fn admin_required() -> ApiError {
    ApiError::forbidden(
        "admin_required",
        "this needs the admin action: a Cedar policy must permit Action::\"admin\" on Server::\"idmint\" for your identity",
    )
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    Session(s): Session,
    q: Result<Query<LeaseQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<LeaseList>, ApiError> {
    let Query(q) = q.map_err(|e| {
        ApiError::bad_request("invalid_request", e.body_text()).with_request_id(rid.as_str())
    })?;
    if q.all && !is_admin(&state, &s.identity) {
        return Err(admin_required().with_request_id(rid.as_str()));
    }
    let filter = LeaseFilter {
        principal: (!q.all).then(|| s.identity.principal_key()),
        role_prefix: q.role_prefix,
        live_only: q.live,
        limit: q.limit.unwrap_or(0),
    };
    let leases = state
        .store
        .list_leases(&filter)
        .await
        .map_err(|e| ApiError::store_unavailable(e).with_request_id(rid.as_str()))?;
    Ok(Json(LeaseList {
        leases: leases.iter().map(lease_info).collect(),
    }))
}

pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    Session(s): Session,
    Path(id): Path<String>,
) -> Result<Json<LeaseInfo>, ApiError> {
    let not_found = || {
        ApiError::not_found(
            "unknown_lease",
            format!(
                "no lease {:?} that you may revoke; list yours with `idmint leases list`",
                id.chars().take(64).collect::<String>()
            ),
        )
        .with_request_id(rid.as_str())
    };
    let lease_id = LeaseId::parse(&id).ok_or_else(not_found)?;
    let lease = state
        .store
        .get_lease(&lease_id)
        .await
        .map_err(|e| ApiError::store_unavailable(e).with_request_id(rid.as_str()))?
        .ok_or_else(not_found)?;
    if lease.principal != s.identity.principal_key() && !is_admin(&state, &s.identity) {
        return Err(not_found());
    }
    if !lease.state.is_live() {
        return Ok(Json(lease_info(&lease)));
    }
    let revoked = revocation::revoke(
        &state,
        &lease,
        RevokeReason::Requested,
        Some(rid.as_str()),
        Some(&s.identity.principal_key()),
    )
    .await
    .map_err(|e| {
        let api = match &e {
            RevokeError::Audit => ApiError::audit_unavailable(),
            RevokeError::Issuer(_) | RevokeError::UnknownIssuer(_) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "revoke_failed",
                format!("{e}; the reaper retries it"),
            ),
            RevokeError::Store(_) => ApiError::unavailable("store_unavailable", e.to_string()),
        };
        api.with_request_id(rid.as_str())
    })?;
    Ok(Json(lease_info(&revoked)))
}

pub async fn trace(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    Session(s): Session,
    Path(reference): Path<String>,
) -> Result<Json<TraceResponse>, ApiError> {
    if !is_admin(&state, &s.identity) {
        return Err(admin_required().with_request_id(rid.as_str()));
    }
    let Some(path) = state.audit_file.clone() else {
        return Err(ApiError::not_found(
            "no_audit_file",
            "this server writes its audit log to stdout only; trace it where the log is collected",
        )
        .with_request_id(rid.as_str()));
    };
    let r = reference.clone();
    let events = tokio::task::spawn_blocking(move || idmint_audit::trace::trace_file(&path, &r))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| {
            ApiError::internal(format!("reading the audit log failed: {e}"))
                .with_request_id(rid.as_str())
        })?;
    let ev = AuditEvent {
        request_id: Some(rid.to_string()),
        event: "admin".into(),
        outcome: "success".into(),
        action: Some("audit_trace".into()),
        identity: Some(audit_identity(&s.identity)),
        detail: Some(
            serde_json::json!({ "reference": reference.chars().take(128).collect::<String>() }),
        ),
        ..Default::default()
    };
    state
        .audit
        .append(ev)
        .await
        .map_err(|_| ApiError::audit_unavailable())?;
    let events = events
        .into_iter()
        .filter_map(|e| serde_json::to_value(e).ok())
        .collect();
    Ok(Json(TraceResponse { reference, events }))
}
