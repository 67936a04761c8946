//! A person's session length comes from policy: the `@session_ttl` of the
//! Cedar policies permitting `Action::"login"`, capped at 8 h; without one
//! the configured default (15 min) applies. Logins use real ID tokens of
//! the test kit's IdP with a 20 h lifetime, so the ID token's own expiry is
//! never what limits the session here.

use crate::common;

use common::bin;
use idmint_client::proto::LoginRequest;
use idmint_testkit::{unix_now, IdmintServer, Idp, IdpOptions, OidcSpec, ServerSpec};
use serde_json::json;

const SESSION_POLICY: &str = r#"
@id("people-login")
@session_ttl("12h")
permit (principal, action == Action::"login", resource == Server::"idmint")
when { principal.kind == "human" };

@id("oncall-login")
@session_ttl("30m")
permit (principal, action == Action::"login", resource == Server::"idmint")
when { principal.kind == "human" && principal.groups.contains("oncall") };

@id("no-contractor-sessions-from-policy")
forbid (principal, action == Action::"login", resource == Server::"idmint")
when { principal.groups.contains("contractor") };
"#;

/// Logs `sub` with `groups` in; returns `expires_at` and the Unix time
/// window the login happened in.
async fn session_expiry(
    idp: &Idp,
    server: &IdmintServer,
    sub: &str,
    groups: &[&str],
) -> anyhow::Result<(i64, i64, i64)> {
    let token = idp
        .github_token("idmint-cli", &json!({ "sub": sub, "groups": groups }))
        .await?;
    let before = unix_now();
    let resp = server
        .client()?
        .login(&LoginRequest {
            method: "oidc".into(),
            token,
            auth: Some("corp".into()),
            access_token: None,
        })
        .await?;
    let after = unix_now();
    anyhow::ensure!(resp.identity.kind == "human", "{:?}", resp.identity);
    Ok((resp.expires_at, before, after))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_length_comes_from_policy_and_is_capped() -> anyhow::Result<()> {
    let idp = Idp::start_with(IdpOptions {
        token_ttl: Some(20 * 3600),
        ..Default::default()
    })
    .await?;
    let mut spec = ServerSpec::with_oidc(vec![OidcSpec::new("corp", idp.issuer())
        .preset("human")
        .audiences(&["idmint-cli"])]);
    spec.policies
        .push(("sessions.cedar".into(), SESSION_POLICY.into()));
    let server = IdmintServer::start(bin(), spec).await?;

    // 12h asked by policy: capped at 8h.
    let (exp, before, after) = session_expiry(&idp, &server, "alice", &["staff"]).await?;
    let eight_h = 8 * 3600;
    assert!(
        exp >= before + eight_h && exp <= after + eight_h,
        "8h cap: expires_at {exp}, login at {before}..{after}"
    );
    // Two permitting policies: the shortest wins.
    let (exp, before, after) = session_expiry(&idp, &server, "olga", &["oncall"]).await?;
    assert!(
        exp >= before + 1800 && exp <= after + 1800,
        "30m from oncall-login: expires_at {exp}, login at {before}..{after}"
    );
    // No permitting policy (forbidden): the default 15 min of [session].
    let (exp, before, after) = session_expiry(&idp, &server, "carl", &["contractor"]).await?;
    assert!(
        exp >= before + 900 && exp <= after + 900,
        "15m default: expires_at {exp}, login at {before}..{after}"
    );
    // The audit log records each session's length.
    let ttls: Vec<u64> = server
        .audit_events()?
        .iter()
        .filter(|e| e["event"] == "login" && e["outcome"] == "success")
        .filter_map(|e| e["ttl_seconds"].as_u64())
        .collect();
    assert_eq!(ttls.len(), 3, "{ttls:?}");
    assert!(ttls[0] <= 8 * 3600 && ttls[0] > 8 * 3600 - 60, "{ttls:?}");
    Ok(())
}
