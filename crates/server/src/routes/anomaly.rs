//! Anomaly approvals under `/api/v1/anomaly/approvals`: admins list the
//! issuances held by a `require_approval` anomaly rule and approve them.
//! Approving needs `Action::"admin"` and a different identity from the
//! requester (the point is a second person).

use super::{is_admin, ReqId};
use crate::anomaly::approvals::{self, ApprovalError};
use crate::audit_events::audit_identity;
use crate::error::ApiError;
use crate::session_auth::Session;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use idmint_audit::AuditEvent;
use idmint_core::UnixTime;
use idmint_proto::anomaly::{AnomalyApproval, ApprovalList};
use std::sync::Arc;

fn api_error(e: ApprovalError, rid: &str) -> ApiError {
    let message = e.to_string();
    let (status, code) = match &e {
        ApprovalError::NotFound(_) => (StatusCode::NOT_FOUND, "unknown_approval"),
        ApprovalError::SelfApproval(_) => (StatusCode::FORBIDDEN, "self_approval"),
        ApprovalError::AlreadyApproved(_) => (StatusCode::CONFLICT, "already_approved"),
        ApprovalError::Store(e) => return ApiError::store_unavailable(e).with_request_id(rid),
        ApprovalError::Corrupt { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    ApiError::new(status, code, message).with_request_id(rid)
}

fn require_admin(
    state: &AppState,
    s: &idmint_core::session::SessionClaims,
    rid: &str,
) -> Result<(), ApiError> {
    if is_admin(state, &s.identity) {
        return Ok(());
    }
    Err(ApiError::forbidden(
        "admin_required",
        "anomaly approvals are for admins (Action::\"admin\" on Server::\"idmint\" in the active policy)",
    )
    .with_request_id(rid))
}

/// `GET /api/v1/anomaly/approvals`
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    Session(s): Session,
) -> Result<Json<ApprovalList>, ApiError> {
    require_admin(&state, &s, rid.as_str())?;
    let approvals = approvals::list(state.store.as_ref(), UnixTime::now())
        .await
        .map_err(|e| api_error(e, rid.as_str()))?;
    Ok(Json(ApprovalList { approvals }))
}

/// `POST /api/v1/anomaly/approvals/{id}/approve`
pub async fn approve(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    Path(id): Path<String>,
    Session(s): Session,
) -> Result<Json<AnomalyApproval>, ApiError> {
    require_admin(&state, &s, rid.as_str())?;
    let result = approvals::approve(
        state.store.as_ref(),
        &id,
        &s.identity,
        UnixTime::now(),
        state.anomalies.approval_ttl_secs(),
    )
    .await;
    let (outcome, detail, error) = match &result {
        Ok(a) => (
            "success",
            serde_json::json!({
                "approval_id": a.id,
                "requester": a.principal,
                "signals": a.signals,
                "expires_at": a.expires_at,
            }),
            None,
        ),
        Err(e) => (
            "denied",
            serde_json::json!({ "approval_id": id.chars().take(32).collect::<String>() }),
            Some(idmint_audit::AuditErrorInfo {
                code: api_error_code(e).into(),
                message: e.to_string(),
            }),
        ),
    };
    let ev = AuditEvent {
        request_id: Some(rid.to_string()),
        event: "anomaly_approved".into(),
        outcome: outcome.into(),
        identity: Some(audit_identity(&s.identity)),
        action: Some("approve".into()),
        role: result.as_ref().ok().map(|a| a.role.clone()),
        detail: Some(detail),
        error,
        ..Default::default()
    };
    // The approval is stored already; if its event cannot be written the
    // admin hears so (503), and the issuance it lets through is audited
    // with the approver anyway (`anomaly_approval_used`).
    if state.audit.append(ev).await.is_err() {
        return Err(ApiError::audit_unavailable().with_request_id(rid.as_str()));
    }
    result.map(Json).map_err(|e| api_error(e, rid.as_str()))
}

fn api_error_code(e: &ApprovalError) -> &'static str {
    match e {
        ApprovalError::NotFound(_) => "unknown_approval",
        ApprovalError::SelfApproval(_) => "self_approval",
        ApprovalError::AlreadyApproved(_) => "already_approved",
        ApprovalError::Store(_) => "store_unavailable",
        ApprovalError::Corrupt { .. } => "internal",
    }
}
