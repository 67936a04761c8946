//! Parameters of client calls that have no wire type of their own in
//! `idmint-proto` (query strings, form bodies, the dev-only demo IdP).

use crate::secret::SecretString;
use idmint_proto::token_types;
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;
use std::str::FromStr;

/// Filters of `GET /api/v1/leases`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseQuery {
    /// Everyone's leases, not just the caller's (needs admin).
    pub all: bool,
    /// Only roles whose name starts with this.
    pub role_prefix: Option<String>,
    /// Only leases that are still live (not expired or revoked).
    pub live: bool,
    /// At most this many (the server applies its own cap too).
    pub limit: Option<u32>,
}

impl LeaseQuery {
    /// The query string pairs; flags that are off are omitted so the server's
    /// defaults apply.
    pub(crate) fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if self.all {
            pairs.push(("all", "true".to_string()));
        }
        if let Some(prefix) = &self.role_prefix {
            pairs.push(("role_prefix", prefix.clone()));
        }
        if self.live {
            pairs.push(("live", "true".to_string()));
        }
        if let Some(limit) = self.limit {
            pairs.push(("limit", limit.to_string()));
        }
        pairs
    }
}

/// RFC 8693 token types idmint accepts as subject or actor token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenType {
    /// `urn:ietf:params:oauth:token-type:jwt` (any JWT; the default).
    #[default]
    Jwt,
    /// `urn:ietf:params:oauth:token-type:id_token`
    IdToken,
    /// `urn:ietf:params:oauth:token-type:access_token`
    AccessToken,
}

impl TokenType {
    pub fn uri(self) -> &'static str {
        match self {
            TokenType::Jwt => token_types::JWT,
            TokenType::IdToken => token_types::ID_TOKEN,
            TokenType::AccessToken => token_types::ACCESS_TOKEN,
        }
    }

    /// The short name used on the command line.
    pub fn short_name(self) -> &'static str {
        match self {
            TokenType::Jwt => "jwt",
            TokenType::IdToken => "id_token",
            TokenType::AccessToken => "access_token",
        }
    }
}

impl fmt::Display for TokenType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}

impl FromStr for TokenType {
    type Err = String;

    /// Accepts the short name (`jwt`, `id_token`, `access_token`) or the full
    /// URN.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [TokenType::Jwt, TokenType::IdToken, TokenType::AccessToken]
            .into_iter()
            .find(|t| s == t.short_name() || s == t.uri())
            .ok_or_else(|| {
                format!("unknown token type {s:?}: use jwt, id_token or access_token (or their urn:ietf:params:oauth:token-type: URNs)")
            })
    }
}

/// An RFC 8693 token exchange request to `POST /oauth/token`.
///
/// `Debug` redacts both tokens (they are [`SecretString`]s).
#[derive(Debug, Clone)]
pub struct TokenExchangeParams {
    /// The caller's proof, e.g. a CI job's OIDC token.
    pub subject_token: SecretString,
    pub subject_token_type: TokenType,
    /// The downstream API the minted token is for.
    pub audience: Option<String>,
    /// Requested scopes (sent space-separated as `scope`).
    pub scopes: Vec<String>,
    pub resource: Option<String>,
    /// Only `urn:ietf:params:oauth:token-type:access_token` (the default) or
    /// `…:jwt` make sense for idmint.
    pub requested_token_type: Option<TokenType>,
    /// Delegation: the party acting on behalf of the subject.
    pub actor_token: Option<SecretString>,
    pub actor_token_type: Option<TokenType>,
    /// idmint extension: which role to mint for, when the audience alone
    /// does not identify one.
    pub role: Option<String>,
}

impl TokenExchangeParams {
    /// A request with only the required fields set.
    pub fn new(subject_token: SecretString, subject_token_type: TokenType) -> Self {
        Self {
            subject_token,
            subject_token_type,
            audience: None,
            scopes: Vec::new(),
            resource: None,
            requested_token_type: None,
            actor_token: None,
            actor_token_type: None,
            role: None,
        }
    }

