//! The identity a verified token yields, presets, replay protection and
//! routing between several auth configs.

use crate::support;

use idmint_authn::{AuthnError, Clock, OidcAuthenticator, OidcVerifier};
use idmint_core::IdentityKind;
use serde_json::json;
use std::sync::Arc;
use support::*;

#[tokio::test]
async fn identity_carries_verified_claims() {
    let idp = TestIdp::start().await;
    let key = TestKey::ed25519("k1");
    idp.set_keys(&[&key]);
    let clock = clock();
    let verifier = verifier(config(&idp, json!({})), &clock);
    let now = clock.now();
    let claims = with(claims(&idp, now), "custom", json!({"team": "web"}));
    let identity = verifier.verify(&key.sign(&claims)).await.unwrap();

    assert_eq!(identity.kind, IdentityKind::Workload);
    assert_eq!(identity.subject, "repo:acme/app:ref:refs/heads/main");
    assert_eq!(identity.issuer, idp.issuer());
    assert_eq!(identity.method, "oidc");
    assert_eq!(identity.auth, "test");
    assert_eq!(identity.proof_id, claims["jti"].as_str().unwrap());
    assert_eq!(identity.expires_at.0, now.0 + 300);
    for kept in ["iss", "aud", "sub", "jti", "repository", "custom"] {
        assert_eq!(identity.attributes.get(kept), claims.get(kept), "{kept}");
    }
    for dropped in ["exp", "nbf", "iat"] {
        assert!(!identity.attributes.contains_key(dropped), "{dropped}");
    }

    // Without jti the proof id is the token's hash.
    let token = key.sign(&without(claims.clone(), "jti"));
    let identity = verifier.verify(&token).await.unwrap();
    let hash = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    assert_eq!(
        identity.proof_id,
        format!("sha256:{}", idmint_core::ids::hex(hash.as_ref()))
    );
}

#[tokio::test]
async fn subject_claim_and_kind_are_configurable() {
    let idp = TestIdp::start().await;
    let key = TestKey::p256("k1");
    idp.set_keys(&[&key]);
    let clock = clock();
    let verifier = verifier(
        config(&idp, json!({"subject_claim": "repository", "kind": "host"})),
        &clock,
    );
    let claims = claims(&idp, clock.now());
    let identity = verifier.verify(&key.sign(&claims)).await.unwrap();
    assert_eq!(identity.subject, "acme/app");
    assert_eq!(identity.kind, IdentityKind::Host);
    let err = verifier
        .verify(&key.sign(&without(claims, "repository")))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("takes the subject from it"),
        "{err}"
    );
}

fn github_claims(idp: &TestIdp, now: idmint_core::UnixTime) -> serde_json::Value {
    // The shape of a real GitHub Actions token of a job without environment.
    json!({
        "jti": random_hex(16),
        "sub": "repo:acme/app:ref:refs/heads/main",
        "aud": "idmint",
        "ref": "refs/heads/main",
        "sha": "5b0a6f9f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f",
        "repository": "acme/app",
        "repository_owner": "acme",
        "repository_owner_id": "1234",
        "run_id": "987654321",
        "run_number": "42",
        "run_attempt": "1",
        "repository_visibility": "private",
        "repository_id": "5678",
        "actor_id": "91011",
        "actor": "octocat",
        "workflow": "deploy",
        "head_ref": "",
        "base_ref": "",
        "event_name": "push",
        "ref_type": "branch",
        "workflow_ref": "acme/app/.github/workflows/deploy.yml@refs/heads/main",
        "workflow_sha": "5b0a6f9f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f",
        "job_workflow_ref": "acme/app/.github/workflows/deploy.yml@refs/heads/main",
        "job_workflow_sha": "5b0a6f9f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f",
        "runner_environment": "github-hosted",
        "iss": idp.issuer(),
        "nbf": now.0 - 5,
        "exp": now.0 + 295,
        "iat": now.0 - 5,
    })
}

