//! `[governance]` in `idmint.toml`.

use idmint_core::Ttl;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::num::NonZeroU32;

/// ```toml
/// [governance]
/// approvals = 1                                  # default
/// approvals_for_labels = { env = { prod = 2 } }  # when a changed role has env=prod
/// break_glass_ttl = "1h"                         # default
/// impact_events = 1000                           # decisions replayed per draft
/// sync_interval = "2s"                           # how often expired break-glass activations are reverted
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovernanceSection {
    /// Approvals (by admins other than the author) a draft needs.
    #[serde(default = "default_approvals")]
    pub approvals: NonZeroU32,
    /// Label key → label value → approvals needed when any role the draft
    /// adds, removes or changes carries that label (the highest applies).
    #[serde(default)]
    pub approvals_for_labels: BTreeMap<String, BTreeMap<String, NonZeroU32>>,
    /// How long a break-glass activation stays in force unless confirmed.
    #[serde(default = "default_break_glass_ttl")]
    pub break_glass_ttl: Ttl,
    /// How many recent decision events a draft is replayed against.
    #[serde(default = "default_impact_events")]
    pub impact_events: usize,
    /// How often a server checks for expired break-glass activations.
    #[serde(default = "default_sync_interval")]
    pub sync_interval: Ttl,
}

impl Default for GovernanceSection {
    fn default() -> Self {
        Self {
            approvals: default_approvals(),
            approvals_for_labels: BTreeMap::new(),
            break_glass_ttl: default_break_glass_ttl(),
            impact_events: default_impact_events(),
            sync_interval: default_sync_interval(),
        }
    }
}

impl GovernanceSection {
    /// Approvals needed for a change touching roles with these labels.
    pub fn required_approvals<'a>(
        &self,
        changed_role_labels: impl IntoIterator<Item = &'a BTreeMap<String, String>>,
    ) -> u32 {
        let mut need = self.approvals.get();
        for labels in changed_role_labels {
            for (key, value) in labels {
                if let Some(n) = self
                    .approvals_for_labels
                    .get(key)
                    .and_then(|by_value| by_value.get(value))
                {
                    need = need.max(n.get());
                }
            }
        }
        need
    }
}

fn default_approvals() -> NonZeroU32 {
    NonZeroU32::MIN
}
fn default_break_glass_ttl() -> Ttl {
    Ttl::clamped(3600)
}
fn default_impact_events() -> usize {
    1000
}
fn default_sync_interval() -> Ttl {
    Ttl::clamped(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_raise_the_required_count() {
        let g: GovernanceSection =
            toml::from_str("approvals_for_labels = { env = { prod = 2 } }").unwrap();
        assert_eq!(g.approvals.get(), 1);
        let prod = BTreeMap::from([("env".to_string(), "prod".to_string())]);
        let dev = BTreeMap::from([("env".to_string(), "dev".to_string())]);
        assert_eq!(g.required_approvals([&dev]), 1);
        assert_eq!(g.required_approvals([&dev, &prod]), 2);
        assert_eq!(g.break_glass_ttl.as_secs(), 3600);
    }

    #[test]
    fn zero_approvals_is_refused() {
        let e = toml::from_str::<GovernanceSection>("approvals = 0").unwrap_err();
        assert!(e.to_string().contains("nonzero"), "{e}");
    }
}
