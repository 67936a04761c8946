//! `PUT /api/v1/secrets/{name}`, `GET /api/v1/secrets`,
//! `DELETE /api/v1/secrets/{name}` (admin only): static secrets sealed in
//! the store, delivered by `static` roles (see `crate::static_secrets`).
//!
//! No response ever contains a value, and every change (and every refused
//! attempt) is audited with the keyed fingerprint only. A change that
//! cannot be audited is undone before the error is returned.

use super::{is_admin, json_error, ReqId};
use crate::audit_events::audit_identity;
use crate::error::ApiError;
use crate::session_auth::Session;
use crate::state::AppState;
use crate::static_secrets::{self, SecretStoreError};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use idmint_audit::{AuditErrorInfo, AuditEvent};
use idmint_core::{Identity, Secret};
use idmint_issuers::static_secret::{validate_name, MAX_VALUE_BYTES};
use idmint_proto::secrets::{PutSecretRequest, SecretInfo, SecretList};
use std::sync::Arc;

/// Body limit of `PUT /api/v1/secrets/{name}`: room for the largest value
/// even when JSON escapes every byte (`\u00XX`), so an oversized value gets
/// the precise `secret_too_large` error instead of a generic one.
pub const PUT_BODY_LIMIT: usize = 6 * MAX_VALUE_BYTES + 1024;

fn admin_required() -> ApiError {
    ApiError::forbidden(
        "admin_required",
        "managing static secrets needs the admin action: a Cedar policy must permit Action::\"admin\" on Server::\"idmint\" for your identity",
    )
}

/// The name as it may appear in messages and audit events: short and
/// printable, whatever the caller sent.
fn shown(name: &str) -> String {
    name.chars()
        .take(64)
        .collect::<String>()
        .escape_default()
        .to_string()
}

fn store_error(e: SecretStoreError) -> ApiError {
    match e {
        SecretStoreError::Store(_) => ApiError::store_unavailable(e),
        _ => ApiError::internal(e.to_string()),
    }
}

/// Appends one `admin` event for a secret operation.
async fn audit(
    state: &AppState,
    rid: &str,
    who: &Identity,
    action: &str,
    detail: serde_json::Value,
    fingerprint: Option<String>,
    error: Option<&ApiError>,
) -> Result<(), ApiError> {
    let outcome = match error {
        None => "success",
        Some(e) if e.status == StatusCode::FORBIDDEN => "denied",
        Some(_) => "error",
    };
    let ev = AuditEvent {
        request_id: Some(rid.to_string()),
        event: "admin".into(),
        outcome: outcome.into(),
        action: Some(action.into()),
        identity: Some(audit_identity(who)),
        fingerprint,
        detail: Some(detail),
        error: error.map(|e| AuditErrorInfo {
            code: e.code.to_string(),
            message: e.message.clone(),
        }),
        ..Default::default()
    };
    state
        .audit
        .append(ev)
        .await
        .map(|_| ())
        .map_err(|_| ApiError::audit_unavailable())
}

/// Audits a refused or failed attempt, then returns its error (or the
/// audit failure, which the caller must learn about first).
async fn refuse(
    state: &AppState,
    rid: &str,
    who: &Identity,
    action: &str,
    name: Option<&str>,
    e: ApiError,
) -> ApiError {
    let detail = match name {
        Some(n) => serde_json::json!({ "name": shown(n) }),
        None => serde_json::json!({}),
    };
    match audit(state, rid, who, action, detail, None, Some(&e)).await {
        Ok(()) => e.with_request_id(rid),
        Err(audit_err) => audit_err.with_request_id(rid),
    }
}

/// Validates the path's name; the error names the rule.
fn checked_name(name: &str) -> Result<(), ApiError> {
    validate_name(name).map_err(|m| {
        ApiError::bad_request(
            "invalid_secret_name",
            format!("secret name {:?}: {m}", shown(name)),
        )
    })
}

/// The checks every change of one secret starts with: the caller is an
/// admin and the name is well formed; each refusal is audited.
async fn admitted(
    state: &AppState,
    rid: &str,
    who: &Identity,
    action: &'static str,
    name: &str,
) -> Result<(), ApiError> {
    let refusal = if !is_admin(state, who) {
        admin_required()
    } else if let Err(e) = checked_name(name) {
        e
    } else {
        return Ok(());
    };
    Err(refuse(state, rid, who, action, Some(name), refusal).await)
}

