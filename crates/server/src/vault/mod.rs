//! The Vault-compatible API under `/v1/`: a subset of Vault's HTTP API so
//! that existing clients (the vault/bao CLI, hvac, Vault Agent) work
//! against idmint unchanged. See docs/vault-compat.md.
//!
//! It is an adapter, not a second implementation: every handler translates
//! Vault's request shape, calls the native handler or shared function
//! (login, issuance, ssh signing, leases, AppRole), and translates the
//! answer back. Decisions, leases, limits and audit are therefore exactly
//! the native API's. On top of the domain events, every `/v1/` request
//! except `sys/health`, `sys/seal-status` and `sys/leader` leaves one `vault_request`
//! audit event (path template, status, error code) with the request id
//! that links it to the domain events.
//!
//! Module map: `paths` (Vault paths ↔ idmint roles and leases), `body`
//! (lenient request bodies), `error` (`{"errors": […]}`), `token` (the
//! `X-Vault-Token` extractor and `auth/token/*`), `auth` (logins and
//! AppRole admin), `secrets` (dynamic secrets), `leases`
//! (`sys/leases/*`), `sys` (health).

mod auth;
mod body;
pub mod error;
mod leases;
mod paths;
mod secrets;
mod sys;
mod token;

use crate::routes::{PeerAddr, ReqId};
use crate::state::AppState;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use error::VaultError;
use idmint_audit::{AuditErrorInfo, AuditEvent};
use serde_json::{json, Value};
use std::sync::Arc;

/// Vault's response envelope. `lease` is `(lease_id, lease_duration)`.
pub fn envelope(request_id: &str, data: Value, auth: Value, lease: Option<(&str, u64)>) -> Value {
    let (lease_id, duration) = lease.unwrap_or(("", 0));
    json!({
        "request_id": request_id,
        "lease_id": lease_id,
        "renewable": false,
        "lease_duration": duration,
        "data": data,
        "wrap_info": Value::Null,
        "warnings": Value::Null,
        "auth": auth,
        "mount_type": "",
    })
}

/// The `/v1/` routes. Vault clients write with PUT or POST and read with
/// GET (hvac sometimes with POST), so writes accept both and credential
/// reads accept all three.
pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let audited = Router::new()
        .route(
            "/v1/auth/jwt/login",
            post(auth::jwt_login).put(auth::jwt_login),
        )
        .route(
            "/v1/auth/approle/login",
            post(auth::approle_login).put(auth::approle_login),
        )
        .route(
            "/v1/auth/approle/role/{name}/secret-id",
            post(auth::approle_secret_id).put(auth::approle_secret_id),
        )
        .route(
            "/v1/auth/approle/role/{name}/role-id",
            get(auth::approle_role_id),
        )
        .route(
            "/v1/auth/token/lookup-self",
            get(token::lookup_self).post(token::lookup_self),
        )
        .route(
            "/v1/auth/token/renew-self",
            post(token::renew_self).put(token::renew_self),
        )
        .route(
            "/v1/auth/token/revoke-self",
            post(token::revoke_self).put(token::revoke_self),
        )
        .route(
            "/v1/ssh/sign/{*role}",
            post(secrets::ssh_sign).put(secrets::ssh_sign),
        )
        .route(
            "/v1/database/creds/{*role}",
            get(secrets::database_creds)
                .post(secrets::database_creds)
                .put(secrets::database_creds),
        )
        .route(
            "/v1/aws/creds/{*role}",
            get(secrets::aws_creds)
                .post(secrets::aws_creds)
                .put(secrets::aws_creds),
        )
        .route(
            "/v1/aws/sts/{*role}",
            get(secrets::aws_sts)
                .post(secrets::aws_sts)
                .put(secrets::aws_sts),
        )
        .route(
            "/v1/sys/leases/lookup",
            post(leases::lookup).put(leases::lookup),
        )
        .route(
            "/v1/sys/leases/renew",
            post(leases::renew).put(leases::renew),
        )
        .route(
            "/v1/sys/leases/revoke",
            post(leases::revoke).put(leases::revoke),
        )
        .route(
            "/v1/sys/leases/revoke/{*lease_id}",
            post(leases::revoke_in_path).put(leases::revoke_in_path),
        )
        .route(
            "/v1/sys/leases/revoke-prefix/{*prefix}",
            post(leases::revoke_prefix).put(leases::revoke_prefix),
        )
        .route("/v1/{*rest}", any(no_handler))
        .route_layer(axum::middleware::from_fn_with_state(state, audit_request));
    Router::new()
        .route("/v1/sys/health", get(sys::health).head(sys::health))
        .route("/v1/sys/seal-status", get(sys::seal_status))
        .route("/v1/sys/leader", get(sys::leader))
        .merge(audited)
}

async fn no_handler() -> VaultError {
    VaultError::no_handler()
}

/// Audits one `/v1/` request after it ran: `vault_request` with the path
/// template (never the raw path or body), status and error code. The
/// domain events of the request (login, issuance, revocation) were written
/// by the shared code already; this one records that it came through the
/// Vault API. If it cannot be written the response becomes a 503, so no
/// answer leaves unaudited.
async fn audit_request(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let method = req.method().to_string();
    let rid = req.extensions().get::<ReqId>().map(|r| r.0.to_string());
    let source = req
        .extensions()
        .get::<ConnectInfo<PeerAddr>>()
        .map(|c| c.0 .0.ip().to_string());
    let resp = next.run(req).await;
    let status = resp.status();
    let code = resp
        .extensions()
        .get::<error::ErrorCode>()
        .map(|c| c.0.clone());
    let outcome = if status.is_success() {
        "success"
    } else if status.is_server_error() {
        "error"
    } else {
        "denied"
    };
    let event = AuditEvent {
        request_id: rid,
        event: "vault_request".into(),
        outcome: outcome.into(),
        action: Some(format!("{method} {template}")),
        source_ip: source,
        error: code
            .filter(|_| !status.is_success())
            .map(|c| AuditErrorInfo {
                code: c,
                message: format!("HTTP {}", status.as_u16()),
            }),
        detail: Some(json!({ "api": "vault", "path": template, "status": status.as_u16() })),
        ..Default::default()
    };
    if state.audit.append(event).await.is_err() {
        return VaultError::from(crate::error::ApiError::audit_unavailable()).into_response();
    }
    resp
}
