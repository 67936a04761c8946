//! `[[issuer.ssh]]` in `idmint.toml`.

use idmint_core::Ttl;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One SSH issuer: its CA keys (generated on first start) and the hosts it
/// grants sessions on.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SshIssuerConfig {
    pub name: String,
    #[serde(default)]
    pub hosts: Vec<SshHostConfig>,
    /// How long a session request waits for the host agent to report the
    /// account ready before it fails with 503.
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout: Ttl,
    /// Lifetime of an enrollment join token.
    #[serde(default = "default_join_token_ttl")]
    pub join_token_ttl: Ttl,
}

/// A host sessions can be requested for.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SshHostConfig {
    /// What callers and the agent call it (`idmint ssh web-1`).
    pub name: String,
    /// Where clients connect: a DNS name or an IP address.
    pub address: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// Attributes for role selectors and policy (`context.host.labels`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_ready_timeout() -> Ttl {
    Ttl::clamped(10)
}
fn default_join_token_ttl() -> Ttl {
    Ttl::clamped(3600)
}
fn default_port() -> u16 {
    22
}

/// Longest wait for an agent the config accepts: a session request holds
/// an HTTP request open that long.
const MAX_READY_TIMEOUT_SECS: u64 = 120;
const MAX_JOIN_TOKEN_TTL_SECS: u64 = 7 * 24 * 3600;

/// Host names appear in URLs, the agent's `Authorization` header, blob
/// names and `known_hosts` lines: a conservative alphabet keeps them
/// unambiguous in all of them.
pub fn valid_host_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
        && !n.starts_with(['.', '-'])
}

fn valid_address(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= 253
        && a.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':'))
        && !a.starts_with('-')
}

impl SshIssuerConfig {
    /// Semantic checks serde cannot do; the message names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("[[issuer.ssh]] needs a non-empty `name`".into());
        }
        if self.ready_timeout.as_secs() > MAX_READY_TIMEOUT_SECS {
            return Err(format!(
                "[[issuer.ssh]] {:?}: ready_timeout {} is longer than {MAX_READY_TIMEOUT_SECS}s",
                self.name, self.ready_timeout
            ));
        }
        if self.join_token_ttl.as_secs() > MAX_JOIN_TOKEN_TTL_SECS {
            return Err(format!(
                "[[issuer.ssh]] {:?}: join_token_ttl {} is longer than 7 days",
                self.name, self.join_token_ttl
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for h in &self.hosts {
            if !valid_host_name(&h.name) {
                return Err(format!(
                    "[[issuer.ssh]] {:?}: host name {:?} must be 1-253 characters of [A-Za-z0-9._-]",
                    self.name, h.name
                ));
            }
            if !seen.insert(h.name.as_str()) {
                return Err(format!(
                    "[[issuer.ssh]] {:?}: host {:?} is declared twice",
                    self.name, h.name
                ));
            }
            if !valid_address(&h.address) {
                return Err(format!(
                    "[[issuer.ssh]] {:?}: host {:?} address {:?} must be a DNS name or an IP address",
                    self.name, h.name, h.address
                ));
            }
            if h.port == 0 {
                return Err(format!(
                    "[[issuer.ssh]] {:?}: host {:?} port must be 1-65535",
                    self.name, h.name
                ));
            }
            for (k, v) in &h.labels {
                if k.is_empty() || k.len() > 64 || v.len() > 256 {
                    return Err(format!(
                        "[[issuer.ssh]] {:?}: host {:?} label {k:?}: keys 1-64, values at most 256 characters",
                        self.name, h.name
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SshIssuerConfig, String> {
        let cfg: SshIssuerConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }

    #[test]
    fn defaults_and_checks() {
        let cfg =
            parse("name='ssh'\nhosts=[{name='web-1', address='10.0.0.5', labels={env='prod'}}]\n")
                .unwrap();
        assert_eq!(cfg.hosts[0].port, 22);
        assert_eq!(cfg.ready_timeout.as_secs(), 10);
        assert_eq!(cfg.join_token_ttl.as_secs(), 3600);
        for (bad, why) in [
            ("name=''", "non-empty"),
            ("name='s'\nready_timeout='1h'", "ready_timeout"),
            ("name='s'\njoin_token_ttl='30d'", "join_token_ttl"),
            ("name='s'\nhosts=[{name='a b', address='x'}]", "host name"),
            (
                "name='s'\nhosts=[{name='a', address='x'},{name='a', address='y'}]",
                "twice",
            ),
            (
                "name='s'\nhosts=[{name='a', address='-oProxyCommand=x'}]",
                "address",
            ),
            ("name='s'\nhosts=[{name='a', address='x', port=0}]", "port"),
            (
                "name='s'\nhosts=[{name='a', address='x', user='root'}]",
                "unknown field",
            ),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
