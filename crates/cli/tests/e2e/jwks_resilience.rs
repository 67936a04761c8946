//! The issuer's keys over time: rotation, an outage served from stale keys,
//! an outage that outlasts `stale_keys_max_age`, and a slow issuer. The
//! issuer is a [`TestJwks`] so the test decides when it rotates, fails or
//! disappears; waits are polls with deadlines.

use crate::common;

use common::bin;
use idmint_testkit::{
    metric_value, poll_until, ApiResponse, IdmintServer, JwksMode, KeyAlg, OidcSpec,
    Result as KitResult, ServerSpec, TestJwks,
};
use std::time::{Duration, Instant};

const AUTH: &str = "gh";

async fn server(issuer: &TestJwks, settings: &[(&str, &str)]) -> anyhow::Result<IdmintServer> {
    let mut oidc = OidcSpec::new(AUTH, &issuer.issuer()).preset("github-actions");
    for (k, v) in settings {
        oidc = oidc.set(k, *v);
    }
    Ok(IdmintServer::start(bin(), ServerSpec::with_oidc(vec![oidc])).await?)
}

async fn metric(server: &IdmintServer, name: &str) -> KitResult<Option<f64>> {
    let text = server.get("/metrics").await?.text;
    Ok(metric_value(&text, name, &format!("auth=\"{AUTH}\"")))
}

