//! `[[auth.oidc]]` configuration and its validation.
//!
//! [`OidcConfig`] is what the operator wrote; [`Settings`] is the validated
//! form with every default applied, built once when a verifier is created so
//! the hot path never re-interprets configuration.

use crate::alg::{AlgRefusal, Algorithm, AlgorithmSet};
use crate::error::ConfigError;
use idmint_core::{IdentityKind, Ttl};
use std::time::Duration;
use url::{Host, Url};

pub use crate::preset::Preset;

/// Default clock-skew allowance for `exp`/`nbf`/`iat`.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
/// Largest leeway an operator may configure: beyond five minutes a "skew
/// allowance" is really a longer token lifetime.
pub const MAX_LEEWAY_SECS: u64 = 300;
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Bounds for `max_token_bytes`.
pub const MIN_MAX_TOKEN_BYTES: usize = 1024;
pub const MAX_MAX_TOKEN_BYTES: usize = 1024 * 1024;
pub const DEFAULT_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_JWKS_CACHE_TTL: Duration = Duration::from_secs(10 * 60);
pub const DEFAULT_JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_STALE_KEYS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest `jwks_timeout`: a login waiting longer than this on the IdP is
/// better answered with "unavailable".
pub const MAX_JWKS_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_SUBJECT_CLAIM: &str = "sub";
const MAX_NAME_CHARS: usize = 64;

/// One `[[auth.oidc]]` table of `idmint.toml`.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Unique config name, e.g. `github`; recorded as `Identity::auth`.
    pub name: String,
    /// Required claims and default kind of a well-known issuer.
    #[serde(default)]
    pub preset: Option<Preset>,
    /// Exact `iss` value expected.
    pub issuer: String,
    /// JWKS location; if absent, discovered at
    /// `{issuer}/.well-known/openid-configuration` → `jwks_uri`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// The token's `aud` must contain at least one of these.
    pub audiences: Vec<String>,
    /// Allowed algorithms; default RS256 RS384 RS512 PS256 PS384 PS512
    /// ES256 ES384 EdDSA. `none` and HS* can never be allowed.
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// Clock skew allowance; default 30, at most 300.
    #[serde(default)]
    pub leeway_seconds: Option<u64>,
    /// Claims that must be non-empty strings, in addition to the preset's.
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// Claim used as the identity subject; default `sub`.
    #[serde(default)]
    pub subject_claim: Option<String>,
    /// Identity kind; default from the preset.
    #[serde(default)]
    pub kind: Option<IdentityKind>,
    /// Refuse a `jti` seen before (until the token's `exp`); tokens must
    /// then carry a `jti`.
    #[serde(default)]
    pub replay_protection: bool,
    /// Most `jti`s the replay cache holds at once (default 1,000,000, range
    /// 1,000–50,000,000; about 100 bytes each). When full, new tokens are
    /// refused (fail closed), so size it above peak logins × token lifetime.
    #[serde(default)]
    pub replay_cache_capacity: Option<usize>,
    /// Largest accepted token; default 16384.
    #[serde(default)]
    pub max_token_bytes: Option<usize>,
    /// Refuse tokens whose `exp - iat` is longer; default 24h.
    #[serde(default)]
    pub max_token_lifetime: Option<Ttl>,
    /// Background JWKS refresh period; default 10m.
    #[serde(default)]
    pub jwks_cache_ttl: Option<Ttl>,
    /// Minimum interval between refetches triggered by unknown `kid`s (and
    /// between retries while the IdP is down); default 30s.
    #[serde(default)]
    pub jwks_refetch_interval: Option<Ttl>,
    /// How long the last good keys keep being used while the IdP cannot be
    /// reached; default 24h. Must be at least `jwks_cache_ttl`.
    #[serde(default)]
    pub stale_keys_max_age: Option<Ttl>,
    /// HTTP timeout for discovery and JWKS requests; default 5s, max 60s.
    #[serde(default)]
    pub jwks_timeout: Option<Ttl>,
    /// Allow `http://` issuer/JWKS URLs, only for 127.0.0.1, ::1 and
    /// localhost (development IdPs).
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// Session lifetime for identities of this config (read by the server).
    #[serde(default)]
    pub session_ttl: Option<Ttl>,
    /// Claim holding a person's groups (e.g. `groups`, `roles`,
    /// `cognito:groups`). When set, or with the `human` preset (default
    /// `groups`), it becomes the attribute `groups`: a set of strings for
    /// Cedar (`principal.groups.contains("admins")`).
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// For people whose ID token carries no groups: read them from the
    /// IdP's userinfo endpoint with the access token `idmint login --sso`
    /// sends (see `crate::userinfo`). Off by default: with it on, a login
    /// whose userinfo cannot be read is refused rather than started
    /// without groups.
    #[serde(default)]
    pub userinfo_groups: bool,
    /// OAuth client id `idmint login --sso` uses at the IdP (a public,
    /// native client with PKCE); default: the first of `audiences`, which is
    /// the `aud` of the ID tokens that client gets.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Scopes `idmint login --sso` asks for; default `openid email groups`.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
}

