//! Time sources: wall-clock time for token claims, monotonic time for cache
//! ages and rate limits. Injectable so that expiry, key staleness and
//! refetch limits can be tested without waiting.

use idmint_core::UnixTime;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where an [`OidcVerifier`](crate::OidcVerifier) gets the time.
pub trait Clock: Send + Sync + 'static {
    /// Wall-clock time, compared with `exp`, `nbf` and `iat`.
    fn now(&self) -> UnixTime;
    /// Monotonic time since an arbitrary fixed origin: ages of cached keys
    /// and refetch intervals, immune to wall-clock jumps.
    fn monotonic(&self) -> Duration;
}

/// The real clocks.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        UnixTime::now()
    }
    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock that moves only when told to, for tests. Both the wall clock and
/// the monotonic clock advance together.
#[derive(Debug)]
pub struct ManualClock {
    wall: AtomicI64,
    monotonic_ms: AtomicU64,
}

impl ManualClock {
    /// Starts at wall-clock time `start`.
    pub fn new(start: UnixTime) -> Self {
        Self {
            wall: AtomicI64::new(start.0),
            monotonic_ms: AtomicU64::new(0),
        }
    }

    /// Move both clocks forward by `by` (whole seconds for the wall clock).
    pub fn advance(&self, by: Duration) {
        let secs = i64::try_from(by.as_secs()).unwrap_or(i64::MAX);
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.wall.fetch_add(secs, Ordering::SeqCst);
        self.monotonic_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        UnixTime(self.wall.load(Ordering::SeqCst))
    }
    fn monotonic(&self) -> Duration {
        Duration::from_millis(self.monotonic_ms.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_advances_both() {
        let c = ManualClock::new(UnixTime(100));
        c.advance(Duration::from_secs(5));
        assert_eq!(c.now(), UnixTime(105));
        assert_eq!(c.monotonic(), Duration::from_secs(5));
        let s = SystemClock::new();
        assert!(s.now().0 > 1_600_000_000);
        assert!(s.monotonic() < Duration::from_secs(60));
    }
}
