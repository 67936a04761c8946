//! Signed checkpoints: Ed25519 signatures over the chain head.
//!
//! A hash chain alone only shows that the log is *self-consistent*: someone
//! who can write the file can rewrite everything after an edit and recompute
//! every hash. A checkpoint's signature over its own `hash` (which covers,
//! through `prev`, every line before it) can only be produced with the
//! server's signing key, so a rewrite is detectable up to the last checkpoint
//! by anyone holding the public key.

use crate::error::AuditError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use idmint_core::Secret;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use std::fmt;

/// Signs checkpoint hashes. Holds the private key; never printed.
pub(crate) struct CheckpointSigner {
    key_pair: Ed25519KeyPair,
    public_key_b64: String,
}

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("public_key", &self.public_key_b64)
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// Accepts PKCS#8 v2 (what ring and [`generate_signing_key`] produce) and
    /// v1 (what `openssl genpkey -algorithm ED25519` produces).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, AuditError> {
        let key_pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8))
            .map_err(|e| {
                AuditError::SigningKey(format!(
                    "not an Ed25519 PKCS#8 private key ({e}); generate one with `idmint` or `openssl genpkey -algorithm ED25519`"
                ))
            })?;
        let public_key_b64 = URL_SAFE_NO_PAD.encode(key_pair.public_key().as_ref());
        Ok(Self {
            key_pair,
            public_key_b64,
        })
    }

    /// Base64url signature over the hash's hex string bytes.
    pub fn sign(&self, hash_hex: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.key_pair.sign(hash_hex.as_bytes()).as_ref())
    }

    pub fn public_key(&self) -> &[u8] {
        self.key_pair.public_key().as_ref()
    }

    pub fn public_key_b64(&self) -> &str {
        &self.public_key_b64
    }
}

/// A new Ed25519 checkpoint signing key as PKCS#8 v2 bytes, for the server
/// to seal and store on first start (and for tests).
pub fn generate_signing_key() -> Result<Secret<Vec<u8>>, AuditError> {
    let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| {
        AuditError::SigningKey("the operating system random number generator failed".into())
    })?;
    Ok(Secret::new(doc.as_ref().to_vec()))
}

/// Checks a checkpoint signature. Any decoding problem counts as invalid.
pub(crate) fn signature_is_valid(public_key: &[u8], hash_hex: &str, sig_b64: &str) -> bool {
    let Ok(sig) = URL_SAFE_NO_PAD.decode(sig_b64) else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(hash_hex.as_bytes(), &sig)
        .is_ok()
}

/// Decodes the base64url public key embedded in a checkpoint.
pub(crate) fn decode_public_key(b64: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(b64).ok().filter(|k| k.len() == 32)
}

pub(crate) fn encode_public_key(raw: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let key = generate_signing_key().unwrap();
        let signer = CheckpointSigner::from_pkcs8(key.expose()).unwrap();
        let sig = signer.sign("abc");
        assert!(signature_is_valid(signer.public_key(), "abc", &sig));
        assert!(!signature_is_valid(signer.public_key(), "abd", &sig));
        assert!(!signature_is_valid(signer.public_key(), "abc", "!!"));
        let other = CheckpointSigner::from_pkcs8(generate_signing_key().unwrap().expose()).unwrap();
        assert!(!signature_is_valid(other.public_key(), "abc", &sig));
        assert_eq!(
            decode_public_key(signer.public_key_b64()).as_deref(),
            Some(signer.public_key())
        );
        assert!(!format!("{signer:?}").contains("key_pair"));
    }

    #[test]
    fn rejects_garbage_key() {
        let err = CheckpointSigner::from_pkcs8(b"not a key").unwrap_err();
        assert!(matches!(err, AuditError::SigningKey(_)));
    }
}
