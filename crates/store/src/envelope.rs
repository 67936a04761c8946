//! Envelope encryption for secrets at rest.
//!
//! Each value gets a fresh random 256-bit data key (DEK). The value is sealed
//! with the DEK (AAD = purpose) and the DEK is sealed with the root key
//! (AAD = `"dek:" + purpose`). Why two layers: the root key encrypts only
//! 32-byte keys, so it never approaches AES-GCM's random-nonce limit however
//! many values are sealed, and moving to a KMS-held root key later only
//! changes how the DEK is wrapped, not the stored values' layout.
//!
//! Wire format (all lengths big-endian):
//!
//! ```text
//! version (1 byte, = 1) || len(sealed_dek) (u16) || sealed_dek || sealed_value
//! ```
//!
//! where each sealed part is [`SealKey::seal`]'s `nonce || ciphertext || tag`.

use crate::error::StoreError;
use crate::root_key;
use idmint_core::SealKey;
use std::path::Path;
use zeroize::Zeroizing;

/// The only format version written today. A reader seeing another version
/// fails closed instead of guessing.
const FORMAT_V1: u8 = 1;
/// Prefix of the DEK's associated data, so a sealed DEK can never be opened
/// as if it were a sealed value of the same purpose (or vice versa).
const DEK_AAD_PREFIX: &[u8] = b"dek:";

/// Seals and opens secrets at rest with a root key.
#[derive(Debug)]
pub struct Envelope {
    root: SealKey,
}

impl Envelope {
    pub fn new(root: SealKey) -> Self {
        Self { root }
    }

    /// Reads a root key file (32 raw bytes, 64 hex characters or base64).
    /// Refuses files readable by group or others.
    pub fn load_root_key_file(path: &Path) -> Result<SealKey, StoreError> {
        root_key::load_file(path)
    }

    /// Generates a new root key and writes it (hex, mode 0600, create_new:
    /// an existing file is never overwritten).
    pub fn create_root_key_file(path: &Path) -> Result<SealKey, StoreError> {
        root_key::create_file(path)
    }

    /// Parses the value of `IDMINT_ROOT_KEY` (hex or base64).
    pub fn root_key_from_env(value: &str) -> Result<SealKey, StoreError> {
        root_key::from_env(value)
    }

    /// Seals `plaintext` for `purpose` (e.g. `"signing-key:ssh"`). The same
    /// purpose must be given to [`Envelope::open`].
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let dek = SealKey::generate().map_err(|e| StoreError::Seal(e.to_string()))?;
        let sealed_dek = self
            .root
            .seal(&dek_aad(purpose), dek.raw_bytes())
            .map_err(|e| StoreError::Seal(e.to_string()))?;
        let sealed_value = dek
            .seal(purpose.as_bytes(), plaintext)
            .map_err(|e| StoreError::Seal(e.to_string()))?;
        let dek_len = u16::try_from(sealed_dek.len())
            .map_err(|_| StoreError::Seal("sealed data key does not fit the format".into()))?;
        let mut out = Vec::with_capacity(3 + sealed_dek.len() + sealed_value.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&dek_len.to_be_bytes());
        out.extend_from_slice(&sealed_dek);
        out.extend_from_slice(&sealed_value);
        Ok(out)
    }

    /// Opens a value sealed by [`Envelope::seal`] for the same `purpose`.
    /// Any mismatch (root key, purpose, truncation, bit flip, unknown
    /// version) is the same [`StoreError::Unseal`].
    pub fn open(&self, purpose: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let unseal = || StoreError::Unseal(purpose.to_string());
        let (&version, rest) = sealed.split_first().ok_or_else(unseal)?;
        if version != FORMAT_V1 {
            return Err(unseal());
        }
        let (len_bytes, rest) = rest.split_first_chunk::<2>().ok_or_else(unseal)?;
        let dek_len = usize::from(u16::from_be_bytes(*len_bytes));
        if rest.len() < dek_len {
            return Err(unseal());
        }
        let (sealed_dek, sealed_value) = rest.split_at(dek_len);
        let dek_raw = self
            .root
            .open(&dek_aad(purpose), sealed_dek)
            .map_err(|_| unseal())?;
        let dek = SealKey::from_bytes(&dek_raw).map_err(|_| unseal())?;
        dek.open(purpose.as_bytes(), sealed_value)
            .map_err(|_| unseal())
    }
}

fn dek_aad(purpose: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(DEK_AAD_PREFIX.len() + purpose.len());
    aad.extend_from_slice(DEK_AAD_PREFIX);
    aad.extend_from_slice(purpose.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope::new(SealKey::generate().unwrap())
    }

    #[test]
    fn roundtrip_with_fresh_data_keys() {
        let env = envelope();
        let a = env.seal("signing-key:ssh", b"private key bytes").unwrap();
        let b = env.seal("signing-key:ssh", b"private key bytes").unwrap();
        assert_ne!(a, b, "each seal uses a fresh data key and nonce");
        assert_eq!(a[0], FORMAT_V1);
        assert_eq!(
            env.open("signing-key:ssh", &a).unwrap().as_slice(),
            b"private key bytes"
        );
        assert_eq!(
            env.open("signing-key:ssh", &b).unwrap().as_slice(),
            b"private key bytes"
        );
        let empty = env.seal("p", b"").unwrap();
        assert!(env.open("p", &empty).unwrap().is_empty());
    }

    #[test]
    fn wrong_purpose_fails() {
        let env = envelope();
        let s = env.seal("signing-key:ssh", b"x").unwrap();
        let err = env.open("signing-key:oauth", &s).unwrap_err();
        assert!(
            matches!(err, StoreError::Unseal(ref p) if p == "signing-key:oauth"),
            "{err}"
        );
        // The DEK's AAD is "dek:" + purpose; a purpose that spells the same
        // bytes through the prefix must not open it either.
        assert!(env.open("dek:signing-key:ssh", &s).is_err());
    }

    #[test]
    fn wrong_root_key_fails() {
        let s = envelope().seal("p", b"x").unwrap();
        assert!(matches!(
            envelope().open("p", &s),
            Err(StoreError::Unseal(_))
        ));
    }

    #[test]
    fn tampering_anywhere_fails() {
        let env = envelope();
        let s = env.seal("p", b"some secret value").unwrap();
        for i in 0..s.len() {
            let mut t = s.clone();
            t[i] ^= 0x01;
            assert!(env.open("p", &t).is_err(), "flip at byte {i} was accepted");
        }
        for n in 0..s.len() {
            assert!(
                env.open("p", &s[..n]).is_err(),
                "truncation to {n} accepted"
            );
        }
        let mut extended = s.clone();
        extended.push(0);
        assert!(env.open("p", &extended).is_err());
    }

    #[test]
    fn error_does_not_contain_plaintext() {
        let env = envelope();
        let s = env.seal("p", b"hunter2").unwrap();
        let msg = envelope().open("p", &s).unwrap_err().to_string();
        assert!(!msg.contains("hunter2"));
        assert!(msg.contains("wrong root key"), "{msg}");
    }
}