impl OidcConfig {
    /// The claim mapped to the `groups` attribute, if any.
    pub fn effective_groups_claim(&self) -> Option<&str> {
        match (&self.groups_claim, self.effective_preset()) {
            (Some(c), _) => Some(c.as_str()),
            (None, Preset::Human) => Some("groups"),
            (None, _) => None,
        }
    }

    /// Whether people log in with this config (`idmint login --sso`).
    pub fn is_human(&self) -> bool {
        self.effective_kind() == IdentityKind::Human
    }

    /// The OAuth client id for `idmint login --sso`.
    pub fn sso_client_id(&self) -> Option<&str> {
        self.client_id
            .as_deref()
            .or_else(|| self.audiences.first().map(String::as_str))
    }

    /// The scopes for `idmint login --sso`.
    pub fn sso_scopes(&self) -> Vec<String> {
        self.scopes.clone().unwrap_or_else(|| {
            ["openid", "email", "groups"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        })
    }
}

/// Where the JWKS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JwksSource {
    Url(Url),
    Discovery { document_url: Url },
}

/// JWKS cache settings with defaults applied.
#[derive(Debug, Clone)]
pub(crate) struct JwksSettings {
    pub auth: String,
    pub issuer: String,
    pub source: JwksSource,
    pub cache_ttl: Duration,
    pub refetch_interval: Duration,
    pub stale_max_age: Duration,
    pub timeout: Duration,
    pub allow_insecure_http: bool,
}

/// A validated [`OidcConfig`] with every default applied.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub algorithms: AlgorithmSet,
    pub leeway_secs: u64,
    pub max_token_bytes: usize,
    pub max_lifetime_secs: u64,
    pub preset: Preset,
    /// The preset's required claims followed by the config's, without
    /// duplicates.
    pub required_claims: Vec<String>,
    pub subject_claim: String,
    pub kind: IdentityKind,
    pub jwks: JwksSettings,
}

