//! The issuer's signing keys, fetched over HTTPS and cached.
//!
//! Invariants:
//! - The hot path only clones an `Arc` of the current [`KeySet`] under a
//!   read lock that is never held across an `.await`; parsed keys are shared,
//!   nothing is allocated per request.
//! - At most one fetch is in flight per cache (`fetch_gate`), and fetches
//!   triggered by requests (unknown `kid`, missing or expired keys) happen at
//!   most once per `refetch_interval` (once per second until the first
//!   success): a flood of tokens with random `kid`s costs the IdP at most
//!   one request per interval. Requests that arrive
//!   while a fetch is running wait for it and use its result.
//! - A failed fetch never discards keys: the last good keys stay usable for
//!   `stale_max_age` after they were fetched, so an IdP outage does not stop
//!   logins; after that the cache reports the IdP as unavailable.
//! - Keys come only from the configured JWKS (or the `jwks_uri` of the
//!   issuer's discovery document, whose `issuer` must match), never from a
//!   token header.

use crate::alg::Algorithm;
use crate::clock::Clock;
use crate::config::{check_fetch_url, JwksSettings, JwksSource};
use crate::error::{error_chain, AuthnError};
use crate::jwk::VerificationKey;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;
use url::Url;

/// Largest discovery document or JWKS accepted.
pub(crate) const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Most keys a JWKS may hold; real issuers publish a handful.
pub(crate) const MAX_KEYS: usize = 100;
/// Most keys one token's signature is tried against when it has no `kid`
/// (or its `kid` is shared by several keys).
const MAX_CANDIDATES: usize = 4;
const NEVER: u64 = u64::MAX;
/// Request-triggered retry interval while no keys were ever fetched.
const FIRST_LOAD_RETRY: Duration = Duration::from_secs(1);

/// Counters for metrics and health checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JwksStats {
    /// Fetch attempts (discovery + JWKS counts as one), failed ones included.
    pub fetches: u64,
    /// Fetch attempts that failed.
    pub fetch_failures: u64,
    /// Usable keys currently cached.
    pub keys: usize,
    /// True when the cached keys are being served although refreshing them
    /// failed (or is overdue by more than one refresh period).
    pub stale: bool,
}

/// One successful fetch: the usable keys and when they were fetched.
pub(crate) struct KeySet {
    keys: Vec<VerificationKey>,
    /// Monotonic time of the fetch; `None` until the first success.
    fetched_at: Option<Duration>,
}

/// Outcome of checking a signature against a [`KeySet`].
#[derive(Debug)]
pub(crate) enum KeyCheck<'k> {
    Verified,
    /// Candidate keys exist but none verified the signature.
    BadSignature,
    /// The `kid` names a key that cannot be used with the token's `alg`.
    Mismatch(&'k VerificationKey),
    /// No key with this `kid` (or, without `kid`, none for this `alg`).
    NoSuchKey,
}

impl KeySet {
    /// Verify a signature with the key named by `kid`, or without `kid` with
    /// the keys that fit `alg` (at most [`MAX_CANDIDATES`]). A linear scan:
    /// a JWKS holds at most [`MAX_KEYS`], typically 2–4, which is cheaper than
    /// hashing the `kid`.
    pub(crate) fn verify(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
        message: &[u8],
        signature: &[u8],
    ) -> KeyCheck<'_> {
        let mut tried = 0;
        let mut mismatch = None;
        for key in &self.keys {
            if kid.is_some() && key.kid.as_deref() != kid {
                continue;
            }
            if !key.accepts(alg) {
                if kid.is_some() && mismatch.is_none() {
                    mismatch = Some(key);
                }
                continue;
            }
            if tried == MAX_CANDIDATES {
                break;
            }
            tried += 1;
            if key.verify(alg, message, signature) {
                return KeyCheck::Verified;
            }
        }
        match (tried, mismatch) {
            (0, Some(key)) => KeyCheck::Mismatch(key),
            (0, None) => KeyCheck::NoSuchKey,
            _ => KeyCheck::BadSignature,
        }
    }
}

/// The cache of one auth config's JWKS.
pub(crate) struct JwksCache {
    settings: JwksSettings,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    keys: RwLock<Arc<KeySet>>,
    /// Bumped after every completed fetch attempt, after `keys` is updated.
    generation: AtomicU64,
    /// Held for the duration of a fetch: the single-flight lock.
    fetch_gate: tokio::sync::Mutex<()>,
    in_flight: AtomicBool,
    /// Set after the first successful fetch.
    loaded: AtomicBool,
    /// Monotonic milliseconds of the start of the last attempt, or [`NEVER`].
    last_attempt_ms: AtomicU64,
    /// `jwks_uri` learned from discovery, reused by request-triggered fetches.
    discovered_jwks_url: Mutex<Option<Url>>,
    /// Why the most recent attempt failed; `None` after a success.
    last_failure: Mutex<Option<String>>,
    fetches: AtomicU64,
    failures: AtomicU64,
}

