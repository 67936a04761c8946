//! AppRole on the server: secret ids in the store and the login, shared by
//! the native API (`/api/v1/auth/approle/login`,
//! `/api/v1/approle/{name}/secret-id`) and the Vault-compatible one
//! (`/v1/auth/approle/…`).
//!
//! A secret id lives in one blob named by its keyed hash
//! (`approle/secret-id/{name}/{hash}`, see [`idmint_authn::approle`]); the
//! blob holds the record (uses left, expiry, CIDRs), never the secret id.
//! A login *claims* the record by deleting the blob: only one of two
//! concurrent logins can delete it, so a single-use secret id is used once
//! even under a race; a record with uses left is written back after.

use crate::audit_events::audit_identity;
use crate::error::ApiError;
use crate::routes::login::{login_event, login_failed, start_session};
use crate::state::AppState;
use axum::http::StatusCode;
use idmint_audit::AuditEvent;
use idmint_authn::approle::{AfterUse, SecretIdRecord};
use idmint_authn::AppRoleError;
use idmint_core::session::SessionClaims;
use idmint_core::{Identity, RequestId, Secret, UnixTime};
use idmint_proto::approle::SecretIdResponse;
use std::net::IpAddr;
use std::time::Instant;

/// The error a refused AppRole login returns.
fn refusal(e: &AppRoleError) -> ApiError {
    let status = match e {
        AppRoleError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        AppRoleError::Corrupt(_) | AppRoleError::Random(_) | AppRoleError::Config(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => StatusCode::UNAUTHORIZED,
    };
    ApiError::new(status, e.code(), e.public_message())
}

/// Logs in with a role id and a secret id from `source`. Every outcome is
/// audited (`login` / `login_failed`, with the precise reason in the audit
/// event only); the secret id itself never reaches a log.
pub async fn login(
    state: &AppState,
    rid: &RequestId,
    source: IpAddr,
    role_id: &str,
    secret_id: Secret<String>,
) -> Result<(Secret<String>, SessionClaims), ApiError> {
    let mut event = login_event(rid, source);
    let approles = &state.approles;
    let role = approles.by_role_id(role_id);
    if let Some(r) = role {
        event.detail = Some(serde_json::json!({ "approle": r.name }));
    }
    let keys = approles.throttle_keys(role, source);
    if let Err(e) = approles.throttle().take(&keys, Instant::now()) {
        return Err(fail(state, rid, event, &e).await);
    }
    let Some(role) = role else {
        return Err(fail(state, rid, event, &AppRoleError::UnknownRoleId).await);
    };
    let hash = match approles.presented_hash(&role.name, &secret_id) {
        Ok(h) => h,
        Err(e) => return Err(fail(state, rid, event, &e).await),
    };
    let blob = approles.blob_name(&role.name, &secret_id);
    drop(secret_id);
    let record = match state.store.get_blob(&blob).await {
        Ok(Some(bytes)) => match serde_json::from_slice::<SecretIdRecord>(&bytes) {
            Ok(r) => r,
            Err(e) => {
                let err = AppRoleError::Corrupt(e.to_string());
                return Err(fail(state, rid, event, &err).await);
            }
        },
        Ok(None) => return Err(fail(state, rid, event, &AppRoleError::UnknownSecretId).await),
        Err(e) => return Err(ApiError::store_unavailable(e).with_request_id(rid.as_str())),
    };
    if let Some(serde_json::Value::Object(d)) = &mut event.detail {
        d.insert("secret_id_accessor".into(), record.accessor.clone().into());
    }
    let now = UnixTime::now();
    if let Err(e) = record.check(&hash, source, now) {
        if e == AppRoleError::Expired {
            // Expired records are useless: drop them now rather than later.
            let _ = state.store.delete_blob(&blob).await;
        }
        return Err(fail(state, rid, event, &e).await);
    }
    // Claim the record: of concurrent logins, exactly one deletes it.
    match state.store.delete_blob(&blob).await {
        Ok(true) => {}
        Ok(false) => return Err(fail(state, rid, event, &AppRoleError::Contended).await),
        Err(e) => return Err(ApiError::store_unavailable(e).with_request_id(rid.as_str())),
    }
    if let AfterUse::Keep(next) = record.after_use() {
        let bytes = serde_json::to_vec(&next).map_err(|e| ApiError::internal(e.to_string()))?;
        if let Err(e) = state.store.put_blob(&blob, &bytes).await {
            // The secret id is lost (fails closed), the login still counts.
            tracing::warn!(approle = %role.name, error = %e, "writing back a secret id with uses left failed; it is no longer usable");
        }
    }
    approles.throttle().refund(&keys);
    let identity = approles.identity(role, &record, now);
    start_session(state, rid, event, identity, role.token_ttl).await
}

async fn fail(state: &AppState, rid: &RequestId, event: AuditEvent, e: &AppRoleError) -> ApiError {
    let mut err = refusal(e);
    // The audit log gets the precise reason; the caller only the public one.
    let public = std::mem::replace(&mut err.message, e.to_string());
    let mut audited = login_failed(state, rid, event, err).await;
    if audited.code != "audit_unavailable" {
        audited.message = public;
    }
    audited
}

/// Creates a secret id for AppRole `name` on behalf of an administrator
/// (the caller checks admin). Audited with the secret id's accessor and
/// keyed fingerprint, never the secret id.
pub async fn create_secret_id(
    state: &AppState,
    rid: &RequestId,
    admin: &Identity,
    name: &str,
) -> Result<SecretIdResponse, ApiError> {
    let mut event = AuditEvent {
        request_id: Some(rid.to_string()),
        event: "approle_secret_id_created".into(),
        action: Some("admin".into()),
        identity: Some(audit_identity(admin)),
        detail: Some(serde_json::json!({ "approle": name.chars().take(64).collect::<String>() })),
        ..Default::default()
    };
    let Some(role) = state.approles.by_name(name) else {
        let err = ApiError::not_found(
            "unknown_approle",
            format!(
                "no [[auth.approle]] named {:?} in idmint.toml",
                name.chars().take(64).collect::<String>()
            ),
        );
        return Err(crate::ssh::session::audited(state, &event, "denied", err)
            .await
            .with_request_id(rid.as_str()));
    };
    let now = UnixTime::now();
    let new = state
        .approles
        .new_secret_id(role, now)
        .map_err(|e| ApiError::internal(e.to_string()).with_request_id(rid.as_str()))?;
    let bytes = serde_json::to_vec(&new.record).map_err(|e| ApiError::internal(e.to_string()))?;
    let blob = state.approles.blob_name(&role.name, &new.secret_id);
    state
        .store
        .put_blob(&blob, &bytes)
        .await
        .map_err(|e| ApiError::store_unavailable(e).with_request_id(rid.as_str()))?;
    event.outcome = "success".into();
    event.fingerprint = Some(
        state
            .fingerprints
            .fingerprint(new.secret_id.expose().as_bytes()),
    );
    event.ttl_seconds = Some(role.secret_id_ttl.as_secs());
    event.detail = Some(serde_json::json!({
        "approle": role.name,
        "secret_id_accessor": new.record.accessor,
        "expires_at": new.record.expires_at,
        "num_uses": new.record.uses_left,
        "bound_cidrs": new.record.bound_cidrs,
    }));
    if state.audit.append(event).await.is_err() {
        // Fail closed: an unaudited secret id must not be usable.
        let _ = state.store.delete_blob(&blob).await;
        return Err(ApiError::audit_unavailable().with_request_id(rid.as_str()));
    }
    Ok(SecretIdResponse {
        approle: role.name.clone(),
        secret_id: new.secret_id.expose().clone(),
        secret_id_accessor: new.record.accessor,
        expires_at: new.record.expires_at,
        secret_id_ttl: role.secret_id_ttl.as_secs(),
        secret_id_num_uses: new.record.uses_left,
        bound_cidrs: new.record.bound_cidrs,
    })
}
