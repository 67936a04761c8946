//! Building compact JWS tokens with full control (including broken and
//! hostile ones), and verifying the JWTs idmint signs.
//!
//! Nothing here validates what it builds: tests need `alg: none`, HMAC
//! tokens keyed with a public key, duplicate JSON keys and malformed
//! segments precisely because a verifier must refuse them.

use crate::error::{Result, TestkitError};
use crate::keys::TestKey;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;

/// base64url without padding, the JWS segment encoding.
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn to_json(v: &Value) -> Result<String> {
    serde_json::to_string(v).map_err(|e| TestkitError::Jwt(format!("serializing: {e}")))
}

/// `header.payload.signature` with the header and payload given as raw JSON
/// text (so they may contain duplicate keys or be invalid JSON), signed by
/// `key` over exactly those bytes.
pub fn sign_raw(header_json: &str, payload_json: &str, key: &TestKey) -> Result<String> {
    let input = format!("{}.{}", b64(header_json), b64(payload_json));
    let sig = key.sign_raw(input.as_bytes())?;
    Ok(format!("{input}.{}", b64(sig)))
}

/// A JWS of `claims` with exactly `header` (nothing added), signed by `key`
/// whatever `header.alg` says.
pub fn sign(header: &Value, claims: &Value, key: &TestKey) -> Result<String> {
    sign_raw(&to_json(header)?, &to_json(claims)?, key)
}

/// An unsecured JWS (`header.payload.`), as `alg: none` tokens look.
pub fn unsigned(header: &Value, claims: &Value) -> Result<String> {
    Ok(format!(
        "{}.{}.",
        b64(to_json(header)?),
        b64(to_json(claims)?)
    ))
}

/// A JWS "signed" with HMAC-SHA256 under `secret` (the algorithm-confusion
/// attack uses the issuer's public key bytes as the secret).
pub fn hs256(header: &Value, claims: &Value, secret: &[u8]) -> Result<String> {
    let input = format!("{}.{}", b64(to_json(header)?), b64(to_json(claims)?));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, input.as_bytes());
    Ok(format!("{input}.{}", b64(tag.as_ref())))
}

/// Decode segment `index` (0 header, 1 payload) of a compact JWS as JSON,
/// without verifying anything.
pub fn decode_segment(token: &str, index: usize) -> Result<Value> {
    let part = token
        .split('.')
        .nth(index)
        .ok_or_else(|| TestkitError::Jwt(format!("token has no segment {index}")))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| TestkitError::Jwt(format!("segment {index} is not base64url: {e}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| TestkitError::Jwt(format!("segment {index} is not JSON: {e}")))
}

/// Verify a compact JWS against a JWKS document (`{"keys": [...]}`): the
/// key is chosen by `kid` and must match the header's `alg`. Returns
/// `(header, claims)`. Supports what idmint signs with: ES256, EdDSA and
/// RS256.
pub fn verify_jwt(token: &str, jwks: &Value) -> Result<(Value, Value)> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TestkitError::Jwt(
            "not a compact JWS (three segments)".into(),
        ));
    };
    let header = decode_segment(token, 0)?;
    let claims = decode_segment(token, 1)?;
    let alg = header["alg"]
        .as_str()
        .ok_or_else(|| TestkitError::Jwt(format!("header has no alg: {header}")))?;
    let kid = header["kid"]
        .as_str()
        .ok_or_else(|| TestkitError::Jwt(format!("header has no kid: {header}")))?;
    let keys = jwks["keys"]
        .as_array()
        .ok_or_else(|| TestkitError::Jwt(format!("JWKS has no keys array: {jwks}")))?;
    let jwk = keys
        .iter()
        .find(|k| k["kid"] == kid)
        .ok_or_else(|| TestkitError::Jwt(format!("no key with kid {kid:?} in the JWKS")))?;
    if let Some(key_alg) = jwk["alg"].as_str() {
        if key_alg != alg {
            return Err(TestkitError::Jwt(format!(
                "key {kid:?} is {key_alg}, token says {alg}"
            )));
        }
    }
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|e| TestkitError::Jwt(format!("signature is not base64url: {e}")))?;
    verify_with_jwk(jwk, alg, format!("{h}.{p}").as_bytes(), &sig)?;
    Ok((header, claims))
}

fn jwk_bytes(jwk: &Value, member: &str) -> Result<Vec<u8>> {
    let text = jwk[member]
        .as_str()
        .ok_or_else(|| TestkitError::Jwt(format!("JWK has no {member:?}: {jwk}")))?;
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|e| TestkitError::Jwt(format!("JWK {member:?} is not base64url: {e}")))
}

/// Check one signature with one public JWK.
pub fn verify_with_jwk(jwk: &Value, alg: &str, message: &[u8], sig: &[u8]) -> Result<()> {
    let bad = || {
        TestkitError::Jwt(format!(
            "{alg} signature does not verify with key {}",
            jwk["kid"]
        ))
    };
    match alg {
        "ES256" => {
            let mut point = vec![0x04];
            point.extend(jwk_bytes(jwk, "x")?);
            point.extend(jwk_bytes(jwk, "y")?);
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(message, sig)
                .map_err(|_| bad())
        }
        "EdDSA" => UnparsedPublicKey::new(&signature::ED25519, jwk_bytes(jwk, "x")?)
            .verify(message, sig)
            .map_err(|_| bad()),
        "RS256" => RsaPublicKeyComponents {
            n: jwk_bytes(jwk, "n")?,
            e: jwk_bytes(jwk, "e")?,
        }
        .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
        .map_err(|_| bad()),
        other => Err(TestkitError::Jwt(format!(
            "algorithm {other:?} is not supported by the test verifier"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyAlg;
    use serde_json::json;

    #[test]
    fn signed_tokens_verify_against_a_jwks() {
        for alg in [KeyAlg::Es256, KeyAlg::EdDsa, KeyAlg::Rs256] {
            let key = TestKey::generate(alg).unwrap();
            let header = json!({"alg": alg.as_str(), "kid": key.kid()});
            let t = sign(&header, &json!({"sub": "x"}), &key).unwrap();
            let jwks = json!({"keys": [key.public_jwk()]});
            let (h, c) = verify_jwt(&t, &jwks).unwrap();
            assert_eq!(h, header);
            assert_eq!(c["sub"], "x");
            // Tampered payload fails.
            let mut parts: Vec<&str> = t.split('.').collect();
            let other = b64(r#"{"sub":"y"}"#);
            parts[1] = &other;
            assert!(verify_jwt(&parts.join("."), &jwks).is_err());
        }
    }

    #[test]
    fn hostile_shapes() {
        let t = unsigned(&json!({"alg": "none"}), &json!({"a": 1})).unwrap();
        assert!(t.ends_with('.'));
        assert_eq!(decode_segment(&t, 0).unwrap()["alg"], "none");
        let h = hs256(&json!({"alg": "HS256"}), &json!({}), b"k").unwrap();
        assert_eq!(h.split('.').count(), 3);
        let key = TestKey::generate(KeyAlg::Es256).unwrap();
        let d = sign_raw(r#"{"alg":"ES256"}"#, r#"{"sub":"a","sub":"b"}"#, &key).unwrap();
        let payload = URL_SAFE_NO_PAD
            .decode(d.split('.').nth(1).unwrap())
            .unwrap();
        assert_eq!(payload, br#"{"sub":"a","sub":"b"}"#);
    }
}
