//! `POST /api/v1/login`, `GET /api/v1/whoami`, `POST /api/v1/logout`,
//! `POST /api/v1/creds/{*role}`.

use super::{json_error, ReqId};
use crate::audit_events::audit_identity;
use crate::error::ApiError;
use crate::issuance::{self, IssueFailure, IssueInput};
use crate::metrics::Metrics;
use crate::session_auth::Session;
use crate::state::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use idmint_audit::{AuditErrorInfo, AuditEvent};
use idmint_authn::AuthnError;
use idmint_core::role::GrantRequest;
use idmint_core::{Identity, Ttl, UnixTime};
use idmint_proto::{
    CredsRequest, CredsResponse, IdentitySummary, LoginRequest, LoginResponse, WhoAmI,
};
use std::sync::Arc;

pub fn summary(i: &Identity, with_attributes: bool) -> IdentitySummary {
    IdentitySummary {
        kind: i.kind.as_str().to_string(),
        subject: i.subject.clone(),
        issuer: i.issuer.clone(),
        method: i.method.clone(),
        auth: i.auth.clone(),
        attributes: if with_attributes {
            i.attributes.clone()
        } else {
            Default::default()
        },
    }
}

/// The unverified `iss` of a rejected token, for the audit trail. Bounded and
/// marked as claimed: it is evidence, not identity.
fn claimed_issuer(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    if payload.len() > 64 * 1024 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let iss = v.get("iss")?.as_str()?;
    Some(iss.chars().take(256).collect())
}

pub fn authn_status(e: &AuthnError) -> StatusCode {
    if e.is_unavailable() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::UNAUTHORIZED
    }
}

