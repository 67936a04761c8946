//! Strict parsing of compact JWS (RFC 7515 §7.1) before any key is touched.
//!
//! The order of checks is deliberate: the size limit first (nothing is decoded
//! for an oversized token), then the segment structure, the header and its
//! `alg` (so a token with a refused algorithm is dropped before its payload
//! is even decoded), then the payload. JSON is parsed with a visitor that
//! rejects duplicate object keys at every depth: `serde_json` would silently
//! keep the last one, and two parsers disagreeing about which duplicate wins
//! is a known way to smuggle claims past a verifier.

use crate::alg::Algorithm;
use crate::error::{untrusted, untrusted_list, AuthnError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::RefCell;
use std::fmt;

/// A structurally valid token whose signature has not been checked yet.
/// Nothing in it may be trusted except for routing and key selection.
#[derive(Debug)]
pub(crate) struct UnverifiedJws<'t> {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub claims: Map<String, Value>,
    /// `base64url(header) . base64url(payload)`: the bytes that were signed.
    pub signing_input: &'t [u8],
    pub signature: Vec<u8>,
}

/// Parse `token` as a compact JWS of at most `max_bytes` bytes.
pub(crate) fn parse(token: &str, max_bytes: usize) -> Result<UnverifiedJws<'_>, AuthnError> {
    if token.len() > max_bytes {
        return Err(AuthnError::TokenTooLarge {
            size: token.len(),
            max: max_bytes,
        });
    }
    let mut segments = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        let found = token.split('.').count();
        let hint = if found == 5 {
            " (5 segments is an encrypted JWE; idmint needs a signed JWT)"
        } else {
            ""
        };
        return Err(AuthnError::malformed(format!(
            "expected 3 dot-separated segments (header.payload.signature), found {found}{hint}"
        )));
    };

    let mut header = decode_object(header_b64, "header")?;
    if let Some(crit) = header.get("crit") {
        let names = match crit {
            Value::Array(items) => untrusted_list(items.iter().filter_map(Value::as_str)),
            _ => "not even an array".to_string(),
        };
        return Err(AuthnError::CriticalHeader { names });
    }
    let alg = match header.get("alg") {
        Some(Value::String(name)) => {
            Algorithm::parse(name).map_err(|refusal| AuthnError::UnsupportedAlgorithm {
                alg: untrusted(name),
                reason: refusal.reason(),
            })?
        }
        Some(_) => return Err(AuthnError::malformed("header alg must be a string")),
        None => return Err(AuthnError::malformed("header has no alg")),
    };
    // `jku`, `x5u`, `x5c` and `jwk` are deliberately ignored: keys come only
    // from the configured JWKS, never from the token that is being checked.
    let kid = match header.remove("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid),
        Some(_) => return Err(AuthnError::malformed("header kid must be a string")),
    };

    let claims = decode_object(payload_b64, "payload")?;
    if signature_b64.is_empty() {
        return Err(AuthnError::malformed("signature segment is empty"));
    }
    let signature = decode_segment(signature_b64, "signature")?;
    // Both segments are prefixes of `token`, so this range always exists.
    let signed_len = header_b64.len() + 1 + payload_b64.len();
    let signing_input = token
        .as_bytes()
        .get(..signed_len)
        .ok_or_else(|| AuthnError::malformed("segments do not add up to the token"))?;
    Ok(UnverifiedJws {
        alg,
        kid,
        claims,
        signing_input,
        signature,
    })
}

fn decode_segment(segment: &str, part: &'static str) -> Result<Vec<u8>, AuthnError> {
    URL_SAFE_NO_PAD.decode(segment).map_err(|e| {
        AuthnError::malformed(format!("{part} segment is not unpadded base64url ({e})"))
    })
}

fn decode_object(segment: &str, part: &'static str) -> Result<Map<String, Value>, AuthnError> {
    if segment.is_empty() {
        return Err(AuthnError::malformed(format!("{part} segment is empty")));
    }
    let bytes = decode_segment(segment, part)?;
    match parse_strict_json(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(AuthnError::malformed(format!(
            "{part} is JSON but not a JSON object"
        ))),
        Err(StrictJsonError::DuplicateKey(key)) => Err(AuthnError::DuplicateJsonKey {
            part,
            key: untrusted(&key),
        }),
        Err(StrictJsonError::Syntax(e)) => Err(AuthnError::malformed(format!(
            "{part} is not valid JSON ({e})"
        ))),
    }
}

#[derive(Debug)]
pub(crate) enum StrictJsonError {
    DuplicateKey(String),
    Syntax(serde_json::Error),
}

/// Parse JSON into a [`Value`], failing on a duplicate key in any object.
pub(crate) fn parse_strict_json(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result = StrictSeed {
        duplicate: &duplicate,
    }
    .deserialize(&mut de)
    .and_then(|value| de.end().map(|()| value));
    match (result, duplicate.into_inner()) {
        (_, Some(key)) => Err(StrictJsonError::DuplicateKey(key)),
        (Ok(value), None) => Ok(value),
        (Err(e), None) => Err(StrictJsonError::Syntax(e)),
    }
}

