//! What each scenario sends, and the role and policy it runs against.

use crate::error::{BenchError, Result};
use crate::http::{Connection, Outgoing, FORM, JSON};
use crate::tokens::TokenPool;
use idmint_proto::token_types::{GRANT_TOKEN_EXCHANGE, JWT};
use idmint_proto::{LoginRequest, LoginResponse};
use serde::Serialize;
use std::sync::Arc;

/// The role token exchange and `creds` ask for.
pub const ROLE: &str = "bench-api";
/// The role's audience: what an RFC 8693 client sends as `audience`.
pub const ROLE_AUDIENCE: &str = "https://bench-api.example.test";
/// The scope requested from the role (a narrowing of its template).
pub const ROLE_SCOPE: &str = "orders:read";

pub const LOGIN_PATH: &str = "/api/v1/login";
/// The measured JWT login goes through the Vault-compatible path, the
/// same request OpenBao gets (`{role, jwt}`), so the two figures compare
/// one API; the native path is only used to open sessions.
pub const VAULT_JWT_LOGIN_PATH: &str = "/v1/auth/jwt/login";
pub const TOKEN_PATH: &str = "/oauth/token";
pub const CREDS_PATH: &str = "/api/v1/creds/bench-api";
pub const HEALTHZ_PATH: &str = "/healthz";

/// `roles.toml` of the benchmark server: one oauth role, five-minute
/// tokens (the reaper expires leases of earlier runs during later ones,
/// which is the steady-state cost of issuance).
pub const ROLES: &str = r#"
[[role]]
name = "bench-api"
issuer = "oauth"
description = "Token for the benchmark's downstream API"
max_ttl = "10m"
default_ttl = "5m"
audiences = ["https://bench-api.example.test"]
scopes = ["orders:read", "orders:write"]
labels = { env = "bench" }
"#;

/// `bench.cedar`: what a realistic deployment has — a permit with
/// conditions on the CI claims, a TTL cap and a forbid that every request
/// is also checked against. The benchmark principal (acme/app on main,
/// a push) is permitted.
pub const POLICY: &str = r#"
@id("acme-app-main-gets-bench-api")
@ttl_cap("10m")
permit (principal, action == Action::"issue", resource == Role::"bench-api")
when { principal has repository && principal.repository == "acme/app"
       && principal has ref && principal.ref == "refs/heads/main" };

@id("no-pull-requests")
forbid (principal, action == Action::"issue", resource)
when { principal has event_name && principal.event_name == "pull_request" };
"#;

/// One load scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// `GET /healthz`: no work in the server, so this is the ceiling of the
    /// generator plus HTTP on this machine.
    Healthz,
    /// `POST /v1/auth/jwt/login` (Vault-compatible) with a fresh JWT each
    /// time.
    Login,
    /// `POST /oauth/token` (RFC 8693) with a fresh JWT as `subject_token`.
    Exchange,
    /// Log in once per connection, then `POST /api/v1/creds/bench-api`
    /// repeatedly with the session.
    Creds,
}

impl Scenario {
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Healthz => "healthz",
            Scenario::Login => "login",
            Scenario::Exchange => "exchange",
            Scenario::Creds => "creds",
        }
    }

    /// Whether every request consumes a token from the pool.
    pub fn token_per_request(self) -> bool {
        matches!(self, Scenario::Login | Scenario::Exchange)
    }

    /// Whether the server signs something per request (so the issuer's
    /// `algorithm` matters).
    pub fn signs(self) -> bool {
        matches!(self, Scenario::Exchange | Scenario::Creds)
    }

    /// Whether the server verifies a JWT per request (so the incoming
    /// token's algorithm matters).
    pub fn verifies_jwt(self) -> bool {
        self.token_per_request()
    }
}

/// `POST /api/v1/login` with `token`.
pub fn login_request(token: &str) -> Result<Outgoing> {
    let body = serde_json::to_string(&LoginRequest {
        method: "oidc".into(),
        token: token.to_string(),
        ..LoginRequest::default()
    })?;
    Ok(Outgoing::post(LOGIN_PATH, JSON, body))
}

/// `POST /v1/auth/jwt/login` with `token`; `role` is empty, so the auth
/// config is chosen by the token's `iss`.
pub fn vault_login_request(token: &str) -> Result<Outgoing> {
    let body = serde_json::to_string(&serde_json::json!({"role": "", "jwt": token}))?;
    Ok(Outgoing::post(VAULT_JWT_LOGIN_PATH, JSON, body))
}

