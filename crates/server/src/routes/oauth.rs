//! `POST /oauth/token`: OAuth 2.0 Token Exchange (RFC 8693).
//!
//! The caller trades a `subject_token` (a JWT from a trusted OIDC issuer, or
//! an idmint session token) for an idmint-signed JWT for one audience. The
//! audience selects the role (a role of an `oauth` issuer listing it), or the
//! idmint extension parameter `role` names it. Scopes can only narrow the
//! role's template. Errors follow RFC 6749 §5.2 / RFC 8693 §2.2.2.

use super::ReqId;
use crate::audit_events::audit_identity;
use crate::issuance::{self, IssueFailure, IssueInput};
use crate::metrics::Metrics;
use crate::session_auth::open_session;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use idmint_audit::{AuditErrorInfo, AuditEvent};
use idmint_core::role::GrantRequest;
use idmint_core::{Identity, NarrowError, RequestContext, UnixTime};
use idmint_proto::token_types::{ACCESS_TOKEN, GRANT_TOKEN_EXCHANGE, ID_TOKEN, JWT};
use idmint_proto::{OAuthError, TokenExchangeResponse, SESSION_TOKEN_PREFIX};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

struct OAuthFailure {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl OAuthFailure {
    fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
        }
    }
    fn unavailable(description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error: "temporarily_unavailable",
            description: description.into(),
        }
    }
}

impl IntoResponse for OAuthFailure {
    fn into_response(self) -> Response {
        let body = OAuthError {
            error: self.error.to_string(),
            error_description: Some(self.description),
        };
        (self.status, no_store(), Json(body)).into_response()
    }
}

fn no_store() -> [(header::HeaderName, &'static str); 2] {
    [
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
    ]
}

/// Parameters that may appear once (RFC 6749 §3.2); `audience` and
/// `resource` may repeat (RFC 8693 §2.1) but idmint mints one audience per
/// token, so repeats are refused with `invalid_target`.
fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, OAuthFailure> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if out.insert(k.to_string(), v.to_string()).is_some() {
            let err = if k == "audience" || k == "resource" {
                "invalid_target"
            } else {
                "invalid_request"
            };
            return Err(OAuthFailure::new(
                err,
                format!("parameter {k:?} appears more than once; send one {k} per exchange"),
            ));
        }
    }
    Ok(out)
}

async fn verify_token(
    state: &AppState,
    token: &str,
    token_type: &str,
    which: &str,
) -> Result<(Identity, Option<String>), OAuthFailure> {
    if ![JWT, ID_TOKEN, ACCESS_TOKEN].contains(&token_type) {
        return Err(OAuthFailure::new(
            "invalid_request",
            format!("{which}_token_type {token_type:?} is not supported; use {JWT}, {ID_TOKEN} or {ACCESS_TOKEN}"),
        ));
    }
    if token.starts_with(SESSION_TOKEN_PREFIX) {
        if token_type != ACCESS_TOKEN {
            return Err(OAuthFailure::new("invalid_request", format!("an idmint session token is an access token: set {which}_token_type={ACCESS_TOKEN}")));
        }
        let claims = open_session(state, token).map_err(|e| {
            OAuthFailure::new("invalid_grant", format!("{which}_token: {}", e.message))
        })?;
        return Ok((claims.identity, Some(claims.token_id.to_string())));
    }
    match state.oidc.verify(token, None).await {
        Ok(i) => Ok((i, None)),
        Err(e) if e.is_unavailable() => {
            Err(OAuthFailure::unavailable(format!("{which}_token: {e}")))
        }
        Err(e) => Err(OAuthFailure::new(
            "invalid_grant",
            format!("{which}_token: {e}"),
        )),
    }
}

/// Roles that an exchange for `audience` could mean, in name order.
fn candidate_roles(state: &AppState, audience: &str) -> Vec<String> {
    let bundle = state.bundle.load();
    bundle
        .roles
        .values()
        .filter(|r| {
            state
                .issuers
                .get(&r.issuer)
                .is_some_and(|i| i.kind() == "oauth")
        })
        .filter(|r| r.audiences.iter().any(|a| a == audience))
        .map(|r| r.name.clone())
        .collect()
}

