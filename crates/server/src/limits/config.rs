//! `[limits]` in `idmint.toml`.

use serde::Deserialize;

/// ```toml
/// [limits]
/// per_identity = { rate = 5, burst = 10 }    # credentials per second, bucket size
/// per_role = { rate = 50, burst = 100 }
/// global = { rate = 500, burst = 1000 }
/// max_leases_per_identity = 50               # live leases at once
/// max_leases_per_role = 1000
/// ```
/// Every key is optional; absent means unlimited.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    #[serde(default)]
    pub per_identity: Option<RateSection>,
    #[serde(default)]
    pub per_role: Option<RateSection>,
    #[serde(default)]
    pub global: Option<RateSection>,
    #[serde(default)]
    pub max_leases_per_identity: Option<usize>,
    #[serde(default)]
    pub max_leases_per_role: Option<usize>,
}

/// A token bucket: `rate` requests per second sustained, `burst` at once.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSection {
    pub rate: f64,
    pub burst: u32,
}

impl RateSection {
    /// Rejects rates that would never refill or overflow the arithmetic.
    pub fn validate(&self, key: &str) -> Result<(), String> {
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= 1e9) {
            return Err(format!(
                "[limits] {key}: rate must be a positive number of requests per second (got {})",
                self.rate
            ));
        }
        if self.burst == 0 {
            return Err(format!(
                "[limits] {key}: burst must be at least 1 (the largest number of requests accepted at once)"
            ));
        }
        Ok(())
    }
}
