//! The name of a just-in-time account, validated before anything uses it.

use crate::error::{AgentError, Result};
use idmint_proto::ssh::ACCOUNT_PREFIX;
use std::fmt;

/// Shortest and longest hex part of an account name.
const MIN_HEX: usize = 6;
const MAX_HEX: usize = 32;

/// `wl_` followed by 6 to 32 lowercase hex digits.
///
/// Names come from the server, so they are untrusted input: this type is
/// the only way to get a name into a command line, a path or a sudoers
/// file, and its check rules out everything that could be an option
/// (`-…`), a path (`/`, `..`), a sudoers token or a file sudo ignores (`.`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountName(String);

impl AccountName {
    pub fn parse(name: &str) -> Result<Self> {
        let hex = name
            .strip_prefix(ACCOUNT_PREFIX)
            .ok_or_else(|| invalid(name))?;
        let ok_len = (MIN_HEX..=MAX_HEX).contains(&hex.len());
        let ok_chars = hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok_len && ok_chars {
            Ok(Self(name.to_string()))
        } else {
            Err(invalid(name))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn invalid(name: &str) -> AgentError {
    AgentError::InvalidAccountName {
        name: name.chars().take(80).collect(),
    }
}

impl fmt::Display for AccountName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_prefix_and_lowercase_hex() {
        for good in ["wl_abc123", "wl_0123456789abcdef0123456789abcdef"] {
            assert_eq!(AccountName::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "wl_",
            "wl_abc12",
            "wl_ABC123",
            "wl_abc12g",
            "root",
            "wl_abc123.tmp",
            "wl_abc123 ALL",
            "wl_abc123\n",
            "-wl_abc123",
            "wl_../../x",
            "wl_0123456789abcdef0123456789abcdef0",
            "xwl_abc123",
        ] {
            assert!(AccountName::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
