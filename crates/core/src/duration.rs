//! Human-friendly durations (`"5m"`, `"1h30m"`) used in config and policy.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A credential or session lifetime. Always at least one second and at most
/// 30 days: anything longer is a configuration mistake for a broker whose
/// whole point is short-lived credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ttl(Duration);

pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TtlError {
    #[error("invalid duration {0:?}: use forms like \"90s\", \"5m\", \"1h30m\"")]
    Syntax(String),
    #[error("duration {0:?} is zero; a lifetime must be at least 1s")]
    Zero(String),
    #[error("duration {0:?} exceeds the 30 day maximum for any credential")]
    TooLong(String),
}

impl Ttl {
    pub fn from_secs(secs: u64) -> Result<Self, TtlError> {
        Self::new(Duration::from_secs(secs), &format!("{secs}s"))
    }
    fn new(d: Duration, text: &str) -> Result<Self, TtlError> {
        if d.as_secs() == 0 {
            return Err(TtlError::Zero(text.to_string()));
        }
        if d > MAX_TTL {
            return Err(TtlError::TooLong(text.to_string()));
        }
        Ok(Ttl(Duration::from_secs(d.as_secs())))
    }
    /// For constants and defaults: clamps into the valid range instead of
    /// failing, so it can never panic.
    pub const fn clamped(secs: u64) -> Self {
        let max = MAX_TTL.as_secs();
        let s = if secs == 0 {
            1
        } else if secs > max {
            max
        } else {
            secs
        };
        Ttl(Duration::from_secs(s))
    }
    pub fn as_duration(self) -> Duration {
        self.0
    }
    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl FromStr for Ttl {
    type Err = TtlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let d = if let Ok(n) = t.parse::<u64>() {
            Duration::from_secs(n)
        } else {
            humantime::parse_duration(t).map_err(|_| TtlError::Syntax(s.to_string()))?
        };
        Ttl::new(d, s)
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Ttl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Ttl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Secs(u64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
            Raw::Secs(n) => Ttl::from_secs(n).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parses() {
        assert_eq!("5m".parse::<Ttl>().unwrap().as_secs(), 300);
        assert_eq!("1h30m".parse::<Ttl>().unwrap().as_secs(), 5400);
        assert_eq!("42".parse::<Ttl>().unwrap().as_secs(), 42);
        assert!(matches!("0s".parse::<Ttl>(), Err(TtlError::Zero(_))));
        assert!(matches!("31days".parse::<Ttl>(), Err(TtlError::TooLong(_))));
        assert!(matches!("soon".parse::<Ttl>(), Err(TtlError::Syntax(_))));
    }
}