pub async fn login(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    ConnectInfo(super::PeerAddr(peer)): ConnectInfo<super::PeerAddr>,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> Result<Json<LoginResponse>, ApiError> {
    let event = login_event(&rid, peer.ip());
    let req = match body {
        Ok(Json(r)) => r,
        Err(e) => return Err(login_failed(&state, &rid, event, json_error(e)).await),
    };
    if req.method != "oidc" {
        let e = ApiError::bad_request(
            "unsupported_method",
            format!(
                "login method {:?} is not supported; use \"oidc\" (AppRole logs in at /api/v1/auth/approle/login)",
                req.method.chars().take(32).collect::<String>()
            ),
        );
        return Err(login_failed(&state, &rid, event, e).await);
    }
    let (token, claims) = oidc_login(
        &state,
        &rid,
        peer.ip(),
        &req.token,
        req.auth.as_deref(),
        req.access_token.as_deref(),
    )
    .await?;
    Ok(Json(login_response(&token, &claims)))
}

/// The native login response for a new session.
pub fn login_response(
    token: &idmint_core::Secret<String>,
    claims: &idmint_core::session::SessionClaims,
) -> LoginResponse {
    LoginResponse {
        token: token.expose().clone(),
        token_id: claims.token_id.to_string(),
        expires_at: claims.expires_at.secs(),
        renewable: claims.renewable,
        identity: summary(&claims.identity, false),
    }
}

/// The audit event every login starts from.
pub fn login_event(rid: &idmint_core::RequestId, source: std::net::IpAddr) -> AuditEvent {
    AuditEvent {
        request_id: Some(rid.to_string()),
        event: "login".into(),
        action: Some("login".into()),
        source_ip: Some(source.to_string()),
        ..Default::default()
    }
}

/// Audits a refused login (`login_failed`) and returns the error to send;
/// an audit failure turns it into 503.
pub async fn login_failed(
    state: &AppState,
    rid: &idmint_core::RequestId,
    mut event: AuditEvent,
    err: ApiError,
) -> ApiError {
    Metrics::count(&state.metrics.logins, "failure");
    event.event = "login_failed".into();
    event.outcome = "denied".into();
    event.error = Some(AuditErrorInfo {
        code: err.code.to_string(),
        message: err.message.clone(),
    });
    if state.audit.append(event).await.is_err() {
        return ApiError::audit_unavailable().with_request_id(rid.as_str());
    }
    err.with_request_id(rid.as_str())
}

/// Verifies an OIDC token and starts a session: shared by the native login
/// and the Vault-compatible `auth/jwt/login`. Audited either way.
pub async fn oidc_login(
    state: &AppState,
    rid: &idmint_core::RequestId,
    source: std::net::IpAddr,
    token: &str,
    auth: Option<&str>,
    access_token: Option<&str>,
) -> Result<
    (
        idmint_core::Secret<String>,
        idmint_core::session::SessionClaims,
    ),
    ApiError,
> {
    let mut event = login_event(rid, source);
    let mut identity = match state.oidc.verify(token, auth).await {
        Ok(i) => i,
        Err(e) => {
            event.detail =
                claimed_issuer(token).map(|i| serde_json::json!({ "claimed_issuer": i }));
            let err = ApiError::new(authn_status(&e), e.code(), e.to_string());
            return Err(login_failed(state, rid, event, err).await);
        }
    };
    if let Some(access_token) = access_token {
        match userinfo_groups(state, &mut identity, access_token).await {
            Ok(true) => event.detail = Some(serde_json::json!({ "groups_source": "userinfo" })),
            Ok(false) => {}
            Err(err) => return Err(login_failed(state, rid, event, err).await),
        }
    }
    let ttl = state.session_ttl(&identity);
    start_session(state, rid, event, identity, ttl).await
}

/// For a person whose ID token carried no groups: the groups of the IdP's
/// userinfo answer for `access_token`, whose `sub` must be the ID token's.
/// `Ok(true)` when groups were taken from userinfo. Only for auth configs
/// with `userinfo_groups = true`; machines and people with groups in the
/// ID token are left alone (the ID token wins).
async fn userinfo_groups(
    state: &AppState,
    identity: &mut Identity,
    access_token: &str,
) -> Result<bool, ApiError> {
    if identity.kind != idmint_core::IdentityKind::Human {
        return Ok(false);
    }
    let has_groups = identity
        .attributes
        .get("groups")
        .and_then(|g| g.as_array())
        .is_some_and(|g| !g.is_empty());
    if has_groups || access_token.is_empty() || access_token.len() > 16 * 1024 {
        return Ok(false);
    }
    let Some(cfg) = state
        .oidc
        .verifiers()
        .iter()
        .map(|v| v.config())
        .find(|c| c.name == identity.auth)
        .filter(|c| c.userinfo_groups && c.effective_groups_claim().is_some())
    else {
        return Ok(false);
    };
    use idmint_authn::userinfo::UserinfoError;
    match state
        .userinfo
        .groups(cfg, &identity.subject, access_token)
        .await
    {
        Ok(groups) => {
            identity
                .attributes
                .insert("groups".into(), serde_json::Value::Array(groups));
            Ok(true)
        }
        Err(e @ UserinfoError::SubjectMismatch { .. }) => Err(ApiError::unauthorized(
            "userinfo_subject_mismatch",
            e.to_string(),
        )),
        Err(e) => Err(ApiError::unavailable("userinfo_unavailable", e.to_string())),
    }
}

/// Issues a session for a verified identity and audits the login; fails
/// closed if the audit event cannot be written. Shared by every login
/// method (OIDC, AppRole).
pub async fn start_session(
    state: &AppState,
    rid: &idmint_core::RequestId,
    mut event: AuditEvent,
    identity: Identity,
    ttl: Ttl,
) -> Result<
    (
        idmint_core::Secret<String>,
        idmint_core::session::SessionClaims,
    ),
    ApiError,
> {
    let now = UnixTime::now();
    let (token, claims) = match state.sessions.issue(identity, ttl, now, false) {
        Ok(t) => t,
        Err(e) => return Err(ApiError::internal(e.to_string()).with_request_id(rid.as_str())),
    };
    event.identity = Some(audit_identity(&claims.identity));
    event.token_id = Some(claims.token_id.to_string());
    event.outcome = "success".into();
    event.ttl_seconds = Some(claims.expires_at.secs().saturating_sub(now.secs()).max(0) as u64);
    match &mut event.detail {
        Some(serde_json::Value::Object(d)) => {
            d.insert("expires_at".into(), claims.expires_at.secs().into());
        }
        _ => event.detail = Some(serde_json::json!({ "expires_at": claims.expires_at.secs() })),
    }
    if state.audit.append(event).await.is_err() {
        Metrics::count(&state.metrics.logins, "failure");
        return Err(ApiError::audit_unavailable().with_request_id(rid.as_str()));
    }
    Metrics::count(&state.metrics.logins, "success");
    Ok((token, claims))
}

pub async fn whoami(Session(s): Session) -> Json<WhoAmI> {
    Json(WhoAmI {
        identity: summary(&s.identity, true),
        token_id: s.token_id.to_string(),
        issued_at: s.issued_at.secs(),
        expires_at: s.expires_at.secs(),
    })
}

pub async fn logout(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    Session(s): Session,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .deny_token(s.token_id.as_str(), s.expires_at)
        .await
        .map_err(|e| ApiError::store_unavailable(e).with_request_id(rid.as_str()))?;
    state.denylist.insert(s.token_id.as_str(), s.expires_at);
    let event = AuditEvent {
        request_id: Some(rid.to_string()),
        event: "session_revoked".into(),
        outcome: "success".into(),
        identity: Some(audit_identity(&s.identity)),
        token_id: Some(s.token_id.to_string()),
        ..Default::default()
    };
    state
        .audit
        .append(event)
        .await
        .map_err(|_| ApiError::audit_unavailable().with_request_id(rid.as_str()))?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn parse_ttl(ttl: Option<&str>) -> Result<Option<Ttl>, ApiError> {
    ttl.map(|t| t.parse::<Ttl>())
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_request", format!("ttl: {e}")))
}

pub fn issue_failure_to_api(f: IssueFailure) -> ApiError {
    let msg = f.message();
    match f {
        IssueFailure::UnknownRole(_) => ApiError::not_found("unknown_role", msg),
        IssueFailure::Denied(_) => ApiError::forbidden("policy_denied", msg),
        IssueFailure::Narrow(idmint_core::NarrowError::ScopeNotAllowed(..)) => {
            ApiError::bad_request("invalid_scope", msg)
        }
        IssueFailure::Narrow(_) => ApiError::bad_request("invalid_target", msg),
        IssueFailure::Issuer(e) => match e {
            idmint_issuers::IssueError::Refused { code, .. } => ApiError::forbidden(code, msg),
            idmint_issuers::IssueError::Missing { code, .. } => ApiError::unavailable(code, msg),
            idmint_issuers::IssueError::Target {
                retryable: true, ..
            } => ApiError::unavailable("target_unavailable", msg),
            idmint_issuers::IssueError::Target { .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, "target_failed", msg)
            }
            _ => ApiError::internal(msg),
        },
        IssueFailure::Store(_) => ApiError::unavailable("store_unavailable", msg),
        IssueFailure::Audit => ApiError::audit_unavailable(),
        IssueFailure::Internal(_) => ApiError::internal(msg),
        IssueFailure::ApprovalRequired { .. } => ApiError::forbidden("approval_required", msg),
    }
}

pub async fn creds(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    ConnectInfo(super::PeerAddr(peer)): ConnectInfo<super::PeerAddr>,
    Path(role): Path<String>,
    Session(s): Session,
    body: Result<Json<CredsRequest>, JsonRejection>,
) -> Result<Json<CredsResponse>, ApiError> {
    let bad = |e: ApiError| {
        let state = state.clone();
        let rid = rid.clone();
        let identity = s.identity.clone();
        let role = role.clone();
        async move {
            let ev = AuditEvent {
                request_id: Some(rid.to_string()),
                event: "issue_failed".into(),
                outcome: "error".into(),
                identity: Some(audit_identity(&identity)),
                role: Some(role.chars().take(128).collect()),
                error: Some(AuditErrorInfo {
                    code: e.code.to_string(),
                    message: e.message.clone(),
                }),
                ..Default::default()
            };
            if state.audit.append(ev).await.is_err() {
                return ApiError::audit_unavailable().with_request_id(rid.as_str());
            }
            e.with_request_id(rid.as_str())
        }
    };
    let req = match body {
        Ok(Json(r)) => r,
        Err(e) => return Err(bad(json_error(e)).await),
    };
    let ttl = match parse_ttl(req.ttl.as_deref()) {
        Ok(t) => t,
        Err(e) => return Err(bad(e).await),
    };
    // Only the key of a CSR is used, after its self-signature verified;
    // a bad CSR is the caller's mistake (400), audited like any other.
    let csr = match req
        .csr
        .as_deref()
        .map(idmint_authn::mtls::csr::public_key_from_pem)
    {
        None => None,
        Some(Ok(key)) => Some(key),
        Some(Err(e)) => return Err(bad(ApiError::bad_request("invalid_csr", e.to_string())).await),
    };
    let input = IssueInput {
        identity: &s.identity,
        role: &role,
        request: GrantRequest {
            ttl,
            scopes: req.scopes,
            audience: req.audience,
        },
        source_ip: Some(peer.ip()),
        request_id: &rid,
        session_token_id: Some(s.token_id.as_str()),
        actor: None,
        event: "credential_issued",
        csr,
    };
    let out = issuance::issue(&state, input)
        .await
        .map_err(|f| issue_failure_to_api(f).with_request_id(rid.as_str()))?;
    Ok(Json(CredsResponse {
        lease_id: out.lease.id.to_string(),
        role: out.lease.role.clone(),
        issuer: out.lease.issuer.clone(),
        expires_at: out.lease.expires_at.secs(),
        ttl_seconds: out.grant.ttl.as_secs(),
        ttl_clamped: out.grant.ttl_clamped,
        policy_version: out.decision.bundle_version,
        fingerprint: out.fingerprint,
        credential: out.minted.credential,
    }))
}
