//! A string that never prints.

use std::fmt;
use zeroize::Zeroize;

/// A bearer token or other credential held by the client.
///
/// `Debug` and `Display` print `[redacted]`, so a token cannot reach a log
/// line or an error message by accident; the bytes are wiped on drop. Read it
/// with [`SecretString::expose`], which is easy to find in review.
///
/// (`idmint_core::Secret` does the same, but the client must not depend on
/// the domain crate and its policy engine: the agent and proxy link this
/// crate too.)
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret itself. Every call site is a place where it leaves the
    /// process (a header, a file, stdout on explicit request).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl Drop for SecretString {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = SecretString::new("idm_supersecret".into());
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "idm_supersecret");
    }
}
