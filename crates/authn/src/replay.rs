//! Remembers the `jti` of accepted tokens until they expire, so that each
//! token logs in at most once.
//!
//! Memory is bounded two ways: an entry is dropped once its token can no
//! longer be accepted anyway (`exp` + leeway), and the total number of
//! entries is capped. At the cap the cache **fails closed**: new tokens are
//! refused until old entries expire, because forgetting a used `jti` would
//! silently re-open replay. Keys are a 128-bit hash of `issuer || jti`, so an
//! attacker-chosen long `jti` costs no more memory than a short one.

use idmint_core::UnixTime;
use ring::digest::{digest, SHA256};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// Default cap on remembered token ids (about 40 MB at the cap).
pub(crate) const DEFAULT_CAPACITY: usize = 1_000_000;
const SHARDS: usize = 16;
/// How often (seconds) a shard drops expired entries during normal inserts.
const SWEEP_INTERVAL_SECS: i64 = 60;

type JtiKey = [u8; 16];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplayRefusal {
    /// The token id was recorded before and has not expired.
    Replayed,
    /// The cache is at capacity; the token is refused (fail closed).
    Full { capacity: usize },
}

/// Sharded `jti` set; each shard is a `Mutex<HashMap>` so that concurrent
/// logins rarely contend on one lock.
pub(crate) struct ReplayCache {
    shards: Vec<Mutex<Shard>>,
    shard_capacity: usize,
    capacity: usize,
}

#[derive(Default)]
struct Shard {
    /// token id hash → last second at which the token could still be accepted.
    seen: HashMap<JtiKey, i64>,
    next_sweep: i64,
    last_sweep: i64,
}

impl ReplayCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self::with_shards(capacity, SHARDS)
    }

    fn with_shards(capacity: usize, shards: usize) -> Self {
        let shards = shards.max(1);
        let capacity = capacity.max(1);
        Self {
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            shard_capacity: capacity.div_ceil(shards),
            capacity,
        }
    }

    /// Record `jti` of `issuer` as used until `accept_until` (the token's
    /// `exp` plus leeway); refuse it if it was recorded before.
    pub(crate) fn check_and_record(
        &self,
        issuer: &str,
        jti: &str,
        accept_until: UnixTime,
        now: UnixTime,
    ) -> Result<(), ReplayRefusal> {
        let key = key_of(issuer, jti);
        let mut shard = self.shard(&key);
        if shard.seen.get(&key).is_some_and(|until| *until >= now.0) {
            return Err(ReplayRefusal::Replayed);
        }
        let full = shard.seen.len() >= self.shard_capacity;
        // A full shard sweeps at most once per second, so a flood of tokens
        // at the cap cannot turn every request into a full scan.
        if now.0 >= shard.next_sweep || (full && now.0 > shard.last_sweep) {
            shard.seen.retain(|_, until| *until >= now.0);
            shard.next_sweep = now.0.saturating_add(SWEEP_INTERVAL_SECS);
            shard.last_sweep = now.0;
        }
        if shard.seen.len() >= self.shard_capacity {
            return Err(ReplayRefusal::Full {
                capacity: self.capacity,
            });
        }
        shard.seen.insert(key, accept_until.0);
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).seen.len()).sum()
    }

    fn shard(&self, key: &JtiKey) -> MutexGuard<'_, Shard> {
        // `shards` is never empty (see `with_shards`) and the index is taken
        // modulo its length, so it is always in bounds.
        let index = usize::from(key[0]) % self.shards.len();
        lock(&self.shards[index])
    }
}

/// A poisoned shard is still consistent (every mutation is a single map
/// operation), so keep using it rather than failing every login.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn key_of(issuer: &str, jti: &str) -> JtiKey {
    let mut input = Vec::with_capacity(issuer.len() + 1 + jti.len());
    input.extend_from_slice(issuer.as_bytes());
    input.push(0);
    input.extend_from_slice(jti.as_bytes());
    let hash = digest(&SHA256, &input);
    let mut key = [0u8; 16];
    key.copy_from_slice(hash.as_ref().get(..16).unwrap_or(&[0u8; 16]));
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixTime = UnixTime(1_800_000_000);

    #[test]
    fn second_use_is_refused_until_expiry() {
        let cache = ReplayCache::new(100);
        let until = UnixTime(NOW.0 + 60);
        assert_eq!(cache.check_and_record("iss", "a", until, NOW), Ok(()));
        assert_eq!(
            cache.check_and_record("iss", "a", until, NOW),
            Err(ReplayRefusal::Replayed)
        );
        // Same jti from another issuer is a different token.
        assert_eq!(cache.check_and_record("other", "a", until, NOW), Ok(()));
        // After the token expired the entry no longer matters.
        assert_eq!(
            cache.check_and_record("iss", "a", UnixTime(NOW.0 + 200), UnixTime(NOW.0 + 61)),
            Ok(())
        );
    }

    #[test]
    fn full_cache_fails_closed_then_recovers_after_expiry() {
        let cache = ReplayCache::with_shards(3, 1);
        let until = UnixTime(NOW.0 + 10);
        for jti in ["a", "b", "c"] {
            assert_eq!(cache.check_and_record("i", jti, until, NOW), Ok(()));
        }
        assert_eq!(
            cache.check_and_record("i", "d", until, NOW),
            Err(ReplayRefusal::Full { capacity: 3 })
        );
        // The used ids are still refused as replays, not forgotten.
        assert_eq!(
            cache.check_and_record("i", "a", until, NOW),
            Err(ReplayRefusal::Replayed)
        );
        let later = UnixTime(NOW.0 + 11);
        assert_eq!(
            cache.check_and_record("i", "d", UnixTime(later.0 + 10), later),
            Ok(())
        );
        assert_eq!(cache.len(), 1, "expired entries were swept");
    }

    #[test]
    fn concurrent_use_admits_exactly_one() {
        let cache = std::sync::Arc::new(ReplayCache::new(1000));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    cache
                        .check_and_record("i", "same", UnixTime(NOW.0 + 60), NOW)
                        .is_ok()
                })
            })
            .collect();
        let admitted = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|ok| *ok)
            .count();
        assert_eq!(admitted, 1);
    }
}
