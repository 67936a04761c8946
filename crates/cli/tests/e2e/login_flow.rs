//! The core flow against the real OIDC IdP and the real server binary,
//! driven through the client library (and raw HTTP where exact error
//! bodies matter): login → whoami → creds → verify the minted JWT; RFC 8693
//! token exchange; logout and its persistence; leases, revocation and the
//! reaper.

use crate::common;

use common::{job_token, login, server_for};
use idmint_client::proto::token_types::{ACCESS_TOKEN, GRANT_TOKEN_EXCHANGE, JWT};
use idmint_client::proto::{Credential, CredsRequest};
use idmint_client::{ClientError, LeaseQuery, SecretString, TokenExchangeParams, TokenType};
use idmint_testkit::audit::events_of;
use idmint_testkit::jws::verify_jwt;
use idmint_testkit::{fixtures, poll_until, unix_now, Idp};
use serde_json::json;
use std::time::Duration;

const API_AUD: &str = "https://api.example.test";

/// An `application/x-www-form-urlencoded` body as name/value pairs.
type Form = Vec<(&'static str, String)>;

fn api_error(e: &ClientError) -> (u16, &str, &str) {
    match e {
        ClientError::Api {
            status,
            code,
            message,
            ..
        } => (*status, code.as_str(), message.as_str()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn jwt_of(c: &Credential) -> &str {
    let Credential::OauthToken { access_token, .. } = c else {
        panic!("expected an oauth token, got {c:?}");
    };
    access_token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_whoami_creds_and_the_minted_jwt_verifies() -> anyhow::Result<()> {
    let idp = Idp::start().await?;
    let server = server_for(&idp).await?;
    let proof = job_token(&idp, json!({})).await?;

    let (resp, client) = login(&server, &proof).await?;
    assert!(resp.token.starts_with("idm_"), "session token prefix");
    assert_eq!(resp.identity.subject, "repo:acme/app:ref:refs/heads/main");
    assert_eq!(resp.identity.kind, "ci");
    assert_eq!(resp.identity.auth, "github");
    assert_eq!(resp.identity.method, "oidc");
    assert_eq!(resp.identity.issuer, idp.issuer());
    assert!(
        resp.expires_at > unix_now() && resp.expires_at <= unix_now() + 301,
        "machine session ≤ 5 min"
    );

    let me = client.whoami().await?;
    assert_eq!(me.token_id, resp.token_id);
    assert_eq!(me.identity.attributes["repository"], "acme/app");
    assert_eq!(me.identity.attributes["environment"], "production");
    assert_eq!(
        me.identity.attributes["job_workflow_ref"],
        "acme/app/.github/workflows/release.yml@refs/heads/main"
    );
    assert!(
        !me.identity.attributes.contains_key("exp"),
        "time claims are not attributes"
    );

    let creds = client.creds("demo-api", &CredsRequest::default()).await?;
    assert_eq!(creds.role, "demo-api");
    assert_eq!(creds.issuer, "oauth");
    assert_eq!(creds.ttl_seconds, 300, "role default_ttl 5m");
    assert!(!creds.ttl_clamped);
    assert_eq!(creds.policy_version, 1);
    let Credential::OauthToken {
        access_token,
        token_type,
        audience,
        scopes,
        token_id,
    } = &creds.credential
    else {
        panic!("expected an oauth token, got {:?}", creds.credential);
    };
    assert_eq!(token_type, "Bearer");
    assert_eq!(audience.as_deref(), Some(API_AUD));
    assert_eq!(
        scopes,
        &vec!["orders:read".to_string(), "orders:write".to_string()]
    );

    // The JWT verifies against the server's published keys, and says what
    // was granted.
    let discovery = client.discovery().await?;
    assert_eq!(discovery["issuer"], server.base_url());
    assert_eq!(
        discovery["jwks_uri"],
        format!("{}/.well-known/jwks.json", server.base_url())
    );
    let jwks = client.jwks().await?;
    let (header, claims) = verify_jwt(access_token, &jwks)?;
    assert_eq!(header["alg"], "ES256", "default oauth algorithm");
    assert_eq!(claims["iss"], server.base_url());
    assert_eq!(claims["aud"], API_AUD);
    assert_eq!(claims["sub"], "repo:acme/app:ref:refs/heads/main");
    assert_eq!(claims["scope"], "orders:read orders:write");
    assert_eq!(claims["jti"], token_id.as_str());
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap_or(0),
        claims["exp"].as_i64().unwrap_or(0),
    );
    assert_eq!(exp - iat, 300, "{claims}");
    assert_eq!(exp, creds.expires_at);
    assert_eq!(claims["idmint"]["lease_id"], creds.lease_id.as_str());
    assert_eq!(claims["idmint"]["role"], "demo-api");
    assert_eq!(claims["idmint"]["policy_version"], 1);
    assert_eq!(claims["idmint"]["auth"], "github");
    assert_eq!(claims["idmint"]["source_issuer"], idp.issuer());

    // Downscoping narrows; a longer TTL is clamped to the cap (10m).
    let narrow = client
        .creds(
            "demo-api",
            &CredsRequest {
                ttl: Some("1h".into()),
                scopes: Some(vec!["orders:read".into()]),
                audience: None,
                csr: None,
            },
        )
        .await?;
    assert!(narrow.ttl_clamped, "1h asked, 10m allowed");
    assert_eq!(narrow.ttl_seconds, 600);
    let (_, c) = verify_jwt(jwt_of(&narrow.credential), &jwks)?;
    assert_eq!(c["scope"], "orders:read");

    // Widening is refused, not silently dropped.
    let e = client
        .creds(
            "demo-api",
            &CredsRequest {
                scopes: Some(vec!["orders:admin".into()]),
                ..Default::default()
            },
        )
        .await
        .expect_err("scope outside the role template");
    let (status, code, message) = api_error(&e);
    assert_eq!((status, code), (400, "invalid_scope"), "{e}");
    assert!(message.contains("orders:admin"), "{message}");

    // Policy denial explains itself.
    let e = client
        .creds("locked", &CredsRequest::default())
        .await
        .expect_err("no policy permits locked");
    let (status, code, message) = api_error(&e);
    assert_eq!((status, code), (403, "policy_denied"), "{e}");
    assert!(
        message.contains("no policy permits") && message.contains("bundle v1"),
        "{message}"
    );
    let e = client
        .creds("no-such-role", &CredsRequest::default())
        .await
        .expect_err("unknown role");
    assert_eq!(api_error(&e).1, "unknown_role", "{e}");

    // A forbid wins over the permit: pull requests never get credentials.
    let pr = job_token(&idp, json!({"event_name": "pull_request"})).await?;
    let (_, pr_client) = login(&server, &pr).await?;
    let e = pr_client
        .creds("demo-api", &CredsRequest::default())
        .await
        .expect_err("forbidden");
    let (status, code, message) = api_error(&e);
    assert_eq!((status, code), (403, "policy_denied"), "{e}");
    assert!(
        message.contains("no-pull-requests"),
        "the forbidding policy is named: {message}"
    );

    // Everything above is in the audit log, and the token is not.
    let events = server.audit_events()?;
    assert!(events_of(&events, "login").len() >= 2);
    let issued = events_of(&events, "credential_issued");
    assert!(issued
        .iter()
        .any(|e| e["lease_id"] == creds.lease_id.as_str() && e["outcome"] == "success"));
    assert!(
        !server.audit_file().exists()
            || !std::fs::read_to_string(server.audit_file())?.contains(&proof)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_exchange_rfc8693() -> anyhow::Result<()> {
    let idp = Idp::start().await?;
    let server = server_for(&idp).await?;
    let client = server.client()?;
    let jwks = client.jwks().await?;
    let proof = job_token(&idp, json!({})).await?;

    // The IdP token itself as subject_token; the audience selects the role.
    let mut p = TokenExchangeParams::new(SecretString::new(proof.clone()), TokenType::Jwt);
    p.audience = Some(API_AUD.into());
    let out = client.token_exchange(&p).await?;
    assert_eq!(out.issued_token_type, ACCESS_TOKEN);
    assert_eq!(out.token_type, "Bearer");
    assert!(
        out.expires_in > 0 && out.expires_in <= 300,
        "{}",
        out.expires_in
    );
    assert_eq!(out.scope.as_deref(), Some("orders:read orders:write"));
    let (_, claims) = verify_jwt(&out.access_token, &jwks)?;
    assert_eq!(claims["aud"], API_AUD);
    assert_eq!(claims["iss"], server.base_url());
    assert_eq!(claims["idmint"]["role"], "demo-api");

    // An idmint session token as subject (access_token type).
    let (session, _) = login(&server, &job_token(&idp, json!({})).await?).await?;
    let mut p = TokenExchangeParams::new(
        SecretString::new(session.token.clone()),
        TokenType::AccessToken,
    );
    p.audience = Some(API_AUD.into());
    p.scopes = vec!["orders:read".into()];
    let out = client.token_exchange(&p).await?;
    assert_eq!(out.scope.as_deref(), Some("orders:read"), "downscoped");
    let (_, claims) = verify_jwt(&out.access_token, &jwks)?;
    assert_eq!(claims["sub"], "repo:acme/app:ref:refs/heads/main");
    assert_eq!(claims["scope"], "orders:read");

    // Delegation: the actor lands in `act`.
    let actor = job_token(
        &idp,
        json!({"sub": "repo:acme/deployer:ref:refs/heads/main", "repository": "acme/deployer"}),
    )
    .await?;
    let mut p = TokenExchangeParams::new(SecretString::new(proof.clone()), TokenType::Jwt);
    p.audience = Some(API_AUD.into());
    p.actor_token = Some(SecretString::new(actor));
    p.actor_token_type = Some(TokenType::Jwt);
    let out = client.token_exchange(&p).await?;
    let (_, claims) = verify_jwt(&out.access_token, &jwks)?;
    assert_eq!(
        claims["act"]["sub"], "repo:acme/deployer:ref:refs/heads/main",
        "{claims}"
    );
    assert_eq!(claims["act"]["iss"], idp.issuer());

    // Refusals, each with its RFC 6749/8693 error code.
    let api = server.api();
    let form =
        |subject: &str, subject_type: &str, audience: &str, extra: &[(&'static str, String)]| {
            let mut f = vec![
                ("grant_type", GRANT_TOKEN_EXCHANGE.to_string()),
                ("subject_token", subject.to_string()),
                ("subject_token_type", subject_type.to_string()),
                ("audience", audience.to_string()),
            ];
            f.extend(extra.iter().cloned());
            f
        };
    let post = |f: Form| async move {
        let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        api.post_form("/oauth/token", &pairs).await
    };
    let denied_repo = job_token(
        &idp,
        json!({"repository": "acme/other", "sub": "repo:acme/other:ref:refs/heads/main"}),
    )
    .await?;
    let cases: Vec<(&str, Form, u16, &str)> = vec![
        (
            "scope wider than the role",
            form(
                &proof,
                JWT,
                API_AUD,
                &[("scope", "orders:read orders:admin".into())],
            ),
            400,
            "invalid_scope",
        ),
        (
            "audience no role serves",
            form(&proof, JWT, "https://nobody.example.test", &[]),
            400,
            "invalid_target",
        ),
        (
            "wrong grant_type",
            vec![
                ("grant_type", "client_credentials".into()),
                ("subject_token", proof.clone()),
                ("subject_token_type", JWT.into()),
                ("audience", API_AUD.into()),
            ],
            400,
            "unsupported_grant_type",
        ),
        (
            "garbage subject token",
            form("not-a-jwt", JWT, API_AUD, &[]),
            400,
            "invalid_grant",
        ),
        (
            "session token sent as a jwt",
            form(&session.token, JWT, API_AUD, &[]),
            400,
            "invalid_request",
        ),
        (
            "policy denies the repository",
            form(&denied_repo, JWT, API_AUD, &[]),
            400,
            "unauthorized_client",
        ),
        (
            "policy denies the role",
            form(&proof, JWT, "https://locked.example.test", &[]),
            400,
            "unauthorized_client",
        ),
    ];
    for (name, f, status, code) in cases {
        let r = post(f).await?;
        assert_eq!(
            (r.status, r.error_code()),
            (status, Some(code)),
            "{name}: {}",
            r.summary()
        );
        assert!(
            r.error_message().is_some_and(|m| !m.is_empty()),
            "{name}: error_description: {}",
            r.summary()
        );
        assert!(
            !r.text.contains(&proof),
            "{name}: the subject token is never echoed"
        );
    }

    let events = server.audit_events()?;
    let exchanges = events_of(&events, "token_exchange");
    assert!(
        exchanges
            .iter()
            .filter(|e| e["outcome"] == "success")
            .count()
            >= 3
    );
    assert!(
        exchanges.iter().any(|e| e["outcome"] == "denied"),
        "refusals are audited too"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_revokes_the_session_and_survives_a_restart() -> anyhow::Result<()> {
    let idp = Idp::start().await?;
    let mut server = server_for(&idp).await?;
    let (resp, client) = login(&server, &job_token(&idp, json!({})).await?).await?;
    client.whoami().await?;
    client.logout().await?;

    let expect_revoked = |e: ClientError| {
        let (status, code, _) = api_error(&e);
        assert_eq!((status, code), (401, "token_revoked"), "{e}");
    };
    expect_revoked(client.whoami().await.expect_err("revoked session"));
    expect_revoked(
        client
            .creds("demo-api", &CredsRequest::default())
            .await
            .expect_err("revoked session"),
    );

    // The denylist is persisted: a restarted server still refuses it.
    server.restart().await?;
    expect_revoked(
        client
            .whoami()
            .await
            .expect_err("revoked session after restart"),
    );
    // …while the restarted server works (same session key: a new login's
    // token verifies).
    let (again, fresh) = login(&server, &job_token(&idp, json!({})).await?).await?;
    assert_ne!(again.token_id, resp.token_id);
    assert_eq!(fresh.whoami().await?.token_id, again.token_id);

    let events = server.audit_events()?;
    assert!(events_of(&events, "session_revoked")
        .iter()
        .any(|e| e["token_id"] == resp.token_id.as_str()));
    let starts = events_of(&events, "server_start");
    assert!(
        starts.len() >= 2,
        "one per start, chain continues across restarts"
    );
    // The first start seeded policy version 1 from the directory (audited);
    // the restart found it in the store and seeded nothing.
    assert_eq!(
        starts[0]["detail"]["policy_seeded"]["version"], 1,
        "{starts:?}"
    );
    assert!(starts[1]["detail"]["policy_seeded"].is_null(), "{starts:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_list_revoke_admin_trace_and_reaper_expiry() -> anyhow::Result<()> {
    let idp = Idp::start().await?;
    let server = server_for(&idp).await?;
    let (_, alice) = login(&server, &job_token(&idp, json!({})).await?).await?;
    let first = alice.creds("demo-api", &CredsRequest::default()).await?;
    let second = alice.creds("demo-api", &CredsRequest::default()).await?;

    let list = alice.leases(&LeaseQuery::default()).await?;
    let ids: Vec<&str> = list.leases.iter().map(|l| l.id.as_str()).collect();
    assert!(
        ids.contains(&first.lease_id.as_str()) && ids.contains(&second.lease_id.as_str()),
        "{ids:?}"
    );
    assert!(list
        .leases
        .iter()
        .all(|l| l.state == "active" && l.role == "demo-api"));
    assert!(list
        .leases
        .iter()
        .all(|l| l.fingerprint.as_deref().is_some_and(|f| !f.is_empty())));
    let first_info = list.leases.iter().find(|l| l.id == first.lease_id);
    assert_eq!(
        first_info.and_then(|l| l.fingerprint.as_deref()),
        Some(first.fingerprint.as_str())
    );

    // Another identity sees only its own leases and cannot revoke others'.
    let (_, other) = login(
        &server,
        &job_token(
            &idp,
            json!({"ref": "refs/heads/dev", "sub": "repo:acme/app:ref:refs/heads/dev"}),
        )
        .await?,
    )
    .await?;
    assert!(other
        .leases(&LeaseQuery::default())
        .await?
        .leases
        .is_empty());
    let e = other
        .revoke_lease(&first.lease_id)
        .await
        .expect_err("not its lease");
    assert_eq!(api_error(&e).1, "unknown_lease", "{e}");
    let e = other
        .leases(&LeaseQuery {
            all: true,
            ..Default::default()
        })
        .await
        .expect_err("not an admin");
    let (status, code, _) = api_error(&e);
    assert_eq!((status, code), (403, "admin_required"), "{e}");

    let revoked = alice.revoke_lease(&first.lease_id).await?;
    assert_eq!(revoked.state, "revoked");
    let live = alice
        .leases(&LeaseQuery {
            live: true,
            ..Default::default()
        })
        .await?;
    let live_ids: Vec<&str> = live.leases.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(live_ids, vec![second.lease_id.as_str()], "live filter");
    // Revoking again is idempotent.
    assert_eq!(alice.revoke_lease(&first.lease_id).await?.state, "revoked");

    // The reaper expires a 2-second lease by itself.
    let short = alice.creds("short-lived", &CredsRequest::default()).await?;
    assert_eq!(short.ttl_seconds, 2);
    let state = poll_until(
        "the reaper to expire the short-lived lease",
        Duration::from_secs(20),
        || {
            let alice = alice.clone();
            let id = short.lease_id.clone();
            async move {
                let list = alice.leases(&LeaseQuery::default()).await.map_err(|e| {
                    idmint_testkit::TestkitError::Protocol {
                        peer: "idmint".into(),
                        message: e.to_string(),
                    }
                })?;
                let state = list
                    .leases
                    .iter()
                    .find(|l| l.id == id)
                    .map(|l| l.state.clone());
                Ok(state.filter(|s| s != "active" && s != "pending"))
            }
        },
    )
    .await?;
    assert_eq!(state, "revoked");

    let events = server.audit_events()?;
    assert!(
        events_of(&events, "lease_revoked")
            .iter()
            .any(|e| e["lease_id"] == first.lease_id.as_str()),
        "lease_revoked audited"
    );
    assert!(
        events_of(&events, "lease_expired")
            .iter()
            .any(|e| e["lease_id"] == short.lease_id.as_str()),
        "lease_expired audited by the reaper"
    );

    // The admin sees everyone's leases and can trace a lease through the log.
    let admin_token = job_token(&idp, json!({"actor": fixtures::ADMIN_ACTOR})).await?;
    let (_, admin) = login(&server, &admin_token).await?;
    let all = admin
        .leases(&LeaseQuery {
            all: true,
            ..Default::default()
        })
        .await?;
    assert!(all.leases.len() >= 3, "{:?}", all.leases);
    let trace = admin.trace(&first.lease_id).await?;
    let kinds: Vec<&str> = trace
        .events
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert!(
        kinds.contains(&"credential_issued") && kinds.contains(&"lease_revoked"),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"login"),
        "the trace reaches back to the login: {kinds:?}"
    );
    let no_admin = alice
        .trace(&first.lease_id)
        .await
        .expect_err("trace needs admin");
    assert_eq!(api_error(&no_admin).0, 403);
    Ok(())
}
