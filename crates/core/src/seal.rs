//! Envelope sealing with AES-256-GCM.
//!
//! Used for secrets at rest (signing keys, target admin passwords) and for
//! idmint session tokens. The associated data binds a ciphertext to its
//! purpose (`"session-token"`, `"signing-key:<kid>"`), so a sealed blob copied
//! from one place to another fails to open instead of being misused.

use crate::ids::random_bytes;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use zeroize::Zeroizing;

/// A 256-bit AES-GCM key. The raw bytes are zeroized when dropped.
pub struct SealKey {
    key: LessSafeKey,
    raw: Zeroizing<[u8; 32]>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("sealed data is malformed or was not sealed by this key (wrong key, wrong purpose or tampered)")]
    Open,
    #[error("sealing failed: {0}")]
    Seal(&'static str),
    #[error("a seal key must be exactly 32 bytes, got {0}")]
    KeyLength(usize),
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey([redacted])")
    }
}

impl SealKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        let raw: [u8; 32] = bytes
            .try_into()
            .map_err(|_| SealError::KeyLength(bytes.len()))?;
        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &raw).map_err(|_| SealError::KeyLength(bytes.len()))?,
        );
        Ok(Self {
            key,
            raw: Zeroizing::new(raw),
        })
    }

    pub fn generate() -> Result<Self, SealError> {
        let mut raw = Zeroizing::new([0u8; 32]);
        random_bytes(raw.as_mut())
            .map_err(|_| SealError::Seal("random number generator failed"))?;
        Self::from_bytes(raw.as_ref())
    }

    /// The raw key, for writing a generated dev root key to its file.
    pub fn raw_bytes(&self) -> &[u8; 32] {
        &self.raw
    }

    /// `nonce(12) || ciphertext || tag(16)`. Nonces are random: with at most
    /// 2^32 seals per key the collision probability stays below 2^-32.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce).map_err(|_| SealError::Seal("random number generator failed"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| SealError::Seal("AES-GCM seal failed"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(SealError::Open);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
        let mut buf = Zeroizing::new(ct.to_vec());
        let n = self
            .key
            .open_in_place(nonce, Aad::from(aad), buf.as_mut_slice())
            .map_err(|_| SealError::Open)?
            .len();
        buf.truncate(n);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn roundtrip_and_tamper() {
        let k = SealKey::generate().unwrap();
        let s = k.seal(b"purpose", b"secret").unwrap();
        assert_eq!(k.open(b"purpose", &s).unwrap().as_slice(), b"secret");
        assert_eq!(k.open(b"other", &s), Err(SealError::Open));
        let mut t = s.clone();
        t[13] ^= 1;
        assert_eq!(k.open(b"purpose", &t), Err(SealError::Open));
        assert_eq!(k.open(b"purpose", &s[..10]), Err(SealError::Open));
        let k2 = SealKey::generate().unwrap();
        assert_eq!(k2.open(b"purpose", &s), Err(SealError::Open));
    }
}
