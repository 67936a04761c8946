//! The router: every route, its limits and middleware in one place.

use crate::routes::{
    self, agent, approle, health, leases, login, oauth, policy, ssh, sso, wellknown,
};
use crate::state::AppState;
use crate::{demo_idp, error::ApiError};
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;
use std::time::Duration;

pub fn router(state: Arc<AppState>, body_limit: usize, timeout: Duration) -> Router {
    let mut app = Router::new()
        .route("/api/v1/login", post(login::login))
        .route("/api/v1/whoami", get(login::whoami))
        .route("/api/v1/auth/sso", get(sso::methods))
        .route("/api/v1/logout", post(login::logout))
        .route(
            "/api/v1/creds/{*role}",
            post(login::creds).route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                crate::limits::enforce,
            )),
        )
        .route("/api/v1/leases", get(leases::list))
        .route("/api/v1/leases/{id}/revoke", post(leases::revoke))
        .route("/api/v1/leases/{id}/renew", post(leases::renew))
        .route("/api/v1/leases/revoke-prefix", post(leases::revoke_prefix))
        .route(
            "/api/v1/targets/{name}/rotate-admin",
            post(leases::rotate_admin),
        )
        .route("/api/v1/audit/trace/{reference}", get(leases::trace))
        .route("/api/v1/secrets", get(routes::secrets::list))
        .route(
            "/api/v1/secrets/{name}",
            axum::routing::put(routes::secrets::put)
                .delete(routes::secrets::delete)
                .layer(DefaultBodyLimit::max(routes::secrets::PUT_BODY_LIMIT)),
        )
        .route(
            "/api/v1/policy/drafts",
            post(policy::create).get(policy::list),
        )
        .route("/api/v1/policy/drafts/{id}", get(policy::show))
        .route("/api/v1/policy/drafts/{id}/diff", get(policy::diff))
        .route("/api/v1/policy/drafts/{id}/approve", post(policy::approve))
        .route("/api/v1/policy/drafts/{id}/reject", post(policy::reject))
        .route("/api/v1/policy/rollback", post(policy::rollback))
        .route("/api/v1/policy/history", get(policy::history))
        .route("/api/v1/anomaly/approvals", get(routes::anomaly::list))
        .route(
            "/api/v1/anomaly/approvals/{id}/approve",
            post(routes::anomaly::approve),
        )
        .route("/api/v1/ssh/sessions", post(ssh::sessions))
        .route(
            "/api/v1/ssh/sign/{*role}",
            post(ssh::sign_role).route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                crate::limits::enforce,
            )),
        )
        .route("/api/v1/ssh/ca", get(ssh::ca))
        .route("/api/v1/ssh/hosts/{host}/join-token", post(ssh::join_token))
        .route("/api/v1/auth/approle/login", post(approle::login))
        .route("/api/v1/auth/mtls/login", post(routes::mtls::login))
        .route("/api/v1/x509/bundle", get(routes::mtls::x509_bundle))
        .route("/api/v1/auth/aws-iam/login", post(routes::aws_iam::login))
        .route("/api/v1/auth/unix/login", post(routes::unix::login))
        .route("/api/v1/agent/attest", post(routes::unix::attest))
        .route("/api/v1/approle/{name}/secret-id", post(approle::secret_id))
        .route("/api/v1/agent/enroll", post(agent::enroll))
        .route("/api/v1/agent/grants", get(agent::grants))
        .route("/api/v1/agent/events", post(agent::events))
        .route("/oauth/token", post(oauth::token))
        .route(
            "/.well-known/openid-configuration",
            get(wellknown::discovery),
        )
        .route("/.well-known/jwks.json", get(wellknown::jwks))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics));
    if state.demo_idp.is_some() {
        app = app
            .route(
                &format!("{}/.well-known/openid-configuration", demo_idp::PATH),
                get(demo_idp::discovery),
            )
            .route(&format!("{}/jwks", demo_idp::PATH), get(demo_idp::jwks))
            .route(&format!("{}/token", demo_idp::PATH), post(demo_idp::token));
    }
    app = app.merge(crate::vault::routes(state.clone()));
    app.fallback(|| async {
        ApiError::not_found(
            "not_found",
            "no such endpoint; see the API reference in docs/api.md",
        )
    })
    .layer(axum::middleware::from_fn(routes::request_id_layer))
    .layer(DefaultBodyLimit::max(body_limit))
    .layer(tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        timeout,
    ))
    .with_state(state)
}
