//! `sys/health` and `sys/seal-status`: idmint has no seal, so it is always
//! initialized and unsealed; `bao status` reads seal-status.

use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

/// Vault's version field: says it is idmint, for humans reading `bao status`.
fn version() -> String {
    format!("idmint-{}", env!("CARGO_PKG_VERSION"))
}

/// `GET|HEAD /v1/sys/health`: 200 when the audit log is writable (what
/// `/readyz` checks), else 503 like an unavailable Vault. Not audited:
/// load balancers poll it.
pub async fn health(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    let healthy = state.audit.is_healthy();
    let body = json!({
        "initialized": true,
        "sealed": false,
        "standby": false,
        "performance_standby": false,
        "replication_performance_mode": "disabled",
        "replication_dr_mode": "disabled",
        "server_time_utc": idmint_core::UnixTime::now().secs(),
        "version": version(),
        "cluster_name": "idmint",
        "cluster_id": "",
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// `GET /v1/sys/seal-status`.
pub async fn seal_status() -> Json<Value> {
    Json(json!({
        "type": "shamir",
        "initialized": true,
        "sealed": false,
        "t": 1,
        "n": 1,
        "progress": 0,
        "nonce": "",
        "version": version(),
        "build_date": "",
        "migration": false,
        "recovery_seal": false,
        "storage_type": "idmint",
        "cluster_name": "idmint",
        "cluster_id": "",
    }))
}

/// `GET /v1/sys/leader`: `bao status` asks; idmint has no HA leader (every
/// server serves every request, state is in the shared store).
pub async fn leader() -> Json<Value> {
    Json(json!({
        "ha_enabled": false,
        "is_self": true,
        "active_time": "0001-01-01T00:00:00Z",
        "leader_address": "",
        "leader_cluster_address": "",
        "performance_standby": false,
        "performance_standby_last_remote_wal": 0,
    }))
}
