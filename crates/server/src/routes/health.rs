//! `/healthz` (the process is up), `/readyz` (it can serve: audit writable,
//! store reachable, policy loaded) and `/metrics`.

use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use idmint_proto::Health;
use std::sync::Arc;

pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        policy_version: None,
        problems: vec![],
    })
}

pub async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Health>) {
    let mut problems = vec![];
    if !state.audit.is_healthy() {
        problems.push("audit log is not writable: issuance is refused (fail-closed)".to_string());
    }
    if let Err(e) = state.store.count_leases(true).await {
        problems.push(format!("store: {e}"));
    }
    for v in state.oidc.verifiers() {
        let s = v.jwks_stats();
        if s.keys == 0 {
            problems.push(format!(
                "auth.oidc {:?}: no signing keys loaded from the issuer yet",
                v.name()
            ));
        }
    }
    // Secondary sinks are best-effort: a failing one makes the server
    // "degraded" (still 200, still issuing) — only the primary gates
    // readiness, since the primary alone decides whether issuance is safe.
    let mut degraded = vec![];
    for sink in state.audit.sink_statuses() {
        if !sink.healthy || sink.dropped > 0 {
            degraded.push(format!(
                "audit sink {:?} ({}) degraded: {} failures, {} batches dropped, {} bytes spooled{}",
                sink.name,
                sink.kind,
                sink.failures,
                sink.dropped,
                sink.spool_bytes,
                sink.last_error
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default()
            ));
        }
    }
    let ready = problems.is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let status_text = match (ready, degraded.is_empty()) {
        (false, _) => "not_ready",
        (true, true) => "ready",
        (true, false) => "degraded",
    };
    problems.extend(degraded);
    let health = Health {
        status: status_text.into(),
        policy_version: Some(state.bundle.load().version),
        problems,
    };
    (status, Json(health))
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let m = &state.metrics;
    for v in state.oidc.verifiers() {
        let s = v.jwks_stats();
        let label = crate::metrics::AuthLabel {
            auth: v.name().to_string(),
        };
        m.jwks_fetches.get_or_create(&label).set(s.fetches as i64);
        m.jwks_fetch_failures
            .get_or_create(&label)
            .set(s.fetch_failures as i64);
        m.jwks_stale.get_or_create(&label).set(i64::from(s.stale));
    }
    let a = state.audit.stats();
    m.audit_queue.set(a.queued as i64);
    m.audit_written.set(a.written as i64);
    m.audit_failures.set(a.failures as i64);
    for sink in state.audit.sink_statuses() {
        let label = crate::metrics::SinkLabel { sink: sink.name };
        m.audit_sink_failures
            .get_or_create(&label)
            .inner()
            .store(sink.failures, std::sync::atomic::Ordering::Relaxed);
        m.audit_sink_dropped
            .get_or_create(&label)
            .inner()
            .store(sink.dropped, std::sync::atomic::Ordering::Relaxed);
        m.audit_sink_spool_bytes
            .get_or_create(&label)
            .set(i64::try_from(sink.spool_bytes).unwrap_or(i64::MAX));
        m.audit_sink_healthy
            .get_or_create(&label)
            .set(i64::from(sink.healthy));
    }
    m.policy_version.set(state.bundle.load().version as i64);
    match m.encode() {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            String::from("metrics encoding failed"),
        ),
    }
}
