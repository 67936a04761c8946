//! Dynamic secrets: `database/creds/{role}`, `aws/creds/{role}`,
//! `aws/sts/{role}` and `ssh/sign/{role}`, each a thin adapter over the
//! native handler (same decision, lease, audit and limits).

use super::body::{duration_text, parse_body};
use super::envelope;
use super::error::VaultError;
use super::paths::{resolve_role, vault_lease_id, Mount};
use super::token::VaultSession;
use crate::routes::{login, ssh, PeerAddr, ReqId};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::{Extension, Json};
use idmint_proto::ssh::SshSignRequest;
use idmint_proto::{Credential, CredsRequest, CredsResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Default, Deserialize)]
pub struct CredsBody {
    #[serde(default)]
    ttl: Option<Value>,
}

/// The `[limits]` rate limits and lease quotas, as on the native routes.
async fn admit(
    state: &AppState,
    rid: &ReqId,
    session: &VaultSession,
    role: &str,
) -> Result<(), VaultError> {
    crate::limits::admit(state, rid.0.as_str(), &session.claims.identity, role)
        .await
        .map_err(|r| VaultError {
            status: axum::http::StatusCode::TOO_MANY_REQUESTS,
            errors: vec![r.message],
            code: r.code.to_string(),
        })
}

/// Refuses, before anything is minted, a role whose credential has no
/// shape on this mount (an oauth role under `database/creds`, a federated
/// AWS role under `aws/creds`): minting it first would leave a live lease
/// nobody receives. Unknown roles pass: issuance reports them (audited).
fn check_mount(state: &AppState, mount: Mount, role: &str) -> Result<(), VaultError> {
    let bundle = state.bundle.load();
    let Some(r) = bundle.role(role) else {
        return Ok(());
    };
    let kind = state.issuers.get(&r.issuer).map(|i| i.kind()).unwrap_or("");
    let fits = match mount {
        Mount::Database => matches!(kind, "postgres" | "mysql" | "redis" | "rabbitmq"),
        Mount::Aws => {
            kind == "aws"
                && r.aws
                    .as_ref()
                    .is_some_and(|t| t.mode != idmint_core::role::AwsMode::Federated)
        }
        Mount::Ssh => true,
    };
    if fits {
        Ok(())
    } else {
        Err(VaultError::bad_request(format!(
            "role {role:?} does not issue {} on this mount; use the native API (/api/v1/creds/{role})",
            match mount {
                Mount::Database => "database users",
                Mount::Aws => "AWS access keys (federated roles return a web identity token)",
                Mount::Ssh => "certificates",
            }
        )))
    }
}

/// Issues `role` through the native `creds` handler.
async fn issue(
    state: Arc<AppState>,
    rid: ReqId,
    peer: PeerAddr,
    session: &VaultSession,
    role: String,
    body: &[u8],
) -> Result<CredsResponse, VaultError> {
    let req: CredsBody = parse_body(body)?;
    admit(&state, &rid, session, &role).await?;
    let creds = CredsRequest {
        ttl: duration_text(&req.ttl)?,
        ..Default::default()
    };
    let Json(out) = login::creds(
        State(state),
        Extension(rid),
        ConnectInfo(peer),
        Path(role),
        session.native(),
        Ok(Json(creds)),
    )
    .await?;
    Ok(out)
}

/// Resolves `name` on `mount`, refuses a role that does not fit the mount
/// (before anything is minted), and issues it. Returns the request id for
/// the envelope with the native answer.
async fn issue_on_mount(
    state: &Arc<AppState>,
    rid: ReqId,
    peer: PeerAddr,
    session: &VaultSession,
    mount: Mount,
    name: &str,
    body: &[u8],
) -> Result<(String, CredsResponse), VaultError> {
    let role = resolve_role(&state.bundle.load(), mount, name);
    check_mount(state, mount, &role)?;
    let request_id = rid.0.to_string();
    let out = issue(state.clone(), rid, peer, session, role, body).await?;
    Ok((request_id, out))
}

/// The Vault envelope of a lease: `lease_id` = `PATH/LEASE`, renewable
/// when the role is.
fn leased(state: &AppState, rid: &str, path: &str, out: &CredsResponse, data: Value) -> Value {
    let lease = vault_lease_id(path, &out.lease_id);
    let renewable = state
        .bundle
        .load()
        .role(&out.role)
        .is_some_and(|r| r.renewable);
    let mut v = envelope(
        rid,
        data,
        Value::Null,
        Some((lease.as_str(), out.ttl_seconds)),
    );
    if let Value::Object(m) = &mut v {
        m.insert("renewable".into(), Value::Bool(renewable));
    }
    v
}

