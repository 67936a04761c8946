//! OIDC token verification: one [`OidcVerifier`] per `[[auth.oidc]]`
//! table, and the [`OidcAuthenticator`] that routes a token to the right one.
//!
//! Order of checks in [`OidcVerifier::verify`]: size and structure (no key or
//! network involved), allowed algorithm, the (still unverified) `iss` so that
//! foreign tokens never reach the key cache, the signature against the
//! issuer's JWKS, then the claims — which are only trusted once they are
//! known to come from the issuer — and last the replay check, so that only
//! fully valid tokens occupy the replay cache.

use crate::claims::{self, required_string, ClaimRules};
use crate::clock::{Clock, SystemClock};
use crate::config::{OidcConfig, Settings};
use crate::error::{untrusted, AuthnError, ConfigError};
use crate::jwks::{JwksCache, JwksStats, KeyCheck};
use crate::jws::{self, UnverifiedJws};
use crate::replay::{ReplayCache, ReplayRefusal, DEFAULT_CAPACITY};
use idmint_core::{ids, Identity, UnixTime};
use ring::digest::{digest, SHA256};
use serde_json::Value;
use std::sync::Arc;

/// Claims left out of [`Identity::attributes`]: the validity window is
/// carried by `Identity::expires_at`, and policy must not depend on it.
const TIME_CLAIMS: [&str; 3] = ["exp", "nbf", "iat"];

/// Verifies tokens of one issuer, as configured by one [`OidcConfig`].
pub struct OidcVerifier {
    cfg: OidcConfig,
    settings: Settings,
    jwks: JwksCache,
    replay: Option<ReplayCache>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("name", &self.cfg.name)
            .field("issuer", &self.cfg.issuer)
            .finish_non_exhaustive()
    }
}

impl OidcVerifier {
    /// Validate `cfg` and build a verifier. No network access happens here;
    /// call [`Self::prefetch`] to load keys at start-up.
    pub fn new(cfg: OidcConfig, http: reqwest::Client) -> Result<Self, ConfigError> {
        Self::with_clock(cfg, http, Arc::new(SystemClock::new()))
    }

    /// Like [`Self::new`] with an explicit time source (tests use
    /// [`ManualClock`](crate::ManualClock)).
    pub fn with_clock(
        cfg: OidcConfig,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let settings = cfg.settings()?;
        let jwks = JwksCache::new(settings.jwks.clone(), http, clock.clone());
        let replay = cfg
            .replay_protection
            .then(|| ReplayCache::new(cfg.replay_cache_capacity.unwrap_or(DEFAULT_CAPACITY)));
        Ok(Self {
            cfg,
            settings,
            jwks,
            replay,
            clock,
        })
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn issuer(&self) -> &str {
        &self.cfg.issuer
    }

    pub fn config(&self) -> &OidcConfig {
        &self.cfg
    }

    /// Verify `token` completely and return the identity it proves.
    ///
    /// The identity has `method = "oidc"`, `auth` = the config name,
    /// `subject` from `subject_claim`, `attributes` = every claim except
    /// `exp`, `nbf` and `iat` (so `iss`, `sub`, `aud`, `jti` and all custom
    /// claims, plus the Kubernetes preset's derived `namespace` and
    /// `service_account`), `proof_id` = `jti`, or `sha256:<hex>` of the token
    /// when it has none, and `expires_at` = `exp`.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthnError> {
        let parsed = jws::parse(token, self.settings.max_token_bytes)?;
        self.verify_parsed(token, parsed).await
    }

    /// Load the keys now (start-up). A failure is not fatal: the keys are
    /// fetched again on demand and by [`Self::spawn_refresh`].
    pub async fn prefetch(&self) -> Result<(), AuthnError> {
        self.jwks.refresh().await
    }

