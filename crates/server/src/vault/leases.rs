//! `sys/leases/lookup`, `renew`, `revoke`, `revoke-prefix/{prefix}`: the
//! native lease handlers behind Vault's paths and lease-id format.

use super::body::{duration_text, parse_body};
use super::envelope;
use super::error::VaultError;
use super::paths::{idmint_lease_id, role_prefix};
use super::token::VaultSession;
use crate::error::ApiError;
use crate::routes::{is_admin, leases, ReqId};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use idmint_proto::{RenewRequest, RevokePrefixRequest};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Default, Deserialize)]
pub struct LeaseBody {
    #[serde(default)]
    lease_id: String,
    #[serde(default)]
    increment: Option<Value>,
}

/// `PUT|POST /v1/sys/leases/lookup` `{lease_id}`: your own leases only
/// (an admin sees all); someone else's reads as unknown.
pub async fn lookup(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    session: VaultSession,
    body: Bytes,
) -> Result<Json<Value>, VaultError> {
    let req: LeaseBody = parse_body(&body)?;
    let id = idmint_lease_id(&req.lease_id)?;
    let unknown = || {
        VaultError::bad_request(format!(
            "invalid lease: no lease {:?} that you may read",
            req.lease_id.chars().take(128).collect::<String>()
        ))
    };
    let lease = state
        .store
        .get_lease(&id)
        .await
        .map_err(|e| VaultError::from(ApiError::store_unavailable(e)))?
        .ok_or_else(unknown)?;
    let identity = &session.claims.identity;
    if lease.principal != identity.principal_key() && !is_admin(&state, identity) {
        return Err(unknown());
    }
    let now = idmint_core::UnixTime::now().secs();
    let ttl = if lease.state.is_live() {
        u64::try_from(lease.expires_at.secs() - now).unwrap_or(0)
    } else {
        0
    };
    let renewable = lease.state.is_live()
        && state
            .bundle
            .load()
            .role(&lease.role)
            .is_some_and(|r| r.renewable);
    let data = json!({
        "id": req.lease_id.trim(),
        "issue_time": lease.created_at.rfc3339(),
        "expire_time": lease.expires_at.rfc3339(),
        "last_renewal": Value::Null,
        "renewable": renewable,
        "ttl": ttl,
        "state": lease.state.as_str(),
        "role": lease.role,
    });
    Ok(Json(envelope(rid.as_str(), data, Value::Null, None)))
}

/// `PUT|POST /v1/sys/leases/renew` `{lease_id, increment}`: the native
/// renewal (role must be renewable; never past `max_ttl` or the caller's
/// proof).
pub async fn renew(
    State(state): State<Arc<AppState>>,
    Extension(rid): Extension<ReqId>,
    session: VaultSession,
    body: Bytes,
) -> Result<Json<Value>, VaultError> {
    let req: LeaseBody = parse_body(&body)?;
    let id = idmint_lease_id(&req.lease_id)?;
    let request_id = rid.0.to_string();
    let renew = RenewRequest {
        ttl: duration_text(&req.increment)?,
    };
    let Json(info) = leases::renew(
        State(state),
        Extension(rid),
        session.native(),
        Path(id.to_string()),
        Ok(Json(renew)),
    )
    .await?;
    let ttl = u64::try_from(info.expires_at - idmint_core::UnixTime::now().secs()).unwrap_or(0);
    let mut v = envelope(
        &request_id,
        Value::Null,
        Value::Null,
        Some((req.lease_id.trim(), ttl)),
    );
    if let Value::Object(m) = &mut v {
        m.insert("renewable".into(), Value::Bool(true));
    }
    Ok(Json(v))
}

/// `PUT|POST /v1/sys/leases/revoke` `{lease_id}`.
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Extension(rid): Extension<ReqId>,
    session: VaultSession,
    body: Bytes,
) -> Result<StatusCode, VaultError> {
    let req: LeaseBody = parse_body(&body)?;
    revoke_lease(state, rid, session, &req.lease_id).await
}

/// `PUT|POST /v1/sys/leases/revoke/{lease_id}`.
pub async fn revoke_in_path(
    State(state): State<Arc<AppState>>,
    Extension(rid): Extension<ReqId>,
    Path(lease_id): Path<String>,
    session: VaultSession,
) -> Result<StatusCode, VaultError> {
    revoke_lease(state, rid, session, &lease_id).await
}

async fn revoke_lease(
    state: Arc<AppState>,
    rid: ReqId,
    session: VaultSession,
    vault_lease: &str,
) -> Result<StatusCode, VaultError> {
    let id = idmint_lease_id(vault_lease)?;
    let _revoked = leases::revoke(
        State(state),
        Extension(rid),
        session.native(),
        Path(id.to_string()),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT|POST /v1/sys/leases/revoke-prefix/{prefix}` (admin): every live
/// lease of the roles the Vault prefix maps to (see `paths`).
pub async fn revoke_prefix(
    State(state): State<Arc<AppState>>,
    Extension(rid): Extension<ReqId>,
    Path(prefix): Path<String>,
    session: VaultSession,
) -> Result<StatusCode, VaultError> {
    let role_prefix = role_prefix(&state.bundle.load(), &prefix)?;
    let Json(out) = leases::revoke_prefix(
        State(state),
        Extension(rid),
        session.native(),
        Ok(Json(RevokePrefixRequest {
            prefix: role_prefix,
        })),
    )
    .await?;
    if out.failed.is_empty() {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(VaultError::new(
            StatusCode::BAD_GATEWAY,
            format!(
                "{} lease(s) revoked, {} could not be revoked now; the reaper retries them",
                out.revoked.len(),
                out.failed.len()
            ),
        ))
    }
}