/// `GET|POST|PUT /v1/database/creds/{role}` → `{username, password}`.
pub async fn database_creds(
    State(state): State<Arc<AppState>>,
    Extension(rid): Extension<ReqId>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    Path(name): Path<String>,
    session: VaultSession,
    body: Bytes,
) -> Result<Json<Value>, VaultError> {
    let (request_id, out) =
        issue_on_mount(&state, rid, peer, &session, Mount::Database, &name, &body).await?;
    let Credential::DatabaseUser {
        username, password, ..
    } = &out.credential
    else {
        return Err(VaultError::bad_request(format!(
            "role {:?} is not a database role; read it from its own mount",
            out.role
        )));
    };
    let data = json!({ "username": username, "password": password });
    Ok(Json(leased(
        &state,
        &request_id,
        &format!("database/creds/{name}"),
        &out,
        data,
    )))
}

/// `aws/creds` and `aws/sts` share this: Vault's `{access_key,
/// secret_key, security_token, arn}`.
async fn aws(
    state: Arc<AppState>,
    rid: ReqId,
    peer: PeerAddr,
    session: VaultSession,
    kind: &str,
    name: String,
    body: Bytes,
) -> Result<Json<Value>, VaultError> {
    let (request_id, out) =
        issue_on_mount(&state, rid, peer, &session, Mount::Aws, &name, &body).await?;
    let Credential::Aws {
        access_key_id,
        secret_access_key,
        session_token,
        arn,
        ..
    } = &out.credential
    else {
        return Err(VaultError::bad_request(format!(
            "role {:?} does not issue AWS access keys (federated roles return a web identity token: use the native API)",
            out.role
        )));
    };
    let data = json!({
        "access_key": access_key_id,
        "secret_key": secret_access_key,
        "security_token": session_token,
        "arn": arn,
    });
    Ok(Json(leased(
        &state,
        &request_id,
        &format!("aws/{kind}/{name}"),
        &out,
        data,
    )))
}

/// `GET|POST|PUT /v1/aws/creds/{role}`.
pub async fn aws_creds(
    State(state): State<Arc<AppState>>,
    Extension(rid): Extension<ReqId>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    Path(name): Path<String>,
    session: VaultSession,
    body: Bytes,
) -> Result<Json<Value>, VaultError> {
    aws(state, rid, peer, session, "creds", name, body).await
}

/// `GET|POST|PUT /v1/aws/sts/{role}`.
pub async fn aws_sts(
    State(state): State<Arc<AppState>>,
    Extension(rid): Extension<ReqId>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    Path(name): Path<String>,
    session: VaultSession,
    body: Bytes,
) -> Result<Json<Value>, VaultError> {
    aws(state, rid, peer, session, "sts", name, body).await
}

#[derive(Default, Deserialize)]
pub struct SignBody {
    #[serde(default)]
    public_key: String,
    /// Comma-separated, as Vault takes it.
    #[serde(default)]
    valid_principals: String,
    #[serde(default)]
    ttl: Option<Value>,
    #[serde(default)]
    cert_type: String,
}

/// `POST|PUT /v1/ssh/sign/{role}` → `{serial_number, signed_key}`.
///
/// The certificate always carries the role's principals: requested
/// `valid_principals` are checked against them (one outside the role is
/// refused) but do not narrow the list. `key_id` and `extensions` are
/// ignored (idmint sets the key id to `REQUEST_ID SUBJECT` for audit).
pub async fn ssh_sign(
    State(state): State<Arc<AppState>>,
    Extension(rid): Extension<ReqId>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    Path(name): Path<String>,
    session: VaultSession,
    body: Bytes,
) -> Result<Json<Value>, VaultError> {
    let req: SignBody = parse_body(&body)?;
    if !req.cert_type.is_empty() && req.cert_type != "user" {
        return Err(VaultError::bad_request(
            "cert_type must be \"user\": idmint signs host certificates only for enrolled hosts",
        ));
    }
    let bundle = state.bundle.load_full();
    let role = resolve_role(&bundle, Mount::Ssh, &name);
    let allowed: Vec<String> = bundle
        .role(&role)
        .and_then(|r| r.ssh.as_ref())
        .map(|t| t.principals.clone())
        .unwrap_or_default();
    let wanted: Vec<&str> = req
        .valid_principals
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if let Some(p) = wanted.iter().find(|p| !allowed.iter().any(|a| a == *p)) {
        return Err(VaultError::bad_request(format!(
            "{p} is not a valid value for valid_principals: role {role:?} signs for {allowed:?}"
        )));
    }
    let sign = SshSignRequest {
        public_key: req.public_key,
        ttl: duration_text(&req.ttl)?,
    };
    let request_id = rid.0.to_string();
    admit(&state, &rid, &session, &role).await?;
    let Json(out) = ssh::sign_role(
        State(state),
        Extension(rid),
        ConnectInfo(peer),
        Path(role),
        session.native(),
        Ok(Json(sign)),
    )
    .await?;
    let ttl = u64::try_from(out.valid_before - idmint_core::UnixTime::now().secs()).unwrap_or(0);
    let data = json!({
        "serial_number": format!("{:016x}", out.serial),
        "signed_key": format!("{}\n", out.certificate),
    });
    let lease = vault_lease_id(&format!("ssh/sign/{name}"), &out.lease_id);
    Ok(Json(envelope(
        &request_id,
        data,
        Value::Null,
        Some((lease.as_str(), ttl)),
    )))
}
