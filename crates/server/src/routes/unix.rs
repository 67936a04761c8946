//! `[[auth.unix]]` logins (see docs/auth-methods.md):
//!
//! - `POST /api/v1/auth/unix/login` — only over the server's Unix socket:
//!   the proof is the peer's `SO_PEERCRED` plus what `/proc/<pid>` says
//!   about it (read here, with the PID-reuse defence of `idmint-procid`);
//! - `POST /api/v1/agent/attest` — an enrolled host, authenticated by its
//!   agent key like every agent route, vouches for one of its processes;
//!   accepted only from hosts in the method's `trusted_hosts`.
//!
//! Either way the server's own bindings decide the subject, and every
//! outcome is audited (`login` / `login_failed` with a specific code).

use super::login::{login_event, login_failed, login_response, start_session};
use super::{json_error, PeerAddr, ReqId};
use crate::error::ApiError;
use crate::state::AppState;
use crate::unix_socket::UnixPeer;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::{Extension, Json};
use idmint_audit::AuditEvent;
use idmint_authn::unix::Attester;
use idmint_authn::UnixError;
use idmint_core::UnixTime;
use idmint_proto::unix::{AttestLoginRequest, ProcessAttestation, UnixLoginRequest};
use idmint_proto::LoginResponse;
use serde_json::json;
use std::sync::Arc;

fn refusal(e: &UnixError) -> ApiError {
    let status = match e {
        UnixError::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
        UnixError::UntrustedHost { .. } | UnixError::NoBinding { .. } => StatusCode::FORBIDDEN,
        UnixError::NotConfigured
        | UnixError::UnknownAuth(_)
        | UnixError::AmbiguousAuth(_)
        | UnixError::Malformed(_) => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, e.code(), e.to_string())
}

/// Adds the process facts to the audit event's detail.
fn describe(event: &mut AuditEvent, att: &ProcessAttestation) {
    if let Some(serde_json::Value::Object(d)) = &mut event.detail {
        d.insert("pid".into(), att.pid.into());
        d.insert("uid".into(), att.uid.into());
        d.insert("gid".into(), att.gid.into());
        d.insert(
            "exe".into(),
            att.exe.chars().take(512).collect::<String>().into(),
        );
        d.insert(
            "exe_sha256".into(),
            att.exe_sha256.chars().take(64).collect::<String>().into(),
        );
        if let Some(c) = &att.cgroup {
            d.insert(
                "cgroup".into(),
                c.chars().take(512).collect::<String>().into(),
            );
        }
    }
}

fn auth_detail(auth: Option<&str>) -> serde_json::Value {
    json!({ "unix": auth.map(|a| a.chars().take(64).collect::<String>()) })
}

pub async fn login(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    unix_peer: Option<Extension<UnixPeer>>,
    body: Result<Json<UnixLoginRequest>, JsonRejection>,
) -> Result<Json<LoginResponse>, ApiError> {
    let mut event = login_event(&rid, peer.ip());
    let req = match body {
        Ok(Json(r)) => r,
        Err(e) => return Err(login_failed(&state, &rid, event, json_error(e)).await),
    };
    event.detail = Some(auth_detail(req.auth.as_deref()));
    let Some(Extension(UnixPeer(cred))) = unix_peer else {
        let e = ApiError::forbidden(
            "unix_socket_required",
            "this login only works over the server's Unix socket ([server] unix_socket): the proof is the kernel's word about the connecting process, which TCP cannot give; use `idmint login --unix --socket /run/idmint/idmint.sock`",
        );
        return Err(login_failed(&state, &rid, event, e).await);
    };
    let method = match state.unix.select(req.auth.as_deref()) {
        Ok(m) => m,
        Err(e) => return Err(login_failed(&state, &rid, event, refusal(&e)).await),
    };
    if let Some(serde_json::Value::Object(d)) = &mut event.detail {
        d.insert("unix".into(), method.name().into());
        d.insert("pid".into(), cred.pid.into());
        d.insert("uid".into(), cred.uid.into());
    }
    // Reading /proc and hashing the executable is blocking work.
    let procfs = state.procfs.clone();
    let attested = tokio::task::spawn_blocking(move || procfs.identify_unix_peer(cred)).await;
    let att = match attested {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            let err = ApiError::unauthorized(
                "process_unidentified",
                format!("cannot identify the connecting process: {e}"),
            );
            return Err(login_failed(&state, &rid, event, err).await);
        }
        Err(e) => {
            let err = ApiError::internal(format!("identifying the connecting process failed: {e}"));
            return Err(login_failed(&state, &rid, event, err).await);
        }
    };
    describe(&mut event, &att);
    let identity = match method.identity(&att, Attester::Local(&state.host_name), UnixTime::now()) {
        Ok(i) => i,
        Err(e) => return Err(login_failed(&state, &rid, event, refusal(&e)).await),
    };
    let ttl = method.config().session_ttl;
    let (token, claims) = start_session(&state, &rid, event, identity, ttl).await?;
    Ok(Json(login_response(&token, &claims)))
}

pub async fn attest(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<LoginResponse>, ApiError> {
    let rid_s = rid.as_str();
    let mut event = login_event(&rid, peer.ip());
    let body = match body {
        Ok(b) => b,
        Err(e) => return Err(login_failed(&state, &rid, event, super::agent::body_error(e)).await),
    };
    // Signature, enrolled key, clock and nonce: refusals are audited there
    // (`agent_auth_failed`).
    let host = super::agent::authenticate(&state, rid_s, &method, &uri, &headers, &body)
        .await
        .map_err(|e| e.with_request_id(rid_s))?;
    event.detail = Some(json!({ "attested_by": host }));
    let req: AttestLoginRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let err = ApiError::bad_request(
                "invalid_request",
                format!("the body is not a valid attestation request: {e}"),
            );
            return Err(login_failed(&state, &rid, event, err).await);
        }
    };
    if let Some(serde_json::Value::Object(d)) = &mut event.detail {
        if let serde_json::Value::Object(a) = auth_detail(req.auth.as_deref()) {
            d.extend(a);
        }
    }
    describe(&mut event, &req.process);
    let unix = match state.unix.select(req.auth.as_deref()) {
        Ok(m) => m,
        Err(e) => return Err(login_failed(&state, &rid, event, refusal(&e)).await),
    };
    if let Some(serde_json::Value::Object(d)) = &mut event.detail {
        d.insert("unix".into(), unix.name().into());
    }
    let identity = match unix.identity(&req.process, Attester::Host(&host), UnixTime::now()) {
        Ok(i) => i,
        Err(e) => return Err(login_failed(&state, &rid, event, refusal(&e)).await),
    };
    let ttl = unix.config().session_ttl;
    let (token, claims) = start_session(&state, &rid, event, identity, ttl).await?;
    Ok(Json(login_response(&token, &claims)))
}
