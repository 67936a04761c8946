//! JWKS cache behaviour against a local IdP: single-flight and rate-limited
//! refetches, key rotation, outages, timeouts and limits.

use crate::support;

use idmint_authn::{Clock, OidcVerifier};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

const JWKS: &str = "/jwks";
const DISCOVERY: &str = "/.well-known/openid-configuration";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_storm_causes_at_most_one_fetch() {
    let idp = TestIdp::start().await;
    let key = TestKey::p256("known");
    idp.set_keys(&[&key]);
    let clock = clock();
    let verifier = verifier(config(&idp, json!({})), &clock);
    verifier.prefetch().await.unwrap();
    assert_eq!(idp.hits(JWKS), 1);

    // Past the refetch interval, so the storm may fetch (once). The IdP is
    // slow so that the storm arrives while that fetch is in flight.
    clock.advance(Duration::from_secs(60));
    idp.set_mode(Mode::Slow(Duration::from_millis(300)));
    let claims = claims(&idp, clock.now());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10_000 {
        let header = json!({"alg":"ES256","kid": random_hex(8)});
        let token = key.sign_raw(&header.to_string(), &claims.to_string());
        let v = verifier.clone();
        tasks.spawn(async move { v.verify(&token).await });
    }
    let mut refused = 0;
    while let Some(result) = tasks.join_next().await {
        let err = result.unwrap().unwrap_err();
        assert_eq!(err.code(), "invalid_token", "{err}");
        assert!(err.to_string().contains("no ES256 key with kid"), "{err}");
        refused += 1;
    }
    assert_eq!(refused, 10_000);
    assert_eq!(idp.hits(JWKS), 2, "one fetch for the whole storm");
    assert_eq!(verifier.jwks_stats().fetches, 2);

    // Still inside the interval: another unknown kid fetches nothing.
    idp.set_mode(Mode::Normal);
    let token = key.sign_raw(r#"{"alg":"ES256","kid":"another"}"#, &claims.to_string());
    assert!(verifier.verify(&token).await.is_err());
    assert_eq!(idp.hits(JWKS), 2);
    // Known keys keep working throughout.
    assert!(verifier.verify(&key.sign(&claims)).await.is_ok());
}

#[tokio::test]
async fn rotation_is_picked_up_by_an_unknown_kid_refetch() {
    let idp = TestIdp::start().await;
    let old = TestKey::p256("2024");
    let new = TestKey::ed25519("2025");
    idp.set_keys(&[&old]);
    let clock = clock();
    let verifier = verifier(
        config(&idp, json!({"jwks_refetch_interval": "30s"})),
        &clock,
    );
    verifier.prefetch().await.unwrap();

    // The IdP rotates; a token signed with the new key arrives.
    idp.set_keys(&[&old, &new]);
    let token = new.sign(&claims(&idp, clock.now()));
    // Within the refetch interval of the start-up fetch: refused, no fetch.
    let err = verifier.verify(&token).await.unwrap_err();
    assert!(
        err.to_string().contains("no EdDSA key with kid \"2025\""),
        "{err}"
    );
    assert_eq!(idp.hits(JWKS), 1);

    clock.advance(Duration::from_secs(31));
    let token = new.sign(&claims(&idp, clock.now()));
    let identity = verifier.verify(&token).await.unwrap();
    assert_eq!(identity.issuer, idp.issuer());
    assert_eq!(idp.hits(JWKS), 2);
    assert_eq!(verifier.jwks_stats().keys, 2);
    // Discovery ran once at start-up; the refetch reused its jwks_uri.
    assert_eq!(idp.hits(DISCOVERY), 1);
}

#[tokio::test]
async fn outage_serves_stale_keys_until_stale_keys_max_age() {
    let idp = TestIdp::start().await;
    let key = TestKey::p256("k");
    idp.set_keys(&[&key]);
    let clock = clock();
    let verifier = verifier(
        config(
            &idp,
            json!({"jwks_cache_ttl": "10m", "stale_keys_max_age": "1h"}),
        ),
        &clock,
    );
    verifier.prefetch().await.unwrap();
    assert!(!verifier.jwks_stats().stale);

    // The IdP goes down; a refresh fails but the keys stay.
    idp.set_mode(Mode::Error500);
    clock.advance(Duration::from_secs(15 * 60));
    let err = verifier.prefetch().await.unwrap_err();
    assert_eq!(err.code(), "idp_unavailable");
    assert!(err.to_string().contains("answered HTTP 500"), "{err}");
    let stats = verifier.jwks_stats();
    assert!(
        stats.stale && stats.keys == 1 && stats.fetch_failures == 1,
        "{stats:?}"
    );
    let identity = verifier.verify(&key.sign(&claims(&idp, clock.now()))).await;
    assert!(identity.is_ok(), "{identity:?}");

    // Beyond stale_keys_max_age the cached keys are no longer trusted.
    idp.set_mode(Mode::Close);
    clock.advance(Duration::from_secs(50 * 60));
    let err = verifier
        .verify(&key.sign(&claims(&idp, clock.now())))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "idp_unavailable", "{err}");
    assert!(err.is_unavailable());
    let message = err.to_string();
    assert!(
        message.contains("more than stale_keys_max_age (3600s)"),
        "{message}"
    );
    assert!(message.contains(&idp.issuer()), "{message}");

    // Within the refetch interval nothing more is fetched...
    let hits = idp.total_hits();
    assert!(verifier
        .verify(&key.sign(&claims(&idp, clock.now())))
        .await
        .is_err());
    assert_eq!(idp.total_hits(), hits);
    // ...and once the IdP is back, logins recover on the next allowed fetch.
    idp.set_mode(Mode::Normal);
    clock.advance(Duration::from_secs(31));
    assert!(verifier
        .verify(&key.sign(&claims(&idp, clock.now())))
        .await
        .is_ok());
    assert!(!verifier.jwks_stats().stale);
}

