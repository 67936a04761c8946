//! Errors of OIDC verification and of its configuration.
//!
//! Every message says what failed and what the caller or operator can do
//! about it. Messages never contain the token itself; values copied from an
//! (unverified) token are quoted and truncated by [`untrusted`] so that a
//! hostile token cannot flood logs or inject control characters.

use idmint_core::UnixTime;

/// A bad `[[auth.oidc]]` table. The message starts with the table name and
/// names the offending key, e.g.
/// `auth.oidc "github": audiences must not be empty`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("auth.oidc {name:?}: {message}")]
pub struct ConfigError {
    /// The `name` of the offending config (may be empty when that is the problem).
    pub name: String,
    /// The offending key, e.g. `audiences`.
    pub key: &'static str,
    /// What is wrong with it and how to fix it; starts with the key.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(name: &str, key: &'static str, message: impl Into<String>) -> Self {
        Self {
            name: name.to_string(),
            key,
            message: message.into(),
        }
    }
}

/// Why a token was refused (or could not be checked).
///
/// Use [`AuthnError::code`] for the stable API error code and
/// [`AuthnError::is_unavailable`] to decide between a 401 and a 503.
///
/// String fields that hold values taken from a token (`found`, `kid`, `jti`,
/// the issuer of `UntrustedIssuer`, …) are already quoted and truncated;
/// fields naming configured values (`auth`, `issuer`, `expected`) are not.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthnError {
    #[error("token is {size} bytes, more than the {max} bytes allowed; OIDC tokens are normally a few KiB, check that the right value is sent")]
    TokenTooLarge { size: usize, max: usize },

    #[error("token is not a valid compact JWS: {reason}")]
    Malformed { reason: String },

    #[error(
        "token {part} has the JSON key {key} more than once; such tokens are ambiguous and refused"
    )]
    DuplicateJsonKey { part: &'static str, key: String },

    #[error("token algorithm {alg} is refused: {reason}")]
    UnsupportedAlgorithm { alg: String, reason: &'static str },

    #[error("token algorithm {alg} is not allowed by auth config {auth:?} (allowed: {allowed}); add it to `algorithms` if the issuer really uses it")]
    AlgorithmNotAllowed {
        alg: &'static str,
        auth: String,
        allowed: String,
    },

    #[error("token header has a `crit` parameter ({names}); idmint understands no JWS extensions, so such tokens are refused (RFC 7515 §4.1.11)")]
    CriticalHeader { names: String },

    #[error("no {alg} key{} in the JWKS of {issuer}; the token was not signed by a key this issuer publishes (keys are refetched at most every {refetch_secs}s)", kid.as_deref().map(|k| format!(" with kid {k}")).unwrap_or_default())]
    KeyNotFound {
        kid: Option<String>,
        alg: &'static str,
        issuer: String,
        refetch_secs: u64,
    },

    #[error("key {kid} of {issuer} is {key} and cannot verify a {alg} token; a key may only be used with its own algorithm")]
    KeyAlgorithmMismatch {
        kid: String,
        key: String,
        alg: &'static str,
        issuer: String,
    },

    #[error("token signature does not verify with the {alg} key(s) of {issuer}; the token was altered or not issued by this issuer")]
    InvalidSignature { alg: &'static str, issuer: String },

    #[error("token expired at {} (now {}, leeway {leeway}s): request a fresh token from the issuer", exp.rfc3339(), now.rfc3339())]
    Expired {
        exp: UnixTime,
        now: UnixTime,
        leeway: u64,
    },

    #[error("token is not valid before {} (now {}, leeway {leeway}s): check the clocks of the issuer and of idmint", nbf.rfc3339(), now.rfc3339())]
    NotYetValid {
        nbf: UnixTime,
        now: UnixTime,
        leeway: u64,
    },

    #[error("token was issued in the future, at {} (now {}, leeway {leeway}s): check the clocks of the issuer and of idmint", iat.rfc3339(), now.rfc3339())]
    IssuedInFuture {
        iat: UnixTime,
        now: UnixTime,
        leeway: u64,
    },

    #[error("token lifetime {lifetime_secs}s (from {from} to exp) exceeds the {max_secs}s allowed by auth config {auth:?}; request a shorter-lived token or raise max_token_lifetime")]
    LifetimeTooLong {
        lifetime_secs: i64,
        from: &'static str,
        max_secs: u64,
        auth: String,
    },

    #[error("token has no {claim} claim{hint}")]
    MissingClaim { claim: String, hint: String },

    #[error("token claim {claim} must be {expected}, but it is {found}")]
    ClaimType {
        claim: String,
        expected: &'static str,
        found: &'static str,
    },

    #[error("token issuer {found} does not match the issuer {expected:?} of auth config {auth:?}")]
    IssuerMismatch {
        found: String,
        expected: String,
        auth: String,
    },

    #[error("audience mismatch: token aud {found} does not contain any of {expected}; request the token with audience {wanted:?}")]
    AudienceMismatch {
        found: String,
        expected: String,
        wanted: String,
    },

    #[error("token issuer {issuer} is not trusted: no [[auth.oidc]] config has this issuer; add one with issuer = {issuer} to trust it")]
    UntrustedIssuer { issuer: String },

    #[error("there is no OIDC auth config named {name}")]
    UnknownAuthConfig { name: String },

    #[error("token with jti {jti} was already used to log in (replay protection of auth config {auth:?}); request a fresh token for every login")]
    Replayed { jti: String, auth: String },

    #[error("replay cache of auth config {auth:?} is full ({capacity} unexpired token ids); refusing new tokens rather than forgetting used ones — lower the token lifetime at the issuer or retry later")]
    ReplayCacheFull { capacity: usize, auth: String },

    #[error("identity provider {issuer} is unavailable: {reason}")]
    IdpUnavailable { issuer: String, reason: String },
}

impl AuthnError {
    /// Stable code for API errors.
    ///
    /// - `invalid_token`: anything wrong with the proof itself;
    /// - `untrusted_issuer`: no auth config trusts the token's issuer (or the
    ///   requested auth config does not exist);
    /// - `replayed_token`: the token's `jti` was used before;
    /// - `idp_unavailable`: the issuer's keys cannot be fetched and no usable
    ///   cached keys exist (map to HTTP 503);
    /// - `replay_cache_full`: the replay cache is at capacity and refuses new
    ///   tokens (fail closed; also map to 503, see [`Self::is_unavailable`]).
    pub fn code(&self) -> &'static str {
        match self {
            AuthnError::UntrustedIssuer { .. } | AuthnError::UnknownAuthConfig { .. } => {
                "untrusted_issuer"
            }
            AuthnError::Replayed { .. } => "replayed_token",
            AuthnError::IdpUnavailable { .. } => "idp_unavailable",
            AuthnError::ReplayCacheFull { .. } => "replay_cache_full",
            AuthnError::TokenTooLarge { .. }
            | AuthnError::Malformed { .. }
            | AuthnError::DuplicateJsonKey { .. }
            | AuthnError::UnsupportedAlgorithm { .. }
            | AuthnError::AlgorithmNotAllowed { .. }
            | AuthnError::CriticalHeader { .. }
            | AuthnError::KeyNotFound { .. }
            | AuthnError::KeyAlgorithmMismatch { .. }
            | AuthnError::InvalidSignature { .. }
            | AuthnError::Expired { .. }
            | AuthnError::NotYetValid { .. }
            | AuthnError::IssuedInFuture { .. }
            | AuthnError::LifetimeTooLong { .. }
            | AuthnError::MissingClaim { .. }
            | AuthnError::ClaimType { .. }
            | AuthnError::IssuerMismatch { .. }
            | AuthnError::AudienceMismatch { .. } => "invalid_token",
        }
    }

    /// True when the failure is on idmint's or the IdP's side, not the
    /// caller's: the server answers 503 and the caller may retry.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            AuthnError::IdpUnavailable { .. } | AuthnError::ReplayCacheFull { .. }
        )
    }

    pub(crate) fn malformed(reason: impl Into<String>) -> Self {
        AuthnError::Malformed {
            reason: reason.into(),
        }
    }
}

