//! An SSH certificate authority key (Ed25519).
//!
//! Each `[[issuer.ssh]]` has two: one signs user certificates (sshd trusts
//! it with `TrustedUserCAKeys`), one signs host certificates (clients trust
//! it with an `@cert-authority` line). Two keys, so that trusting idmint
//! for logins never also means trusting it to impersonate hosts, and the
//! other way round. The PKCS#8 bytes are sealed in the store by the server;
//! here they only pass through [`Zeroizing`] buffers.

use super::public_key::Ed25519PublicKey;
use crate::IssueError;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use zeroize::Zeroizing;

/// An Ed25519 CA key pair, ready to sign.
pub struct SshCaKey {
    pair: Ed25519KeyPair,
    public: Ed25519PublicKey,
}

impl std::fmt::Debug for SshCaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshCaKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl SshCaKey {
    /// A new key as PKCS#8 DER, for the caller to seal and store; the buffer
    /// is wiped when dropped.
    pub fn generate_pkcs8() -> Result<Zeroizing<Vec<u8>>, IssueError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| {
            IssueError::Internal("the operating system random number generator failed".into())
        })?;
        Ok(Zeroizing::new(doc.as_ref().to_vec()))
    }

    /// Load a key from PKCS#8 DER.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, IssueError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(|e| {
            IssueError::Config(format!(
                "the stored SSH CA key is not a valid PKCS#8 Ed25519 key ({e})"
            ))
        })?;
        let bytes: [u8; 32] = pair.public_key().as_ref().try_into().map_err(|_| {
            IssueError::Internal("ring returned an Ed25519 public key that is not 32 bytes".into())
        })?;
        Ok(Self {
            pair,
            public: Ed25519PublicKey::from_bytes(bytes),
        })
    }

    pub fn public_key(&self) -> &Ed25519PublicKey {
        &self.public
    }

    /// Ed25519 signature over `message` (deterministic, no RNG needed).
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(message).as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_loads_and_signs_verifiably() {
        let der = SshCaKey::generate_pkcs8().unwrap();
        let ca = SshCaKey::from_pkcs8(&der).unwrap();
        let again = SshCaKey::from_pkcs8(&der).unwrap();
        assert_eq!(ca.public_key(), again.public_key());
        let sig = ca.sign(b"hello");
        let pk = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ED25519,
            ca.public_key().as_bytes(),
        );
        assert!(pk.verify(b"hello", &sig).is_ok());
        assert!(pk.verify(b"hellO", &sig).is_err());
        assert!(SshCaKey::from_pkcs8(b"garbage").is_err());
        assert!(!format!("{ca:?}").contains("pair"));
    }
}