pub async fn token(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    ConnectInfo(super::PeerAddr(peer)): ConnectInfo<super::PeerAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match exchange(&state, &rid, peer, &headers, &body).await {
        Ok(r) => {
            Metrics::count(&state.metrics.token_exchanges, "success");
            (StatusCode::OK, no_store(), Json(r)).into_response()
        }
        Err(f) => {
            Metrics::count(&state.metrics.token_exchanges, "failure");
            f.into_response()
        }
    }
}

async fn exchange(
    state: &AppState,
    rid: &idmint_core::RequestId,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<TokenExchangeResponse, OAuthFailure> {
    let mut audit = AuditEvent {
        request_id: Some(rid.to_string()),
        event: "token_exchange".into(),
        action: Some("token_exchange".into()),
        source_ip: Some(peer.ip().to_string()),
        ..Default::default()
    };
    let result = exchange_inner(state, rid, peer, headers, body, &mut audit).await;
    if let Err(f) = &result {
        // Failures before issuance (bad request, bad subject token) are
        // audited here; issuance audits its own failures.
        if audit.outcome != "audited" {
            audit.outcome = "denied".into();
            audit.error = Some(AuditErrorInfo {
                code: f.error.to_string(),
                message: f.description.clone(),
            });
            if state.audit.append(audit).await.is_err() {
                return Err(OAuthFailure::unavailable(
                    "the audit log cannot be written; no token was issued",
                ));
            }
        }
    }
    result
}

async fn exchange_inner(
    state: &AppState,
    rid: &idmint_core::RequestId,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: &[u8],
    audit: &mut AuditEvent,
) -> Result<TokenExchangeResponse, OAuthFailure> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return Err(OAuthFailure::new(
            "invalid_request",
            "send the token request as application/x-www-form-urlencoded (RFC 6749 §4.1.3)",
        ));
    }
    let p = parse_form(body)?;
    let grant = p.get("grant_type").map(String::as_str).unwrap_or("");
    if grant != GRANT_TOKEN_EXCHANGE {
        return Err(OAuthFailure::new(
            "unsupported_grant_type",
            format!("grant_type must be {GRANT_TOKEN_EXCHANGE}"),
        ));
    }
    let subject_token = p
        .get("subject_token")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| OAuthFailure::new("invalid_request", "subject_token is required"))?;
    let subject_type = p
        .get("subject_token_type")
        .ok_or_else(|| OAuthFailure::new("invalid_request", "subject_token_type is required"))?;
    if let Some(rt) = p.get("requested_token_type") {
        if rt != ACCESS_TOKEN && rt != JWT {
            return Err(OAuthFailure::new("invalid_request", format!("requested_token_type {rt:?} is not supported; idmint issues {ACCESS_TOKEN} (a JWT)")));
        }
    }
    let (identity, session_token_id) =
        verify_token(state, subject_token, subject_type, "subject").await?;
    audit.identity = Some(audit_identity(&identity));

    let actor = match (p.get("actor_token"), p.get("actor_token_type")) {
        (None, None) => None,
        (Some(t), Some(tt)) => {
            let (a, _) = verify_token(state, t, tt, "actor").await?;
            let mut act = serde_json::json!({ "sub": a.subject, "iss": a.issuer });
            if let (Some(prior), Some(obj)) = (identity.attributes.get("act"), act.as_object_mut())
            {
                obj.insert("act".into(), prior.clone());
            }
            Some(act)
        }
        _ => {
            return Err(OAuthFailure::new(
                "invalid_request",
                "actor_token and actor_token_type must be sent together",
            ))
        }
    };

    let audience = p.get("audience").or_else(|| p.get("resource")).cloned();
    let scopes = p.get("scope").map(|s| {
        s.split(' ')
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>()
    });
    let candidates = match (p.get("role"), &audience) {
        (Some(r), _) => vec![r.clone()],
        (None, Some(a)) => candidate_roles(state, a),
        (None, None) => {
            return Err(OAuthFailure::new(
                "invalid_request",
                "send `audience` (the API the token is for) or idmint's `role` parameter",
            ))
        }
    };
    if candidates.is_empty() {
        return Err(OAuthFailure::new(
            "invalid_target",
            format!("no role issues tokens for audience {:?}; ask an admin to add it to a role's audiences", audience.unwrap_or_default()),
        ));
    }
    // Several roles may serve one audience: take the first the policy
    // permits (by role name, so the choice is deterministic).
    let Some(first) = candidates.first().cloned() else {
        return Err(OAuthFailure::new(
            "invalid_target",
            "no role matches this exchange",
        ));
    };
    // With one candidate, issuance's own evaluation decides: evaluating
    // here too would run Cedar twice on the hot path.
    let chosen = if candidates.len() == 1 {
        first
    } else {
        let bundle = state.bundle.load();
        let ctx = RequestContext {
            scopes: scopes.clone().unwrap_or_default(),
            audience: audience.clone(),
            source_ip: Some(peer.ip()),
            now: UnixTime::now().secs(),
            ttl_seconds: 0,
            host: None,
        };
        candidates
            .iter()
            .find(|name| {
                bundle.role(name).is_some_and(|role| {
                    let ctx = RequestContext {
                        ttl_seconds: role.default_ttl().as_secs(),
                        ..ctx.clone()
                    };
                    bundle
                        .evaluate(&identity, "issue", Some(role), &ctx)
                        .allowed
                })
            })
            .cloned()
            .unwrap_or(first)
    };
    let issues_tokens = state
        .bundle
        .load()
        .role(&chosen)
        .and_then(|r| state.issuers.get(&r.issuer))
        .is_some_and(|i| i.kind() == "oauth");
    if !issues_tokens && state.bundle.load().role(&chosen).is_some() {
        return Err(OAuthFailure::new(
            "invalid_target",
            format!("role {chosen:?} does not issue tokens; token exchange only mints JWTs (use `idmint creds` for other credentials)"),
        ));
    }
    audit.outcome = "audited".into();
    let input = IssueInput {
        identity: &identity,
        role: &chosen,
        request: GrantRequest {
            ttl: None,
            scopes,
            audience,
        },
        source_ip: Some(peer.ip()),
        request_id: rid,
        session_token_id: session_token_id.as_deref(),
        actor,
        event: "token_exchange",
        csr: None,
    };
    let out = issuance::issue(state, input).await.map_err(|f| {
        let msg = f.message();
        match f {
            IssueFailure::UnknownRole(_) => OAuthFailure::new("invalid_target", msg),
            IssueFailure::Denied(_) => OAuthFailure::new("unauthorized_client", msg),
            IssueFailure::ApprovalRequired { .. } => OAuthFailure {
                status: StatusCode::FORBIDDEN,
                error: "access_denied",
                description: msg,
            },
            IssueFailure::Narrow(NarrowError::ScopeNotAllowed(..)) => {
                OAuthFailure::new("invalid_scope", msg)
            }
            IssueFailure::Narrow(_) => OAuthFailure::new("invalid_target", msg),
            IssueFailure::Audit | IssueFailure::Store(_) => OAuthFailure::unavailable(msg),
            IssueFailure::Issuer(idmint_issuers::IssueError::Refused { .. }) => {
                OAuthFailure::new("unauthorized_client", msg)
            }
            IssueFailure::Issuer(idmint_issuers::IssueError::Missing { .. }) => {
                OAuthFailure::unavailable(msg)
            }
            IssueFailure::Issuer(_) | IssueFailure::Internal(_) => OAuthFailure {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                error: "server_error",
                description: msg,
            },
        }
    })?;
    let idmint_proto::Credential::OauthToken { access_token, .. } = out.minted.credential else {
        return Err(OAuthFailure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "server_error",
            description: "the role's issuer did not mint a token".into(),
        });
    };
    let expires_in = out
        .lease
        .expires_at
        .secs()
        .saturating_sub(UnixTime::now().secs())
        .max(0) as u64;
    Ok(TokenExchangeResponse {
        access_token,
        issued_token_type: ACCESS_TOKEN.to_string(),
        token_type: "Bearer".into(),
        expires_in,
        scope: (!out.grant.scopes.is_empty()).then(|| out.grant.scopes.join(" ")),
    })
}