impl OidcConfig {
    /// Check the config. The message names the table and the key, e.g.
    /// `auth.oidc "github": audiences must not be empty`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.settings().map(|_| ())
    }

    /// The preset in effect (`generic` when none is set).
    pub fn effective_preset(&self) -> Preset {
        self.preset.unwrap_or(Preset::Generic)
    }

    /// The identity kind in effect.
    pub fn effective_kind(&self) -> IdentityKind {
        self.kind
            .unwrap_or_else(|| self.effective_preset().default_kind())
    }

    pub(crate) fn settings(&self) -> Result<Settings, ConfigError> {
        let err = |key: &'static str, message: String| ConfigError::new(&self.name, key, message);

        if self.name.is_empty() {
            return Err(err("name", "name must not be empty".into()));
        }
        if self.name.chars().count() > MAX_NAME_CHARS
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(err(
                "name",
                format!("name may only use letters, digits, '-', '_' and '.' (at most {MAX_NAME_CHARS})"),
            ));
        }
        if self.issuer.is_empty() || self.issuer.trim() != self.issuer {
            return Err(err(
                "issuer",
                "issuer must be the exact, non-empty `iss` value of the tokens (no surrounding spaces)".into(),
            ));
        }
        let source = match &self.jwks_url {
            Some(jwks_url) => JwksSource::Url(self.fetch_url("jwks_url", jwks_url)?),
            None => {
                self.fetch_url("issuer", &self.issuer)?;
                let document = format!(
                    "{}/.well-known/openid-configuration",
                    self.issuer.trim_end_matches('/')
                );
                JwksSource::Discovery {
                    document_url: self.fetch_url("issuer", &document)?,
                }
            }
        };
        if self.audiences.is_empty() {
            return Err(err(
                "audiences",
                "audiences must not be empty: list the audience your tokens are requested with, e.g. [\"idmint\"]".into(),
            ));
        }
        if self.audiences.iter().any(|a| a.trim().is_empty()) {
            return Err(err(
                "audiences",
                "audiences must not contain an empty value".into(),
            ));
        }
        let algorithms = match &self.algorithms {
            None => AlgorithmSet::all(),
            Some(names) if names.is_empty() => {
                return Err(err(
                    "algorithms",
                    "algorithms must not be empty; leave it out for the default set".into(),
                ))
            }
            Some(names) => {
                let mut set = Vec::with_capacity(names.len());
                for name in names {
                    match Algorithm::parse(name) {
                        Ok(alg) => set.push(alg),
                        Err(refusal @ (AlgRefusal::Unsigned | AlgRefusal::Symmetric)) => {
                            return Err(err(
                                "algorithms",
                                format!("algorithms: {name:?} can never be allowed: {}", refusal.reason()),
                            ))
                        }
                        Err(AlgRefusal::Unsupported) => {
                            return Err(err(
                                "algorithms",
                                format!("algorithms: {name:?} is not supported (names are case-sensitive); use any of {}", AlgorithmSet::all().names()),
                            ))
                        }
                    }
                }
                set.into_iter().collect()
            }
        };
        let leeway_secs = self.leeway_seconds.unwrap_or(DEFAULT_LEEWAY_SECS);
        if leeway_secs > MAX_LEEWAY_SECS {
            return Err(err(
                "leeway_seconds",
                format!("leeway_seconds is {leeway_secs}; at most {MAX_LEEWAY_SECS} is allowed"),
            ));
        }
        if let Some(bad) = self.required_claims.iter().find(|c| c.trim().is_empty()) {
            return Err(err(
                "required_claims",
                format!("required_claims must not contain an empty name ({bad:?})"),
            ));
        }
        let subject_claim = self
            .subject_claim
            .clone()
            .unwrap_or_else(|| DEFAULT_SUBJECT_CLAIM.to_string());
        if subject_claim.trim().is_empty() {
            return Err(err(
                "subject_claim",
                "subject_claim must name a claim; leave it out for \"sub\"".into(),
            ));
        }
        if let Some(cap) = self.replay_cache_capacity {
            if !(1_000..=50_000_000).contains(&cap) {
                return Err(err(
                    "replay_cache_capacity",
                    format!("replay_cache_capacity is {cap}; it must be between 1000 and 50000000"),
                ));
            }
        }
        let max_token_bytes = self.max_token_bytes.unwrap_or(DEFAULT_MAX_TOKEN_BYTES);
        if !(MIN_MAX_TOKEN_BYTES..=MAX_MAX_TOKEN_BYTES).contains(&max_token_bytes) {
            return Err(err(
                "max_token_bytes",
                format!("max_token_bytes is {max_token_bytes}; it must be between {MIN_MAX_TOKEN_BYTES} and {MAX_MAX_TOKEN_BYTES}"),
            ));
        }
        let duration = |v: Option<Ttl>, default: Duration| v.map_or(default, Ttl::as_duration);
        let cache_ttl = duration(self.jwks_cache_ttl, DEFAULT_JWKS_CACHE_TTL);
        let stale_max_age = duration(self.stale_keys_max_age, DEFAULT_STALE_KEYS_MAX_AGE);
        if stale_max_age < cache_ttl {
            return Err(err(
                "stale_keys_max_age",
                format!(
                    "stale_keys_max_age ({}s) must be at least jwks_cache_ttl ({}s), or keys would expire before they are refreshed",
                    stale_max_age.as_secs(),
                    cache_ttl.as_secs()
                ),
            ));
        }
        let timeout = duration(self.jwks_timeout, DEFAULT_JWKS_TIMEOUT);
        if timeout > MAX_JWKS_TIMEOUT {
            return Err(err(
                "jwks_timeout",
                format!(
                    "jwks_timeout is {}s; at most {}s is allowed",
                    timeout.as_secs(),
                    MAX_JWKS_TIMEOUT.as_secs()
                ),
            ));
        }

        let preset = self.effective_preset();
        let mut required_claims: Vec<String> = Vec::new();
        for claim in preset
            .required_claims()
            .iter()
            .copied()
            .chain(self.required_claims.iter().map(String::as_str))
        {
            if !required_claims.iter().any(|c| c == claim) {
                required_claims.push(claim.to_string());
            }
        }
        Ok(Settings {
            algorithms,
            leeway_secs,
            max_token_bytes,
            max_lifetime_secs: duration(self.max_token_lifetime, DEFAULT_MAX_TOKEN_LIFETIME)
                .as_secs(),
            preset,
            required_claims,
            subject_claim,
            kind: self.effective_kind(),
            jwks: JwksSettings {
                auth: self.name.clone(),
                issuer: self.issuer.clone(),
                source,
                cache_ttl,
                refetch_interval: duration(
                    self.jwks_refetch_interval,
                    DEFAULT_JWKS_REFETCH_INTERVAL,
                ),
                stale_max_age,
                timeout,
                allow_insecure_http: self.allow_insecure_http,
            },
        })
    }

    fn fetch_url(&self, key: &'static str, value: &str) -> Result<Url, ConfigError> {
        let url = Url::parse(value).map_err(|e| {
            ConfigError::new(
                &self.name,
                key,
                format!("{key} {value:?} is not a URL ({e})"),
            )
        })?;
        check_fetch_url(&url, self.allow_insecure_http).map_err(|problem| {
            ConfigError::new(&self.name, key, format!("{key} {value:?}: {problem}"))
        })?;
        Ok(url)
    }
}