    /// The `application/x-www-form-urlencoded` fields. Holds the tokens in
    /// clear: only for building the request body.
    pub(crate) fn form_fields(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("grant_type", token_types::GRANT_TOKEN_EXCHANGE.to_string()),
            ("subject_token", self.subject_token.expose().to_string()),
            (
                "subject_token_type",
                self.subject_token_type.uri().to_string(),
            ),
        ];
        if let Some(a) = &self.audience {
            f.push(("audience", a.clone()));
        }
        if !self.scopes.is_empty() {
            f.push(("scope", self.scopes.join(" ")));
        }
        if let Some(r) = &self.resource {
            f.push(("resource", r.clone()));
        }
        if let Some(t) = self.requested_token_type {
            f.push(("requested_token_type", t.uri().to_string()));
        }
        if let Some(actor) = &self.actor_token {
            f.push(("actor_token", actor.expose().to_string()));
            let ty = self.actor_token_type.unwrap_or_default();
            f.push(("actor_token_type", ty.uri().to_string()));
        }
        if let Some(role) = &self.role {
            f.push(("role", role.clone()));
        }
        f
    }
}

/// `POST /demo-idp/token` on a dev server: mint a test OIDC token. The demo
/// IdP starts from the claims of a GitHub Actions job on `acme/app`'s main
/// branch; `claims` override or extend them.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DemoTokenRequest {
    /// `sub`; by default `repo:{repository}:ref:{ref}` from the claims.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Defaults to `idmint` on the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Extra claims (e.g. GitHub Actions' `repository`, `ref`).
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub claims: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_query_omits_defaults() {
        assert!(LeaseQuery::default().pairs().is_empty());
        let q = LeaseQuery {
            all: true,
            role_prefix: Some("db/".into()),
            live: true,
            limit: Some(10),
        };
        assert_eq!(
            q.pairs(),
            vec![
                ("all", "true".to_string()),
                ("role_prefix", "db/".to_string()),
                ("live", "true".to_string()),
                ("limit", "10".to_string()),
            ]
        );
    }

    #[test]
    fn token_types_parse_short_and_long() {
        assert_eq!("jwt".parse::<TokenType>(), Ok(TokenType::Jwt));
        assert_eq!(
            token_types::ID_TOKEN.parse::<TokenType>(),
            Ok(TokenType::IdToken)
        );
        assert!("saml".parse::<TokenType>().is_err());
    }

    #[test]
    fn exchange_form_fields() {
        let mut p = TokenExchangeParams::new(SecretString::new("jwt-a".into()), TokenType::IdToken);
        p.audience = Some("https://api".into());
        p.scopes = vec!["read".into(), "write".into()];
        p.actor_token = Some(SecretString::new("jwt-b".into()));
        p.role = Some("demo-api".into());
        let f = p.form_fields();
        let get = |k: &str| f.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("grant_type"), Some(token_types::GRANT_TOKEN_EXCHANGE));
        assert_eq!(get("subject_token"), Some("jwt-a"));
        assert_eq!(get("subject_token_type"), Some(token_types::ID_TOKEN));
        assert_eq!(get("scope"), Some("read write"));
        assert_eq!(get("actor_token_type"), Some(token_types::JWT));
        assert_eq!(get("role"), Some("demo-api"));
        assert_eq!(get("resource"), None);
        assert!(!format!("{p:?}").contains("jwt-a"));
    }

    #[test]
    fn demo_request_body() {
        let mut r = DemoTokenRequest::default();
        assert_eq!(serde_json::to_value(&r).ok(), Some(serde_json::json!({})));
        r.subject = Some("repo:acme/app:ref:refs/heads/main".into());
        r.claims.insert("repository".into(), "acme/app".into());
        r.ttl_seconds = Some(60);
        assert_eq!(
            serde_json::to_value(&r).ok(),
            Some(
                serde_json::json!({"subject": "repo:acme/app:ref:refs/heads/main",
                "claims": {"repository": "acme/app"}, "ttl_seconds": 60})
            )
        );
    }
}
