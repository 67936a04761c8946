//! Keyed fingerprints of credentials.
//!
//! The audit log must let an admin match a credential they hold (or found
//! leaked) to its trail, without the log itself containing anything that
//! helps an attacker: an unkeyed hash of a low-entropy password could be
//! brute-forced from the log. A keyed HMAC cannot be computed without the
//! server's fingerprint key, which is kept sealed.

use ring::hmac;
use std::fmt;

/// Prefix of every fingerprint, so a pasted value says what it is.
pub const FINGERPRINT_PREFIX: &str = "fp_";
/// Truncated tag length: 128 bits is plenty to tell credentials apart.
const FINGERPRINT_BYTES: usize = 16;

/// Computes `"fp_" + hex(first 16 bytes of HMAC-SHA256(key, credential))`.
///
/// The key should be at least 32 random bytes. ring keeps only the derived
/// HMAC state, not the raw key.
#[derive(Clone)]
pub struct Fingerprinter {
    key: hmac::Key,
}

impl fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fingerprinter { key: [redacted] }")
    }
}

impl Fingerprinter {
    pub fn new(key: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    pub fn fingerprint(&self, credential: &[u8]) -> String {
        let tag = hmac::sign(&self.key, credential);
        let bytes = tag.as_ref();
        let truncated = bytes.get(..FINGERPRINT_BYTES).unwrap_or(bytes);
        format!("{FINGERPRINT_PREFIX}{}", idmint_core::ids::hex(truncated))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_keyed_and_opaque() {
        let secret = b"AKIAEXAMPLE/wJalrXUtnFEMI/K7MDENG";
        let a = Fingerprinter::new(b"0123456789abcdef0123456789abcdef");
        let fp = a.fingerprint(secret);
        assert_eq!(fp, a.fingerprint(secret));
        assert_eq!(fp.len(), 3 + 32);
        assert!(fp.starts_with("fp_"));
        assert!(fp[3..].bytes().all(|c| c.is_ascii_hexdigit()));
        let b = Fingerprinter::new(b"another key entirely, 32 bytes..");
        assert_ne!(fp, b.fingerprint(secret));
        assert_ne!(fp, a.fingerprint(b"AKIAEXAMPLE/wJalrXUtnFEMI/K7MDENH"));
        let text = std::str::from_utf8(secret).unwrap();
        assert!(!fp.contains(text) && !text.contains(&fp[3..]));
        assert!(!format!("{a:?}").contains("0123"));
    }
}
