//! `POST /api/v1/auth/approle/login`, `POST /api/v1/approle/{name}/secret-id`.

use super::{is_admin, json_error, PeerAddr, ReqId};
use crate::approle;
use crate::audit_events::audit_identity;
use crate::error::ApiError;
use crate::session_auth::Session;
use crate::state::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::{Extension, Json};
use idmint_audit::AuditEvent;
use idmint_core::{Identity, RequestId, Secret};
use idmint_proto::approle::{AppRoleLoginRequest, SecretIdResponse};
use idmint_proto::LoginResponse;
use std::sync::Arc;

pub async fn login(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    body: Result<Json<AppRoleLoginRequest>, JsonRejection>,
) -> Result<Json<LoginResponse>, ApiError> {
    let req = match body {
        Ok(Json(r)) => r,
        Err(e) => {
            let event = super::login::login_event(&rid, peer.ip());
            return Err(super::login::login_failed(&state, &rid, event, json_error(e)).await);
        }
    };
    let secret_id = Secret::new(req.secret_id);
    let (token, claims) = approle::login(&state, &rid, peer.ip(), &req.role_id, secret_id).await?;
    Ok(Json(super::login::login_response(&token, &claims)))
}

/// Refuses a non-admin, audited; shared with the Vault-compatible route.
pub async fn require_admin(
    state: &AppState,
    rid: &RequestId,
    identity: &Identity,
    name: &str,
) -> Result<(), ApiError> {
    if is_admin(state, identity) {
        return Ok(());
    }
    let event = AuditEvent {
        request_id: Some(rid.to_string()),
        event: "approle_secret_id_created".into(),
        action: Some("admin".into()),
        identity: Some(audit_identity(identity)),
        detail: Some(serde_json::json!({ "approle": name.chars().take(64).collect::<String>() })),
        ..Default::default()
    };
    let err = ApiError::forbidden(
        "admin_required",
        "creating AppRole secret ids needs the admin action: a Cedar policy must permit Action::\"admin\" for your identity",
    );
    Err(crate::ssh::session::audited(state, &event, "denied", err)
        .await
        .with_request_id(rid.as_str()))
}

pub async fn secret_id(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    Path(name): Path<String>,
    Session(s): Session,
) -> Result<Json<SecretIdResponse>, ApiError> {
    require_admin(&state, &rid, &s.identity, &name).await?;
    approle::create_secret_id(&state, &rid, &s.identity, &name)
        .await
        .map(Json)
}
