//! Signing keys a test controls: RSA-2048 (RS256), P-256 (ES256) and
//! Ed25519 (EdDSA), with their public JWKs.
//!
//! ring signs but cannot generate RSA keys, so the `rsa` crate generates
//! them (fed by a ring-seeded deterministic generator, see [`SeededRng`])
//! and ring signs with the PKCS#8 encoding.

use crate::error::{Result, TestkitError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use rsa::pkcs1::EncodeRsaPublicKey as _;
use rsa::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use rsa::traits::PublicKeyParts as _;
use serde_json::{json, Value};
use std::fmt;
use std::sync::Arc;

/// The JWS algorithm of a [`TestKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    Rs256,
    Es256,
    EdDsa,
}

impl KeyAlg {
    /// The JOSE name (`RS256`, `ES256`, `EdDSA`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlg::Rs256 => "RS256",
            KeyAlg::Es256 => "ES256",
            KeyAlg::EdDsa => "EdDSA",
        }
    }
}

enum Pair {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// Encodings of an RSA public key, for algorithm-confusion attacks (an
/// HS256 token "signed" with the issuer's public key as HMAC secret).
#[derive(Debug, Clone)]
pub struct RsaPublicEncodings {
    /// SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
    pub spki_pem: String,
    /// PKCS#1 PEM (`-----BEGIN RSA PUBLIC KEY-----`).
    pub pkcs1_pem: String,
    /// SubjectPublicKeyInfo DER.
    pub spki_der: Vec<u8>,
}

struct Inner {
    kid: String,
    alg: KeyAlg,
    pair: Pair,
    public_jwk: Value,
    rsa_public: Option<RsaPublicEncodings>,
    rng: SystemRandom,
}

/// A private signing key with a `kid`. Cheap to clone.
#[derive(Clone)]
pub struct TestKey(Arc<Inner>);

impl fmt::Debug for TestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestKey")
            .field("kid", &self.0.kid)
            .field("alg", &self.0.alg)
            .finish_non_exhaustive()
    }
}

impl TestKey {
    /// A new key of `alg` with a random `kid`.
    pub fn generate(alg: KeyAlg) -> Result<Self> {
        let kid = format!("{}-{}", alg.as_str().to_ascii_lowercase(), random_hex(8)?);
        Self::generate_with_kid(alg, &kid)
    }

    /// A new key of `alg` with the given `kid`.
    pub fn generate_with_kid(alg: KeyAlg, kid: &str) -> Result<Self> {
        let rng = SystemRandom::new();
        let key_err = |what: &str| TestkitError::Key(format!("{} {what}", alg.as_str()));
        let (pair, public_jwk, rsa_public) = match alg {
            KeyAlg::Rs256 => {
                let mut seeded = SeededRng::from_system(&rng)?;
                let private = rsa::RsaPrivateKey::new(&mut seeded, 2048)
                    .map_err(|e| TestkitError::Key(format!("RSA key generation: {e}")))?;
                let der = private
                    .to_pkcs8_der()
                    .map_err(|e| TestkitError::Key(format!("RSA PKCS#8 encoding: {e}")))?;
                let pair = RsaKeyPair::from_pkcs8(der.as_bytes())
                    .map_err(|_| key_err("PKCS#8 rejected by ring"))?;
                let public = private.to_public_key();
                let jwk = json!({
                    "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                    "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
                    "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
                });
                let encodings = RsaPublicEncodings {
                    spki_pem: public
                        .to_public_key_pem(LineEnding::LF)
                        .map_err(|e| TestkitError::Key(format!("RSA SPKI PEM: {e}")))?,
                    pkcs1_pem: public
                        .to_pkcs1_pem(LineEnding::LF)
                        .map_err(|e| TestkitError::Key(format!("RSA PKCS#1 PEM: {e}")))?,
                    spki_der: public
                        .to_public_key_der()
                        .map_err(|e| TestkitError::Key(format!("RSA SPKI DER: {e}")))?
                        .as_bytes()
                        .to_vec(),
                };
                (Pair::Rsa(pair), jwk, Some(encodings))
            }
            KeyAlg::Es256 => {
                let alg_id = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg_id, &rng)
                    .map_err(|_| key_err("generation"))?;
                let pair = EcdsaKeyPair::from_pkcs8(alg_id, pkcs8.as_ref(), &rng)
                    .map_err(|_| key_err("PKCS#8"))?;
                // Uncompressed point: 0x04 || x (32) || y (32).
                let point = pair.public_key().as_ref();
                let (x, y) = match (point.get(1..33), point.get(33..65)) {
                    (Some(x), Some(y)) => (x, y),
                    _ => return Err(key_err("public point has an unexpected length")),
                };
                let jwk = json!({
                    "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                    "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
                });
                (Pair::Ecdsa(pair), jwk, None)
            }
            KeyAlg::EdDsa => {
                let pkcs8 =
                    Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| key_err("generation"))?;
                let pair =
                    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| key_err("PKCS#8"))?;
                let jwk = json!({
                    "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": kid,
                    "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
                });
                (Pair::Ed25519(pair), jwk, None)
            }
        };
        Ok(Self(Arc::new(Inner {
            kid: kid.to_string(),
            alg,
            pair,
            public_jwk,
            rsa_public,
            rng,
        })))
    }

    pub fn kid(&self) -> &str {
        &self.0.kid
    }

    pub fn alg(&self) -> KeyAlg {
        self.0.alg
    }

    /// The public JWK as published in a JWKS.
    pub fn public_jwk(&self) -> Value {
        self.0.public_jwk.clone()
    }

    /// RSA keys only: the public key's PEM/DER encodings.
    pub fn rsa_public(&self) -> Option<&RsaPublicEncodings> {
        self.0.rsa_public.as_ref()
    }

    /// The JWS signature of `signing_input` with this key's algorithm.
    pub fn sign_raw(&self, signing_input: &[u8]) -> Result<Vec<u8>> {
        let failed = || TestkitError::Key(format!("signing with {} failed", self.0.alg.as_str()));
        match &self.0.pair {
            Pair::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public().modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &self.0.rng,
                    signing_input,
                    &mut sig,
                )
                .map_err(|_| failed())?;
                Ok(sig)
            }
            Pair::Ecdsa(pair) => pair
                .sign(&self.0.rng, signing_input)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| failed()),
            Pair::Ed25519(pair) => Ok(pair.sign(signing_input).as_ref().to_vec()),
        }
    }
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> Result<String> {
    let mut b = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| TestkitError::Key("the system random number generator failed".into()))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A CSPRNG for the `rsa` crate: HMAC-SHA256 in counter mode over a