/// Longest excerpt of an untrusted value put into an error message.
const UNTRUSTED_MAX_CHARS: usize = 96;

/// Quote a value taken from an unverified token for an error message:
/// Debug-escaped (no control characters reach a log) and truncated.
pub(crate) fn untrusted(value: &str) -> String {
    match value.char_indices().nth(UNTRUSTED_MAX_CHARS) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}…", &value[..cut]),
    }
}

/// Render a list of strings as `["a", "b"]`, each element via [`untrusted`],
/// at most a few elements.
pub(crate) fn untrusted_list<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    const MAX_ITEMS: usize = 8;
    let mut out = String::from("[");
    for (i, v) in values.into_iter().enumerate() {
        if i == MAX_ITEMS {
            out.push_str(", …");
            break;
        }
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&untrusted(v));
    }
    out.push(']');
    out
}

/// The full `source()` chain of an error on one line, for fetch failures
/// (reqwest's top-level message alone rarely says *why*).
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_values_are_escaped_and_truncated() {
        assert_eq!(untrusted("a\nb"), "\"a\\nb\"");
        let long = "x".repeat(1000);
        let shown = untrusted(&long);
        assert!(shown.len() < 110, "{shown}");
        assert!(shown.ends_with('…'));
        assert_eq!(untrusted_list(["a", "b"]), "[\"a\", \"b\"]");
        let many: Vec<String> = (0..20).map(|i| i.to_string()).collect();
        assert!(untrusted_list(many.iter().map(String::as_str)).ends_with(", …]"));
    }

    #[test]
    fn codes_are_stable() {
        assert_eq!(
            AuthnError::malformed("x").code(),
            "invalid_token",
            "structural problems are proof problems"
        );
        let unavailable = AuthnError::IdpUnavailable {
            issuer: "i".into(),
            reason: "r".into(),
        };
        assert_eq!(unavailable.code(), "idp_unavailable");
        assert!(unavailable.is_unavailable());
        let replayed = AuthnError::Replayed {
            jti: "\"j\"".into(),
            auth: "a".into(),
        };
        assert_eq!(replayed.code(), "replayed_token");
        assert!(!replayed.is_unavailable());
        assert_eq!(
            AuthnError::UntrustedIssuer {
                issuer: "\"x\"".into()
            }
            .code(),
            "untrusted_issuer"
        );
    }

    #[test]
    fn expired_message_is_actionable() {
        let e = AuthnError::Expired {
            exp: UnixTime(1_795_100_400),
            now: UnixTime(1_795_100_700),
            leeway: 30,
        };
        assert_eq!(
            e.to_string(),
            "token expired at 2026-11-19T15:00:00Z (now 2026-11-19T15:05:00Z, leeway 30s): request a fresh token from the issuer"
        );
    }
}