#[tokio::test]
async fn github_actions_preset() {
    let idp = TestIdp::start().await;
    let key = TestKey::p256("gh");
    idp.set_keys(&[&key]);
    let clock = clock();
    let now = clock.now();
    let plain = verifier(config(&idp, json!({"preset": "github-actions"})), &clock);
    let claims = github_claims(&idp, now);
    let identity = plain.verify(&key.sign(&claims)).await.unwrap();
    assert_eq!(identity.kind, IdentityKind::Ci);
    assert_eq!(identity.attributes["workflow"], "deploy");

    for claim in [
        "repository",
        "ref",
        "sha",
        "workflow",
        "job_workflow_ref",
        "actor",
        "event_name",
        "run_id",
    ] {
        let err = plain
            .verify(&key.sign(&without(claims.clone(), claim)))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains(&format!(
                "no {claim} claim; auth config \"test\" (preset github-actions) requires it"
            )),
            "{claim}: {err}"
        );
    }
    let err = plain
        .verify(&key.sign(&with(claims.clone(), "run_id", json!(987654321))))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("run_id must be a string"), "{err}");

    // environment is only required when the config asks for it.
    let with_env = verifier(
        config(
            &idp,
            json!({"preset": "github-actions", "required_claims": ["environment"]}),
        ),
        &clock,
    );
    let err = with_env.verify(&key.sign(&claims)).await.unwrap_err();
    assert!(err.to_string().contains("no environment claim"), "{err}");
    let identity = with_env
        .verify(&key.sign(&with(claims, "environment", json!("prod"))))
        .await
        .unwrap();
    assert_eq!(identity.attributes["environment"], "prod");
}

#[tokio::test]
async fn gitlab_and_circleci_presets() {
    let idp = TestIdp::start().await;
    let key = TestKey::p256("k");
    idp.set_keys(&[&key]);
    let clock = clock();
    let now = clock.now();
    let gitlab = verifier(config(&idp, json!({"preset": "gitlab-ci"})), &clock);
    let mut claims = claims(&idp, now);
    for (k, v) in [
        ("project_path", "acme/app"),
        ("ref", "main"),
        ("ref_type", "branch"),
        ("pipeline_source", "push"),
        ("namespace_path", "acme"),
        ("pipeline_id", "1212"),
        ("user_login", "alice"),
    ] {
        claims[k] = json!(v);
    }
    assert_eq!(
        gitlab.verify(&key.sign(&claims)).await.unwrap().kind,
        IdentityKind::Ci
    );
    let err = gitlab
        .verify(&key.sign(&with(claims.clone(), "pipeline_id", json!(1212))))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("pipeline_id must be a string"),
        "{err}"
    );

    let circle = verifier(config(&idp, json!({"preset": "circleci"})), &clock);
    let err = circle.verify(&key.sign(&claims)).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("no oidc.circleci.com/project-id claim"),
        "{err}"
    );
    claims["oidc.circleci.com/project-id"] = json!("p-1");
    assert!(circle.verify(&key.sign(&claims)).await.is_ok());
    claims["oidc.circleci.com/context-ids"] = json!("ctx");
    assert!(circle.verify(&key.sign(&claims)).await.is_err());
}