/// Log in with `token` until the answer has `status` (or the deadline).
async fn login_until(
    server: &IdmintServer,
    token: &str,
    status: u16,
    limit: Duration,
    what: &str,
) -> KitResult<ApiResponse> {
    poll_until(what, limit, || async move {
        let r = server.api().login(token).await?;
        Ok((r.status == status).then_some(r))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_keys_are_picked_up_and_removed_keys_stop_working() -> anyhow::Result<()> {
    let issuer = TestJwks::start().await?;
    let server = server(
        &issuer,
        &[
            ("jwks_refetch_interval", "1s"),
            ("jwks_cache_ttl", "2s"),
            ("stale_keys_max_age", "1h"),
        ],
    )
    .await?;
    let old_token = issuer.valid_token()?;
    let r = server.api().login(&old_token).await?;
    assert_eq!(r.status, 200, "{}", r.summary());

    // Rotate: a new ES256 key is published next to the old one and signs from
    // now on. Its kid is unknown to idmint until one (rate-limited) refetch.
    let new_key = issuer.rotate(KeyAlg::Es256, false)?;
    let fetches_before = issuer.jwks_fetches();
    let new_token = issuer.valid_token()?;
    let r = login_until(
        &server,
        &new_token,
        200,
        Duration::from_secs(10),
        "a token with the new kid to log in",
    )
    .await?;
    assert_eq!(r.body["identity"]["auth"], AUTH);
    let refetches = issuer.jwks_fetches() - fetches_before;
    assert!(
        (1..=4).contains(&refetches),
        "picked up with a refetch or a refresh, not a storm: {refetches}"
    );

    // Retire the old key: once the cache refreshes (2 s), old-key tokens fail.
    let old_kid = idmint_testkit::jws::decode_segment(&old_token, 0)?["kid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_ne!(old_kid, new_key.kid());
    issuer.unpublish(&old_kid);
    let r = login_until(
        &server,
        &old_token,
        401,
        Duration::from_secs(15),
        "the retired key to stop working",
    )
    .await?;
    assert_eq!(r.error_code(), Some("invalid_token"), "{}", r.summary());
    // The new key keeps working.
    let r = server.api().login(&issuer.valid_token()?).await?;
    assert_eq!(r.status, 200, "{}", r.summary());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_is_served_from_stale_keys_and_reported() -> anyhow::Result<()> {
    let mut issuer = TestJwks::start().await?;
    let server = server(
        &issuer,
        &[
            ("jwks_refetch_interval", "1s"),
            ("jwks_cache_ttl", "1s"),
            ("stale_keys_max_age", "1h"),
        ],
    )
    .await?;
    let r = server.api().login(&issuer.valid_token()?).await?;
    assert_eq!(r.status, 200, "{}", r.summary());

    issuer.go_offline().await?;
    // The background refresh notices (failures counted, keys marked stale)…
    poll_until(
        "JWKS fetch failures and stale keys in /metrics",
        Duration::from_secs(15),
        || async {
            let failures = metric(&server, "idmint_jwks_fetch_failures")
                .await?
                .unwrap_or(0.0);
            let stale = metric(&server, "idmint_jwks_stale").await?.unwrap_or(0.0);
            Ok((failures >= 1.0 && stale >= 1.0).then_some(()))
        },
    )
    .await?;
    // …while tokens signed with the cached key still log in.
    for _ in 0..3 {
        let r = server.api().login(&issuer.valid_token()?).await?;
        assert_eq!(
            r.status,
            200,
            "stale keys serve logins during the outage: {}",
            r.summary()
        );
    }
    let ready = server.get("/readyz").await?;
    assert_eq!(
        ready.status,
        200,
        "stale keys are still keys: {}",
        ready.summary()
    );

    // Recovery clears the stale flag.
    issuer.go_online().await?;
    poll_until(
        "stale keys to be refreshed",
        Duration::from_secs(15),
        || async { Ok((metric(&server, "idmint_jwks_stale").await? == Some(0.0)).then_some(())) },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_beyond_stale_keys_max_age_fails_closed_with_503() -> anyhow::Result<()> {
    let mut issuer = TestJwks::start().await?;
    let server = server(
        &issuer,
        &[
            ("jwks_refetch_interval", "1s"),
            ("jwks_cache_ttl", "1s"),
            ("stale_keys_max_age", "2s"),
        ],
    )
    .await?;
    let r = server.api().login(&issuer.valid_token()?).await?;
    assert_eq!(r.status, 200, "{}", r.summary());

    issuer.go_offline().await?;
    let token = issuer.valid_token()?;
    let r = login_until(
        &server,
        &token,
        503,
        Duration::from_secs(20),
        "login to fail with 503 once the keys are too old",
    )
    .await?;
    assert_eq!(r.error_code(), Some("idp_unavailable"), "{}", r.summary());
    assert!(
        r.error_message()
            .is_some_and(|m| m.contains(&issuer.issuer())),
        "names the IdP: {}",
        r.summary()
    );
    assert!(
        r.elapsed < Duration::from_secs(5),
        "answered, not hung: {:?}",
        r.elapsed
    );

    // Back online: logins recover without a restart.
    issuer.go_online().await?;
    login_until(
        &server,
        &issuer.valid_token()?,
        200,
        Duration::from_secs(15),
        "login to recover after the outage",
    )
    .await?;

    let events = server.audit_events()?;
    assert!(
        idmint_testkit::audit::events_of(&events, "login_failed")
            .iter()
            .any(|e| e["error"]["code"] == "idp_unavailable"),
        "the outage is audited"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_or_failing_idp_gives_503_not_a_hang() -> anyhow::Result<()> {
    let issuer = TestJwks::start().await?;
    // Slow from the start: no key was ever loaded.
    issuer.set_mode(JwksMode::Slow(Duration::from_secs(4)));
    let server = server(
        &issuer,
        &[("jwks_refetch_interval", "1s"), ("jwks_timeout", "1s")],
    )
    .await?;
    let ready = server.get("/readyz").await?;
    assert_eq!(ready.status, 503, "no keys yet: {}", ready.summary());

    let token = issuer.valid_token()?;
    let started = Instant::now();
    let r = server.api().login(&token).await?;
    assert_eq!(
        (r.status, r.error_code()),
        (503, Some("idp_unavailable")),
        "{}",
        r.summary()
    );
    assert!(
        started.elapsed() < Duration::from_millis(3500),
        "bounded by jwks_timeout (1 s), took {:?}",
        started.elapsed()
    );

    // A failing (HTTP 500) IdP is also unavailable, not "invalid token".
    issuer.set_mode(JwksMode::Failing);
    let r = login_until(
        &server,
        &token,
        503,
        Duration::from_secs(10),
        "503 while the IdP answers 500",
    )
    .await?;
    assert_eq!(r.error_code(), Some("idp_unavailable"), "{}", r.summary());
    assert!(r.elapsed < Duration::from_secs(3), "{:?}", r.elapsed);

    issuer.set_mode(JwksMode::Up);
    login_until(
        &server,
        &token,
        200,
        Duration::from_secs(15),
        "login once the IdP is healthy",
    )
    .await?;
    poll_until("/readyz to turn ready", Duration::from_secs(10), || async {
        Ok((server.get("/readyz").await?.status == 200).then_some(()))
    })
    .await?;
    Ok(())
}
