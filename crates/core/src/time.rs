//! Wall-clock time as whole seconds since the Unix epoch.

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch. JWT `exp`/`iat`, lease expiry and audit
/// timestamps all use this one unit so comparisons never mix clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixTime(pub i64);

impl UnixTime {
    pub fn now() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        UnixTime(secs)
    }
    pub fn plus(self, d: Duration) -> Self {
        UnixTime(
            self.0
                .saturating_add(d.as_secs().min(i64::MAX as u64) as i64),
        )
    }
    pub fn secs(self) -> i64 {
        self.0
    }
    /// RFC 3339 in UTC, e.g. `2026-11-23T15:04:05Z`.
    pub fn rfc3339(self) -> String {
        let t = UNIX_EPOCH + Duration::from_secs(self.0.max(0) as u64);
        humantime::format_rfc3339_seconds(t).to_string()
    }
}

/// Milliseconds since the epoch, for audit event timestamps.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
