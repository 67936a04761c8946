//! `POST /api/v1/auth/mtls/login`: a session for the client certificate of
//! this TLS connection (`[[auth.mtls]]`, see docs/mtls.md). No body: the
//! proof is the certificate the handshake verified.

use super::login::{login_event, login_failed, login_response, start_session};
use super::{ClientChain, PeerAddr, ReqId};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use idmint_authn::MtlsError;
use idmint_proto::LoginResponse;
use std::sync::Arc;

pub async fn login(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    chain: Option<Extension<ClientChain>>,
) -> Result<Json<LoginResponse>, ApiError> {
    // The audit identity (written by `start_session`) carries the method
    // name and the certificate serial.
    let event = login_event(&rid, peer.ip());
    let chain = chain.map(|Extension(ClientChain(c))| c);
    let outcome = if state.mtls.is_empty() {
        Err(MtlsError::Untrusted(
            "this server has no [[auth.mtls]] method configured".into(),
        ))
    } else {
        state.mtls.login(chain.as_deref().map(Vec::as_slice)).await
    };
    let (identity, ttl) = match outcome {
        Ok(ok) => ok,
        Err(e) => {
            let status = match e {
                MtlsError::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::UNAUTHORIZED,
            };
            let err = ApiError::new(status, e.code(), e.to_string());
            return Err(login_failed(&state, &rid, event, err).await);
        }
    };
    let (token, claims) = start_session(&state, &rid, event, identity, ttl).await?;
    Ok(Json(login_response(&token, &claims)))
}

/// `GET /api/v1/x509/bundle`: public, CA certificates are what relying
/// parties must trust, not secrets.
pub async fn x509_bundle(State(state): State<Arc<AppState>>) -> Json<idmint_proto::X509Bundles> {
    Json(state.x509_bundles.clone())
}
