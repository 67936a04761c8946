//! `idmint audit trace` against audit logs written by a real server: from
//! an SSH certificate serial (certificate-mode sign), a Redis user name
//! (the Redis issuer against a real Redis), the lease id and the session an AWS role session name (the AWS issuer against moto) back to
//! the identity, the proof and the decision. Also
//! `audit verify --progress` on the same log.

use crate::aws_support;
use crate::common;
use crate::db_support;
use crate::ssh_support;

use common::bin;
use db_support::{db_user, login_app, oidc, toml_table, APP_SUBJECT, POLICY};
use idmint_client::proto::CredsRequest;
use idmint_testkit::audit::events_of;
use idmint_testkit::redis::RedisServer;
use idmint_testkit::{free_port, Cli, IdmintServer, ServerSpec, TestJwks};
use serde_json::Value;
use ssh_support::spec;

/// `idmint audit trace REFERENCE --file AUDIT -o json`, parsed.
async fn trace(server: &IdmintServer, reference: &str) -> anyhow::Result<Value> {
    let cli = Cli::new(bin())?;
    let file = server.audit_file().display().to_string();
    let out = cli
        .run(&["audit", "trace", reference, "--file", &file, "-o", "json"])
        .await?;
    anyhow::ensure!(out.success(), "trace {reference}: {}", out.summary());
    Ok(out.json()?)
}

/// The identity, proof and allow decision every traced chain must reach.
fn assert_reaches_identity(chain: &Value, what: &str) {
    let c = &chain["chain"];
    assert_eq!(c["identity"]["subject"], APP_SUBJECT, "{what}: {chain:#}");
    assert!(
        c["identity"]["proof_id"]
            .as_str()
            .is_some_and(|p| !p.is_empty()),
        "{what}: {chain:#}"
    );
    assert!(
        c["identity"]["session_token_id"].as_str().is_some(),
        "{what}: the login is part of the chain: {chain:#}"
    );
    assert_eq!(c["decision"]["allowed"], true, "{what}: {chain:#}");
    assert!(c["decision"]["bundle_version"].as_u64().is_some(), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_serial_and_session_token_trace_to_the_login() -> anyhow::Result<()> {
    let jwks = TestJwks::start().await?;
    let port = free_port()?;
    let hosts = vec![format!(
        "{{ name = \"web-1\", address = \"127.0.0.1\", port = {port}, labels = {{ env = \"prod\" }} }}"
    )];
    let server = IdmintServer::start(bin(), spec(&jwks, &hosts, "2s")?).await?;
    let app = login_app(&server, &jwks).await?;
    let key = idmint_testkit::SshKey::generate("user_key")?;
    let mut cli = Cli::new(bin())?;
    cli.set_env("IDMINT_TOKEN", &app.session);
    let url = server.base_url();
    let pub_path = key.public_key_path().display().to_string();
    let out = cli
        .run(&[
            "ssh",
            "sign",
            "ci-cert",
            "--public-key",
            &pub_path,
            "-o",
            "json",
            "--server",
            &url,
        ])
        .await?;
    assert!(out.success(), "{}", out.summary());
    let signed = out.json()?;
    let serial = signed["serial"].to_string();

    let chain = trace(&server, &serial).await?;
    assert_reaches_identity(&chain, "ssh serial");
    assert_eq!(
        chain["chain"]["credential"]["references"]["serial"].to_string(),
        serial
    );
    assert_eq!(chain["reference"], serial.as_str());

    // The session token id (from the login event) leads to the same chain.
    let events = server.audit_events()?;
    let session_id = events_of(&events, "login")
        .last()
        .and_then(|e| e["token_id"].as_str())
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no login event with a token id"))?;
    let by_session = trace(&server, &session_id).await?;
    assert_reaches_identity(&by_session, "session token id");
    let serials: Vec<String> = by_session["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["detail"].get("serial").map(Value::to_string))
        .collect();
    assert!(serials.contains(&serial), "{by_session:#}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_user_name_and_lease_trace_to_the_login() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let jwks = TestJwks::start().await?;
    let issuer = toml_table(&format!(
        "name = \"cache\"\nhost = \"127.0.0.1\"\nport = {}\nadmin_user = \"{}\"\nadmin_password_env = \"TRACE_REDIS_PW\"\nconnect_timeout = \"2s\"\n",
        redis.port(),
        redis.admin_user()
    ))?;
    let mut spec = ServerSpec::with_oidc(vec![oidc(&jwks)]).with_issuer("redis", issuer);
    spec.roles = "[[role]]\nname = \"cache/ro\"\nissuer = \"cache\"\nmax_ttl = \"10m\"\ndefault_ttl = \"1m\"\n[role.redis]\nkeys = [\"sess:*\"]\ncommands = [\"+@read\"]\n".into();
    spec.policies = vec![("db.cedar".to_string(), POLICY.to_string())];
    spec.env = vec![(
        "TRACE_REDIS_PW".to_string(),
        redis.admin_password().to_string(),
    )];
    let server = IdmintServer::start(bin(), spec).await?;
    let app = login_app(&server, &jwks).await?;
    let resp = app
        .client
        .creds("cache/ro", &CredsRequest::default())
        .await?;
    let user = db_user(&resp)?;

    let chain = trace(&server, &user.username).await?;
    assert_reaches_identity(&chain, "redis user name");
    let cred = &chain["chain"]["credential"];
    assert_eq!(
        cred["references"]["revocation"]["value"],
        user.username.as_str(),
        "{chain:#}"
    );
    let lease_id = cred["lease_id"].as_str().unwrap_or_default().to_string();
    assert!(lease_id.starts_with("lse_"), "{chain:#}");
    let by_lease = trace(&server, &lease_id).await?;
    assert_reaches_identity(&by_lease, "lease id");
    assert_eq!(
        by_lease["chain"]["credential"],
        chain["chain"]["credential"]
    );
    assert!(
        !std::fs::read_to_string(server.audit_file())?.contains(&user.password),
        "the password is never audited"
    );

    // verify --progress on a non-terminal stderr: plain progress lines,
    // stdout still only the report.
    let cli = Cli::new(bin())?;
    let file = server.audit_file().display().to_string();
    let out = cli
        .run(&["audit", "verify", &file, "--progress", "-o", "json"])
        .await?;
    assert!(out.success(), "{}", out.summary());
    assert!(out.stderr.contains("100%"), "{}", out.summary());
    assert_eq!(out.json()?["ok"], true);
    let quiet = cli.run(&["audit", "verify", &file]).await?;
    assert!(!quiet.stderr.contains("verifying"), "{}", quiet.summary());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_role_session_name_traces_to_the_login() -> anyhow::Result<()> {
    let env = aws_support::setup().await?;
    let app = login_app(&env.server, &env.jwks).await?;
    let resp = app
        .client
        .creds("aws/deploy", &CredsRequest::default())
        .await?;
    let (key, _, _) = aws_support::aws_key(&resp)?;
    let calls = env.tap.calls_of("AssumeRole");
    let session_name = calls
        .first()
        .map(|c| c.params["RoleSessionName"].as_str().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| anyhow::anyhow!("no AssumeRole call: {calls:?}"))?;
    let chain = trace(&env.server, &session_name).await?;
    assert_reaches_identity(&chain, "aws role session name");
    assert_eq!(
        chain["chain"]["credential"]["references"]["revocation"]["value"],
        session_name.as_str(),
        "{chain:#}"
    );
    let audit = std::fs::read_to_string(env.server.audit_file())?;
    assert!(
        !audit.contains(&key.secret_access_key),
        "the secret key is never audited"
    );
    Ok(())
}