    /// Start the background refresh (call from within a Tokio runtime): keys are refetched every
    /// `jwks_cache_ttl`; after a failure the old keys are kept and the fetch
    /// is retried with exponential backoff (from `jwks_refetch_interval` up
    /// to `jwks_cache_ttl`). The task holds only a weak reference and ends
    /// once the verifier is dropped (or when the handle is aborted).
    pub fn spawn_refresh(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let verifier = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut consecutive_failures = 0u32;
            loop {
                let Some(delay) = verifier
                    .upgrade()
                    .map(|v| v.jwks.next_refresh_delay(consecutive_failures))
                else {
                    return;
                };
                tokio::time::sleep(delay).await;
                let Some(v) = verifier.upgrade() else {
                    return;
                };
                match v.jwks.refresh().await {
                    Ok(()) => consecutive_failures = 0,
                    Err(_) => consecutive_failures = consecutive_failures.saturating_add(1),
                }
            }
        })
    }

    pub fn jwks_stats(&self) -> JwksStats {
        self.jwks.stats()
    }

    pub(crate) fn max_token_bytes(&self) -> usize {
        self.settings.max_token_bytes
    }

    async fn verify_parsed(
        &self,
        token: &str,
        parsed: UnverifiedJws<'_>,
    ) -> Result<Identity, AuthnError> {
        let max = self.settings.max_token_bytes;
        if token.len() > max {
            return Err(AuthnError::TokenTooLarge {
                size: token.len(),
                max,
            });
        }
        if !self.settings.algorithms.contains(parsed.alg) {
            return Err(AuthnError::AlgorithmNotAllowed {
                alg: parsed.alg.as_str(),
                auth: self.cfg.name.clone(),
                allowed: self.settings.algorithms.names(),
            });
        }
        let rules = ClaimRules {
            auth: &self.cfg.name,
            issuer: &self.cfg.issuer,
            audiences: &self.cfg.audiences,
            leeway_secs: self.settings.leeway_secs,
            max_lifetime_secs: self.settings.max_lifetime_secs,
        };
        // A token of another issuer is refused before any key lookup: it
        // cannot trigger a JWKS refetch, and the message names the real
        // problem. (Checked again, verified, with the other claims.)
        claims::check_issuer(&parsed.claims, &rules)?;
        self.check_signature(&parsed).await?;

        let now = self.clock.now();
        let mut claims = parsed.claims;
        let validity = claims::check_registered(&claims, &rules, now)?;
        for claim in &self.settings.required_claims {
            required_string(&claims, claim, || self.required_because())?;
        }
        let subject = required_string(&claims, &self.settings.subject_claim, || {
            format!(
                "auth config {:?} takes the subject from it (subject_claim)",
                self.cfg.name
            )
        })?
        .to_string();
        self.settings.preset.check_and_derive(&mut claims)?;
        if let Some(name) = self.cfg.effective_groups_claim() {
            let groups = groups_of(claims.get(name));
            claims.insert("groups".into(), Value::Array(groups));
        }

        let jti = match claims.get("jti") {
            Some(Value::String(jti)) if !jti.is_empty() => Some(jti.as_str()),
            _ => None,
        };
        if let Some(replay) = &self.replay {
            let jti = jti.ok_or_else(|| AuthnError::MissingClaim {
                claim: "jti".into(),
                hint: format!(
                    "; auth config {:?} has replay_protection on, which needs a non-empty string jti in every token",
                    self.cfg.name
                ),
            })?;
            let leeway = i64::try_from(self.settings.leeway_secs).unwrap_or(i64::MAX);
            let accept_until = UnixTime(validity.expires_at.0.saturating_add(leeway));
            replay
                .check_and_record(&self.cfg.issuer, jti, accept_until, now)
                .map_err(|refusal| match refusal {
                    ReplayRefusal::Replayed => AuthnError::Replayed {
                        jti: untrusted(jti),
                        auth: self.cfg.name.clone(),
                    },
                    ReplayRefusal::Full { capacity } => AuthnError::ReplayCacheFull {
                        capacity,
                        auth: self.cfg.name.clone(),
                    },
                })?;
        }
        let proof_id = match jti {
            Some(jti) => jti.to_string(),
            None => format!(
                "sha256:{}",
                ids::hex(digest(&SHA256, token.as_bytes()).as_ref())
            ),
        };
        for claim in TIME_CLAIMS {
            claims.shift_remove(claim);
        }
        Ok(Identity {
            kind: self.settings.kind,
            subject,
            issuer: self.cfg.issuer.clone(),
            method: "oidc".to_string(),
            auth: self.cfg.name.clone(),
            attributes: claims,
            proof_id,
            expires_at: validity.expires_at,
        })
    }

    fn required_because(&self) -> String {
        format!(
            "auth config {:?} (preset {}) requires it",
            self.cfg.name,
            self.settings.preset.as_str()
        )
    }

    /// Verify the signature with the cached keys; on an unknown `kid`, one
    /// (shared, rate-limited) refetch and a second look.
    async fn check_signature(&self, parsed: &UnverifiedJws<'_>) -> Result<(), AuthnError> {
        let (keys, generation) = self.jwks.usable_keys().await?;
        let check = keys.verify(
            parsed.alg,
            parsed.kid.as_deref(),
            parsed.signing_input,
            &parsed.signature,
        );
        match self.signature_result(parsed, check) {
            Some(result) => return result,
            None => drop(keys),
        }
        self.jwks.fetch_on_demand(generation).await;
        let (keys, _) = self.jwks.current_usable_keys()?;
        let check = keys.verify(
            parsed.alg,
            parsed.kid.as_deref(),
            parsed.signing_input,
            &parsed.signature,
        );
        self.signature_result(parsed, check).unwrap_or_else(|| {
            Err(AuthnError::KeyNotFound {
                kid: parsed.kid.as_deref().map(untrusted),
                alg: parsed.alg.as_str(),
                issuer: self.cfg.issuer.clone(),
                refetch_secs: self.jwks.refetch_interval().as_secs(),
            })
        })
    }

    /// `None` when no key was found (the caller may refetch).
    fn signature_result(
        &self,
        parsed: &UnverifiedJws<'_>,
        check: KeyCheck<'_>,
    ) -> Option<Result<(), AuthnError>> {
        match check {
            KeyCheck::Verified => Some(Ok(())),
            KeyCheck::BadSignature => Some(Err(AuthnError::InvalidSignature {
                alg: parsed.alg.as_str(),
                issuer: self.cfg.issuer.clone(),
            })),
            KeyCheck::Mismatch(key) => Some(Err(AuthnError::KeyAlgorithmMismatch {
                kid: parsed.kid.as_deref().map(untrusted).unwrap_or_default(),
                key: key.describe(),
                alg: parsed.alg.as_str(),
                issuer: self.cfg.issuer.clone(),
            })),
            KeyCheck::NoSuchKey => None,
        }
    }
}

