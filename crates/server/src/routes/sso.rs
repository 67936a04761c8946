//! `GET /api/v1/auth/sso`: the human login methods, for `idmint login
//! --sso`. Public (no session): it only repeats what the IdP's own
//! discovery document and the CLI's public client id already disclose.
//!
//! The code exchange happens in the CLI, not here: the CLI runs the
//! authorization-code + PKCE (or device) flow against the IdP, checks
//! `state` and `nonce`, and logs in with the ID token through the ordinary
//! OIDC login. The server stays stateless and verifies that ID token like
//! any other (signature, issuer, audience = the CLI's client id, expiry).

use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use idmint_proto::sso::{SsoMethod, SsoMethods};
use std::sync::Arc;

pub async fn methods(State(state): State<Arc<AppState>>) -> Json<SsoMethods> {
    let methods = state
        .oidc
        .verifiers()
        .iter()
        .map(|v| v.config())
        .filter(|c| c.is_human())
        .filter_map(|c| {
            Some(SsoMethod {
                name: c.name.clone(),
                issuer: c.issuer.clone(),
                client_id: c.sso_client_id()?.to_string(),
                scopes: c.sso_scopes(),
            })
        })
        .collect();
    Json(SsoMethods { methods })
}
