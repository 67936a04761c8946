//! Token buckets keyed by identity, role, and one global bucket.

use super::config::RateSection;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Keyed buckets kept at most; beyond it, buckets that have refilled
/// completely (which carry no state worth keeping) are dropped first.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(rate: &RateSection, now: Instant) -> Self {
        Self {
            tokens: f64::from(rate.burst),
            last: now,
        }
    }

    fn refill(&mut self, rate: &RateSection, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.rate).min(f64::from(rate.burst));
        self.last = now;
    }

    /// How long until one token is available (zero when one is).
    fn wait(&self, rate: &RateSection) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / rate.rate)
        }
    }
}

/// Buckets of one kind (per identity, or per role).
#[derive(Debug)]
pub struct KeyedBuckets {
    rate: RateSection,
    buckets: HashMap<String, Bucket>,
}

impl KeyedBuckets {
    pub fn new(rate: RateSection) -> Self {
        Self {
            rate,
            buckets: HashMap::new(),
        }
    }

    /// Refills `key`'s bucket and returns how long until it has a token.
    fn wait(&mut self, key: &str, now: Instant) -> Duration {
        if self.buckets.len() >= MAX_KEYS && !self.buckets.contains_key(key) {
            let rate = self.rate;
            self.buckets.retain(|_, b| {
                let mut b = *b;
                b.refill(&rate, now);
                b.tokens < f64::from(rate.burst)
            });
        }
        let rate = self.rate;
        let b = self
            .buckets
            .entry(key.to_string())
            .or_insert_with(|| Bucket::full(&rate, now));
        b.refill(&rate, now);
        b.wait(&rate)
    }

    fn take(&mut self, key: &str) {
        if let Some(b) = self.buckets.get_mut(key) {
            b.tokens -= 1.0;
        }
    }
}

/// The global bucket.
#[derive(Debug)]
pub struct SingleBucket {
    rate: RateSection,
    bucket: Bucket,
}

impl SingleBucket {
    pub fn new(rate: RateSection) -> Self {
        Self {
            rate,
            bucket: Bucket::full(&rate, Instant::now()),
        }
    }
}

/// Every bucket, checked and charged together so a refused request costs
/// no bucket anything (a flood from one identity cannot drain the global
/// or role budget once its own bucket is empty… beyond its own burst).
#[derive(Debug, Default)]
pub struct Buckets {
    pub identity: Option<KeyedBuckets>,
    pub role: Option<KeyedBuckets>,
    pub global: Option<SingleBucket>,
}

/// Which bucket refused, and when to retry.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub scope: &'static str,
    pub retry_after: Duration,
}

impl Buckets {
    /// Charges one request to `identity` and `role` if every bucket has a
    /// token; otherwise charges nothing and says which bucket refused.
    pub fn try_acquire(&mut self, identity: &str, role: &str, now: Instant) -> Result<(), Refusal> {
        // The identity first: a flooding identity is refused by its own
        // bucket before it can touch the shared ones.
        if let Some(k) = self.identity.as_mut() {
            let wait = k.wait(identity, now);
            if !wait.is_zero() {
                return Err(Refusal {
                    scope: "identity",
                    retry_after: wait,
                });
            }
        }
        if let Some(k) = self.role.as_mut() {
            let wait = k.wait(role, now);
            if !wait.is_zero() {
                return Err(Refusal {
                    scope: "role",
                    retry_after: wait,
                });
            }
        }
        if let Some(g) = self.global.as_mut() {
            let rate = g.rate;
            g.bucket.refill(&rate, now);
            let wait = g.bucket.wait(&rate);
            if !wait.is_zero() {
                return Err(Refusal {
                    scope: "global",
                    retry_after: wait,
                });
            }
            g.bucket.tokens -= 1.0;
        }
        if let Some(k) = self.identity.as_mut() {
            k.take(identity);
        }
        if let Some(k) = self.role.as_mut() {
            k.take(role);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(rate: f64, burst: u32) -> RateSection {
        RateSection { rate, burst }
    }

    #[test]
    fn burst_then_refill_per_identity() {
        let mut b = Buckets {
            identity: Some(KeyedBuckets::new(rate(2.0, 3))),
            ..Default::default()
        };
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(b.try_acquire("a", "r", t0).is_ok());
        }
        let refused = b.try_acquire("a", "r", t0).unwrap_err();
        assert_eq!(refused.scope, "identity");
        assert!((refused.retry_after.as_secs_f64() - 0.5).abs() < 1e-6);
        // Another identity is unaffected.
        assert!(b.try_acquire("b", "r", t0).is_ok());
        // Half a second later one token is back.
        let t1 = t0 + Duration::from_millis(500);
        assert!(b.try_acquire("a", "r", t1).is_ok());
        assert!(b.try_acquire("a", "r", t1).is_err());
    }

    #[test]
    fn a_refusal_charges_nothing() {
        let mut b = Buckets {
            identity: Some(KeyedBuckets::new(rate(1.0, 5))),
            global: Some(SingleBucket::new(rate(1.0, 2))),
            ..Default::default()
        };
        let t0 = Instant::now();
        assert!(b.try_acquire("a", "r", t0).is_ok());
        assert!(b.try_acquire("a", "r", t0).is_ok());
        assert_eq!(b.try_acquire("a", "r", t0).unwrap_err().scope, "global");
        // The global refusal did not consume a's own tokens: 3 left.
        let k = b.identity.as_mut().unwrap();
        assert!((k.buckets["a"].tokens - 3.0).abs() < 1e-9);
    }

    #[test]
    fn per_role_buckets() {
        let mut b = Buckets {
            role: Some(KeyedBuckets::new(rate(1.0, 1))),
            ..Default::default()
        };
        let t0 = Instant::now();
        assert!(b.try_acquire("a", "db", t0).is_ok());
        assert_eq!(b.try_acquire("b", "db", t0).unwrap_err().scope, "role");
        assert!(b.try_acquire("b", "api", t0).is_ok());
    }
}
