//! The Vault token: `X-Vault-Token` carries an idmint session token.
//! `auth/token/lookup-self`, `renew-self`, `revoke-self`, and the `auth`
//! object every login returns.

use super::envelope;
use super::error::VaultError;
use crate::routes::ReqId;
use crate::session_auth::{bearer, open_session, Session};
use crate::state::AppState;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use idmint_core::session::SessionClaims;
use idmint_core::{Secret, UnixTime};
use serde_json::{json, Value};
use std::sync::Arc;

/// Vault's header for the client token.
pub const TOKEN_HEADER: &str = "x-vault-token";

/// A verified, unrevoked idmint session presented as a Vault token.
pub struct VaultSession {
    pub claims: SessionClaims,
    /// The token as sent: `lookup-self` echoes it as `id`, like Vault.
    pub token: Secret<String>,
}

impl FromRequestParts<Arc<AppState>> for VaultSession {
    type Rejection = VaultError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = header.or_else(|| bearer(parts)) else {
            return Err(VaultError {
                status: StatusCode::FORBIDDEN,
                errors: vec!["permission denied: send the idmint session token as X-Vault-Token (log in with auth/jwt/login or auth/approle/login)".into()],
                code: "missing_token".into(),
            });
        };
        let claims = open_session(state, token)?;
        Ok(VaultSession {
            claims,
            token: Secret::new(token.to_string()),
        })
    }
}

impl VaultSession {
    /// The native extractor's value, for calling native handlers.
    pub fn native(&self) -> Session {
        Session(self.claims.clone())
    }
}

/// Vault's login path for the method behind a session.
fn login_path(claims: &SessionClaims) -> &'static str {
    match claims.identity.method.as_str() {
        "approle" => "auth/approle/login",
        _ => "auth/jwt/login",
    }
}

/// Vault token metadata (strings only): who the token belongs to.
fn metadata(claims: &SessionClaims, role: Option<&str>) -> Value {
    let i = &claims.identity;
    let mut m = json!({
        "subject": i.subject,
        "issuer": i.issuer,
        "auth": i.auth,
        "kind": i.kind.as_str(),
        "method": i.method,
    });
    if let (Some(r), Value::Object(map)) = (role, &mut m) {
        map.insert("role".into(), Value::String(r.to_string()));
    }
    m
}

/// Seconds from now until `claims` expire (0 once expired).
fn remaining(claims: &SessionClaims) -> u64 {
    u64::try_from(claims.expires_at.secs() - UnixTime::now().secs()).unwrap_or(0)
}

/// Vault's `auth` object for a new session. idmint has no named Vault
/// policies (Cedar decides per request), so `policies` is `["default"]`.
pub fn auth_object(token: &Secret<String>, claims: &SessionClaims, role: Option<&str>) -> Value {
    json!({
        "client_token": token.expose(),
        "accessor": claims.token_id.as_str(),
        "policies": ["default"],
        "token_policies": ["default"],
        "metadata": metadata(claims, role),
        "lease_duration": remaining(claims),
        "renewable": false,
        "entity_id": "",
        "token_type": "service",
        "orphan": true,
        "num_uses": 0,
    })
}

/// `GET|POST /v1/auth/token/lookup-self`.
pub async fn lookup_self(
    Extension(ReqId(rid)): Extension<ReqId>,
    session: VaultSession,
) -> Json<Value> {
    let c = &session.claims;
    let data = json!({
        "accessor": c.token_id.as_str(),
        "creation_time": c.issued_at.secs(),
        "creation_ttl": u64::try_from(c.expires_at.secs() - c.issued_at.secs()).unwrap_or(0),
        "display_name": format!("{}-{}", c.identity.auth, c.identity.subject),
        "entity_id": "",
        "expire_time": c.expires_at.rfc3339(),
        "explicit_max_ttl": 0,
        "id": session.token.expose(),
        "issue_time": c.issued_at.rfc3339(),
        "meta": metadata(c, None),
        "num_uses": 0,
        "orphan": true,
        "path": login_path(c),
        "policies": ["default"],
        "renewable": false,
        "ttl": remaining(c),
        "type": "service",
    });
    Json(envelope(rid.as_str(), data, Value::Null, None))
}

/// `POST|PUT /v1/auth/token/renew-self`: refused. An idmint session ends
/// when its policy-chosen lifetime does (and never outlives its proof), so
/// there is nothing to renew; Vault clients (Agent, hvac) log in again on a
/// non-renewable token.
pub async fn renew_self(session: VaultSession) -> VaultError {
    VaultError {
        status: StatusCode::BAD_REQUEST,
        errors: vec![format!(
            "token is not renewable: idmint sessions end at expiry ({}); log in again",
            session.claims.expires_at.rfc3339()
        )],
        code: "not_renewable".into(),
    }
}

/// `POST|PUT /v1/auth/token/revoke-self`: the native logout.
pub async fn revoke_self(
    State(state): State<Arc<AppState>>,
    ext: Extension<ReqId>,
    session: VaultSession,
) -> Response {
    match crate::routes::login::logout(State(state), ext, session.native()).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => VaultError::from(e).into_response(),
    }
}
