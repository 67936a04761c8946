//! [`CredentialCache`]: fetched credentials kept until shortly before they
//! expire, fetched once however many requests want them at the same time.
//!
//! Each key has a slot guarded by an async mutex. A request takes the
//! slot's lock; if the cached value is still fresh it is returned, else
//! the request fetches while holding the lock, so concurrent requests for
//! the same key wait for that one fetch instead of each calling the server
//! (single flight). Different keys never wait for each other.
//!
//! When a fetch fails with a *transient* error (the server unreachable,
//! 5xx), a cached value that has not yet expired is served instead, and
//! the server is not asked again for `retry_after`, so an outage does not
//! add a timeout to every request. Once the cached value expires, requests
//! fail closed with the last error. A non-transient failure (the server
//! refused: policy, configuration drift) drops the cached value at once:
//! a refusal is an answer, not an outage.
//!
//! Times are [`tokio::time::Instant`]s, so tests can run on paused time.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// What a fetch produced and how long it may be used.
#[derive(Debug)]
pub struct Fetched<V> {
    pub value: V,
    /// Fetch again after this long (requests in between are served from
    /// the cache).
    pub refresh_in: Duration,
    /// Never use the value after this long.
    pub expires_in: Duration,
}

/// Why a credential could not be obtained. The message names the source
/// and the error and never contains a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FetchError {
    /// HTTP status the proxy answers the workload with.
    pub status: u16,
    pub message: String,
    /// Whether a still-valid cached value may be served instead.
    pub transient: bool,
}

impl FetchError {
    /// The source is unreachable or failing: `503`, cached value usable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            status: 503,
            message: message.into(),
            transient: true,
        }
    }

    /// The source answered with a refusal: no cached value is served.
    pub fn refused(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            transient: false,
        }
    }
}

struct Entry<V> {
    value: Arc<V>,
    refresh_at: Instant,
    expires_at: Instant,
}

struct Slot<V> {
    entry: Option<Entry<V>>,
    /// The last failed fetch: when, and why.
    failure: Option<(Instant, FetchError)>,
}

/// Cached values by key, with single-flight fetching.
pub struct CredentialCache<K, V> {
    slots: Mutex<HashMap<K, Arc<tokio::sync::Mutex<Slot<V>>>>>,
    retry_after: Duration,
    fetches: AtomicU64,
}

impl<K, V> std::fmt::Debug for CredentialCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialCache")
            .field("retry_after", &self.retry_after)
            .finish_non_exhaustive()
    }
}

impl<K: Eq + Hash + Clone, V> CredentialCache<K, V> {
    /// `retry_after`: how long a failed fetch is remembered before the
    /// source is asked again.
    pub fn new(retry_after: Duration) -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            retry_after,
            fetches: AtomicU64::new(0),
        }
    }

    /// How many fetches were started (tests: single flight).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn slot(&self, key: &K) -> Arc<tokio::sync::Mutex<Slot<V>>> {
        // A poisoned map only means another thread panicked while
        // inserting; the map itself is still consistent.
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(Slot {
                    entry: None,
                    failure: None,
                }))
            })
            .clone()
    }

    /// Forget the cached value of `key` (e.g. a session the server no
    /// longer accepts), so the next [`CredentialCache::get`] fetches.
    pub async fn invalidate(&self, key: &K) {
        let slot = self.slot(key);
        let mut slot = slot.lock().await;
        slot.entry = None;
        slot.failure = None;
    }

    /// The cached value of `key` if fresh, else the result of `fetch`
    /// (see the module documentation for what happens on failure).
    /// `what` names the credential in log lines.
    pub async fn get<F, Fut>(&self, key: &K, what: &str, fetch: F) -> Result<Arc<V>, FetchError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Fetched<V>, FetchError>>,
    {
        let slot = self.slot(key);
        let mut slot = slot.lock().await;
        let now = Instant::now();
        let valid = slot
            .entry
            .as_ref()
            .filter(|e| now < e.expires_at)
            .map(|e| (e.value.clone(), now < e.refresh_at));
        if let Some((value, true)) = &valid {
            return Ok(value.clone());
        }
        if let Some((at, error)) = &slot.failure {
            if now < *at + self.retry_after {
                return match valid {
                    Some((value, _)) => Ok(value),
                    None => Err(error.clone()),
                };
            }
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match fetch().await {
            Ok(fetched) => {
                let now = Instant::now();
                let value = Arc::new(fetched.value);
                slot.entry = Some(Entry {
                    value: value.clone(),
                    refresh_at: now + fetched.refresh_in.min(fetched.expires_in),
                    expires_at: now + fetched.expires_in,
                });
                slot.failure = None;
                Ok(value)
            }
            Err(error) => {
                slot.failure = Some((Instant::now(), error.clone()));
                match valid {
                    Some((value, _)) if error.transient => {
                        tracing::warn!(
                            credential = what,
                            error = %error,
                            "cannot refresh the credential; serving the cached one until it expires"
                        );
                        Ok(value)
                    }
                    _ => {
                        slot.entry = None;
                        Err(error)
                    }
                }
            }
        }
    }
}

