//! Policy governance API under `/api/v1/policy/`: drafts, approvals,
//! rejection, history, rollback. The logic lives in `crate::governance`;
//! this module only maps HTTP to it and errors to status codes.

use super::{json_error, ReqId};
use crate::error::ApiError;
use crate::governance::activation::{self, require_reader, GovernanceError};
use crate::governance::diff::{file_diffs, role_changes};
use crate::governance::draft::{self, DraftError};
use crate::session_auth::Session;
use crate::state::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use idmint_core::PolicyBundle;
use idmint_proto::governance::{
    ApproveRequest, ApproveResponse, DraftCreateRequest, DraftDiff, DraftInfo, DraftList,
    DraftState, HistoryEntry, PolicyHistory, RejectRequest, RollbackRequest,
};
use std::sync::Arc;

fn api_error(e: GovernanceError, rid: &str) -> ApiError {
    let message = e.to_string();
    let (status, code) = match &e {
        GovernanceError::Forbidden(_) => (StatusCode::FORBIDDEN, "policy_forbidden"),
        GovernanceError::SelfApproval(_) => (StatusCode::FORBIDDEN, "self_approval"),
        GovernanceError::AlreadyApproved(_) => (StatusCode::CONFLICT, "already_approved"),
        GovernanceError::NotPending { .. } => (StatusCode::CONFLICT, "draft_not_pending"),
        GovernanceError::Stale { .. } => (StatusCode::CONFLICT, "stale_draft"),
        GovernanceError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        GovernanceError::UnknownVersion(_) => (StatusCode::NOT_FOUND, "unknown_version"),
        GovernanceError::Draft(DraftError::Invalid(_)) => {
            (StatusCode::BAD_REQUEST, "invalid_policy")
        }
        GovernanceError::Draft(DraftError::NotFound(_)) => (StatusCode::NOT_FOUND, "unknown_draft"),
        GovernanceError::Draft(DraftError::Store(e)) => {
            return ApiError::store_unavailable(e).with_request_id(rid)
        }
        GovernanceError::Audit => return ApiError::audit_unavailable().with_request_id(rid),
        GovernanceError::Draft(_) | GovernanceError::Internal(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
    };
    ApiError::new(status, code, message).with_request_id(rid)
}

/// `POST /api/v1/policy/drafts`
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    Session(s): Session,
    body: Result<Json<DraftCreateRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<DraftInfo>), ApiError> {
    let Json(req) = body.map_err(|e| json_error(e).with_request_id(rid.as_str()))?;
    let d = activation::create(
        &state,
        rid.as_str(),
        &s.identity,
        draft::to_sources(&req.sources),
        req.comment,
        None,
    )
    .await
    .map_err(|e| api_error(e, rid.as_str()))?;
    Ok((StatusCode::CREATED, Json(d)))
}

/// `GET /api/v1/policy/drafts`
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    Session(s): Session,
) -> Result<Json<DraftList>, ApiError> {
    require_reader(&state, &s.identity).map_err(|e| api_error(e, rid.as_str()))?;
    let drafts = draft::list(state.store.as_ref())
        .await
        .map_err(|e| api_error(e.into(), rid.as_str()))?;
    Ok(Json(DraftList { drafts }))
}

/// `GET /api/v1/policy/drafts/{id}`
pub async fn show(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    Session(s): Session,
    Path(id): Path<String>,
) -> Result<Json<DraftInfo>, ApiError> {
    require_reader(&state, &s.identity).map_err(|e| api_error(e, rid.as_str()))?;
    let d = draft::load(state.store.as_ref(), &id)
        .await
        .map_err(|e| api_error(e.into(), rid.as_str()))?;
    Ok(Json(d))
}

/// `GET /api/v1/policy/drafts/{id}/diff`: against the active bundle now.
pub async fn diff(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    Session(s): Session,
    Path(id): Path<String>,
) -> Result<Json<DraftDiff>, ApiError> {
    require_reader(&state, &s.identity).map_err(|e| api_error(e, rid.as_str()))?;
    let d = draft::load(state.store.as_ref(), &id)
        .await
        .map_err(|e| api_error(e.into(), rid.as_str()))?;
    let active = state.bundle.load_full();
    let sources = draft::to_sources(&d.sources);
    let roles = match PolicyBundle::from_sources(0, sources.clone()) {
        Ok(b) => role_changes(&active.roles, &b.roles),
        Err(_) => d.roles.clone(),
    };
    Ok(Json(DraftDiff {
        id: d.id,
        active_version: Some(active.version),
        files: file_diffs(&active.sources, &sources),
        roles,
    }))
}

