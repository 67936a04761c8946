//! Hostile login input against a running server, table-driven: every case
//! is one request with the exact status, error code and message fragment
//! expected. The issuer is a [`TestJwks`] so the test can sign anything
//! (`alg: none`, HMAC with the public key, duplicate keys, `jku`…).
//!
//! After the table: an unknown-`kid` storm must not turn into a JWKS fetch
//! storm; every refusal is audited without the token; the server is still
//! ready and still logs people in; and policy-level refusals (no matching
//! policy, too-wide scope, too-long TTL) behave as documented.
//!
//! Documented decision: a token whose `aud` array contains the configured
//! audience *plus others* is accepted (OIDC Core §3.1.3.7 only requires that
//! the audience be present).

use crate::common;

use common::bin;
use idmint_testkit::audit::events_of;
use idmint_testkit::jws::{self, b64};
use idmint_testkit::{
    unix_now, ApiResponse, IdmintServer, KeyAlg, OidcSpec, ServerSpec, TestJwks, TestKey,
};
use serde_json::{json, Value};
use std::time::Duration;

/// What a case sends.
enum Send {
    /// `{"method": "oidc", "token": …}`.
    Token(String),
    /// A raw JSON body (for method/auth/shape cases).
    Body(Value),
    /// A raw body that is not JSON.
    Raw(Vec<u8>),
}

/// What a case expects back.
struct Expect {
    statuses: &'static [u16],
    code: Option<&'static str>,
    /// Lower-cased fragment of the error message.
    message: &'static str,
}

const fn reject(status: u16, code: &'static str, message: &'static str) -> Expect {
    Expect {
        statuses: match status {
            400 => &[400],
            401 => &[401],
            _ => &[503],
        },
        code: Some(code),
        message,
    }
}

const fn accept() -> Expect {
    Expect {
        statuses: &[200],
        code: None,
        message: "",
    }
}

struct Case {
    name: &'static str,
    send: Send,
    expect: Expect,
}

fn with(mut claims: Value, overrides: Value) -> Value {
    idmint_testkit::idp::merge(&mut claims, &overrides);
    claims
}

fn drop_claims(claims: Value, names: &[&str]) -> Value {
    idmint_testkit::idp::without(claims, names)
}

/// The JSON of `claims` with an extra, duplicate `key` appended.
fn with_duplicate(claims: &Value, key: &str, value: &str) -> anyhow::Result<String> {
    let text = serde_json::to_string(claims)?;
    let body = text.strip_suffix('}').unwrap_or(&text);
    Ok(format!(
        "{body},{}:{}}}",
        serde_json::to_string(key)?,
        serde_json::to_string(value)?
    ))
}

