//! One JWK (RFC 7517) turned into a `ring` public key, ready to verify.
//!
//! Parsing is done once per JWKS fetch, never per request. A JWK is refused
//! (and the caller skips it) when it could be misused: symmetric keys, keys
//! published with their private half, keys meant for encryption, and keys
//! whose advertised `alg` does not fit their type.

use crate::alg::{Algorithm, KeyFamily};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};

/// Members that only a private or symmetric JWK has (RFC 7518 §6.2.2, §6.3.2, §6.4).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A public key from the issuer's JWKS.
pub(crate) struct VerificationKey {
    pub kid: Option<String>,
    /// The JWK's own `alg`, if it has one: then it is the only algorithm this
    /// key may verify (algorithm confusion defence).
    pub alg: Option<Algorithm>,
    material: KeyMaterial,
}

enum KeyMaterial {
    /// `n` and `e` with leading zero bytes stripped, as `ring` requires.
    Rsa(RsaPublicKeyComponents<Vec<u8>>),
    /// EC (uncompressed `0x04 || x || y`) or Ed25519 (`x`): one algorithm per
    /// curve, so the `ring` algorithm is fixed when the key is loaded.
    Curve {
        family: KeyFamily,
        key: UnparsedPublicKey<Vec<u8>>,
    },
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("family", &self.family())
            .finish()
    }
}

impl VerificationKey {
    /// Parse one member of a JWKS `keys` array. The error says why the key
    /// cannot be used; it never contains key material.
    pub(crate) fn from_jwk(jwk: &Value) -> Result<Self, String> {
        let Value::Object(jwk) = jwk else {
            return Err("not a JSON object".into());
        };
        if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
            return Err(format!(
                "it has the private/symmetric member {member:?}: a key published with its secret half is compromised and never used"
            ));
        }
        let kid = match jwk.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err("kid is not a string".into()),
        };
        match jwk.get("use") {
            None => {}
            Some(Value::String(u)) if u == "sig" => {}
            Some(other) => return Err(format!("use is {other}, not \"sig\"")),
        }
        if let Some(ops) = jwk.get("key_ops") {
            let verifies = ops
                .as_array()
                .is_some_and(|ops| ops.iter().any(|op| op == "verify"));
            if !verifies {
                return Err("key_ops does not contain \"verify\"".into());
            }
        }
        let alg = match jwk.get("alg") {
            None => None,
            Some(Value::String(name)) => Some(
                Algorithm::parse(name)
                    .map_err(|_| format!("alg {name:?} is not a supported signature algorithm"))?,
            ),
            Some(_) => return Err("alg is not a string".into()),
        };
        let material = match text(jwk, "kty")? {
            "RSA" => rsa_material(jwk)?,
            "EC" => match text(jwk, "crv")? {
                "P-256" => ec_material(jwk, KeyFamily::P256, 32)?,
                "P-384" => ec_material(jwk, KeyFamily::P384, 48)?,
                other => return Err(format!("EC curve {other:?} is not supported")),
            },
            "OKP" => match text(jwk, "crv")? {
                "Ed25519" => KeyMaterial::Curve {
                    family: KeyFamily::Ed25519,
                    key: UnparsedPublicKey::new(&signature::ED25519, fixed(jwk, "x", 32)?),
                },
                other => return Err(format!("OKP curve {other:?} is not supported")),
            },
            "oct" => return Err("symmetric (kty \"oct\") keys are never used".into()),
            other => return Err(format!("kty {other:?} is not supported")),
        };
        let key = VerificationKey { kid, alg, material };
        if let Some(alg) = alg {
            if alg.key_family() != key.family() {
                return Err(format!("it is {} but advertises alg {alg}", key.family()));
            }
        }
        Ok(key)
    }

    pub(crate) fn family(&self) -> KeyFamily {
        match &self.material {
            KeyMaterial::Rsa(_) => KeyFamily::Rsa,
            KeyMaterial::Curve { family, .. } => *family,
        }
    }

    /// Whether this key may verify a token signed with `alg`: the key type
    /// must fit, and a key that names its own `alg` is bound to it.
    pub(crate) fn accepts(&self, alg: Algorithm) -> bool {
        self.family() == alg.key_family() && self.alg.is_none_or(|own| own == alg)
    }

    /// "an EC P-256 key advertised for ES256", for mismatch messages.
    pub(crate) fn describe(&self) -> String {
        match self.alg {
            Some(alg) => format!("{} advertised for {alg}", self.family()),
            None => self.family().to_string(),
        }
    }

    /// Verify `signature` over `message`. False for any mismatch, including a
    /// key that does not [`accept`](Self::accepts) `alg`.
    pub(crate) fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        if !self.accepts(alg) {
            return false;
        }
        match (&self.material, alg.rsa_parameters()) {
            (KeyMaterial::Rsa(components), Some(params)) => {
                components.verify(params, message, signature).is_ok()
            }
            (KeyMaterial::Curve { key, .. }, None) => key.verify(message, signature).is_ok(),
            _ => false,
        }
    }
}

