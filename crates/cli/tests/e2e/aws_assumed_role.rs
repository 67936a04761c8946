//! AWS `assumed_role` end to end: the real idmint server calls STS
//! `AssumeRole` on a real moto with authentication enforced (every call
//! signed by idmint's SigV4 and checked against IAM), and the minted keys
//! are used with the real AWS CLI.
//!
//! moto enforces identity and role policies but not session policies
//! (`moto/iam/access_control.py` only collects the role's policies), so the
//! session policy idmint sends is checked as recorded by the [`AwsTap`];
//! the allowed/denied pair below is the role's own policy at work. The
//! `iam_user` tests show a narrowed policy enforced end to end.

use crate::aws_support;
use crate::common;
use crate::db_support;

use aws_support::{aws_key, setup, DEPLOYER, DEPLOYER_B, EXTERNAL_ID, OTHER};
use db_support::{api_error, lease_suffix, login, login_app, APP_SUBJECT};
use idmint_client::proto::CredsRequest;
use idmint_client::LeaseQuery;
use idmint_testkit::{unix_now, Cli};
use serde_json::{json, Value};

fn req(scopes: Option<&[&str]>, ttl: Option<&str>, audience: Option<&str>) -> CredsRequest {
    CredsRequest {
        ttl: ttl.map(str::to_string),
        scopes: scopes.map(|s| s.iter().map(|x| x.to_string()).collect()),
        audience: audience.map(str::to_string),
        csr: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assumed_role_keys_work_with_the_real_aws_cli_and_carry_the_narrowed_request(
) -> anyhow::Result<()> {
    let env = setup().await?;
    let app = login_app(&env.server, &env.jwks).await?;
    let before = unix_now();
    let resp = app
        .client
        .creds("aws/deploy", &req(Some(&["s3"]), Some("5m"), None))
        .await?;
    let (key, mode, expiration) = aws_key(&resp)?;
    assert_eq!(mode, "assumed_role");
    assert!(
        key.access_key_id.starts_with("ASIA"),
        "{}",
        key.access_key_id
    );
    assert!(key.session_token.is_some());
    // The lease (and what the caller is told) ends at the granted 5
    // minutes, although AWS's shortest session is 15.
    assert!(
        (before + 295..=before + 305).contains(&resp.expires_at),
        "{}",
        resp.expires_at
    );
    assert_eq!(expiration, idmint_core::UnixTime(resp.expires_at).rfc3339());

    let calls = env.tap.calls_of("AssumeRole");
    assert_eq!(calls.len(), 1, "{calls:?}");
    let p = &calls[0].params;
    assert_eq!(p["RoleArn"], DEPLOYER, "the first ARN is the default");
    assert_eq!(p["DurationSeconds"], "900");
    assert_eq!(p["ExternalId"], EXTERNAL_ID);
    assert_eq!(p["SourceIdentity"], "repo_acme_app_ref_refs_heads_main");
    let session = p["RoleSessionName"].clone();
    assert!(
        session.ends_with(&format!("-{}", lease_suffix(&resp.lease_id))),
        "{session}"
    );
    let policy: Value = serde_json::from_str(&p["Policy"])?;
    assert_eq!(
        policy["Statement"].as_array().map(Vec::len),
        Some(1),
        "only the picked policy: {policy}"
    );
    assert_eq!(
        policy["Statement"][0]["Action"],
        json!(["s3:*", "sts:GetCallerIdentity"])
    );
    let tags: Vec<(&str, &str)> = (1..=2)
        .map(|i| {
            (
                p[&format!("Tags.member.{i}.Key")].as_str(),
                p[&format!("Tags.member.{i}.Value")].as_str(),
            )
        })
        .collect();
    assert_eq!(tags, [("actor", "octocat"), ("repo", "acme/app")]);

    // The keys work with the real AWS CLI against enforcing moto.
    let who = env.moto.aws(&key, &["sts", "get-caller-identity"])?;
    assert!(who.success, "{who:?}");
    assert_eq!(
        who.json()?["Arn"],
        format!("arn:aws:sts::123456789012:assumed-role/deployer/{session}")
    );
    let bucket = env.moto.aws(
        &key,
        &["s3api", "create-bucket", "--bucket", "idmint-assumed"],
    )?;
    assert!(bucket.success, "{bucket:?}");
    let users = env.moto.aws(&key, &["iam", "list-users"])?;
    assert_eq!(
        users.error_code().as_deref(),
        Some("AccessDenied"),
        "{users:?}"
    );
    db_support::assert_not_logged(&env.server, &key.secret_access_key, "the secret access key")?;
    if let Some(token) = &key.session_token {
        db_support::assert_not_logged(&env.server, token, "the session token")?;
    }
    // A wrong session token is refused.
    let mut forged = key.clone();
    forged.session_token = Some("forged".into());
    let out = env.moto.aws(&forged, &["sts", "get-caller-identity"])?;
    assert_eq!(
        out.error_code().as_deref(),
        Some("InvalidClientTokenId"),
        "{out:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_env_output_and_exec_hand_the_keys_to_the_aws_cli() -> anyhow::Result<()> {
    let env = setup().await?;
    let app = login_app(&env.server, &env.jwks).await?;
    let mut cli = Cli::new(common::bin())?;
    cli.set_env("IDMINT_ADDR", &env.server.base_url())
        .set_env("IDMINT_TOKEN", &app.session);
    let aws_bin = idmint_testkit::moto::venv_bin();
    let path = format!(
        "{}:{}",
        aws_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    // -o shell: export lines a shell evaluates; the AWS CLI then works.
    let out = cli
        .run(&[
            "creds",
            "aws/deploy",
            "-o",
            "shell",
            "--role-arn",
            DEPLOYER_B,
        ])
        .await?;
    assert!(out.success(), "{}", out.summary());
    for name in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "IDMINT_LEASE_ID",
    ] {
        assert!(
            out.stdout.contains(&format!("export {name}='")),
            "{name}: {}",
            out.stdout
        );
    }
    let eval = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"eval "$1" && exec aws sts get-caller-identity --output json"#)
        .arg("sh")
        .arg(&out.stdout)
        .env("PATH", &path)
        .env("AWS_ENDPOINT_URL", env.moto.endpoint())
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .output()?;
    assert!(
        eval.status.success(),
        "{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    let who: Value = serde_json::from_slice(&eval.stdout)?;
    assert!(
        who["Arn"]
            .as_str()
            .unwrap_or_default()
            .contains(":assumed-role/deployer-b/"),
        "{who}"
    );

    // exec: the keys only in the child's environment; a stale profile in
    // the caller's environment must not shadow them.
    let out = cli
        .run_env(
            &[
                "exec",
                "aws/deploy",
                "--",
                "aws",
                "sts",
                "get-caller-identity",
                "--output",
                "json",
            ],
            &[
                ("PATH".into(), path.clone()),
                ("AWS_ENDPOINT_URL".into(), env.moto.endpoint().into()),
                ("AWS_CONFIG_FILE".into(), "/dev/null".into()),
                ("AWS_SHARED_CREDENTIALS_FILE".into(), "/dev/null".into()),
                ("AWS_PROFILE".into(), "does-not-exist".into()),
            ],
        )
        .await?;
    assert!(out.success(), "{}", out.summary());
    let who: Value = serde_json::from_str(&out.stdout)?;
    assert!(
        who["Arn"]
            .as_str()
            .unwrap_or_default()
            .contains(":assumed-role/deployer/"),
        "{who}"
    );
    assert!(!out.stdout.contains("AWS_SECRET_ACCESS_KEY"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_refused_before_aws_is_called() -> anyhow::Result<()> {
    let env = setup().await?;
    let app = login_app(&env.server, &env.jwks).await?;

    // The second listed ARN may be picked.
    let resp = app
        .client
        .creds("aws/deploy", &req(None, None, Some(DEPLOYER_B)))
        .await?;
    aws_key(&resp)?;
    assert_eq!(
        env.tap.calls_of("AssumeRole")[0].params["RoleArn"],
        DEPLOYER_B
    );
    // Both policies by default.
    let policy: Value = serde_json::from_str(&env.tap.calls_of("AssumeRole")[0].params["Policy"])?;
    assert_eq!(policy["Statement"].as_array().map(Vec::len), Some(2));

    // An ARN idmint's principal could assume, but the role does not list.
    let e = app
        .client
        .creds("aws/deploy", &req(None, None, Some(OTHER)))
        .await
        .unwrap_err();
    let (status, code, message) = api_error(&e);
    assert_eq!(
        (status, code.as_str()),
        (400, "invalid_target"),
        "{message}"
    );
    assert!(
        message.contains(OTHER) && message.contains(DEPLOYER),
        "{message}"
    );
    // Widening the session policy: a policy the role does not have.
    let e = app
        .client
        .creds("aws/deploy", &req(Some(&["s3", "admin"]), None, None))
        .await
        .unwrap_err();
    let (status, code, message) = api_error(&e);
    assert_eq!((status, code.as_str()), (400, "invalid_scope"), "{message}");
    // No policy at all would mean the role's full rights: refused.
    let e = app
        .client
        .creds("aws/deploy", &req(Some(&[]), None, None))
        .await
        .unwrap_err();
    let (status, _, message) = api_error(&e);
    assert!(
        status >= 400 && message.contains("picked no policy"),
        "{status} {message}"
    );
    assert_eq!(
        env.tap.calls_of("AssumeRole").len(),
        1,
        "no further AssumeRole call"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_claims_become_safe_session_tags_and_names() -> anyhow::Result<()> {
    let env = setup().await?;
    let hostile = "oct\"o'cat\n\0é🦀<x>;$(id)";
    let subject = format!("repo:acme/app:ref:refs/heads/{hostile}");
    let caller = login(&env.server, &env.jwks, &subject, &json!({"actor": hostile})).await?;
    let resp = caller
        .client
        .creds("aws/deploy", &req(Some(&["s3"]), None, None))
        .await?;
    let (key, _, _) = aws_key(&resp)?;
    let p = &env.tap.calls_of("AssumeRole")[0].params;
    assert_eq!(p["Tags.member.1.Key"], "actor");
    assert_eq!(p["Tags.member.1.Value"], "oct_o_cat_____x____id_");
    for v in [&p["SourceIdentity"], &p["RoleSessionName"]] {
        assert!(
            v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)),
            "{v}"
        );
        assert!(v.len() <= 64);
    }
    // AWS (moto) accepted the sanitised values and the keys work.
    let who = env.moto.aws(&key, &["sts", "get-caller-identity"])?;
    assert!(who.success, "{who:?}");

    // A claim the tag template names but the token lacks, or that is a
    // list: refused, AWS not called.
    let app = login_app(&env.server, &env.jwks).await?;
    let e = app
        .client
        .creds("aws/team", &req(None, None, None))
        .await
        .unwrap_err();
    let (_, _, message) = api_error(&e);
    assert!(message.contains("no claim \"team\""), "{message}");
    let listed = login(
        &env.server,
        &env.jwks,
        APP_SUBJECT,
        &json!({"team": ["a", "b"]}),
    )
    .await?;
    let e = listed
        .client
        .creds("aws/team", &req(None, None, None))
        .await
        .unwrap_err();
    let (_, _, message) = api_error(&e);
    assert!(message.contains("not a string"), "{message}");
    assert_eq!(env.tap.calls_of("AssumeRole").len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_down_is_a_clear_503_and_leaves_no_live_lease() -> anyhow::Result<()> {
    let env = setup().await?;
    let app = login_app(&env.server, &env.jwks).await?;
    // The endpoint idmint uses stops answering (connection refused).
    drop(env.tap);
    for role in ["aws/deploy", "aws/ci-user"] {
        let e = app
            .client
            .creds(role, &req(None, None, None))
            .await
            .unwrap_err();
        let (status, code, message) = api_error(&e);
        assert_eq!(
            (status, code.as_str()),
            (503, "target_unavailable"),
            "{role}: {message}"
        );
        assert!(
            message.contains("AWS") && message.contains("unavailable"),
            "{role}: {message}"
        );
    }
    let leases = app
        .client
        .leases(&LeaseQuery {
            live: true,
            ..Default::default()
        })
        .await?;
    let active: Vec<_> = leases
        .leases
        .iter()
        .filter(|l| l.state == "active")
        .collect();
    assert!(active.is_empty(), "{active:?}");
    Ok(())
}