pub async fn put(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    Session(s): Session,
    Path(name): Path<String>,
    body: Result<Json<PutSecretRequest>, JsonRejection>,
) -> Result<Json<SecretInfo>, ApiError> {
    const ACTION: &str = "secret_put";
    let who = &s.identity;
    admitted(&state, rid.as_str(), who, ACTION, &name).await?;
    let Json(req) = match body {
        Ok(b) => b,
        Err(rej) => {
            let e = json_error(rej);
            return Err(refuse(&state, rid.as_str(), who, ACTION, Some(&name), e).await);
        }
    };
    let value = Secret::new(req.value);
    let invalid = if value.expose().is_empty() {
        Some(ApiError::bad_request(
            "empty_secret",
            "the secret value is empty; nothing was stored",
        ))
    } else if value.expose().len() > MAX_VALUE_BYTES {
        Some(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "secret_too_large",
            format!(
                "the secret value has {} bytes; static secrets hold at most {MAX_VALUE_BYTES} bytes (64 KiB); nothing was stored",
                value.expose().len()
            ),
        ))
    } else if value.expose().contains('\0') {
        Some(ApiError::bad_request(
            "invalid_secret_value",
            "the secret value contains a NUL byte, which no header or environment variable can carry; nothing was stored",
        ))
    } else {
        None
    };
    if let Some(e) = invalid {
        return Err(refuse(&state, rid.as_str(), who, ACTION, Some(&name), e).await);
    }
    let outcome = match static_secrets::put(
        state.store.as_ref(),
        &state.envelope,
        &state.fingerprints,
        &name,
        value,
        &who.principal_key(),
    )
    .await
    {
        Ok(o) => o,
        Err(e) => {
            let e = store_error(e);
            return Err(refuse(&state, rid.as_str(), who, ACTION, Some(&name), e).await);
        }
    };
    let detail = serde_json::json!({
        "name": name,
        "version": outcome.info.version,
        "size": outcome.info.size,
        "replaced_fingerprint": outcome.replaced,
    });
    let fp = Some(outcome.info.fingerprint.clone());
    if let Err(e) = audit(&state, rid.as_str(), who, ACTION, detail, fp, None).await {
        // No unaudited change: put the previous value (or nothing) back.
        if let Err(undo) = outcome.previous.restore(state.store.as_ref()).await {
            tracing::error!(secret = %name, error = %undo, "a static secret was stored but neither audited nor undone");
        }
        return Err(e.with_request_id(rid.as_str()));
    }
    Ok(Json(outcome.info))
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    Session(s): Session,
) -> Result<Json<SecretList>, ApiError> {
    if !is_admin(&state, &s.identity) {
        return Err(refuse(
            &state,
            rid.as_str(),
            &s.identity,
            "secret_list",
            None,
            admin_required(),
        )
        .await);
    }
    let secrets = static_secrets::list(state.store.as_ref(), &state.envelope)
        .await
        .map_err(|e| store_error(e).with_request_id(rid.as_str()))?;
    Ok(Json(SecretList { secrets }))
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    Session(s): Session,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    const ACTION: &str = "secret_delete";
    let who = &s.identity;
    admitted(&state, rid.as_str(), who, ACTION, &name).await?;
    let (info, previous) =
        match static_secrets::delete(state.store.as_ref(), &state.envelope, &name).await {
            Ok(Some(d)) => d,
            Ok(None) => {
                let e = ApiError::not_found(
                    "unknown_secret",
                    format!("no static secret named {name:?}; list them with `idmint secret list`"),
                );
                return Err(refuse(&state, rid.as_str(), who, ACTION, Some(&name), e).await);
            }
            Err(e) => {
                let e = store_error(e);
                return Err(refuse(&state, rid.as_str(), who, ACTION, Some(&name), e).await);
            }
        };
    let detail = serde_json::json!({ "name": name, "version": info.version });
    let fp = (!info.fingerprint.is_empty()).then(|| info.fingerprint.clone());
    if let Err(e) = audit(&state, rid.as_str(), who, ACTION, detail, fp, None).await {
        if let Err(undo) = previous.restore(state.store.as_ref()).await {
            tracing::error!(secret = %name, error = %undo, "a static secret was deleted but neither audited nor restored");
        }
        return Err(e.with_request_id(rid.as_str()));
    }
    Ok(StatusCode::NO_CONTENT)
}