fn text<'a>(jwk: &'a Map<String, Value>, member: &str) -> Result<&'a str, String> {
    match jwk.get(member) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("{member} is not a string")),
        None => Err(format!("{member} is missing")),
    }
}

/// Decode a base64url member. Trailing `=` is tolerated: the RFC says
/// unpadded, but a few IdPs pad, and padding is harmless here.
fn bytes(jwk: &Map<String, Value>, member: &str) -> Result<Vec<u8>, String> {
    let encoded = text(jwk, member)?.trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|e| format!("{member} is not base64url ({e})"))
}

fn fixed(jwk: &Map<String, Value>, member: &str, len: usize) -> Result<Vec<u8>, String> {
    let value = bytes(jwk, member)?;
    if value.len() != len {
        return Err(format!("{member} is {} bytes, expected {len}", value.len()));
    }
    Ok(value)
}

fn strip_leading_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|b| **b == 0).count();
    v.drain(..zeros);
    v
}

fn rsa_material(jwk: &Map<String, Value>) -> Result<KeyMaterial, String> {
    let n = strip_leading_zeros(bytes(jwk, "n")?);
    let e = strip_leading_zeros(bytes(jwk, "e")?);
    // ring accepts 2048..=8192-bit moduli; refusing others here gives a clear
    // message at load time instead of every signature failing later.
    if !(256..=1024).contains(&n.len()) {
        return Err(format!(
            "RSA modulus is {} bits; 2048 to 8192 bits are supported",
            n.len() * 8
        ));
    }
    let odd = e.last().is_some_and(|b| b & 1 == 1);
    if e.is_empty() || e.len() > 4 || !odd || e == [1] {
        return Err("RSA public exponent is not an odd number between 3 and 2^32".into());
    }
    Ok(KeyMaterial::Rsa(RsaPublicKeyComponents { n, e }))
}

