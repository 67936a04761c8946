//! Issuance guardrails: token-bucket rate limits per identity, per role
//! and global (429 with `Retry-After`), and quotas on live leases per
//! identity and per role.
//!
//! Enforced as a layer on the credential routes, before any policy
//! evaluation or target call, so a refused request costs a map lookup.
//! Buckets are per server (in memory): with N servers behind a load
//! balancer the effective global rate is up to N × `rate`. Lease quotas
//! read the store, so they hold across servers, but two simultaneous
//! requests can both pass the check: a quota may be exceeded by the number
//! of requests in flight at once (a soft quota).

mod bucket;
pub mod config;

pub use config::LimitsSection;

use crate::error::ApiError;
use crate::routes::ReqId;
use crate::session_auth::{bearer, open_session};
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bucket::{Buckets, KeyedBuckets, SingleBucket};
use idmint_audit::{AuditErrorInfo, AuditEvent};
use idmint_store::LeaseFilter;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The in-memory rate limiter plus the quota settings.
pub struct Limiter {
    config: LimitsSection,
    buckets: Mutex<Buckets>,
}

impl Limiter {
    pub fn new(config: LimitsSection) -> Result<Self, String> {
        for (key, r) in [
            ("per_identity", &config.per_identity),
            ("per_role", &config.per_role),
            ("global", &config.global),
        ] {
            if let Some(r) = r {
                r.validate(key)?;
            }
        }
        let buckets = Buckets {
            identity: config.per_identity.map(KeyedBuckets::new),
            role: config.per_role.map(KeyedBuckets::new),
            global: config.global.map(SingleBucket::new),
        };
        Ok(Self {
            config,
            buckets: Mutex::new(buckets),
        })
    }

    fn is_noop(&self) -> bool {
        let c = &self.config;
        c.per_identity.is_none()
            && c.per_role.is_none()
            && c.global.is_none()
            && c.max_leases_per_identity.is_none()
            && c.max_leases_per_role.is_none()
    }
}

/// The role in `/api/v1/creds/<role>` or `/api/v1/ssh/sign/<role>`.
fn role_of(path: &str) -> &str {
    ["/api/v1/creds/", "/api/v1/ssh/sign/"]
        .iter()
        .find_map(|p| path.strip_prefix(p))
        .unwrap_or("")
}

/// A 429 in the native error format, with `Retry-After` when known.
fn too_many(code: &'static str, message: String, retry_after: Option<u64>, rid: &str) -> Response {
    let mut resp = ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
        .with_request_id(rid)
        .into_response();
    if let Some(secs) = retry_after {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
    }
    resp
}

/// The layer: refuses over-limit requests; everything else (including
/// requests without a valid session, which the handler answers with 401)
/// passes through unchanged.
pub async fn enforce(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if state.limits.is_noop() {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let claims = bearer(&parts).and_then(|t| open_session(&state, t).ok());
    let rid = parts
        .extensions
        .get::<ReqId>()
        .map(|r| r.0.to_string())
        .unwrap_or_default();
    let req = Request::from_parts(parts, body);
    let Some(claims) = claims else {
        return next.run(req).await;
    };
    let role = role_of(req.uri().path()).to_string();
    match admit(&state, &rid, &claims.identity, &role).await {
        Ok(()) => next.run(req).await,
        Err(r) => too_many(r.code, r.message, r.retry_after, &rid),
    }
}

/// Why [`admit`] refused a request (always a 429).
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
    /// Seconds, for `Retry-After`, when a bucket can say.
    pub retry_after: Option<u64>,
}

