//! Table of hostile and malformed tokens against one verifier with real
//! keys (RSA-2048, P-256, Ed25519) served by a local IdP.

use crate::support;

use idmint_authn::{AuthnError, Clock, OidcVerifier};
use ring::hmac;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::*;

#[derive(Debug)]
enum Expect {
    Accepted,
    /// Refused with this API code and a message containing this text.
    Refused(&'static str, &'static str),
}

fn hs256(key: &[u8], header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

fn seg(json: &str) -> String {
    b64(json.as_bytes())
}

#[tokio::test]
async fn hostile_tokens_are_refused_with_specific_errors() {
    let idp = TestIdp::start().await;
    let rsa = TestKey::rsa("rsa-1");
    let ec = TestKey::p256("ec-1");
    let ed = TestKey::ed25519("ed-1");
    let attacker = TestKey::p256("attacker");
    // The same RSA key published a second time, bound to RS256.
    let mut rsa_rs256_only = TestKey::rsa("rsa-rs256-only");
    rsa_rs256_only.jwk["alg"] = json!("RS256");
    // An EC key that claims to be an RSA key: refused at load time.
    let mut ec_mislabeled = TestKey::p256("ec-mislabeled");
    ec_mislabeled.jwk["alg"] = json!("RS256");
    idp.set_keys(&[&rsa, &ec, &ed, &rsa_rs256_only, &ec_mislabeled]);

    let clock = clock();
    let verifier = verifier(
        config(&idp, json!({"required_claims": ["repository"]})),
        &clock,
    );
    verifier.prefetch().await.unwrap();
    assert_eq!(
        verifier.jwks_stats().keys,
        4,
        "the mislabeled key is skipped"
    );

    let now = clock.now();
    let good = claims(&idp, now);
    let ec_header = |extra: Value| {
        let mut h = json!({"alg":"ES256","kid":"ec-1"});
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            h[k] = v;
        }
        h
    };
    let good_payload = seg(&good.to_string());
    let ec_token = ec.sign(&good);
    let (ec_signed, _) = ec_token.rsplit_once('.').unwrap();
    let tampered = format!(
        "{}.{}.{}",
        ec_signed.split('.').next().unwrap(),
        seg(&with(good.clone(), "sub", json!("admin")).to_string()),
        ec_token.rsplit('.').next().unwrap()
    );
    let rsa_der = rsa.rsa_public_der();
    let n_bytes = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(rsa.jwk["n"].as_str().unwrap())
            .unwrap()
    };
    let hs_header = json!({"alg":"HS256","kid":"rsa-1"});

    let cases: Vec<(&str, String, Expect)> = vec![
        ("RS256 valid", rsa.sign(&good), Expect::Accepted),
        (
            "PS256 valid with an RSA key that has no JWK alg",
            rsa.sign_with_header(&json!({"alg":"PS256","kid":"rsa-1"}), &good),
            Expect::Accepted,
        ),
        ("ES256 valid", ec.sign(&good), Expect::Accepted),
        ("EdDSA valid", ed.sign(&good), Expect::Accepted),
        (
            "EdDSA without kid: the one Ed25519 key is used",
            ed.sign_with_header(&json!({"alg":"EdDSA"}), &good),
            Expect::Accepted,
        ),
        (
            "typ at+jwt is fine",
            ec.sign_with_header(&ec_header(json!({"typ":"at+jwt"})), &good),
            Expect::Accepted,
        ),
        (
            "aud array with our audience plus others is accepted",
            ec.sign(&with(good.clone(), "aud", json!(["other", "idmint", "third"]))),
            Expect::Accepted,
        ),
        (
            "alg none without signature",
            format!("{}.{good_payload}.", seg(r#"{"alg":"none"}"#)),
            Expect::Refused("invalid_token", "alg \"none\""),
        ),
        (
            "alg none with a signature",
            format!("{}.{good_payload}.{}", seg(r#"{"alg":"none","kid":"ec-1"}"#), b64(b"sig")),
            Expect::Refused("invalid_token", "never accepted"),
        ),
        (
            "HS256 keyed with the RSA public key DER",
            hs256(&rsa_der, &hs_header, &good),
            Expect::Refused("invalid_token", "HMAC algorithms are never accepted"),
        ),
        (
            "HS256 keyed with the RSA modulus",
            hs256(&n_bytes, &hs_header, &good),
            Expect::Refused("invalid_token", "HMAC algorithms are never accepted"),
        ),
        (
            "payload altered after signing",
            tampered,
            Expect::Refused("invalid_token", "signature does not verify"),
        ),
        (
            "signature from another key under our kid",
            attacker.sign_with_header(&json!({"alg":"ES256","kid":"ec-1"}), &good),
            Expect::Refused("invalid_token", "signature does not verify"),
        ),
        (
            "expired",
            ec.sign(&with(good.clone(), "exp", json!(now.0 - 120))),
            Expect::Refused("invalid_token", "token expired at"),
        ),
        (
            "nbf in the future",
            ec.sign(&with(good.clone(), "nbf", json!(now.0 + 120))),
            Expect::Refused("invalid_token", "not valid before"),
        ),
        (
            "iat far in the future",
            ec.sign(&with(good.clone(), "iat", json!(now.0 + 3600))),
            Expect::Refused("invalid_token", "issued in the future"),
        ),
        (
            "exp as a string",
            ec.sign(&with(good.clone(), "exp", json!((now.0 + 300).to_string()))),
            Expect::Refused("invalid_token", "claim exp must be a NumericDate"),
        ),
        (
            "lifetime longer than max_token_lifetime",
            ec.sign(&with(good.clone(), "exp", json!(now.0 + 3 * 86400))),
            Expect::Refused("invalid_token", "exceeds the 86400s allowed"),
        ),
        (
            "wrong iss",
            ec.sign(&with(good.clone(), "iss", json!("https://evil.example"))),
            Expect::Refused("invalid_token", "token issuer \"https://evil.example\" does not match"),
        ),
        (
            "wrong aud",
            ec.sign(&with(good.clone(), "aud", json!("x"))),
            Expect::Refused(
                "invalid_token",
                "audience mismatch: token aud [\"x\"] does not contain any of [\"idmint\"]; request the token with audience \"idmint\"",
            ),
        ),
        (
            "missing aud",
            ec.sign(&without(good.clone(), "aud")),
            Expect::Refused("invalid_token", "no aud claim"),
        ),
        (
            "missing required claim",
            ec.sign(&without(good.clone(), "repository")),
            Expect::Refused("invalid_token", "no repository claim; auth config \"test\""),
        ),
        (
            "required claim is an array",
            ec.sign(&with(good.clone(), "repository", json!(["acme/app"]))),
            Expect::Refused("invalid_token", "claim repository must be a string, but it is an array"),
        ),
        (
            "required claim is an object",
            ec.sign(&with(good.clone(), "repository", json!({"name": {"x": 1}}))),
            Expect::Refused("invalid_token", "claim repository must be a string, but it is an object"),
        ),
        (
            "required claim is a number",
            ec.sign(&with(good.clone(), "repository", json!(42))),
            Expect::Refused("invalid_token", "claim repository must be a string, but it is a number"),
        ),
        (
            "duplicate key in header",
            ec.sign_raw(r#"{"alg":"ES256","kid":"ec-1","kid":"rsa-1"}"#, &good.to_string()),
            Expect::Refused("invalid_token", "header has the JSON key \"kid\" more than once"),
        ),
        (
            "duplicate key in payload",
            ec.sign_raw(
                r#"{"alg":"ES256","kid":"ec-1"}"#,
                &good
                    .to_string()
                    .replacen('{', r#"{"sub":"admin","#, 1),
            ),
            Expect::Refused("invalid_token", "payload has the JSON key \"sub\" more than once"),
        ),
        (
            "jku/x5u/x5c/jwk headers are ignored",
            ec.sign_with_header(
                &ec_header(json!({
                    "jku": idp.url("/evil-jku"),
                    "x5u": idp.url("/evil-x5u"),
                    "x5c": ["MIIBszCCAVmgAwIBAgIUJ"],
                    "jwk": attacker.jwk,
                })),
                &good,
            ),
            Expect::Accepted,
        ),
        (
            "attacker key offered through jwk/jku headers",
            attacker.sign_with_header(
                &json!({"alg":"ES256","kid":"attacker","jwk": attacker.jwk, "jku": idp.url("/evil-jku")}),
                &good,
            ),
            Expect::Refused("invalid_token", "no ES256 key with kid \"attacker\""),
        ),
        (
            "crit header",
            ec.sign_with_header(&ec_header(json!({"crit":["exp"],"exp":1})), &good),
            Expect::Refused("invalid_token", "`crit` parameter ([\"exp\"])"),
        ),
        (
            "EC key under an RSA alg",
            rsa.sign_with_header(&json!({"alg":"RS256","kid":"ec-1"}), &good),
            Expect::Refused("invalid_token", "key \"ec-1\" of"),
        ),
        (
            "RSA key bound to RS256 used for PS256",
            rsa.sign_with_header(&json!({"alg":"PS256","kid":"rsa-rs256-only"}), &good),
            Expect::Refused("invalid_token", "is an RSA key advertised for RS256 and cannot verify a PS256 token"),
        ),
        (
            "JWK alg mismatch: ES256 key advertised as RS256 is never loaded",
            ec_mislabeled.sign(&good),
            Expect::Refused("invalid_token", "no ES256 key with kid \"ec-mislabeled\""),
        ),
        (
            "1 MB token",
            "!".repeat(1 << 20),
            Expect::Refused("invalid_token", "token is 1048576 bytes, more than the 16384 bytes allowed"),
        ),
        (
            "malformed base64",
            format!("{}.{good_payload}.%%%", seg(r#"{"alg":"ES256"}"#)),
            Expect::Refused("invalid_token", "signature segment is not unpadded base64url"),
        ),
        (
            "padded base64",
            format!("{}=.{good_payload}.{}", seg(r#"{"alg":"ES256"}"#), b64(b"s")),
            Expect::Refused("invalid_token", "header segment is not unpadded base64url"),
        ),
        (
            "malformed JSON",
            format!("{}.{}.{}", seg(r#"{"alg":"ES256"}"#), seg("{\"sub\":"), b64(b"s")),
            Expect::Refused("invalid_token", "payload is not valid JSON"),
        ),
        (
            "payload is not an object",
            format!("{}.{}.{}", seg(r#"{"alg":"ES256"}"#), seg("[1,2]"), b64(b"s")),
            Expect::Refused("invalid_token", "payload is JSON but not a JSON object"),
        ),
        (
            "2 segments",
            format!("{}.{good_payload}", seg(r#"{"alg":"ES256"}"#)),
            Expect::Refused("invalid_token", "expected 3 dot-separated segments (header.payload.signature), found 2"),
        ),
        (
            "4 segments",
            format!("{ec_token}.{}", b64(b"x")),
            Expect::Refused("invalid_token", "found 4"),
        ),
        (
            "empty token",
            String::new(),
            Expect::Refused("invalid_token", "found 1"),
        ),
    ];

    let mut failures = Vec::new();
    for (name, token, expect) in &cases {
        let started = Instant::now();
        let result = verifier.verify(token).await;
        let elapsed = started.elapsed();
        match (expect, &result) {
            (Expect::Accepted, Ok(identity)) => {
                assert_eq!(
                    identity.subject, "repo:acme/app:ref:refs/heads/main",
                    "{name}"
                );
            }
            (Expect::Refused(code, text), Err(err)) => {
                let message = err.to_string();
                if err.code() != *code || !message.contains(text) {
                    failures.push(format!(
                        "{name}: got {} {message:?}, want {code} containing {text:?}",
                        err.code()
                    ));
                }
                if token.len() > 1000 {
                    assert!(
                        !message.contains(&token[..200]),
                        "{name}: error echoes the token"
                    );
                }
                assert!(!err.is_unavailable(), "{name}");
            }
            _ => failures.push(format!("{name}: got {result:?}, want {expect:?}")),
        }
        if *name == "1 MB token" {
            // Rejected on length alone: no base64 or JSON work happened (if
            // it had, "!" would have been reported as bad base64).
            assert!(matches!(result, Err(AuthnError::TokenTooLarge { .. })));
            assert!(elapsed < Duration::from_millis(200), "{elapsed:?}");
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Key-bearing headers were never followed.
    assert_eq!(idp.hits("/evil-jku"), 0);
    assert_eq!(idp.hits("/evil-x5u"), 0);
    assert_eq!(
        idp.total_hits(),
        idp.hits("/.well-known/openid-configuration") + idp.hits("/jwks")
    );
}

/// No error message carries the token: a refused token is often logged.
#[tokio::test]
async fn errors_never_contain_the_token() {
    let idp = TestIdp::start().await;
    let ec = TestKey::p256("ec-1");
    idp.set_keys(&[&ec]);
    let clock = clock();
    let verifier: std::sync::Arc<OidcVerifier> = verifier(config(&idp, json!({})), &clock);
    let now = clock.now();
    let expired = ec.sign(&with(claims(&idp, now), "exp", json!(now.0 - 3600)));
    let err = verifier.verify(&expired).await.unwrap_err();
    let message = err.to_string();
    for segment in expired.split('.') {
        assert!(!message.contains(segment), "{message}");
    }
    assert!(!format!("{err:?}").contains(expired.split('.').nth(2).unwrap()));
}
