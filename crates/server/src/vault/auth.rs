//! `auth/jwt/login`, `auth/approle/login` and the AppRole admin paths.

use super::body::parse_body;
use super::envelope;
use super::error::VaultError;
use super::token::{auth_object, VaultSession};
use crate::routes::{PeerAddr, ReqId};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::{Extension, Json};
use idmint_core::Secret;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Default, Deserialize)]
pub struct JwtLogin {
    #[serde(default)]
    role: String,
    #[serde(default)]
    jwt: String,
}

/// `POST|PUT /v1/auth/jwt/login` `{role, jwt}`. The Vault role names the
/// `[[auth.oidc]]` config that must verify the token; an empty role lets
/// the token's `iss` choose, like the native login. What the session may do
/// is decided later, per request, by Cedar.
pub async fn jwt_login(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    body: Bytes,
) -> Result<Json<Value>, VaultError> {
    let req: JwtLogin = parse_body(&body)?;
    let auth = if req.role.is_empty() {
        None
    } else if state.oidc.verifiers().iter().any(|v| v.name() == req.role) {
        Some(req.role.as_str())
    } else {
        let event = crate::routes::login::login_event(&rid, peer.ip());
        let err = crate::error::ApiError::bad_request(
            "unknown_role",
            format!(
                "role {:?} could not be found: a jwt role is the name of an [[auth.oidc]] config in idmint.toml",
                req.role.chars().take(64).collect::<String>()
            ),
        );
        return Err(crate::routes::login::login_failed(&state, &rid, event, err)
            .await
            .into());
    };
    if req.jwt.is_empty() {
        let event = crate::routes::login::login_event(&rid, peer.ip());
        let err = crate::error::ApiError::bad_request(
            "invalid_request",
            "missing jwt: send {\"role\": …, \"jwt\": …}",
        );
        return Err(crate::routes::login::login_failed(&state, &rid, event, err)
            .await
            .into());
    }
    let (token, claims) =
        crate::routes::login::oidc_login(&state, &rid, peer.ip(), &req.jwt, auth, None).await?;
    let role = auth.unwrap_or(claims.identity.auth.as_str()).to_string();
    Ok(Json(envelope(
        rid.as_str(),
        Value::Null,
        auth_object(&token, &claims, Some(&role)),
        None,
    )))
}

#[derive(Default, Deserialize)]
pub struct AppRoleLogin {
    #[serde(default)]
    role_id: String,
    #[serde(default)]
    secret_id: String,
}

/// `POST|PUT /v1/auth/approle/login` `{role_id, secret_id}`.
pub async fn approle_login(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    body: Bytes,
) -> Result<Json<Value>, VaultError> {
    let req: AppRoleLogin = parse_body(&body)?;
    let secret_id = Secret::new(req.secret_id);
    let (token, claims) =
        crate::approle::login(&state, &rid, peer.ip(), &req.role_id, secret_id).await?;
    let role = claims.identity.subject.clone();
    Ok(Json(envelope(
        rid.as_str(),
        Value::Null,
        auth_object(&token, &claims, Some(&role)),
        None,
    )))
}

/// `POST|PUT /v1/auth/approle/role/{name}/secret-id` (admin).
pub async fn approle_secret_id(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    Path(name): Path<String>,
    session: VaultSession,
) -> Result<Json<Value>, VaultError> {
    let identity = &session.claims.identity;
    crate::routes::approle::require_admin(&state, &rid, identity, &name).await?;
    let out = crate::approle::create_secret_id(&state, &rid, identity, &name).await?;
    let data = json!({
        "secret_id": out.secret_id,
        "secret_id_accessor": out.secret_id_accessor,
        "secret_id_ttl": out.secret_id_ttl,
        "secret_id_num_uses": out.secret_id_num_uses,
    });
    Ok(Json(envelope(rid.as_str(), data, Value::Null, None)))
}

/// `GET /v1/auth/approle/role/{name}/role-id` (admin).
pub async fn approle_role_id(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    Path(name): Path<String>,
    session: VaultSession,
) -> Result<Json<Value>, VaultError> {
    if !crate::routes::is_admin(&state, &session.claims.identity) {
        return Err(VaultError::new(
            axum::http::StatusCode::FORBIDDEN,
            "permission denied: reading a role id needs the admin action in policy",
        ));
    }
    let role = state.approles.by_name(&name).ok_or_else(|| {
        VaultError::new(
            axum::http::StatusCode::NOT_FOUND,
            format!(
                "no [[auth.approle]] named {:?}",
                name.chars().take(64).collect::<String>()
            ),
        )
    })?;
    Ok(Json(envelope(
        rid.as_str(),
        json!({ "role_id": role.role_id }),
        Value::Null,
        None,
    )))
}
