//! Just-in-time account names.
//!
//! The name is derived from the lease id, never taken from the request: a
//! caller cannot pick an existing account (`root`, another session's
//! `wl_…`) as its principal. 10 hex digits (40 bits) of SHA-256 keep it
//! well under Linux's 32-character limit and collisions negligible among
//! the live sessions of one host (the server still refuses a duplicate).

use idmint_core::LeaseId;
use idmint_proto::ssh::ACCOUNT_PREFIX;

/// `wl_` + 10 lowercase hex digits of SHA-256(lease id).
pub fn account_for_lease(lease: &LeaseId) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, lease.as_str().as_bytes());
    let hex = idmint_core::ids::hex(digest.as_ref());
    format!("{ACCOUNT_PREFIX}{}", hex.get(..10).unwrap_or(&hex))
}

/// Whether `name` has the shape of an account idmint creates.
pub fn is_jit_account(name: &str) -> bool {
    name.strip_prefix(ACCOUNT_PREFIX).is_some_and(|rest| {
        rest.len() == 10 && rest.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_from_the_lease_and_well_formed() {
        let a = LeaseId::generate().unwrap();
        let b = LeaseId::generate().unwrap();
        let name = account_for_lease(&a);
        assert_eq!(name, account_for_lease(&a), "deterministic");
        assert_ne!(name, account_for_lease(&b));
        assert_eq!(name.len(), 13);
        assert!(is_jit_account(&name), "{name}");
        for bad in [
            "root",
            "wl_",
            "wl_0123456789a",
            "wl_ABCDEF0123",
            "xl_0123456789",
        ] {
            assert!(!is_jit_account(bad), "{bad}");
        }
    }
}