/// All configured OIDC verifiers; picks the one that should check a token.
#[derive(Debug, Default)]
pub struct OidcAuthenticator {
    verifiers: Vec<Arc<OidcVerifier>>,
    /// The largest `max_token_bytes` of any verifier: the limit for the
    /// routing parse (each verifier then applies its own).
    max_token_bytes: usize,
}

impl OidcAuthenticator {
    pub fn new(verifiers: Vec<Arc<OidcVerifier>>) -> Self {
        let max_token_bytes = verifiers
            .iter()
            .map(|v| v.max_token_bytes())
            .max()
            .unwrap_or(crate::config::DEFAULT_MAX_TOKEN_BYTES);
        Self {
            verifiers,
            max_token_bytes,
        }
    }

    pub fn verifiers(&self) -> &[Arc<OidcVerifier>] {
        &self.verifiers
    }

    /// Verify `token` with the config named `auth`, or, when `auth` is
    /// `None`, with the config whose issuer equals the token's (unverified)
    /// `iss`. When several configs share that issuer, the first whose
    /// audiences include one of the token's `aud` values is used (else the
    /// first of them, which then reports the audience mismatch). The chosen
    /// verifier does all the real checks, including `iss` again.
    pub async fn verify(&self, token: &str, auth: Option<&str>) -> Result<Identity, AuthnError> {
        if let Some(name) = auth {
            let verifier = self
                .verifiers
                .iter()
                .find(|v| v.name() == name)
                .ok_or_else(|| AuthnError::UnknownAuthConfig {
                    name: untrusted(name),
                })?;
            return verifier.verify(token).await;
        }
        let parsed = jws::parse(token, self.max_token_bytes)?;
        let verifier = self.route(&parsed)?;
        verifier.verify_parsed(token, parsed).await
    }

