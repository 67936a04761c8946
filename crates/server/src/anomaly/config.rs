//! `[anomaly]` in `idmint.toml`.

use idmint_core::Ttl;
use serde::Deserialize;

/// ```toml
/// [anomaly]
/// burst_window = "1m"        # the recent window a burst is measured over
/// baseline_window = "1h"     # the history the baseline rate comes from
/// burst_factor = 10          # recent rate must exceed factor × baseline …
/// burst_min = 20             # … and at least this many issuances in burst_window
/// approval_ttl = "15m"       # how long an approval waits, and how long the granted retry stays valid
///
/// [[anomaly.rule]]
/// roles = "prod/*"           # glob on the role name (`*` matches anything, `/` included)
/// signals = ["first_role_use", "new_network", "burst"]   # default: all three
/// action = "require_approval"                            # default "audit"
/// ```
///
/// Without an `[anomaly]` table nothing is watched. With the table but no
/// `[[anomaly.rule]]`, every role is watched for every signal with
/// `action = "audit"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalySection {
    #[serde(default)]
    pub rule: Vec<AnomalyRule>,
    #[serde(default = "default_burst_window")]
    pub burst_window: Ttl,
    #[serde(default = "default_baseline_window")]
    pub baseline_window: Ttl,
    #[serde(default = "default_burst_factor")]
    pub burst_factor: f64,
    #[serde(default = "default_burst_min")]
    pub burst_min: u32,
    #[serde(default = "default_approval_ttl")]
    pub approval_ttl: Ttl,
}

impl Default for AnomalySection {
    fn default() -> Self {
        Self {
            rule: Vec::new(),
            burst_window: default_burst_window(),
            baseline_window: default_baseline_window(),
            burst_factor: default_burst_factor(),
            burst_min: default_burst_min(),
            approval_ttl: default_approval_ttl(),
        }
    }
}

/// Which roles a rule watches, for which signals, and what it does.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyRule {
    #[serde(default = "default_roles")]
    pub roles: String,
    #[serde(default = "all_signals")]
    pub signals: Vec<Signal>,
    #[serde(default)]
    pub action: AnomalyAction,
}

/// The three anomaly signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// The identity has never been issued this role before.
    FirstRoleUse,
    /// The request comes from a /24 (IPv4) or /64 (IPv6) the identity has
    /// not used before.
    NewNetwork,
    /// The identity's issuance rate is far above its own recent baseline.
    Burst,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::FirstRoleUse, Signal::NewNetwork, Signal::Burst];

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::FirstRoleUse => "first_role_use",
            Signal::NewNetwork => "new_network",
            Signal::Burst => "burst",
        }
    }
}

/// What a signal does to the request that raised it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyAction {
    /// Audit event and metric only; the credential is issued.
    #[default]
    Audit,
    /// Refuse with 403 `approval_required` until a second admin approves.
    RequireApproval,
}

impl AnomalyAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyAction::Audit => "audit",
            AnomalyAction::RequireApproval => "require_approval",
        }
    }
}

impl AnomalySection {
    /// Rejects settings that would make the burst test meaningless.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.burst_factor.is_finite() && self.burst_factor >= 1.0) {
            return Err(format!(
                "[anomaly] burst_factor must be a number >= 1 (got {})",
                self.burst_factor
            ));
        }
        if self.burst_min == 0 {
            return Err("[anomaly] burst_min must be at least 1".into());
        }
        if self.baseline_window <= self.burst_window {
            return Err(format!(
                "[anomaly] baseline_window ({}s) must be longer than burst_window ({}s)",
                self.baseline_window.as_secs(),
                self.burst_window.as_secs()
            ));
        }
        for r in &self.rule {
            if r.roles.is_empty() {
                return Err("[[anomaly.rule]] roles must not be empty (use \"*\" for all)".into());
            }
            if r.signals.is_empty() {
                return Err(format!(
                    "[[anomaly.rule]] roles = {:?}: signals must name at least one of first_role_use, new_network, burst",
                    r.roles
                ));
            }
        }
        Ok(())
    }

    /// The action for `signal` on `role`: the first rule whose pattern
    /// matches the role and which lists the signal; `None` when the signal
    /// is not watched for this role.
    pub fn action_for(&self, role: &str, signal: Signal) -> Option<AnomalyAction> {
        if self.rule.is_empty() {
            return Some(AnomalyAction::Audit);
        }
        self.rule
            .iter()
            .find(|r| r.signals.contains(&signal) && glob_match(&r.roles, role))
            .map(|r| r.action)
    }
}

/// `*` matches any run of characters (including `/`); everything else
/// matches itself. Iterative with one backtrack point, so it is linear in
/// practice and cannot blow up on hostile role names.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi.min(p.len())..].iter().all(|c| *c == b'*')
}

fn default_roles() -> String {
    "*".into()
}
fn all_signals() -> Vec<Signal> {
    Signal::ALL.to_vec()
}
fn default_burst_window() -> Ttl {
    Ttl::clamped(60)
}
fn default_baseline_window() -> Ttl {
    Ttl::clamped(3600)
}
fn default_burst_factor() -> f64 {
    10.0
}
fn default_burst_min() -> u32 {
    20
}
fn default_approval_ttl() -> Ttl {
    Ttl::clamped(900)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", "db/orders"));
        assert!(glob_match("db/*", "db/orders"));
        assert!(glob_match("*/orders", "db/orders"));
        assert!(glob_match("prod-*-api", "prod-x-api"));
        assert!(!glob_match("prod-*-api", "prod-x-apix"));
        assert!(!glob_match("db/*", "dbx/orders"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(!glob_match("a*a*a*a*a*b", &"a".repeat(200)));
    }

    #[test]
    fn first_matching_rule_listing_the_signal_decides() {
        let s: AnomalySection = toml::from_str(
            r#"
[[rule]]
roles = "prod/*"
signals = ["first_role_use"]
action = "require_approval"
[[rule]]
roles = "*"
"#,
        )
        .unwrap();
        s.validate().unwrap();
        assert_eq!(
            s.action_for("prod/db", Signal::FirstRoleUse),
            Some(AnomalyAction::RequireApproval)
        );
        assert_eq!(
            s.action_for("prod/db", Signal::Burst),
            Some(AnomalyAction::Audit)
        );
        assert_eq!(
            s.action_for("dev/db", Signal::FirstRoleUse),
            Some(AnomalyAction::Audit)
        );
        let only: AnomalySection =
            toml::from_str("[[rule]]\nroles = \"prod/*\"\nsignals = [\"burst\"]\n").unwrap();
        assert_eq!(only.action_for("dev/db", Signal::Burst), None);
        assert_eq!(only.action_for("prod/db", Signal::NewNetwork), None);
    }

    #[test]
    fn bad_settings_are_refused() {
        for text in [
            "burst_factor = 0.5",
            "burst_min = 0",
            "burst_window = \"2h\"",
            "[[rule]]\nsignals = []",
            "[[rule]]\naction = \"block\"",
        ] {
            let parsed = toml::from_str::<AnomalySection>(text);
            assert!(
                parsed.is_err() || parsed.unwrap().validate().is_err(),
                "{text}"
            );
        }
    }
}
