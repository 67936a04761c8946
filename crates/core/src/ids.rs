//! Random identifiers with a readable prefix.
//!
//! Ids are 128 random bits, hex encoded, with a type prefix so that a value
//! pasted into `idmint audit trace` says what it is (`lse_…` lease, `req_…`
//! request, `tok_…` token id / jti).

use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Fill `buf` from the OS CSPRNG. Failure of the system RNG is not
/// recoverable for a credential broker, so it is surfaced as an error rather
/// than silently producing weak ids.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), RandomError> {
    SystemRandom::new().fill(buf).map_err(|_| RandomError)
}

#[derive(Debug, thiserror::Error)]
#[error("the operating system random number generator failed")]
pub struct RandomError;

pub fn random_hex(n_bytes: usize) -> Result<String, RandomError> {
    let mut b = vec![0u8; n_bytes];
    random_bytes(&mut b)?;
    Ok(hex(&b))
}

pub fn hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(D[(x >> 4) as usize] as char);
        s.push(D[(x & 15) as usize] as char);
    }
    s
}

macro_rules! prefixed_id {
    ($name:ident, $prefix:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;
            pub fn generate() -> Result<Self, RandomError> {
                Ok(Self(format!("{}{}", $prefix, random_hex(16)?)))
            }
            /// Accepts only well-formed ids (prefix + 32 lowercase hex digits),
            /// so a user-supplied string can be used as a store key safely.
            pub fn parse(s: &str) -> Option<Self> {
                let rest = s.strip_prefix($prefix)?;
                (rest.len() == 32 && rest.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
                    .then(|| Self(s.to_string()))
            }
            /// Wrap a value read back from our own store.
            pub fn from_trusted(s: String) -> Self {
                Self(s)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(
    LeaseId,
    "lse_",
    "Identifies one minted credential and its lifetime."
);
prefixed_id!(
    RequestId,
    "req_",
    "Identifies one API request across audit events."
);
prefixed_id!(
    TokenId,
    "tok_",
    "The `jti` of a token idmint signed or sealed."
);

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn roundtrip() {
        let id = LeaseId::generate().unwrap();
        assert_eq!(LeaseId::parse(id.as_str()), Some(id.clone()));
        assert!(LeaseId::parse("lse_xyz").is_none());
        assert!(LeaseId::parse(&id.as_str().replace("lse_", "tok_")).is_none());
        assert_ne!(id, LeaseId::generate().unwrap());
    }
}
