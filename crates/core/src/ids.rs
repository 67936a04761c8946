//! Random identifiers with a readable prefix.
//!
//! Ids are 128 bits, hex encoded, with a type prefix so that a value pasted
//! into `idmint audit trace` says what it is (`lse_…` lease, `req_…`
//! request, `tok_…` token id / jti). Request and token ids are 128 random
//! bits. Lease ids are time-ordered (see [`time_ordered_hex`]) because they
//! are the primary key of the biggest table: random keys scatter inserts
//! over the whole B-tree index, time-ordered ones append to its end.

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

/// Bytes of a time-ordered id taken by the millisecond timestamp.
const TIME_BYTES: usize = 6;

/// 16 bytes, hex encoded, laid out like a UUIDv7: a 48-bit big-endian
/// millisecond Unix timestamp, then 80 bits from the OS CSPRNG.
///
/// Why: ids generated one after the other sort one after the other (to the
/// millisecond), so inserting them into a B-tree index (the lease table's
/// `TEXT` primary key) touches the index's rightmost pages only, which stay
/// in the page cache, instead of a random page of an index that may no
/// longer fit in memory. 80 random bits keep ids unguessable and make a
/// collision within one millisecond negligible (a duplicate is also
/// refused by the store as a conflict). The text form is the same 32
/// lowercase hex digits as a fully random id, so parsing, storage and old
/// ids are unaffected. A clock before 1970 counts as 0; one past the year
/// 10889 (48 bits of milliseconds) wraps, which only costs locality.
pub fn time_ordered_hex() -> Result<String, RandomError> {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut b = [0u8; 16];
    let stamp = (millis as u64).to_be_bytes();
    b[..TIME_BYTES].copy_from_slice(&stamp[8 - TIME_BYTES..]);
    random_bytes(&mut b[TIME_BYTES..])?;
    Ok(hex(&b))
}

/// 128 random bits, hex encoded: the body of ids with no locality needs.
fn random_id_hex() -> Result<String, RandomError> {
    random_hex(16)
}

macro_rules! prefixed_id {
    ($name:ident, $prefix:literal, $body:path, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;
            pub fn generate() -> Result<Self, RandomError> {
                Ok(Self(format!("{}{}", $prefix, $body()?)))
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
    time_ordered_hex,
    "Identifies one minted credential and its lifetime."
);
impl LeaseId {
    /// The last `n` hex digits: the random part of the id. The leading
    /// digits are a millisecond timestamp shared by every lease minted in
    /// the same instant, so short names derived from a lease (database
    /// users, AWS session names) must take the tail to stay unique and
    /// unguessable. Ids minted before ids became time-ordered are random
    /// throughout, so the same rule works for them.
    pub fn random_suffix(&self, n: usize) -> &str {
        let body = self.0.strip_prefix(Self::PREFIX).unwrap_or(&self.0);
        body.get(body.len().saturating_sub(n)..).unwrap_or(body)
    }
}

prefixed_id!(
    RequestId,
    "req_",
    random_id_hex,
    "Identifies one API request across audit events."
);
prefixed_id!(
    TokenId,
    "tok_",
    random_id_hex,
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

    #[test]
    fn lease_ids_are_time_ordered_and_random() {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let ids: Vec<LeaseId> = (0..2000).map(|_| LeaseId::generate().unwrap()).collect();
        let after = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        for id in &ids {
            // Still the one accepted format.
            assert_eq!(LeaseId::parse(id.as_str()).as_ref(), Some(id));
            let stamp = u64::from_str_radix(&id.as_str()[4..16], 16).unwrap();
            assert!(
                before <= stamp && stamp <= after,
                "{stamp} not in {before}..={after}"
            );
        }
        // Ordered by their millisecond prefix: a later id never sorts
        // before an earlier millisecond.
        for w in ids.windows(2) {
            assert!(w[0].as_str()[..16] <= w[1].as_str()[..16]);
        }
        // The random part differs even within one millisecond.
        let mut tails: Vec<&str> = ids.iter().map(|i| &i.as_str()[16..]).collect();
        tails.sort_unstable();
        tails.dedup();
        assert_eq!(tails.len(), ids.len());
        // Old, fully random ids still parse.
        assert!(LeaseId::parse("lse_ffffffffffffffffffffffffffffffff").is_some());
    }
}