/// When to refresh a value valid for `lifetime`: `before` ahead of its
/// end, but never in the first half of its life (a short-lived credential
/// would otherwise be refreshed on every request).
pub fn refresh_in(lifetime: Duration, before: Duration) -> Duration {
    lifetime.saturating_sub(before.min(lifetime / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(v: u32, refresh_ms: u64, expires_ms: u64) -> Result<Fetched<u32>, FetchError> {
        Ok(Fetched {
            value: v,
            refresh_in: Duration::from_millis(refresh_ms),
            expires_in: Duration::from_millis(expires_ms),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_values_are_served_without_fetching() {
        let cache = CredentialCache::<&str, u32>::new(Duration::from_secs(1));
        assert_eq!(
            *cache
                .get(&"k", "k", || async { ok(1, 100, 200) })
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            *cache
                .get(&"k", "k", || async { ok(2, 100, 200) })
                .await
                .unwrap(),
            1
        );
        assert_eq!(cache.fetch_count(), 1);
        tokio::time::advance(Duration::from_millis(101)).await;
        assert_eq!(
            *cache
                .get(&"k", "k", || async { ok(2, 100, 200) })
                .await
                .unwrap(),
            2
        );
        assert_eq!(cache.fetch_count(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_share_one_fetch() {
        let cache = Arc::new(CredentialCache::<&str, u32>::new(Duration::from_secs(1)));
        let (release, released) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (cache, mut released) = (cache.clone(), released.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get(&"k", "k", || async move {
                        let _ = released.wait_for(|r| *r).await;
                        ok(7, 1000, 2000)
                    })
                    .await
            }));
        }
        // Let every task reach the slot before the fetch completes.
        tokio::task::yield_now().await;
        release.send(true).unwrap();
        for t in tasks {
            assert_eq!(*t.await.unwrap().unwrap(), 7);
        }
        assert_eq!(cache.fetch_count(), 1);
        drop(released);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failure_serves_cached_until_expiry_then_fails_closed() {
        let cache = CredentialCache::<&str, u32>::new(Duration::from_millis(50));
        cache
            .get(&"k", "k", || async { ok(1, 100, 1000) })
            .await
            .unwrap();
        tokio::time::advance(Duration::from_millis(150)).await;
        let down = || async { Err(FetchError::unavailable("idmint server unreachable")) };
        assert_eq!(*cache.get(&"k", "k", down).await.unwrap(), 1);
        // Within retry_after the server is not asked again.
        let before = cache.fetch_count();
        assert_eq!(*cache.get(&"k", "k", down).await.unwrap(), 1);
        assert_eq!(cache.fetch_count(), before);
        tokio::time::advance(Duration::from_millis(900)).await;
        let err = cache.get(&"k", "k", down).await.unwrap_err();
        assert_eq!(err.status, 503);
        assert!(err.message.contains("unreachable"), "{err}");
        // Fails fast (no fetch) during retry_after, with the same error.
        let before = cache.fetch_count();
        assert_eq!(cache.get(&"k", "k", down).await.unwrap_err(), err);
        assert_eq!(cache.fetch_count(), before);
        // And recovers when the source does.
        tokio::time::advance(Duration::from_millis(60)).await;
        assert_eq!(
            *cache
                .get(&"k", "k", || async { ok(3, 100, 1000) })
                .await
                .unwrap(),
            3
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refusal_drops_the_cached_value() {
        let cache = CredentialCache::<&str, u32>::new(Duration::from_millis(50));
        cache
            .get(&"k", "k", || async { ok(1, 10, 1000) })
            .await
            .unwrap();
        tokio::time::advance(Duration::from_millis(20)).await;
        let err = cache
            .get(&"k", "k", || async {
                Err(FetchError::refused(403, "policy denies"))
            })
            .await
            .unwrap_err();
        assert_eq!(err.status, 403);
        tokio::time::advance(Duration::from_millis(60)).await;
        let err = cache
            .get(&"k", "k", || async { Err(FetchError::unavailable("down")) })
            .await
            .unwrap_err();
        assert_eq!(err.status, 503, "the refused value must not come back");
    }

    #[test]
    fn refresh_margin_is_capped_at_half_the_lifetime() {
        let s = Duration::from_secs;
        assert_eq!(refresh_in(s(3600), s(60)), s(3540));
        assert_eq!(refresh_in(s(60), s(60)), s(30));
        assert_eq!(refresh_in(s(0), s(60)), s(0));
    }
}