fn ec_material(
    jwk: &Map<String, Value>,
    family: KeyFamily,
    coordinate_len: usize,
) -> Result<KeyMaterial, String> {
    let x = fixed(jwk, "x", coordinate_len)?;
    let y = fixed(jwk, "y", coordinate_len)?;
    let mut point = Vec::with_capacity(1 + 2 * coordinate_len);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    let alg: &'static dyn signature::VerificationAlgorithm = match family {
        KeyFamily::P384 => &signature::ECDSA_P384_SHA384_FIXED,
        _ => &signature::ECDSA_P256_SHA256_FIXED,
    };
    Ok(KeyMaterial::Curve {
        family,
        key: UnparsedPublicKey::new(alg, point),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};
    use serde_json::json;

    fn b64(b: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(b)
    }

    fn ed25519() -> (Ed25519KeyPair, Value) {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwk =
            json!({"kty":"OKP","crv":"Ed25519","kid":"ed","x": b64(pair.public_key().as_ref())});
        (pair, jwk)
    }

    fn p256() -> (EcdsaKeyPair, Value) {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        let point = pair.public_key().as_ref();
        let jwk = json!({"kty":"EC","crv":"P-256","kid":"ec","use":"sig",
            "x": b64(&point[1..33]), "y": b64(&point[33..])});
        (pair, jwk)
    }

    #[test]
    fn ed25519_key_verifies_only_eddsa() {
        let (pair, jwk) = ed25519();
        let key = VerificationKey::from_jwk(&jwk).unwrap();
        let sig = pair.sign(b"msg");
        assert!(key.verify(Algorithm::EdDSA, b"msg", sig.as_ref()));
        assert!(!key.verify(Algorithm::EdDSA, b"other", sig.as_ref()));
        assert!(!key.verify(Algorithm::ES256, b"msg", sig.as_ref()));
        assert_eq!(key.kid.as_deref(), Some("ed"));
    }

    #[test]
    fn p256_key_verifies_es256() {
        let (pair, jwk) = p256();
        let key = VerificationKey::from_jwk(&jwk).unwrap();
        let sig = pair.sign(&SystemRandom::new(), b"msg").unwrap();
        assert!(key.verify(Algorithm::ES256, b"msg", sig.as_ref()));
        assert!(!key.verify(Algorithm::ES384, b"msg", sig.as_ref()));
        assert!(!key.verify(Algorithm::RS256, b"msg", sig.as_ref()));
    }

    #[test]
    fn jwk_alg_binds_the_key() {
        let (_, mut jwk) = p256();
        jwk["alg"] = json!("RS256");
        let err = VerificationKey::from_jwk(&jwk).unwrap_err();
        assert!(err.contains("advertises alg RS256"), "{err}");
        jwk["alg"] = json!("ES256");
        let key = VerificationKey::from_jwk(&jwk).unwrap();
        assert!(key.accepts(Algorithm::ES256));
        assert_eq!(key.describe(), "an EC P-256 key advertised for ES256");
    }

    #[test]
    fn unusable_keys_are_refused_with_a_reason() {
        let (_, good) = p256();
        let with = |k: &str, v: Value| {
            let mut j = good.clone();
            j[k] = v;
            VerificationKey::from_jwk(&j).unwrap_err()
        };
        assert!(with("d", json!("AAAA")).contains("private"));
        assert!(with("use", json!("enc")).contains("use"));
        assert!(with("key_ops", json!(["encrypt"])).contains("key_ops"));
        assert!(with("alg", json!("HS256")).contains("not a supported"));
        assert!(with("crv", json!("P-521")).contains("curve"));
        assert!(with("x", json!("AAAA")).contains("expected 32"));
        assert!(with("kty", json!("oct")).contains("symmetric"));
        let oct = VerificationKey::from_jwk(&json!({"kty":"oct","kid":"h"})).unwrap_err();
        assert!(oct.contains("symmetric"), "{oct}");
        let small_rsa =
            VerificationKey::from_jwk(&json!({"kty":"RSA","n": b64(&[0xff; 128]),"e":"AQAB"}))
                .unwrap_err();
        assert!(small_rsa.contains("1024 bits"), "{small_rsa}");
        let even_e =
            VerificationKey::from_jwk(&json!({"kty":"RSA","n": b64(&[0xff; 256]),"e":"Ag"}))
                .unwrap_err();
        assert!(even_e.contains("exponent"), "{even_e}");
        let ok_rsa = VerificationKey::from_jwk(
            &json!({"kty":"RSA","n": b64(&[&[0u8][..], &[0xc5; 256][..]].concat()),"e":"AQAB"}),
        )
        .unwrap();
        assert_eq!(ok_rsa.family(), KeyFamily::Rsa);
        assert!(VerificationKey::from_jwk(&json!("x")).is_err());
    }
}