/// 256-bit seed from the OS. `RngCore::fill_bytes` cannot fail, so the only
/// fallible read (the seed) happens up front.
struct SeededRng {
    key: ring::hmac::Key,
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl SeededRng {
    fn from_system(rng: &SystemRandom) -> Result<Self> {
        let mut seed = [0u8; 32];
        rng.fill(&mut seed)
            .map_err(|_| TestkitError::Key("the system random number generator failed".into()))?;
        Ok(Self {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &seed),
            counter: 0,
            block: [0u8; 32],
            used: 32,
        })
    }
}

impl rsa::rand_core::RngCore for SeededRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for byte in dest.iter_mut() {
            if self.used == self.block.len() {
                let tag = ring::hmac::sign(&self.key, &self.counter.to_be_bytes());
                self.counter = self.counter.wrapping_add(1);
                self.block.copy_from_slice(tag.as_ref());
                self.used = 0;
            }
            *byte = self.block.get(self.used).copied().unwrap_or_default();
            self.used += 1;
        }
    }

    fn try_fill_bytes(
        &mut self,
        dest: &mut [u8],
    ) -> std::result::Result<(), rsa::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rsa::rand_core::CryptoRng for SeededRng {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_alg_signs_and_verifies_with_its_jwk() {
        for alg in [KeyAlg::Rs256, KeyAlg::Es256, KeyAlg::EdDsa] {
            let key = TestKey::generate(alg).unwrap();
            let sig = key.sign_raw(b"hello").unwrap();
            let jwk = key.public_jwk();
            assert_eq!(jwk["kid"], key.kid());
            crate::jws::verify_with_jwk(&jwk, alg.as_str(), b"hello", &sig).unwrap();
            assert!(crate::jws::verify_with_jwk(&jwk, alg.as_str(), b"hellO", &sig).is_err());
        }
    }

    #[test]
    fn rsa_keys_expose_public_encodings() {
        let key = TestKey::generate(KeyAlg::Rs256).unwrap();
        let p = key.rsa_public().unwrap();
        assert!(p.spki_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert!(p.pkcs1_pem.starts_with("-----BEGIN RSA PUBLIC KEY-----"));
        assert!(p.spki_der.len() > 256);
        assert!(TestKey::generate(KeyAlg::Es256)
            .unwrap()
            .rsa_public()
            .is_none());
    }
}