#[tokio::test]
async fn idp_down_from_the_start_is_unavailable_not_invalid() {
    let idp = TestIdp::start().await;
    let key = TestKey::p256("k");
    idp.set_keys(&[&key]);
    idp.set_mode(Mode::Error500);
    let clock = clock();
    let verifier = verifier(config(&idp, json!({})), &clock);
    let err = verifier.prefetch().await.unwrap_err();
    assert_eq!(err.code(), "idp_unavailable");
    let err = verifier
        .verify(&key.sign(&claims(&idp, clock.now())))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "idp_unavailable", "{err}");
    assert!(err.to_string().contains("could not be fetched"), "{err}");
    assert_eq!(verifier.jwks_stats().keys, 0);
    assert_eq!(idp.total_hits(), 1, "retried at most once per second");

    // Before the first success, requests retry after a second (not after
    // the full refetch interval): logins recover quickly after start-up.
    idp.set_mode(Mode::Normal);
    clock.advance(Duration::from_millis(1500));
    let identity = verifier.verify(&key.sign(&claims(&idp, clock.now()))).await;
    assert!(identity.is_ok(), "{identity:?}");
}

#[tokio::test]
async fn slow_idp_times_out() {
    let idp = TestIdp::start().await;
    let key = TestKey::p256("k");
    idp.set_keys(&[&key]);
    idp.set_mode(Mode::Slow(Duration::from_secs(30)));
    let clock = clock();
    let verifier = verifier(config(&idp, json!({"jwks_timeout": "1s"})), &clock);
    let started = Instant::now();
    let err = verifier.prefetch().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.code(), "idp_unavailable");
    let message = err.to_string();
    assert!(
        message.contains("timed out") || message.contains("operation timed out"),
        "{message}"
    );
}

#[tokio::test]
async fn discovery_must_name_the_configured_issuer() {
    let idp = TestIdp::start().await;
    let key = TestKey::p256("k");
    idp.set_keys(&[&key]);
    idp.set_discovery_issuer("https://someone-else.example");
    let clock = clock();
    let verifier = verifier(config(&idp, json!({})), &clock);
    let err = verifier.prefetch().await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("names issuer"), "{message}");
    assert!(message.contains("someone-else"), "{message}");
    assert_eq!(
        idp.hits(JWKS),
        0,
        "the JWKS of a mismatching document is not fetched"
    );
}