async fn send(server: &IdmintServer, what: &Send) -> anyhow::Result<ApiResponse> {
    let api = server.api();
    Ok(match what {
        Send::Token(t) => api.login(t).await?,
        Send::Body(b) => api.post_json("/api/v1/login", b, None).await?,
        Send::Raw(bytes) => {
            api.post_raw("/api/v1/login", "application/json", bytes.clone())
                .await?
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_logins_are_refused_audited_and_harmless() -> anyhow::Result<()> {
    let issuer = TestJwks::start().await?;
    // A second issuer: `jku`/`x5u` point at it (it must never be contacted)
    // and it mints perfectly valid tokens that nobody trusts.
    let stranger = TestJwks::start_with_key(TestKey::generate(KeyAlg::Es256)?).await?;
    let spec = ServerSpec::with_oidc(vec![OidcSpec::new("hostile", &issuer.issuer())
        .preset("github-actions")
        .set("replay_protection", true)
        .set("max_token_bytes", 65_536)
        .set("jwks_refetch_interval", "30s")])
    .set_server("max_body_bytes", 256 * 1024);
    let server = IdmintServer::start(bin(), spec).await?;

    // Warm up: keys are loaded and a valid login works.
    let warm = server.api().login(&issuer.valid_token()?).await?;
    assert_eq!(warm.status, 200, "{}", warm.summary());
    let fetches_before_storm = issuer.jwks_fetches();

    // --- unknown kid storm: 200 concurrent logins, each with a random kid.
    let mut storm = tokio::task::JoinSet::new();
    for i in 0..200 {
        let key = issuer.signing_key();
        let claims = issuer.standard_claims("repo:acme/app:ref:refs/heads/main")?;
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": format!("storm-{i}-{}", idmint_testkit::keys::random_hex(6)?)});
        let token = jws::sign(&header, &claims, &key)?;
        let api = server.api().clone();
        storm.spawn(async move { api.login(&token).await });
    }
    let mut storm_statuses = Vec::new();
    while let Some(r) = storm.join_next().await {
        let r = r??;
        assert_eq!(r.error_code(), Some("invalid_token"), "{}", r.summary());
        storm_statuses.push(r.status);
    }
    assert!(
        storm_statuses.iter().all(|s| *s == 401),
        "{storm_statuses:?}"
    );
    let storm_fetches = issuer.jwks_fetches() - fetches_before_storm;
    assert!(
        storm_fetches <= 1,
        "200 unknown kids caused {storm_fetches} JWKS fetches; the refetch must be rate-limited"
    );

    // --- the table.
    let now = unix_now();
    let key = issuer.signing_key();
    let rsa = key
        .rsa_public()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the issuer key is RSA"))?;
    let hdr = TestJwks::header_for(&key);
    let claims = || issuer.standard_claims("repo:acme/app:ref:refs/heads/main");
    let sign = |c: &Value| issuer.sign_claims(c);
    let rogue = TestKey::generate(KeyAlg::Rs256)?; // never published by `issuer`
    stranger.publish(&rogue);
    let hs_header = json!({"alg": "HS256", "typ": "JWT", "kid": key.kid()});
    let valid_once = issuer.valid_token()?;
    let first = server.api().login(&valid_once).await?;
    assert_eq!(
        first.status,
        200,
        "first use of the token: {}",
        first.summary()
    );
    let big_claim: Vec<u8> = vec![b'x'; 100 * 1024];
    let huge: String = "A".repeat(1024 * 1024);
    let ten_k: Vec<u32> = vec![1; 10_000];

    let cases = vec![
        Case {
            name: "alg none",
            send: Send::Token(jws::unsigned(
                &json!({"alg": "none", "typ": "JWT"}),
                &claims()?,
            )?),
            expect: reject(401, "invalid_token", "alg \"none\""),
        },
        Case {
            name: "alg nOnE",
            send: Send::Token(jws::unsigned(
                &json!({"alg": "nOnE", "kid": key.kid()}),
                &claims()?,
            )?),
            expect: reject(401, "invalid_token", "refused"),
        },
        Case {
            name: "alg none with a real signature",
            send: Send::Token(jws::sign(
                &json!({"alg": "none", "kid": key.kid()}),
                &claims()?,
                &key,
            )?),
            expect: reject(401, "invalid_token", "refused"),
        },
        Case {
            name: "HS256 keyed with the SPKI PEM",
            send: Send::Token(jws::hs256(&hs_header, &claims()?, rsa.spki_pem.as_bytes())?),
            expect: reject(401, "invalid_token", "hmac algorithms are never accepted"),
        },
        Case {
            name: "HS256 keyed with the PKCS#1 PEM",
            send: Send::Token(jws::hs256(
                &hs_header,
                &claims()?,
                rsa.pkcs1_pem.as_bytes(),
            )?),
            expect: reject(401, "invalid_token", "hmac"),
        },
        Case {
            name: "HS256 keyed with the DER bytes",
            send: Send::Token(jws::hs256(&hs_header, &claims()?, &rsa.spki_der)?),
            expect: reject(401, "invalid_token", "hmac"),
        },
        Case {
            name: "HS512 keyed with the JWK",
            send: Send::Token(jws::hs256(
                &json!({"alg": "HS512", "kid": key.kid()}),
                &claims()?,
                key.public_jwk().to_string().as_bytes(),
            )?),
            expect: reject(401, "invalid_token", "hmac"),
        },
        Case {
            name: "unknown kid",
            send: Send::Token(jws::sign(
                &json!({"alg": "RS256", "kid": "nope"}),
                &claims()?,
                &key,
            )?),
            expect: reject(401, "invalid_token", "no rs256 key with kid"),
        },
        Case {
            name: "ES256 header on the RSA key",
            send: Send::Token(jws::sign(
                &json!({"alg": "ES256", "kid": key.kid()}),
                &claims()?,
                &key,
            )?),
            expect: reject(401, "invalid_token", "cannot verify a es256 token"),
        },
        Case {
            name: "signed by a key the issuer does not publish",
            send: Send::Token(jws::sign(
                &json!({"alg": "RS256", "kid": rogue.kid()}),
                &claims()?,
                &rogue,
            )?),
            expect: reject(401, "invalid_token", "no rs256 key"),
        },
        Case {
            name: "right kid, wrong key",
            send: Send::Token(jws::sign(&hdr, &claims()?, &rogue)?),
            expect: reject(401, "invalid_token", "signature does not verify"),
        },
        Case {
            name: "payload swapped after signing",
            send: Send::Token({
                let t = sign(&claims()?)?;
                let other = b64(serde_json::to_string(&with(
                    claims()?,
                    json!({"repository": "acme/evil"}),
                ))?);
                let parts: Vec<&str> = t.split('.').collect();
                format!("{}.{other}.{}", parts[0], parts[2])
            }),
            expect: reject(401, "invalid_token", "signature does not verify"),
        },
        Case {
            name: "signature stripped",
            send: Send::Token({
                let t = sign(&claims()?)?;
                format!(
                    "{}.",
                    t.rsplit_once('.').map(|(a, _)| a).unwrap_or_default()
                )
            }),
            expect: reject(401, "invalid_token", "signature segment is empty"),
        },
        Case {
            name: "jku to another JWKS",
            send: Send::Token(jws::sign(
                &json!({"alg": "RS256", "kid": rogue.kid(), "jku": stranger.jwks_url()}),
                &claims()?,
                &rogue,
            )?),
            expect: reject(401, "invalid_token", "no rs256 key"),
        },
        Case {
            name: "x5u to another server",
            send: Send::Token(jws::sign(
                &json!({"alg": "RS256", "kid": rogue.kid(), "x5u": format!("{}/cert.pem", stranger.issuer())}),
                &claims()?,
                &rogue,
            )?),
            expect: reject(401, "invalid_token", "no rs256 key"),
        },
        Case {
            name: "x5c with an embedded chain",
            send: Send::Token(jws::sign(
                &json!({"alg": "RS256", "x5c": [b64(&rsa.spki_der)]}),
                &claims()?,
                &rogue,
            )?),
            expect: reject(401, "invalid_token", ""),
        },
        Case {
            name: "embedded jwk",
            send: Send::Token(jws::sign(
                &json!({"alg": "RS256", "jwk": rogue.public_jwk()}),
                &claims()?,
                &rogue,
            )?),
            expect: reject(401, "invalid_token", ""),
        },
        Case {
            name: "crit header",
            send: Send::Token(jws::sign(
                &json!({"alg": "RS256", "kid": key.kid(), "crit": ["exp"], "exp": now + 60}),
                &claims()?,
                &key,
            )?),
            expect: reject(401, "invalid_token", "crit"),
        },
        Case {
            name: "expired",
            send: Send::Token(sign(&with(
                claims()?,
                json!({"iat": now - 4000, "nbf": now - 4000, "exp": now - 3600}),
            ))?),
            expect: reject(401, "invalid_token", "expired"),
        },
        Case {
            name: "no exp",
            send: Send::Token(sign(&drop_claims(claims()?, &["exp"]))?),
            expect: reject(401, "invalid_token", "no exp claim"),
        },
        Case {
            name: "nbf in the future",
            send: Send::Token(sign(&with(
                claims()?,
                json!({"nbf": now + 3600, "exp": now + 4000}),
            ))?),
            expect: reject(401, "invalid_token", "not valid before"),
        },
        Case {
            name: "iat far in the future",
            send: Send::Token(sign(&with(
                claims()?,
                json!({"iat": now + 3600, "exp": now + 4000}),
            ))?),
            expect: reject(401, "invalid_token", "issued in the future"),
        },
        Case {
            name: "lifetime of two days",
            send: Send::Token(sign(&with(claims()?, json!({"exp": now + 48 * 3600})))?),
            expect: reject(401, "invalid_token", "lifetime"),
        },
        Case {
            name: "exp as a string",
            send: Send::Token(sign(&with(
                claims()?,
                json!({"exp": (now + 60).to_string()}),
            ))?),
            expect: reject(401, "invalid_token", "exp"),
        },
        Case {
            name: "wrong iss (untrusted issuer)",
            send: Send::Token(sign(&with(
                claims()?,
                json!({"iss": "https://token.actions.githubusercontent.com"}),
            ))?),
            expect: reject(401, "untrusted_issuer", "not trusted"),
        },
        Case {
            name: "iss with a trailing slash",
            send: Send::Token(sign(&with(
                claims()?,
                json!({"iss": format!("{}/", issuer.issuer())}),
            ))?),
            expect: reject(401, "untrusted_issuer", "not trusted"),
        },
        Case {
            name: "no iss",
            send: Send::Token(sign(&drop_claims(claims()?, &["iss"]))?),
            expect: Expect {
                statuses: &[401],
                code: None,
                message: "iss",
            },
        },
        Case {
            name: "valid token from an untrusted issuer",
            send: Send::Token(stranger.valid_token()?),
            expect: reject(401, "untrusted_issuer", "not trusted"),
        },
        Case {
            name: "trusted iss, stranger's key",
            send: Send::Token(jws::sign(
                &TestJwks::header_for(&stranger.signing_key()),
                &claims()?,
                &stranger.signing_key(),
            )?),
            expect: reject(401, "invalid_token", "no es256 key"),
        },
        Case {
            name: "wrong aud",
            send: Send::Token(sign(&with(claims()?, json!({"aud": "someone-else"})))?),
            expect: reject(401, "invalid_token", "audience mismatch"),
        },
        Case {
            name: "missing aud",
            send: Send::Token(sign(&drop_claims(claims()?, &["aud"]))?),
            expect: reject(401, "invalid_token", "no aud claim"),
        },
        Case {
            name: "aud as a number",
            send: Send::Token(sign(&with(claims()?, json!({"aud": 7})))?),
            expect: reject(401, "invalid_token", "aud must be"),
        },
        Case {
            name: "aud array with idmint and extras (accepted)",
            send: Send::Token(sign(&with(
                claims()?,
                json!({"aud": ["other", "idmint", "third"]}),
            ))?),
            expect: accept(),
        },
        Case {
            name: "missing required claim",
            send: Send::Token(sign(&drop_claims(claims()?, &["repository"]))?),
            expect: reject(401, "invalid_token", "no repository claim"),
        },
        Case {
            name: "missing sub",
            send: Send::Token(sign(&drop_claims(claims()?, &["sub"]))?),
            expect: reject(401, "invalid_token", "no sub claim"),
        },
        Case {
            name: "array where a string is required",
            send: Send::Token(sign(&with(claims()?, json!({"repository": ["acme/app"]})))?),
            expect: reject(401, "invalid_token", "repository must be a string"),
        },
        Case {
            name: "nested object where a string is required",
            send: Send::Token(sign(&with(
                claims()?,
                json!({"ref": {"name": "refs/heads/main"}}),
            ))?),
            expect: reject(401, "invalid_token", "ref must be a string"),
        },
        Case {
            name: "sub as a number",
            send: Send::Token(sign(&with(claims()?, json!({"sub": 42})))?),
            expect: reject(401, "invalid_token", "sub must be a string"),
        },
        Case {
            name: "empty required claim",
            send: Send::Token(sign(&with(claims()?, json!({"repository": ""})))?),
            expect: reject(401, "invalid_token", "repository"),
        },
        Case {
            name: "duplicate JSON key in the payload",
            send: Send::Token(jws::sign_raw(
                &hdr.to_string(),
                &with_duplicate(&claims()?, "repository", "acme/evil")?,
                &key,
            )?),
            expect: reject(401, "invalid_token", "more than once"),
        },
        Case {
            name: "duplicate JSON key in the header",
            send: Send::Token(jws::sign_raw(
                &format!(r#"{{"alg":"RS256","kid":"{}","alg":"none"}}"#, key.kid()),
                &claims()?.to_string(),
                &key,
            )?),
            expect: reject(401, "invalid_token", "more than once"),
        },
        Case {
            name: "10k-element array where a string is required",
            send: Send::Token(sign(&with(claims()?, json!({"repository": ten_k})))?),
            expect: reject(401, "invalid_token", "repository must be a string"),
        },
        Case {
            name: "token over max_token_bytes",
            send: Send::Token(sign(&with(
                claims()?,
                json!({"padding": String::from_utf8_lossy(&big_claim)}),
            ))?),
            expect: reject(401, "invalid_token", "bytes"),
        },
        Case {
            name: "1 MB token",
            send: Send::Token(huge.clone()),
            expect: Expect {
                statuses: &[413, 401],
                code: None,
                message: "",
            },
        },
        Case {
            name: "malformed base64",
            send: Send::Token(format!(
                "{}.!!!notbase64!!!.{}",
                b64(hdr.to_string()),
                b64("sig")
            )),
            expect: reject(401, "invalid_token", "not a valid compact jws"),
        },
        Case {
            name: "malformed JSON payload",
            send: Send::Token(jws::sign_raw(&hdr.to_string(), "{\"sub\": \"x\",", &key)?),
            expect: reject(401, "invalid_token", "not a valid compact jws"),
        },
        Case {
            name: "payload is a JSON array",
            send: Send::Token(jws::sign_raw(&hdr.to_string(), "[1,2,3]", &key)?),
            expect: reject(401, "invalid_token", "not a valid compact jws"),
        },
        Case {
            name: "two segments",
            send: Send::Token(format!(
                "{}.{}",
                b64(hdr.to_string()),
                b64(claims()?.to_string())
            )),
            expect: reject(401, "invalid_token", "3 dot-separated segments"),
        },
        Case {
            name: "five segments (JWE)",
            send: Send::Token("a.b.c.d.e".into()),
            expect: reject(401, "invalid_token", "encrypted jwe"),
        },
        Case {
            name: "empty token",
            send: Send::Token(String::new()),
            expect: Expect {
                statuses: &[400, 401],
                code: None,
                message: "",
            },
        },
        Case {
            name: "replayed token",
            send: Send::Token(valid_once.clone()),
            expect: reject(401, "replayed_token", "already used"),
        },
        Case {
            name: "unknown auth config",
            send: Send::Body(
                json!({"method": "oidc", "token": issuer.valid_token()?, "auth": "nope"}),
            ),
            expect: reject(401, "untrusted_issuer", "no oidc auth config named"),
        },
        Case {
            name: "unsupported method",
            send: Send::Body(json!({"method": "password", "token": "hunter2"})),
            expect: reject(400, "unsupported_method", "not supported"),
        },
        Case {
            name: "unknown body field",
            send: Send::Body(json!({"method": "oidc", "token": "x", "admin": true})),
            expect: reject(400, "invalid_request", "admin"),
        },
        Case {
            name: "body is not JSON",
            send: Send::Raw(b"method=oidc&token=x".to_vec()),
            expect: reject(400, "invalid_request", "not valid json"),
        },
    ];

    let mut rejected_logins = 0usize;
    let mut rejected_tokens = Vec::new();
    let mut failures = Vec::new();
    for case in &cases {
        let r = send(&server, &case.send).await?;
        let message = r.error_message().unwrap_or_default().to_lowercase();
        let ok = case.expect.statuses.contains(&r.status)
            && case.expect.code.is_none_or(|c| r.error_code() == Some(c))
            && message.contains(case.expect.message)
            && r.elapsed < Duration::from_secs(5);
        if !ok {
            failures.push(format!(
                "{}: expected {:?} {:?} containing {:?}, got {}",
                case.name,
                case.expect.statuses,
                case.expect.code,
                case.expect.message,
                r.summary()
            ));
        }
        if r.status != 200 {
            rejected_logins += 1;
            if let Send::Token(t) = &case.send {
                if t.len() > 40 {
                    rejected_tokens.push((case.name, t.clone()));
                }
            }
            if let Some(m) = r.error_message() {
                assert!(
                    !m.contains(&huge[..64]),
                    "{}: messages never echo the token",
                    case.name
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Every refusal is audited, and no audit line carries a token.
    let events = server.audit_events()?;
    let failed = events_of(&events, "login_failed");
    assert!(
        failed.len() >= rejected_logins + storm_statuses.len(),
        "{} login_failed events for {} refused logins",
        failed.len(),
        rejected_logins + storm_statuses.len()
    );
    let audit_text = std::fs::read_to_string(server.audit_file())?;
    for (name, token) in &rejected_tokens {
        assert!(
            !audit_text.contains(token.as_str()),
            "{name}: the token is in the audit log"
        );
        if let Some(sig) = token.rsplit('.').next().filter(|s| s.len() > 20) {
            assert!(
                !audit_text.contains(sig),
                "{name}: the token signature is in the audit log"
            );
        }
    }
    assert!(failed
        .iter()
        .any(|e| e["error"]["code"] == "replayed_token"));
    assert!(
        failed
            .iter()
            .any(|e| e["detail"]["claimed_issuer"] == stranger.issuer()),
        "refusals record the claimed issuer as evidence"
    );

    // The stranger was never contacted: jku/x5u are ignored.
    assert_eq!(
        stranger.requests(),
        0,
        "idmint followed a URL from a token header"
    );

    // Still healthy and still working.
    let ready = server.get("/readyz").await?;
    assert_eq!(ready.status, 200, "{}", ready.summary());
    let ok = server.api().login(&issuer.valid_token()?).await?;
    assert_eq!(ok.status, 200, "{}", ok.summary());
    let session = ok.body["token"].as_str().unwrap_or_default().to_string();

    // Policy-level refusals after a successful login.
    let api = server.api();
    let r = api
        .creds(&session, "demo-api", &json!({"ttl": "24h"}))
        .await?;
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(
        (
            r.body["ttl_clamped"].as_bool(),
            r.body["ttl_seconds"].as_u64()
        ),
        (Some(true), Some(600)),
        "{}",
        r.summary()
    );
    let r = api
        .creds(
            &session,
            "demo-api",
            &json!({"scopes": ["orders:read", "orders:delete"]}),
        )
        .await?;
    assert_eq!(
        (r.status, r.error_code()),
        (400, Some("invalid_scope")),
        "{}",
        r.summary()
    );
    let r = api
        .creds(
            &session,
            "demo-api",
            &json!({"audience": "https://evil.example.test"}),
        )
        .await?;
    assert_eq!(
        (r.status, r.error_code()),
        (400, Some("invalid_target")),
        "{}",
        r.summary()
    );
    let r = api
        .creds(&session, "demo-api", &json!({"ttl": "forever"}))
        .await?;
    assert_eq!(
        (r.status, r.error_code()),
        (400, Some("invalid_request")),
        "{}",
        r.summary()
    );
    let r = api.creds(&session, "db%2F..%2Fadmin", &json!({})).await?;
    assert_eq!(
        (r.status, r.error_code()),
        (404, Some("unknown_role")),
        "{}",
        r.summary()
    );

    let nobody = issuer.sign_claims(&with(
        claims()?,
        json!({"repository": "acme/other", "sub": "repo:acme/other:ref:refs/heads/main"}),
    ))?;
    let login = api.login(&nobody).await?;
    assert_eq!(
        login.status,
        200,
        "authentication succeeds: {}",
        login.summary()
    );
    let other_session = login.body["token"].as_str().unwrap_or_default();
    let r = api.creds(other_session, "demo-api", &json!({})).await?;
    assert_eq!(
        (r.status, r.error_code()),
        (403, Some("policy_denied")),
        "{}",
        r.summary()
    );
    assert!(
        r.error_message()
            .is_some_and(|m| m.contains("no policy permits")),
        "{}",
        r.summary()
    );

    // Bearer garbage on a session endpoint.
    for bad in [
        "",
        "idm_",
        "idm_AAAA",
        "eyJhbGciOiJub25lIn0.e30.",
        &"A".repeat(8000),
    ] {
        let r = api.get("/api/v1/whoami", Some(bad)).await?;
        assert_eq!(
            r.status,
            401,
            "bearer {:?}: {}",
            &bad[..bad.len().min(12)],
            r.summary()
        );
    }
    let ready = server.get("/readyz").await?;
    assert_eq!(ready.status, 200, "{}", ready.summary());
    Ok(())
}
