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
    .await;
    let revoked = match revoked {
        Ok(l) => l,
        Err(e) => {
            if matches!(e, RevokeError::Issuer(_)) {
                revocation::retry_requested(&state, &lease, &e.to_string(), u32::MAX).await;
            }
            return Err(lease_api_error(e).with_request_id(rid.as_str()));
        }
    };
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

fn lease_api_error(e: RevokeError) -> ApiError {
    match &e {
        RevokeError::Audit => ApiError::audit_unavailable(),
        RevokeError::Issuer(_) | RevokeError::UnknownIssuer(_) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "revoke_failed",
            format!("{e}; the reaper retries it"),
        ),
        RevokeError::Store(_) => ApiError::unavailable("store_unavailable", e.to_string()),
    }
}

/// `POST /api/v1/leases/{id}/renew`: extend a live lease of a renewable
/// role, never past `max_ttl` from its creation nor past the caller's proof.
pub async fn renew(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    Session(s): Session,
    Path(id): Path<String>,
    body: Result<Json<idmint_proto::RenewRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<LeaseInfo>, ApiError> {
    let fail = |e: ApiError| e.with_request_id(rid.as_str());
    let Json(req) = body.map_err(|e| fail(super::json_error(e)))?;
    let ttl = super::login::parse_ttl(req.ttl.as_deref()).map_err(fail)?;
    let not_found = || {
        fail(ApiError::not_found(
            "unknown_lease",
            format!("no live lease {:?} that you may renew; list yours with `idmint leases list --live`", id.chars().take(64).collect::<String>()),
        ))
    };
    let lease_id = LeaseId::parse(&id).ok_or_else(not_found)?;
    let lease = state
        .store
        .get_lease(&lease_id)
        .await
        .map_err(|e| fail(ApiError::store_unavailable(e)))?
        .ok_or_else(not_found)?;
    if lease.principal != s.identity.principal_key() && !is_admin(&state, &s.identity) {
        return Err(not_found());
    }
    if !lease.state.is_live() {
        return Err(not_found());
    }
    let bundle = state.bundle.load_full();
    let role = bundle.role(&lease.role).filter(|r| r.renewable).ok_or_else(|| {
        fail(ApiError::bad_request(
            "not_renewable",
            format!("role {:?} does not allow renewal (renewable = true in roles.toml); request a new credential", lease.role),
        ))
    })?;
    let issuer = state
        .issuers
        .get(&lease.issuer)
        .cloned()
        .ok_or_else(|| fail(ApiError::internal("issuer gone")))?;
    let now = idmint_core::UnixTime::now();
    let wanted = now.plus(ttl.unwrap_or_else(|| role.default_ttl()).as_duration());
    let hard_cap = lease.created_at.plus(role.max_ttl.as_duration());
    let new_exp = wanted.min(hard_cap).min(s.identity.expires_at);
    if new_exp <= lease.expires_at {
        return Ok(Json(lease_info(&lease)));
    }
    issuer
        .renew(&lease.revocation, new_exp)
        .await
        .map_err(|e| {
            fail(match e {
                idmint_issuers::IssueError::Config(m) => ApiError::bad_request("not_renewable", m),
                other => ApiError::new(StatusCode::BAD_GATEWAY, "target_failed", other.to_string()),
            })
        })?;
    let extended = state
        .store
        .extend_lease(&lease.id, new_exp)
        .await
        .map_err(|e| fail(ApiError::store_unavailable(e)))?;
    if !extended {
        return Err(not_found());
    }
    let ev = AuditEvent {
        request_id: Some(rid.to_string()),
        event: "lease_renewed".into(),
        outcome: "success".into(),
        identity: Some(audit_identity(&s.identity)),
        role: Some(lease.role.clone()),
        lease_id: Some(lease.id.to_string()),
        fingerprint: lease.fingerprint.clone(),
        detail: Some(
            serde_json::json!({ "old_expires_at": lease.expires_at.secs(), "expires_at": new_exp.secs() }),
        ),
        ..Default::default()
    };
    state
        .audit
        .append(ev)
        .await
        .map_err(|_| fail(ApiError::audit_unavailable()))?;
    let mut out = lease;
    out.expires_at = new_exp;
    Ok(Json(lease_info(&out)))
}

/// `POST /api/v1/leases/revoke-prefix` (admin): revoke every live lease of
/// roles starting with `prefix`, for incident response.
pub async fn revoke_prefix(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    Session(s): Session,
    body: Result<Json<idmint_proto::RevokePrefixRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<idmint_proto::RevokePrefixResponse>, ApiError> {
    let fail = |e: ApiError| e.with_request_id(rid.as_str());
    let Json(req) = body.map_err(|e| fail(super::json_error(e)))?;
    if !is_admin(&state, &s.identity) {
        return Err(fail(admin_required()));
    }
    if req.prefix.trim().is_empty() {
        return Err(fail(ApiError::bad_request("invalid_request", "prefix must not be empty (it would revoke everything); name a role prefix such as db/orders")));
    }
    let mut revoked = vec![];
    let mut failed = vec![];
    let mut seen = std::collections::HashSet::new();
    loop {
        let filter = LeaseFilter {
            principal: None,
            role_prefix: Some(req.prefix.clone()),
            live_only: true,
            limit: 1000,
        };
        let batch = state
            .store
            .list_leases(&filter)
            .await
            .map_err(|e| fail(ApiError::store_unavailable(e)))?;
        let fresh: Vec<Lease> = batch
            .into_iter()
            .filter(|l| seen.insert(l.id.clone()))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for lease in fresh {
            match revocation::revoke(
                &state,
                &lease,
                RevokeReason::Requested,
                Some(rid.as_str()),
                Some(&s.identity.principal_key()),
            )
            .await
            {
                Ok(_) => revoked.push(lease.id.to_string()),
                Err(RevokeError::Audit) => return Err(fail(ApiError::audit_unavailable())),
                Err(e) => {
                    revocation::retry_requested(&state, &lease, &e.to_string(), u32::MAX).await;
                    let mut info = lease_info(&lease);
                    info.last_error = Some(e.to_string());
                    failed.push(info);
                }
            }
        }
    }
    let ev = AuditEvent {
        request_id: Some(rid.to_string()),
        event: "admin".into(),
        outcome: if failed.is_empty() {
            "success"
        } else {
            "error"
        }
        .into(),
        action: Some("revoke_prefix".into()),
        identity: Some(audit_identity(&s.identity)),
        detail: Some(
            serde_json::json!({ "prefix": req.prefix, "revoked": revoked.len(), "failed": failed.len() }),
        ),
        ..Default::default()
    };
    state
        .audit
        .append(ev)
        .await
        .map_err(|_| fail(ApiError::audit_unavailable()))?;
    Ok(Json(idmint_proto::RevokePrefixResponse { revoked, failed }))
}

/// `POST /api/v1/targets/{name}/rotate-admin` (admin): a new random admin
/// password, sealed first, then set at the target.
pub async fn rotate_admin(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    Session(s): Session,
    Path(target): Path<String>,
) -> Result<Json<idmint_proto::RotateAdminResponse>, ApiError> {
    let fail = |e: ApiError| e.with_request_id(rid.as_str());
    if !is_admin(&state, &s.identity) {
        return Err(fail(admin_required()));
    }
    let issuer = state.issuers.get(&target).cloned().ok_or_else(|| {
        fail(ApiError::not_found(
            "unknown_target",
            format!(
                "no issuer named {:?} in idmint.toml",
                target.chars().take(64).collect::<String>()
            ),
        ))
    })?;
    let store = state.store.as_ref();
    let version = crate::targets::current_version(store, &target)
        .await
        .map_err(|e| fail(ApiError::store_unavailable(e)))?;
    if version == 0 {
        return Err(fail(ApiError::bad_request(
            "no_admin_secret",
            format!(
                "issuer {target:?} ({}) has no admin credential to rotate",
                issuer.kind()
            ),
        )));
    }
    let outcome =
        crate::targets::rotate(store, &state.envelope, issuer.as_ref(), &target, version).await;
    let (status, result) = match outcome {
        Ok(v) => ("success", Ok(v)),
        Err(e) => ("error", Err(e)),
    };
    let ev = AuditEvent {
        request_id: Some(rid.to_string()),
        event: "admin".into(),
        outcome: status.into(),
        action: Some("rotate_admin".into()),
        identity: Some(audit_identity(&s.identity)),
        detail: Some(serde_json::json!({ "target": target, "from_version": version })),
        error: result.as_ref().err().map(|m| idmint_audit::AuditErrorInfo {
            code: "target_failed".into(),
            message: m.clone(),
        }),
        ..Default::default()
    };
    state
        .audit
        .append(ev)
        .await
        .map_err(|_| fail(ApiError::audit_unavailable()))?;
    match result {
        Ok(v) => Ok(Json(idmint_proto::RotateAdminResponse {
            target,
            version: v,
        })),
        Err(m) => Err(fail(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "target_failed",
            format!(
                "rotating the admin password of {target:?} failed; the old one stays in use: {m}"
            ),
        ))),
    }
}