impl JwksCache {
    pub(crate) fn new(
        settings: JwksSettings,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            settings,
            http,
            clock,
            keys: RwLock::new(Arc::new(KeySet {
                keys: Vec::new(),
                fetched_at: None,
            })),
            generation: AtomicU64::new(0),
            fetch_gate: tokio::sync::Mutex::new(()),
            in_flight: AtomicBool::new(false),
            loaded: AtomicBool::new(false),
            last_attempt_ms: AtomicU64::new(NEVER),
            discovered_jwks_url: Mutex::new(None),
            last_failure: Mutex::new(None),
            fetches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    pub(crate) fn refetch_interval(&self) -> Duration {
        self.settings.refetch_interval
    }

    /// The current keys, plus the generation to pass to
    /// [`Self::fetch_on_demand`] if they do not hold the needed key.
    /// Fetches first (rate-limited) when no usable keys are cached.
    pub(crate) async fn usable_keys(&self) -> Result<(Arc<KeySet>, u64), AuthnError> {
        let generation = self.generation.load(Ordering::Acquire);
        let keys = self.snapshot();
        if self.is_usable(&keys) {
            return Ok((keys, generation));
        }
        drop(keys);
        self.fetch_on_demand(generation).await;
        self.current_usable_keys()
    }

    /// The current keys if usable, without fetching.
    pub(crate) fn current_usable_keys(&self) -> Result<(Arc<KeySet>, u64), AuthnError> {
        let generation = self.generation.load(Ordering::Acquire);
        let keys = self.snapshot();
        if self.is_usable(&keys) {
            Ok((keys, generation))
        } else {
            Err(self.unavailable(&keys))
        }
    }

    /// Fetch because a request needs keys the cache does not have, unless a
    /// fetch completed since `seen_generation` (then its result is used) or
    /// one was attempted less than `refetch_interval` ago. Concurrent callers
    /// share one fetch. The outcome is read back from the cache.
    pub(crate) async fn fetch_on_demand(&self, seen_generation: u64) {
        // Fast path for floods: nothing running and attempted recently.
        if !self.in_flight.load(Ordering::Acquire) && self.attempted_recently() {
            return;
        }
        let _gate = self.fetch_gate.lock().await;
        if self.generation.load(Ordering::Acquire) != seen_generation || self.attempted_recently() {
            return;
        }
        // The error is recorded in `last_failure` and logged by `attempt`.
        let _ = self.attempt(false).await;
    }

    /// Fetch now regardless of the refetch interval (start-up and the
    /// background refresh). Re-runs discovery.
    pub(crate) async fn refresh(&self) -> Result<(), AuthnError> {
        let seen_generation = self.generation.load(Ordering::Acquire);
        let _gate = self.fetch_gate.lock().await;
        if self.generation.load(Ordering::Acquire) != seen_generation
            && self.last_failure().is_none()
        {
            // A fetch finished successfully while we waited for the gate.
            return Ok(());
        }
        self.attempt(true)
            .await
            .map_err(|reason| AuthnError::IdpUnavailable {
                issuer: self.settings.issuer.clone(),
                reason,
            })
    }

    /// How long the background refresh should sleep: until the keys are one
    /// refresh period old, or after failures, an exponential backoff from
    /// `refetch_interval` up to the refresh period.
    pub(crate) fn next_refresh_delay(&self, consecutive_failures: u32) -> Duration {
        let floor = Duration::from_secs(1);
        let period = self.settings.cache_ttl.max(floor);
        if consecutive_failures > 0 {
            let exponent = consecutive_failures.saturating_sub(1).min(16);
            let backoff = self
                .settings
                .refetch_interval
                .max(floor)
                .saturating_mul(1u32 << exponent);
            return backoff.min(period);
        }
        match self.snapshot().fetched_at {
            Some(at) => {
                let age = self.clock.monotonic().saturating_sub(at);
                period.saturating_sub(age).max(floor)
            }
            None => self.settings.refetch_interval.max(floor),
        }
    }

    pub(crate) fn stats(&self) -> JwksStats {
        let keys = self.snapshot();
        let stale = keys.fetched_at.is_some_and(|at| {
            let age = self.clock.monotonic().saturating_sub(at);
            self.last_failure().is_some() || age > self.settings.cache_ttl.saturating_mul(2)
        });
        JwksStats {
            fetches: self.fetches.load(Ordering::Relaxed),
            fetch_failures: self.failures.load(Ordering::Relaxed),
            keys: keys.keys.len(),
            stale,
        }
    }

    fn snapshot(&self) -> Arc<KeySet> {
        // Writers only swap the Arc, so a poisoned lock still holds a
        // consistent value.
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn is_usable(&self, keys: &KeySet) -> bool {
        keys.fetched_at.is_some_and(|at| {
            self.clock.monotonic().saturating_sub(at) <= self.settings.stale_max_age
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.monotonic().as_millis()).unwrap_or(NEVER - 1)
    }

    /// Whether a request-triggered fetch must wait. The interval is
    /// `refetch_interval`, except before the first successful fetch, when it
    /// is at most [`FIRST_LOAD_RETRY`]: with no keys at all every login
    /// fails, so an IdP that was briefly unreachable at start-up (or is this
    /// very server, not yet listening) should be retried soon.
    fn attempted_recently(&self) -> bool {
        let last = self.last_attempt_ms.load(Ordering::Acquire);
        let mut interval = self.settings.refetch_interval;
        if !self.loaded.load(Ordering::Acquire) {
            interval = interval.min(FIRST_LOAD_RETRY);
        }
        let interval = u64::try_from(interval.as_millis()).unwrap_or(NEVER);
        last != NEVER && self.now_ms().saturating_sub(last) < interval
    }

    fn last_failure(&self) -> Option<String> {
        self.last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn unavailable(&self, keys: &KeySet) -> AuthnError {
        let failure = self
            .last_failure()
            .unwrap_or_else(|| "no fetch has completed yet".to_string());
        let retry = self.settings.refetch_interval.as_secs();
        let reason = match keys.fetched_at {
            None => format!(
                "its signing keys could not be fetched ({failure}); retried at most every {retry}s"
            ),
            Some(at) => format!(
                "the last good signing keys are {}s old, more than stale_keys_max_age ({}s), and refreshing them failed ({failure}); retried at most every {retry}s",
                self.clock.monotonic().saturating_sub(at).as_secs(),
                self.settings.stale_max_age.as_secs()
            ),
        };
        AuthnError::IdpUnavailable {
            issuer: self.settings.issuer.clone(),
            reason,
        }
    }

    /// One fetch attempt. Must be called with `fetch_gate` held.
    async fn attempt(&self, rediscover: bool) -> Result<(), String> {
        let previous = self.last_attempt_ms.swap(self.now_ms(), Ordering::AcqRel);
        self.in_flight.store(true, Ordering::Release);
        let mut guard = AttemptGuard {
            cache: self,
            previous_attempt_ms: previous,
            completed: false,
        };
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let outcome = match self.fetch_keys(rediscover).await {
            Ok(keys) => {
                tracing::debug!(
                    auth = %self.settings.auth,
                    issuer = %self.settings.issuer,
                    keys = keys.len(),
                    "fetched JWKS"
                );
                let set = Arc::new(KeySet {
                    keys,
                    fetched_at: Some(self.clock.monotonic()),
                });
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = set;
                self.loaded.store(true, Ordering::Release);
                *self
                    .last_failure
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = None;
                Ok(())
            }
            Err(reason) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    auth = %self.settings.auth,
                    issuer = %self.settings.issuer,
                    error = %reason,
                    "JWKS fetch failed; keeping the last good keys"
                );
                *self
                    .last_failure
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(reason.clone());
                Err(reason)
            }
        };
        guard.completed = true;
        self.generation.fetch_add(1, Ordering::AcqRel);
        outcome
    }

    async fn fetch_keys(&self, rediscover: bool) -> Result<Vec<VerificationKey>, String> {
        let url = match &self.settings.source {
            JwksSource::Url(url) => url.clone(),
            JwksSource::Discovery { document_url } => {
                let cached = if rediscover {
                    None
                } else {
                    self.discovered_jwks_url
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone()
                };
                match cached {
                    Some(url) => url,
                    None => {
                        let url = self.discover(document_url).await?;
                        *self
                            .discovered_jwks_url
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) = Some(url.clone());
                        url
                    }
                }
            }
        };
        let result = match self.get_capped(&url).await {
            Ok(body) => parse_key_set(&body, &url, &self.settings),
            Err(e) => Err(e),
        };
        if result.is_err() {
            // A stale jwks_uri may be the cause: discover again next time.
            *self
                .discovered_jwks_url
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
        result
    }

    async fn discover(&self, document_url: &Url) -> Result<Url, String> {
        #[derive(serde::Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let body = self.get_capped(document_url).await?;
        let doc: Discovery = serde_json::from_slice(&body).map_err(|e| {
            format!("discovery document {document_url} is not valid (needs string issuer and jwks_uri): {e}")
        })?;
        if doc.issuer != self.settings.issuer {
            return Err(format!(
                "discovery document {document_url} names issuer {:?}, but the config expects {:?}; set issuer to the exact value",
                crate::error::untrusted(&doc.issuer),
                self.settings.issuer
            ));
        }
        let jwks_url = Url::parse(&doc.jwks_uri).map_err(|e| {
            format!("discovery document {document_url} has an invalid jwks_uri ({e})")
        })?;
        check_fetch_url(&jwks_url, self.settings.allow_insecure_http).map_err(|e| {
            format!(
                "discovery document {document_url} has jwks_uri {jwks_url}, which is refused: {e}"
            )
        })?;
        Ok(jwks_url)
    }

    /// GET `url`, following the client's redirect policy but refusing to end
    /// on a URL we would not fetch directly, with the configured timeout and
    /// a [`MAX_DOCUMENT_BYTES`] body limit.
    async fn get_capped(&self, url: &Url) -> Result<Vec<u8>, String> {
        let timeout = self.settings.timeout;
        let request = async {
            let mut response = self
                .http
                .get(url.clone())
                .header(reqwest::header::ACCEPT, "application/json")
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| format!("GET {url} failed: {}", error_chain(&e)))?;
            check_fetch_url(response.url(), self.settings.allow_insecure_http).map_err(|e| {
                format!(
                    "GET {url} was redirected to {}, which is refused: {e}",
                    response.url()
                )
            })?;
            let status = response.status();
            if !status.is_success() {
                return Err(format!("GET {url} answered HTTP {status}"));
            }
            let too_large = || format!("GET {url} returned more than {MAX_DOCUMENT_BYTES} bytes");
            if response
                .content_length()
                .is_some_and(|len| len > MAX_DOCUMENT_BYTES as u64)
            {
                return Err(too_large());
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| {
                format!(
                    "GET {url} failed while reading the body: {}",
                    error_chain(&e)
                )
            })? {
                if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        };
        tokio::time::timeout(timeout, request).await.map_err(|_| {
            format!(
                "GET {url} timed out after {}s (jwks_timeout)",
                timeout.as_secs()
            )
        })?
    }
}

/// Parse a JWKS body. Keys that cannot be used are skipped with a warning;
/// a set with no usable key at all is an error (and the old keys stay).
fn parse_key_set(
    body: &[u8],
    url: &Url,
    settings: &JwksSettings,
) -> Result<Vec<VerificationKey>, String> {
    #[derive(serde::Deserialize)]
    struct JwkSet {
        keys: Vec<serde_json::Value>,
    }
    let set: JwkSet = serde_json::from_slice(body)
        .map_err(|e| format!("JWKS at {url} is not a JSON object with a keys array: {e}"))?;
    if set.keys.len() > MAX_KEYS {
        return Err(format!(
            "JWKS at {url} has {} keys; more than {MAX_KEYS} is refused",
            set.keys.len()
        ));
    }
    let mut keys = Vec::with_capacity(set.keys.len());
    for (index, jwk) in set.keys.iter().enumerate() {
        match VerificationKey::from_jwk(jwk) {
            Ok(key) => keys.push(key),
            Err(reason) => tracing::warn!(
                auth = %settings.auth,
                jwks_url = %url,
                index,
                kid = ?jwk.get("kid").and_then(serde_json::Value::as_str),
                "skipping JWK that cannot be used: {reason}"
            ),
        }
    }
    if keys.is_empty() {
        return Err(format!(
            "JWKS at {url} has no usable signing key ({} keys, all skipped; see the warnings)",
            set.keys.len()
        ));
    }
    Ok(keys)
}

/// Restores the rate-limit state if a fetch is abandoned mid-way (its
/// future dropped), so the next waiter fetches instead of being throttled
/// by an attempt that never finished; always clears `in_flight`.
struct AttemptGuard<'a> {
    cache: &'a JwksCache,
    previous_attempt_ms: u64,
    completed: bool,
}

impl Drop for AttemptGuard<'_> {
    fn drop(&mut self) {
        if !self.completed {
            self.cache
                .last_attempt_ms
                .store(self.previous_attempt_ms, Ordering::Release);
        }
        self.cache.in_flight.store(false, Ordering::Release);
    }
}