#[tokio::test]
async fn kubernetes_preset_flattens_namespace_and_service_account() {
    let idp = TestIdp::start().await;
    let key = TestKey::p256("k8s");
    idp.set_keys(&[&key]);
    let clock = clock();
    let verifier = verifier(config(&idp, json!({"preset": "kubernetes"})), &clock);
    let claims = with(
        claims(&idp, clock.now()),
        "kubernetes.io",
        json!({"namespace": "prod", "serviceaccount": {"name": "web", "uid": "a-b"},
               "pod": {"name": "web-1", "uid": "c-d"}}),
    );
    let identity = verifier.verify(&key.sign(&claims)).await.unwrap();
    assert_eq!(identity.kind, IdentityKind::Workload);
    assert_eq!(identity.attributes["namespace"], "prod");
    assert_eq!(identity.attributes["service_account"], "web");
    let err = verifier
        .verify(&key.sign(&without(claims, "kubernetes.io")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no kubernetes.io claim"), "{err}");
}

#[tokio::test]
async fn replayed_jti_is_refused() {
    let idp = TestIdp::start().await;
    let key = TestKey::p256("k");
    idp.set_keys(&[&key]);
    let clock = clock();
    let verifier = verifier(config(&idp, json!({"replay_protection": true})), &clock);
    let claims = claims(&idp, clock.now());
    let token = key.sign(&claims);
    verifier.verify(&token).await.unwrap();
    let err = verifier.verify(&token).await.unwrap_err();
    assert_eq!(err.code(), "replayed_token", "{err}");
    assert!(matches!(err, AuthnError::Replayed { .. }));
    assert!(err
        .to_string()
        .contains("request a fresh token for every login"));

    // A different token with the same jti is a replay too.
    let same_jti = key.sign(&with(claims.clone(), "sub", json!("other")));
    assert_eq!(
        verifier.verify(&same_jti).await.unwrap_err().code(),
        "replayed_token"
    );

    // Invalid tokens do not consume a jti.
    let fresh = with(claims.clone(), "jti", json!(random_hex(16)));
    let expired = key.sign(&with(fresh.clone(), "exp", json!(clock.now().0 - 100)));
    assert_eq!(
        verifier.verify(&expired).await.unwrap_err().code(),
        "invalid_token"
    );
    assert!(verifier.verify(&key.sign(&fresh)).await.is_ok());

    let err = verifier
        .verify(&key.sign(&without(claims, "jti")))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("no jti claim; auth config \"test\" has replay_protection on"),
        "{err}"
    );
}

#[tokio::test]
async fn concurrent_replays_admit_one() {
    let idp = TestIdp::start().await;
    let key = TestKey::ed25519("k");
    idp.set_keys(&[&key]);
    let clock = clock();
    let verifier = verifier(config(&idp, json!({"replay_protection": true})), &clock);
    verifier.prefetch().await.unwrap();
    let token = Arc::new(key.sign(&claims(&idp, clock.now())));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (v, t) = (verifier.clone(), token.clone());
        tasks.spawn(async move { v.verify(&t).await.is_ok() });
    }
    let mut admitted = 0;
    while let Some(ok) = tasks.join_next().await {
        admitted += usize::from(ok.unwrap());
    }
    assert_eq!(admitted, 1);
}

#[tokio::test]
async fn large_claims_respect_max_token_bytes() {
    let idp = TestIdp::start().await;
    let key = TestKey::ed25519("k");
    idp.set_keys(&[&key]);
    let clock = clock();
    let groups: Vec<String> = (0..10_000).map(|i| format!("g{i}")).collect();
    let claims = with(claims(&idp, clock.now()), "groups", json!(groups));
    let token = key.sign(&claims);
    assert!(
        token.len() > 100_000 && token.len() < 200_000,
        "{}",
        token.len()
    );

    let small = verifier(config(&idp, json!({})), &clock);
    let err = small.verify(&token).await.unwrap_err();
    assert!(
        matches!(err, AuthnError::TokenTooLarge { max: 16384, .. }),
        "{err}"
    );

    let large = verifier(config(&idp, json!({"max_token_bytes": 262144})), &clock);
    let identity = large.verify(&token).await.unwrap();
    assert_eq!(
        identity.attributes["groups"].as_array().unwrap().len(),
        10_000
    );
}