#[tokio::test]
async fn jwks_url_skips_discovery() {
    let idp = TestIdp::start().await;
    let key = TestKey::p256("k");
    idp.set_keys(&[&key]);
    let clock = clock();
    let verifier = verifier(config(&idp, json!({"jwks_url": idp.url(JWKS)})), &clock);
    // The first request loads the keys on demand.
    assert!(verifier
        .verify(&key.sign(&claims(&idp, clock.now())))
        .await
        .is_ok());
    assert_eq!((idp.hits(DISCOVERY), idp.hits(JWKS)), (0, 1));
}

#[tokio::test]
async fn unusable_keys_are_skipped_and_limits_enforced() {
    let idp = TestIdp::start().await;
    let key = TestKey::p256("good");
    let clock = clock();
    let verifier = verifier(config(&idp, json!({})), &clock);

    // Broken and dangerous keys next to a good one: only the good one loads.
    let body = json!({"keys": [
        {"kty":"oct","kid":"hmac","k":"c2VjcmV0"},
        {"kty":"EC","crv":"P-256","kid":"broken","x":"AAAA","y":"AAAA"},
        {"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"},
        "not an object",
        key.jwk,
    ]});
    idp.set_jwks_body(body.to_string());
    verifier.prefetch().await.unwrap();
    assert_eq!(verifier.jwks_stats().keys, 1);
    assert!(verifier
        .verify(&key.sign(&claims(&idp, clock.now())))
        .await
        .is_ok());

    // Too many keys: refused whole, the previous keys stay.
    let many: Vec<_> = (0..101).map(|_| key.jwk.clone()).collect();
    idp.set_jwks_body(json!({ "keys": many }).to_string());
    let err = verifier.prefetch().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("101 keys; more than 100 is refused"),
        "{err}"
    );
    assert_eq!(verifier.jwks_stats().keys, 1);

    // Too large a document.
    let huge = format!("{{\"keys\":[],\"pad\":\"{}\"}}", "x".repeat(1024 * 1024));
    idp.set_jwks_body(huge);
    let err = verifier.prefetch().await.unwrap_err();
    assert!(err.to_string().contains("more than 1048576 bytes"), "{err}");

    // No usable key at all.
    idp.set_jwks_body(json!({"keys": [{"kty":"oct","k":"c2VjcmV0"}]}).to_string());
    let err = verifier.prefetch().await.unwrap_err();
    assert!(err.to_string().contains("no usable signing key"), "{err}");

    // Not a JWKS.
    idp.set_jwks_body("[]".into());
    let err = verifier.prefetch().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("not a JSON object with a keys array"),
        "{err}"
    );
    assert_eq!(verifier.jwks_stats().keys, 1);
    assert!(verifier.jwks_stats().stale);
}

#[tokio::test]
async fn background_refresh_fetches_periodically_and_stops_with_the_verifier() {
    let idp = TestIdp::start().await;
    let key = TestKey::p256("k");
    idp.set_keys(&[&key]);
    let verifier = Arc::new(
        OidcVerifier::new(
            config(
                &idp,
                json!({"jwks_cache_ttl": "1s", "stale_keys_max_age": "1h"}),
            ),
            http_client(),
        )
        .unwrap(),
    );
    verifier.prefetch().await.unwrap();
    let handle = verifier.spawn_refresh();

    let deadline = Instant::now() + Duration::from_secs(20);
    while idp.hits(JWKS) < 3 {
        assert!(Instant::now() < deadline, "background refresh did not run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(verifier.jwks_stats().fetches >= 3);

    // Dropping the last reference ends the task.
    drop(verifier);
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("refresh task ends after the verifier is dropped")
        .unwrap();
}

#[tokio::test]
async fn key_usable_after_clock_moves_is_checked_against_claims_time() {
    // Guards the separation of the two clocks: cached keys are fine, but a
    // token minted before a large clock jump is expired.
    let idp = TestIdp::start().await;
    let key = TestKey::p256("k");
    idp.set_keys(&[&key]);
    let clock = clock();
    let verifier = verifier(config(&idp, json!({})), &clock);
    let token = key.sign(&claims(&idp, clock.now()));
    assert!(verifier.verify(&token).await.is_ok());
    clock.advance(Duration::from_secs(600));
    let err = verifier.verify(&token).await.unwrap_err();
    assert!(err.to_string().contains("token expired at"), "{err}");
}
