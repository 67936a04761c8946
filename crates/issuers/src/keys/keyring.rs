//! The set of idmint's signing keys and their published JWKS.

use super::{SigningAlg, SigningKey};
use serde_json::{json, Value};

/// All signing keys of this server.
///
/// Every key is published in the JWKS so tokens signed before a rotation keep
/// verifying until they expire. The *first* key of each algorithm is the one
/// that signs: to rotate, put the new key first and keep the old one until
/// the longest TTL has passed. The JWKS bytes are computed once because
/// relying parties fetch them often.
pub struct KeyRing {
    keys: Vec<SigningKey>,
    jwks: Value,
    jwks_bytes: Vec<u8>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// A ring of `keys`. A key given twice (same `kid`, i.e. same public key)
    /// is kept once.
    pub fn new(keys: Vec<SigningKey>) -> Self {
        let mut unique: Vec<SigningKey> = Vec::with_capacity(keys.len());
        for key in keys {
            if !unique.iter().any(|k| k.kid() == key.kid()) {
                unique.push(key);
            }
        }
        let jwks = json!({
            "keys": unique.iter().map(|k| k.public_jwk_ref().clone()).collect::<Vec<_>>()
        });
        let jwks_bytes = jwks.to_string().into_bytes();
        Self {
            keys: unique,
            jwks,
            jwks_bytes,
        }
    }

    /// The key that signs with `alg`, if the ring has one.
    pub fn key_for(&self, alg: SigningAlg) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.alg() == alg)
    }

    /// Every key, signing keys first per algorithm, in the order given.
    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// The algorithms the ring can sign with, without duplicates, in order.
    pub fn algs(&self) -> Vec<SigningAlg> {
        let mut algs = Vec::new();
        for k in &self.keys {
            if !algs.contains(&k.alg()) {
                algs.push(k.alg());
            }
        }
        algs
    }

    /// `{"keys": [JWK, …]}`.
    pub fn jwks(&self) -> Value {
        self.jwks.clone()
    }

    /// The JWKS as JSON bytes, ready to serve on `GET /.well-known/jwks.json`.
    pub fn jwks_bytes(&self) -> &[u8] {
        &self.jwks_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::signing::tests::test_key_with_der;

    #[test]
    fn publishes_all_signs_with_first_per_alg() {
        let (es_new, _) = test_key_with_der(SigningAlg::ES256);
        let (es_old, _) = test_key_with_der(SigningAlg::ES256);
        let (ed, ed_der) = test_key_with_der(SigningAlg::EdDSA);
        let ed_again = SigningKey::from_pkcs8(SigningAlg::EdDSA, &ed_der).unwrap();
        let kids = [
            es_new.kid().to_string(),
            es_old.kid().to_string(),
            ed.kid().to_string(),
        ];
        let ring = KeyRing::new(vec![es_new, es_old, ed, ed_again]);

        assert_eq!(ring.keys().len(), 3, "duplicate key collapsed");
        assert_eq!(ring.key_for(SigningAlg::ES256).unwrap().kid(), kids[0]);
        assert_eq!(ring.key_for(SigningAlg::EdDSA).unwrap().kid(), kids[2]);
        assert!(ring.key_for(SigningAlg::RS256).is_none());
        assert_eq!(ring.algs(), vec![SigningAlg::ES256, SigningAlg::EdDSA]);

        let parsed: Value = serde_json::from_slice(ring.jwks_bytes()).unwrap();
        assert_eq!(parsed, ring.jwks());
        let published: Vec<&str> = parsed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(
            published,
            kids.iter().map(String::as_str).collect::<Vec<_>>()
        );
    }

    #[test]
    fn empty_ring_publishes_empty_jwks() {
        let ring = KeyRing::new(Vec::new());
        assert_eq!(ring.jwks_bytes(), br#"{"keys":[]}"#);
        assert!(ring.key_for(SigningAlg::ES256).is_none());
    }
}
