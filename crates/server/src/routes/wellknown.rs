//! `/.well-known/openid-configuration` and `/.well-known/jwks.json`: idmint
//! as an OIDC issuer, so downstream APIs and clouds can verify its tokens.

use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::sync::Arc;

pub async fn jwks(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        state.keys.jwks_bytes().to_vec(),
    )
}

pub async fn discovery(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    axum::Json(idmint_issuers::discovery_document(
        &state.public_url,
        &state.keys,
    ))
}