/// May idmint fetch keys from `url`? Only over https, except plain http to a
/// loopback host when `allow_insecure_http` is set (a local development
/// IdP). Also used for URLs learned at run time (discovered `jwks_uri`,
/// redirects).
pub(crate) fn check_fetch_url(url: &Url, allow_insecure_http: bool) -> Result<(), String> {
    if url.fragment().is_some() {
        return Err("URL must not have a #fragment".into());
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_http && is_loopback(url) => Ok(()),
        "http" if allow_insecure_http => Err(
            "allow_insecure_http only permits http:// to 127.0.0.1, ::1 or localhost; use https".into(),
        ),
        "http" => Err(
            "must use https (set allow_insecure_http = true only for a local development IdP on 127.0.0.1/localhost)".into(),
        ),
        other => Err(format!("scheme {other:?} is not supported; use https")),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> OidcConfig {
        toml_like(
            r#"{"name":"github","preset":"github-actions",
                "issuer":"https://token.actions.githubusercontent.com","audiences":["idmint"]}"#,
        )
    }

    fn toml_like(json: &str) -> OidcConfig {
        serde_json::from_str(json).unwrap()
    }

    fn message(cfg: &OidcConfig) -> String {
        cfg.validate().unwrap_err().to_string()
    }

    #[test]
    fn defaults() {
        let s = base().settings().unwrap();
        assert_eq!(s.algorithms, AlgorithmSet::all());
        assert_eq!(s.leeway_secs, 30);
        assert_eq!(s.max_token_bytes, 16384);
        assert_eq!(s.max_lifetime_secs, 86400);
        assert_eq!(s.subject_claim, "sub");
        assert_eq!(s.kind, IdentityKind::Ci);
        assert_eq!(s.required_claims.len(), 8);
        assert_eq!(
            s.jwks.source,
            JwksSource::Discovery {
                document_url: Url::parse(
                    "https://token.actions.githubusercontent.com/.well-known/openid-configuration"
                )
                .unwrap()
            }
        );
        assert_eq!(s.jwks.cache_ttl, Duration::from_secs(600));
        assert_eq!(s.jwks.refetch_interval, Duration::from_secs(30));
        assert_eq!(s.jwks.stale_max_age, Duration::from_secs(86400));
        assert_eq!(s.jwks.timeout, Duration::from_secs(5));
    }

    #[test]
    fn required_claims_merge_without_duplicates() {
        let mut cfg = base();
        cfg.required_claims = vec!["environment".into(), "ref".into()];
        let s = cfg.settings().unwrap();
        assert_eq!(s.required_claims.len(), 9);
        assert_eq!(
            s.required_claims.last().map(String::as_str),
            Some("environment")
        );
    }

    #[test]
    fn errors_name_the_key() {
        type Mutation = Box<dyn Fn(&mut OidcConfig)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|c| c.audiences.clear()),
                "auth.oidc \"github\": audiences must not be empty",
            ),
            (
                Box::new(|c| c.name.clear()),
                "auth.oidc \"\": name must not be empty",
            ),
            (Box::new(|c| c.name = "a b".into()), "name may only use"),
            (
                Box::new(|c| c.issuer = "http://idp.example".into()),
                "issuer \"http://idp.example\": must use https",
            ),
            (
                Box::new(|c| {
                    c.issuer = "http://idp.example".into();
                    c.allow_insecure_http = true;
                }),
                "only permits http:// to 127.0.0.1",
            ),
            (
                Box::new(|c| c.jwks_url = Some("ftp://x/keys".into())),
                "jwks_url \"ftp://x/keys\": scheme \"ftp\"",
            ),
            (
                Box::new(|c| c.jwks_url = Some("not a url".into())),
                "jwks_url \"not a url\" is not a URL",
            ),
            (
                Box::new(|c| c.algorithms = Some(vec!["HS256".into()])),
                "algorithms: \"HS256\" can never be allowed",
            ),
            (
                Box::new(|c| c.algorithms = Some(vec!["none".into()])),
                "algorithms: \"none\" can never be allowed",
            ),
            (
                Box::new(|c| c.algorithms = Some(vec!["rs256".into()])),
                "case-sensitive",
            ),
            (
                Box::new(|c| c.algorithms = Some(vec![])),
                "algorithms must not be empty",
            ),
            (
                Box::new(|c| c.leeway_seconds = Some(301)),
                "leeway_seconds is 301",
            ),
            (
                Box::new(|c| c.max_token_bytes = Some(10)),
                "max_token_bytes is 10",
            ),
            (
                Box::new(|c| c.replay_cache_capacity = Some(10)),
                "replay_cache_capacity is 10",
            ),
            (
                Box::new(|c| c.required_claims = vec!["".into()]),
                "required_claims must not contain an empty name",
            ),
            (
                Box::new(|c| c.subject_claim = Some(" ".into())),
                "subject_claim must name a claim",
            ),
            (
                Box::new(|c| c.stale_keys_max_age = Some(Ttl::from_secs(60).unwrap())),
                "stale_keys_max_age (60s) must be at least jwks_cache_ttl (600s)",
            ),
            (
                Box::new(|c| c.jwks_timeout = Some(Ttl::from_secs(61).unwrap())),
                "jwks_timeout is 61s",
            ),
        ];
        for (mutate, expected) in cases {
            let mut cfg = base();
            mutate(&mut cfg);
            let msg = message(&cfg);
            assert!(
                msg.contains(expected),
                "{msg:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn loopback_http_is_allowed_only_when_asked() {
        for host in ["127.0.0.1:8080", "localhost", "[::1]:9000"] {
            let mut cfg = base();
            cfg.issuer = format!("http://{host}");
            assert!(
                cfg.validate().is_err(),
                "{host} without allow_insecure_http"
            );
            cfg.allow_insecure_http = true;
            assert!(cfg.validate().is_ok(), "{host}");
        }
        // An issuer that is not a URL is fine when the JWKS URL is given.
        let mut cfg = base();
        cfg.issuer = "kubernetes/serviceaccount".into();
        assert!(cfg.validate().is_err());
        cfg.jwks_url = Some("https://k8s.example/openid/v1/jwks".into());
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let r: Result<OidcConfig, _> = serde_json::from_str(
            r#"{"name":"x","issuer":"https://i","audiences":["a"],"audience":"typo"}"#,
        );
        assert!(r
            .unwrap_err()
            .to_string()
            .contains("unknown field `audience`"));
    }
}
