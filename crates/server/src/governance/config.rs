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
/// draft_retention = "90d"                        # finished drafts are deleted this long after creation
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
    /// How long rejected, activated, reverted and superseded (stale
    /// pending) drafts are kept after their creation. History survives
    /// pruning: approvers and break-glass details of every version are
    /// kept in a small per-version record.
    #[serde(
        default = "default_draft_retention",
        deserialize_with = "deserialize_retention"
    )]
    pub draft_retention: std::time::Duration,
}

impl Default for GovernanceSection {
    fn default() -> Self {
        Self {
            approvals: default_approvals(),
            approvals_for_labels: BTreeMap::new(),
            break_glass_ttl: default_break_glass_ttl(),
            impact_events: default_impact_events(),
            sync_interval: default_sync_interval(),
            draft_retention: default_draft_retention(),
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
fn default_draft_retention() -> std::time::Duration {
    std::time::Duration::from_secs(90 * 24 * 3600)
}

/// A retention like `"90d"` or `"1y"`: longer than a [`Ttl`] may be, at
/// least one second, at most 100 years.
fn deserialize_retention<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::time::Duration, D::Error> {
    let text = String::deserialize(d)?;
    let value = humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "draft_retention {text:?} is not a duration ({e}); use forms like \"90d\" or \"2w\""
        ))
    })?;
    if value.as_secs() == 0 || value.as_secs() > 100 * 365 * 24 * 3600 {
        return Err(serde::de::Error::custom(format!(
            "draft_retention {text:?} must be between 1s and 100 years"
        )));
    }
    Ok(value)
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
        assert_eq!(g.draft_retention.as_secs(), 90 * 24 * 3600);
    }

    #[test]
    fn retention_is_a_long_duration() {
        let g: GovernanceSection = toml::from_str("draft_retention = \"1y\"").unwrap();
        assert!(g.draft_retention.as_secs() > 360 * 24 * 3600);
        for bad in ["0s", "soon", "1000y"] {
            let e = toml::from_str::<GovernanceSection>(&format!("draft_retention = {bad:?}"))
                .unwrap_err();
            assert!(e.to_string().contains("draft_retention"), "{e}");
        }
    }

    #[test]
    fn zero_approvals_is_refused() {
        let e = toml::from_str::<GovernanceSection>("approvals = 0").unwrap_err();
        assert!(e.to_string().contains("nonzero"), "{e}");
    }
}