/// `POST /api/v1/policy/drafts/{id}/approve`
pub async fn approve(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    Session(s): Session,
    Path(id): Path<String>,
    body: Result<Json<ApproveRequest>, JsonRejection>,
) -> Result<Json<ApproveResponse>, ApiError> {
    let Json(req) = body.map_err(|e| json_error(e).with_request_id(rid.as_str()))?;
    activation::approve(&state, rid.as_str(), &s.identity, &id, req)
        .await
        .map(Json)
        .map_err(|e| api_error(e, rid.as_str()))
}

/// `POST /api/v1/policy/drafts/{id}/reject`
pub async fn reject(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    Session(s): Session,
    Path(id): Path<String>,
    body: Result<Json<RejectRequest>, JsonRejection>,
) -> Result<Json<DraftInfo>, ApiError> {
    let Json(req) = body.map_err(|e| json_error(e).with_request_id(rid.as_str()))?;
    activation::reject(&state, rid.as_str(), &s.identity, &id, req.reason)
        .await
        .map(Json)
        .map_err(|e| api_error(e, rid.as_str()))
}

/// `POST /api/v1/policy/rollback`: a *draft* with an old version's
/// sources; it needs approval like any other.
pub async fn rollback(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    Session(s): Session,
    body: Result<Json<RollbackRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<DraftInfo>), ApiError> {
    let Json(req) = body.map_err(|e| json_error(e).with_request_id(rid.as_str()))?;
    let d = activation::rollback(&state, rid.as_str(), &s.identity, req.version, req.comment)
        .await
        .map_err(|e| api_error(e, rid.as_str()))?;
    Ok((StatusCode::CREATED, Json(d)))
}

/// `GET /api/v1/policy/history`: every version with its author, approvers
/// and comment, plus loud warnings for break-glass activations in force.
pub async fn history(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    Session(s): Session,
) -> Result<Json<PolicyHistory>, ApiError> {
    require_reader(&state, &s.identity).map_err(|e| api_error(e, rid.as_str()))?;
    let store_err = |e| ApiError::store_unavailable(e).with_request_id(rid.as_str());
    let bundles = state.store.bundle_history().await.map_err(store_err)?;
    let active = state.store.active_bundle().await.map_err(store_err)?;
    let active_version = active.map(|b| b.version);
    let drafts = draft::list(state.store.as_ref())
        .await
        .map_err(|e| api_error(e.into(), rid.as_str()))?;
    // Versions whose draft was pruned keep their facts in a record.
    let records = crate::governance::prune::version_records(state.store.as_ref())
        .await
        .map_err(|e| api_error(e.into(), rid.as_str()))?;
    let versions = bundles
        .into_iter()
        .map(|b| {
            let from = drafts
                .iter()
                .find(|d| d.activated_version == Some(b.version));
            let record = records.iter().find(|r| r.version == b.version);
            let (approvers, draft_id, break_glass) = match (from, record) {
                (Some(d), _) => (
                    d.approvals.iter().map(|a| a.principal.clone()).collect(),
                    Some(d.id.clone()),
                    d.break_glass.clone(),
                ),
                (None, Some(r)) => (
                    r.approvers.clone(),
                    Some(r.draft_id.clone()),
                    r.break_glass.clone(),
                ),
                (None, None) => (Vec::new(), None, None),
            };
            HistoryEntry {
                version: b.version,
                created_at: b.created_at,
                author: b.author,
                comment: b.comment,
                active: Some(b.version) == active_version,
                approvers,
                draft_id,
                break_glass,
            }
        })
        .collect();
    let warnings = drafts
        .iter()
        .filter(|d| d.state == DraftState::BreakGlass)
        .filter_map(|d| d.break_glass.as_ref().map(|b| (d, b)))
        .map(|(d, b)| {
            format!(
                "BREAK-GLASS: policy v{} (draft {}) was activated by {} without a second approver (reason: {}); it reverts to v{} at {} (Unix time) unless another admin runs `idmint policy draft approve {}`",
                b.activated_version, d.id, b.principal, b.reason, b.previous_version, b.expires_at, d.id
            )
        })
        .collect();
    Ok(Json(PolicyHistory {
        active_version,
        versions,
        warnings,
    }))
}