/// Deserializes any JSON value, recording the first duplicate object key it
/// meets in `duplicate` (and failing, which stops the parse).
#[derive(Clone, Copy)]
struct StrictSeed<'a> {
    duplicate: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for StrictSeed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON text cannot hold NaN or infinities, so this never yields Null
        // for parsed input.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                let message = format!("duplicate key {}", untrusted(&key));
                *self.duplicate.borrow_mut() = Some(key);
                return Err(A::Error::custom(message));
            }
            let value = access.next_value_seed(self)?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(payload), b64("sig"))
    }

    #[test]
    fn strict_json_rejects_duplicates_at_any_depth() {
        assert!(matches!(
            parse_strict_json(br#"{"a":1,"a":2}"#),
            Err(StrictJsonError::DuplicateKey(k)) if k == "a"
        ));
        assert!(matches!(
            parse_strict_json(br#"{"x":[{"b":1,"b":1}]}"#),
            Err(StrictJsonError::DuplicateKey(k)) if k == "b"
        ));
        // Escaped and literal spellings of one key are the same key.
        assert!(matches!(
            parse_strict_json(br#"{"sub":"a","s\u0075b":"b"}"#),
            Err(StrictJsonError::DuplicateKey(k)) if k == "sub"
        ));
        let v = parse_strict_json(br#"{"a":[1,-2,3.5,"s",null,true,{"c":{}}]}"#).unwrap();
        assert_eq!(v["a"][2], serde_json::json!(3.5));
        assert!(matches!(
            parse_strict_json(br#"{"a":1} x"#),
            Err(StrictJsonError::Syntax(_))
        ));
    }

    #[test]
    fn parses_a_well_formed_token() {
        let t = token(
            r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#,
            r#"{"sub":"x"}"#,
        );
        let jws = parse(&t, 16384).unwrap();
        assert_eq!(jws.alg, Algorithm::ES256);
        assert_eq!(jws.kid.as_deref(), Some("k1"));
        assert_eq!(jws.claims["sub"], "x");
        assert_eq!(jws.signature, b"sig");
        assert_eq!(jws.signing_input, t.rsplit_once('.').unwrap().0.as_bytes());
    }

    #[test]
    fn structural_problems_are_reported() {
        let ok_h = r#"{"alg":"RS256"}"#;
        let cases: Vec<(String, &str)> = vec![
            (format!("{}.{}", b64(ok_h), b64("{}")), "found 2"),
            (
                format!("{}.{}.{}.{}", b64(ok_h), b64("{}"), b64("s"), b64("s")),
                "found 4",
            ),
            (
                format!("{}.{}.", b64(ok_h), b64("{}")),
                "signature segment is empty",
            ),
            (
                format!(".{}.{}", b64("{}"), b64("s")),
                "header segment is empty",
            ),
            (
                format!("{}=.{}.{}", b64(ok_h), b64("{}"), b64("s")),
                "base64url",
            ),
            (
                format!("{}.{}+.{}", b64(ok_h), b64("{}"), b64("s")),
                "base64url",
            ),
            (token(ok_h, "[1]"), "not a JSON object"),
            (token(ok_h, "{"), "not valid JSON"),
            (token(r#"{"alg":5}"#, "{}"), "alg must be a string"),
            (token(r#"{"typ":"JWT"}"#, "{}"), "no alg"),
            (
                token(r#"{"alg":"RS256","kid":1}"#, "{}"),
                "kid must be a string",
            ),
        ];
        for (t, expected) in cases {
            let err = parse(&t, 16384).unwrap_err();
            assert!(
                matches!(err, AuthnError::Malformed { .. }) && err.to_string().contains(expected),
                "{t}: {err}"
            );
        }
    }

    #[test]
    fn refused_headers() {
        let none = parse(&token(r#"{"alg":"none"}"#, "{}"), 16384).unwrap_err();
        assert!(
            matches!(none, AuthnError::UnsupportedAlgorithm { .. }),
            "{none}"
        );
        let hs = parse(&token(r#"{"alg":"HS256"}"#, "{}"), 16384).unwrap_err();
        assert!(hs.to_string().contains("HMAC"), "{hs}");
        let crit = parse(
            &token(r#"{"alg":"RS256","crit":["b64"],"b64":false}"#, "{}"),
            16384,
        )
        .unwrap_err();
        assert!(matches!(crit, AuthnError::CriticalHeader { ref names } if names == "[\"b64\"]"));
        let dup = parse(&token(r#"{"alg":"RS256","alg":"none"}"#, "{}"), 16384).unwrap_err();
        assert!(matches!(
            dup,
            AuthnError::DuplicateJsonKey { part: "header", .. }
        ));
        let dup = parse(
            &token(r#"{"alg":"RS256"}"#, r#"{"sub":"a","sub":"b"}"#),
            16384,
        )
        .unwrap_err();
        assert!(matches!(
            dup,
            AuthnError::DuplicateJsonKey {
                part: "payload",
                ..
            }
        ));
    }

    #[test]
    fn size_is_checked_before_anything_else() {
        let junk = "!".repeat(20_000);
        assert_eq!(
            parse(&junk, 16384).unwrap_err(),
            AuthnError::TokenTooLarge {
                size: 20_000,
                max: 16384
            }
        );
    }
}