/// `POST /oauth/token`: an RFC 8693 exchange of `token` for the role's
/// audience, narrowed to one scope.
pub fn exchange_request(token: &str) -> Outgoing {
    let body = url::form_urlencoded::Serializer::new(String::with_capacity(token.len() + 256))
        .append_pair("grant_type", GRANT_TOKEN_EXCHANGE)
        .append_pair("subject_token", token)
        .append_pair("subject_token_type", JWT)
        .append_pair("audience", ROLE_AUDIENCE)
        .append_pair("scope", ROLE_SCOPE)
        .finish();
    Outgoing::post(TOKEN_PATH, FORM, body)
}

/// `POST /api/v1/creds/bench-api` with the session `session_token`.
pub fn creds_request(session_token: &str) -> Outgoing {
    let body = format!(r#"{{"scopes":["{ROLE_SCOPE}"]}}"#);
    Outgoing::post(CREDS_PATH, JSON, body).with_bearer(session_token.to_string())
}

/// Logs in on `conn` with `token` and returns the session token.
pub async fn open_session(conn: &mut Connection, token: &str) -> Result<String> {
    let answer = conn.send(login_request(token)?, true).await?;
    if answer.status != 200 {
        return Err(BenchError::Preflight {
            scenario: "creds",
            message: format!(
                "login for the session answered HTTP {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
                    .chars()
                    .take(400)
                    .collect::<String>()
            ),
        });
    }
    let login: LoginResponse = serde_json::from_slice(&answer.body)?;
    Ok(login.token)
}

/// Where a load task gets its next request from.
pub enum RequestSource {
    Healthz,
    Login(Arc<TokenPool>),
    Exchange(Arc<TokenPool>),
    Creds { session_token: String },
}

impl RequestSource {
    /// The next request; `None` once the token pool is exhausted.
    pub fn next(&self) -> Option<Result<Outgoing>> {
        match self {
            RequestSource::Healthz => Some(Ok(Outgoing::get(HEALTHZ_PATH))),
            RequestSource::Login(pool) => pool.take().map(vault_login_request),
            RequestSource::Exchange(pool) => pool.take().map(|t| Ok(exchange_request(t))),
            RequestSource::Creds { session_token } => Some(Ok(creds_request(session_token))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_is_a_form_with_every_rfc8693_parameter() {
        let req = exchange_request("aa.bb.cc");
        assert_eq!(req.path, TOKEN_PATH);
        assert_eq!(req.content_type, Some(FORM));
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(req.body.as_bytes())
            .into_owned()
            .collect();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("grant_type"), Some(GRANT_TOKEN_EXCHANGE));
        assert_eq!(get("subject_token"), Some("aa.bb.cc"));
        assert_eq!(get("subject_token_type"), Some(JWT));
        assert_eq!(get("audience"), Some(ROLE_AUDIENCE));
        assert_eq!(get("scope"), Some(ROLE_SCOPE));
    }

    #[test]
    fn login_and_creds_bodies_are_what_the_api_expects() {
        let req = login_request("x.y.z").unwrap();
        let parsed: LoginRequest = serde_json::from_str(&req.body).unwrap();
        assert_eq!(
            (parsed.method.as_str(), parsed.token.as_str(), parsed.auth),
            ("oidc", "x.y.z", None)
        );
        let creds = creds_request("idm_abc");
        let parsed: idmint_proto::CredsRequest = serde_json::from_str(&creds.body).unwrap();
        assert_eq!(parsed.scopes, Some(vec![ROLE_SCOPE.to_string()]));
        assert_eq!(creds.bearer.as_deref(), Some("idm_abc"));
    }

    #[test]
    fn sources_stop_when_the_pool_is_empty() {
        let pool = Arc::new(TokenPool::new(vec!["t1".into()]));
        let source = RequestSource::Login(pool);
        assert!(source.next().is_some());
        assert!(source.next().is_none());
        assert!(RequestSource::Healthz.next().is_some());
    }

    #[test]
    fn the_policy_and_roles_name_the_same_role() {
        assert!(ROLES.contains(&format!("name = \"{ROLE}\"")));
        assert!(ROLES.contains(ROLE_AUDIENCE));
        assert!(POLICY.contains(&format!("Role::\"{ROLE}\"")));
        assert!(CREDS_PATH.ends_with(ROLE));
    }
}
