//! The `Authorization: Bearer idm_…` extractor for native endpoints.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use idmint_core::session::{SessionClaims, SessionError};
use idmint_core::UnixTime;
use std::sync::Arc;

/// A verified, unrevoked idmint session.
pub struct Session(pub SessionClaims);

pub fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Opens a session token and checks the denylist. Shared by the bearer
/// extractor and token exchange (an idmint token as `subject_token`).
pub fn open_session(state: &AppState, token: &str) -> Result<SessionClaims, ApiError> {
    let claims = state
        .sessions
        .open(token, UnixTime::now())
        .map_err(|e| match e {
            SessionError::Expired { .. } => ApiError::unauthorized("token_expired", e.to_string()),
            _ => ApiError::unauthorized(
                "invalid_token",
                format!("{e}; log in again with `idmint login`"),
            ),
        })?;
    if state.denylist.contains(claims.token_id.as_str()) {
        return Err(ApiError::unauthorized(
            "token_revoked",
            "this session token was revoked; log in again with `idmint login`",
        ));
    }
    Ok(claims)
}

impl FromRequestParts<Arc<AppState>> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(|| {
            ApiError::unauthorized(
                "missing_token",
                "send the idmint session token as `Authorization: Bearer idm_…` (get one with `idmint login`)",
            )
        })?;
        open_session(state, token).map(Session)
    }
}