#[tokio::test]
async fn authenticator_routes_by_issuer_or_name() {
    let idp_a = TestIdp::start().await;
    let idp_b = TestIdp::start().await;
    let key_a = TestKey::p256("a");
    let key_b = TestKey::p256("b");
    idp_a.set_keys(&[&key_a]);
    idp_b.set_keys(&[&key_b]);
    let clock = clock();
    let mut cfg_a = config(&idp_a, json!({}));
    cfg_a.name = "alpha".into();
    let mut cfg_b = config(&idp_b, json!({"max_token_bytes": 4096}));
    cfg_b.name = "beta".into();
    // A second config for issuer A with another audience.
    let mut cfg_a2 = config(&idp_a, json!({"audiences": ["other-aud"], "kind": "human"}));
    cfg_a2.name = "alpha-2".into();
    let authn = OidcAuthenticator::new(vec![
        verifier(cfg_a, &clock),
        verifier(cfg_b, &clock),
        verifier(cfg_a2, &clock),
    ]);
    assert_eq!(authn.verifiers().len(), 3);
    let now = clock.now();

    let token_a = key_a.sign(&claims(&idp_a, now));
    assert_eq!(authn.verify(&token_a, None).await.unwrap().auth, "alpha");
    let token_b = key_b.sign(&claims(&idp_b, now));
    assert_eq!(authn.verify(&token_b, None).await.unwrap().auth, "beta");
    // Same issuer, second config chosen by audience.
    let token_a2 = key_a.sign(&with(claims(&idp_a, now), "aud", json!("other-aud")));
    let identity = authn.verify(&token_a2, None).await.unwrap();
    assert_eq!(
        (identity.auth.as_str(), identity.kind),
        ("alpha-2", IdentityKind::Human)
    );

    // By name: the named config does all checks, including the issuer.
    assert_eq!(
        authn.verify(&token_a, Some("alpha")).await.unwrap().auth,
        "alpha"
    );
    // Past beta's refetch interval, so an unknown kid would trigger a fetch.
    clock.advance(std::time::Duration::from_secs(60));
    let beta_fetches = idp_b.total_hits();
    let err = authn.verify(&token_a, Some("beta")).await.unwrap_err();
    assert_eq!(err.code(), "invalid_token");
    assert!(
        err.to_string().contains("does not match the issuer"),
        "{err}"
    );
    assert_eq!(
        idp_b.total_hits(),
        beta_fetches,
        "a foreign token never reaches the key cache"
    );
    let err = authn.verify(&token_a, Some("nope")).await.unwrap_err();
    assert_eq!(err.code(), "untrusted_issuer");

    // An issuer nobody trusts.
    let token_evil = key_a.sign(&with(
        claims(&idp_a, now),
        "iss",
        json!("https://evil.example"),
    ));
    let err = authn.verify(&token_evil, None).await.unwrap_err();
    assert_eq!(err.code(), "untrusted_issuer", "{err}");
    assert!(
        err.to_string()
            .contains("token issuer \"https://evil.example\" is not trusted"),
        "{err}"
    );
    // No iss at all.
    let err = authn
        .verify(&key_a.sign(&without(claims(&idp_a, now), "iss")), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_token");
    // Per-verifier size limits still apply after routing.
    let padded = with(claims(&idp_b, now), "pad", json!("x".repeat(5000)));
    let err = authn.verify(&key_b.sign(&padded), None).await.unwrap_err();
    assert!(
        matches!(err, AuthnError::TokenTooLarge { max: 4096, .. }),
        "{err}"
    );

    let empty = OidcAuthenticator::new(Vec::new());
    assert_eq!(
        empty.verify(&token_a, None).await.unwrap_err().code(),
        "untrusted_issuer"
    );
}

#[tokio::test]
async fn disallowed_algorithm_is_refused_before_keys_are_fetched() {
    let idp = TestIdp::start().await;
    let key = TestKey::ed25519("k");
    idp.set_keys(&[&key]);
    let clock = clock();
    let verifier: Arc<OidcVerifier> =
        verifier(config(&idp, json!({"algorithms": ["ES256"]})), &clock);
    let err = verifier
        .verify(&key.sign(&claims(&idp, clock.now())))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "token algorithm EdDSA is not allowed by auth config \"test\" (allowed: ES256)"
        ),
        "{err}"
    );
    assert_eq!(idp.total_hits(), 0);
}