/// Rate limits and lease quotas for `identity` asking for `role`; a
/// refusal is audited (`issue_refused`). Shared by the layer on the native
/// routes and the Vault-compatible adapter, which renders it its own way.
pub async fn admit(
    state: &AppState,
    rid: &str,
    identity: &idmint_core::Identity,
    role: &str,
) -> Result<(), Refusal> {
    if state.limits.is_noop() {
        return Ok(());
    }
    let principal = identity.principal_key();
    let refusal = match state.limits.buckets.lock() {
        Ok(mut b) => b.try_acquire(&principal, role, Instant::now()).err(),
        // A poisoned lock means a panic mid-update: fail closed.
        Err(_) => Some(bucket::Refusal {
            scope: "global",
            retry_after: std::time::Duration::from_secs(1),
        }),
    };
    if let Some(r) = refusal {
        let secs = r.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        let message = format!(
            "too many credential requests ({} limit in [limits]); retry after {secs}s",
            r.scope
        );
        audit_refusal(state, rid, identity, role, "rate_limited", &message).await;
        return Err(Refusal {
            code: "rate_limited",
            message,
            retry_after: Some(secs),
        });
    }
    if let Some(message) = quota_exceeded(state, &principal, role).await {
        audit_refusal(state, rid, identity, role, "lease_quota_exceeded", &message).await;
        return Err(Refusal {
            code: "lease_quota_exceeded",
            message,
            retry_after: None,
        });
    }
    Ok(())
}

/// Checks the live-lease quotas; `Some(message)` when one is reached.
/// A store failure lets the request through: the quota is a guardrail,
/// and issuance itself needs the store and fails closed there.
async fn quota_exceeded(state: &AppState, identity: &str, role: &str) -> Option<String> {
    if let Some(max) = state.limits.config.max_leases_per_identity {
        let filter = LeaseFilter {
            principal: Some(identity.to_string()),
            live_only: true,
            limit: max.saturating_add(1),
            ..Default::default()
        };
        if let Ok(live) = state.store.list_leases(&filter).await {
            if live.len() >= max {
                return Some(format!(
                    "you hold {} live leases, the most [limits] max_leases_per_identity allows ({max}); revoke some with `idmint leases revoke ID` or wait for them to expire",
                    live.len()
                ));
            }
        }
    }
    if let Some(max) = state.limits.config.max_leases_per_role {
        let filter = LeaseFilter {
            role_prefix: Some(role.to_string()),
            live_only: true,
            limit: LeaseFilter::MAX_LIMIT,
            ..Default::default()
        };
        if let Ok(live) = state.store.list_leases(&filter).await {
            let count = live.iter().filter(|l| l.role == role).count();
            if count >= max {
                return Some(format!(
                    "role {role:?} has {count} live leases, the most [limits] max_leases_per_role allows ({max}); retry when some expire"
                ));
            }
        }
    }
    None
}

async fn audit_refusal(
    state: &AppState,
    rid: &str,
    identity: &idmint_core::Identity,
    role: &str,
    code: &str,
    message: &str,
) {
    let ev = AuditEvent {
        request_id: (!rid.is_empty()).then(|| rid.to_string()),
        event: "issue_refused".into(),
        outcome: "denied".into(),
        identity: Some(crate::audit_events::audit_identity(identity)),
        action: Some("issue".into()),
        role: Some(role.to_string()),
        error: Some(AuditErrorInfo {
            code: code.to_string(),
            message: message.to_string(),
        }),
        ..Default::default()
    };
    // The request is refused either way; a failing audit sink is reported
    // by /readyz and the audit metrics.
    if state.audit.append(ev).await.is_err() {
        tracing::warn!(code, "could not audit a refused credential request");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_comes_from_the_path() {
        assert_eq!(role_of("/api/v1/creds/db/orders"), "db/orders");
        assert_eq!(role_of("/api/v1/ssh/sign/web"), "web");
        assert_eq!(role_of("/api/v1/leases"), "");
    }

    #[test]
    fn bad_rates_are_refused() {
        let with = |rate: f64, burst: u32| LimitsSection {
            per_identity: Some(config::RateSection { rate, burst }),
            ..Default::default()
        };
        assert!(Limiter::new(with(0.0, 1)).is_err());
        assert!(Limiter::new(with(f64::NAN, 1)).is_err());
        assert!(Limiter::new(with(1.0, 0)).is_err());
        assert!(!Limiter::new(with(1.0, 1)).unwrap().is_noop());
        assert!(Limiter::new(LimitsSection::default()).unwrap().is_noop());
    }
}