    fn route(&self, parsed: &UnverifiedJws<'_>) -> Result<&OidcVerifier, AuthnError> {
        let iss = match parsed.claims.get("iss") {
            Some(Value::String(iss)) => iss.as_str(),
            Some(other) => return Err(claims::type_error("iss", "a string", other)),
            None => {
                return Err(AuthnError::MissingClaim {
                    claim: "iss".into(),
                    hint: "; idmint picks the auth config by the token's issuer".into(),
                })
            }
        };
        let mut same_issuer = self.verifiers.iter().filter(|v| v.issuer() == iss);
        let first = same_issuer
            .next()
            .ok_or_else(|| AuthnError::UntrustedIssuer {
                issuer: untrusted(iss),
            })?;
        let audience_fits = |v: &OidcVerifier| {
            let fits = |aud: &Value| {
                aud.as_str()
                    .is_some_and(|a| v.cfg.audiences.iter().any(|c| c == a))
            };
            match parsed.claims.get("aud") {
                Some(Value::Array(auds)) => auds.iter().any(fits),
                Some(aud) => fits(aud),
                None => false,
            }
        };
        if audience_fits(first) {
            return Ok(first);
        }
        Ok(same_issuer
            .find(|v| audience_fits(v))
            .map_or(first.as_ref(), |v| v.as_ref()))
    }
}

/// The `groups` attribute from the configured groups claim: strings kept,
/// a single string taken as one group, anything else (numbers, objects, a
/// missing claim) ignored, so the attribute is always a set of strings and
/// a malformed claim can only *remove* groups, never add any.
pub(crate) fn groups_of(claim: Option<&Value>) -> Vec<Value> {
    match claim {
        Some(Value::String(s)) if !s.is_empty() => vec![Value::String(s.clone())],
        Some(Value::Array(list)) => list
            .iter()
            .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
            .cloned()
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// axum handlers need `Send` futures: keep `verify` free of non-`Send`
    /// state held across an await.
    #[test]
    fn verify_futures_are_send() {
        let cfg: OidcConfig = serde_json::from_value(serde_json::json!({
            "name": "n", "issuer": "https://issuer.example", "audiences": ["a"]
        }))
        .unwrap();
        let verifier = Arc::new(OidcVerifier::new(cfg, reqwest::Client::new()).unwrap());
        assert_send(&verifier.verify("x"));
        assert_send(&verifier.prefetch());
        let authn = OidcAuthenticator::new(vec![verifier]);
        assert_send(&authn.verify("x", None));
    }
}

#[cfg(test)]
mod groups_tests {
    use super::groups_of;
    use serde_json::json;

    #[test]
    fn groups_are_always_a_list_of_strings() {
        assert_eq!(
            groups_of(Some(&json!(["admins", 3, "", "dev"]))),
            vec![json!("admins"), json!("dev")]
        );
        assert_eq!(groups_of(Some(&json!("ops"))), vec![json!("ops")]);
        assert!(groups_of(Some(&json!({"__entity": "x"}))).is_empty());
        assert!(groups_of(None).is_empty());
    }
}
