//! Every directory under `examples/` is part of the contract: copied to a
//! temp dir with only deployment specifics swapped (paths, TLS → loopback
//! plain HTTP, the issuer → the real test IdP), it must pass
//! `idmint server --check-config`, start, and issue its role to a token
//! whose claims satisfy the example's policy — and refuse one that does not.

use crate::common;

use common::{bin, login};
use idmint_client::proto::CredsRequest;
use idmint_client::ClientError;
use idmint_testkit::toml::{Table, Value};
use idmint_testkit::{free_port, workspace_root, Cli, IdmintServer, Idp};
use serde_json::json;
use std::path::{Path, PathBuf};

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

fn table_mut<'a>(t: &'a mut Table, key: &str) -> &'a mut Table {
    let v = t
        .entry(key.to_string())
        .or_insert_with(|| Value::Table(Table::new()));
    if !v.is_table() {
        *v = Value::Table(Table::new());
    }
    match v {
        Value::Table(t) => t,
        _ => unreachable!("just made it a table"),
    }
}

fn path_value(p: &Path) -> Value {
    Value::String(p.display().to_string())
}

/// A copy of `examples/<name>` rewritten to run here against `idp`.
struct Prepared {
    dir: tempfile::TempDir,
    config: PathBuf,
    port: u16,
    audit: PathBuf,
    env: Vec<(String, String)>,
}

fn prepare(name: &str, idp: &Idp) -> anyhow::Result<Prepared> {
    let source = workspace_root().join("examples").join(name);
    let dir = tempfile::tempdir()?;
    copy_dir(&source, dir.path())?;
    let config = dir.path().join("idmint.toml");
    let mut cfg: Table = idmint_testkit::toml::from_str(&std::fs::read_to_string(&config)?)?;
    let port = free_port()?;

    let server = table_mut(&mut cfg, "server");
    server.remove("tls");
    server.insert("listen".into(), Value::String(format!("127.0.0.1:{port}")));
    server.insert(
        "public_url".into(),
        Value::String(format!("http://127.0.0.1:{port}")),
    );
    server.insert("insecure_http".into(), Value::Boolean(true));

    let storage = table_mut(&mut cfg, "storage");
    table_mut(storage, "sqlite").insert("path".into(), path_value(&dir.path().join("idmint.db")));

    let mut env = Vec::new();
    let seal = table_mut(&mut cfg, "seal");
    if let Some(var) = seal.get("key_env").and_then(Value::as_str) {
        // The example reads the root key from the environment: give it one.
        env.push((var.to_string(), idmint_testkit::keys::random_hex(32)?));
    } else {
        let key = dir.path().join("root.key");
        idmint_testkit::server::write_root_key(&key)?;
        seal.insert("key_file".into(), path_value(&key));
    }

    let audit = dir.path().join("audit.jsonl");
    table_mut(table_mut(&mut cfg, "audit"), "file").insert("path".into(), path_value(&audit));

    let auth = table_mut(&mut cfg, "auth");
    let oidc = auth
        .get_mut("oidc")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| anyhow::anyhow!("examples/{name}: no [[auth.oidc]]"))?;
    for entry in oidc.iter_mut() {
        let t = entry
            .as_table_mut()
            .ok_or_else(|| anyhow::anyhow!("[[auth.oidc]] is not a table"))?;
        t.insert("issuer".into(), Value::String(idp.issuer().to_string()));
        if t.contains_key("jwks_url") {
            t.insert(
                "jwks_url".into(),
                Value::String(format!("{}/jwks", idp.issuer())),
            );
        }
        t.insert("allow_insecure_http".into(), Value::Boolean(true));
    }
    std::fs::write(&config, idmint_testkit::toml::to_string(&cfg)?)?;
    Ok(Prepared {
        dir,
        config,
        port,
        audit,
        env,
    })
}

/// `--check-config` passes, then the server starts.
async fn check_and_start(name: &str, idp: &Idp) -> anyhow::Result<IdmintServer> {
    let p = prepare(name, idp)?;
    let mut cli = Cli::new(bin())?;
    for (k, v) in &p.env {
        cli.set_env(k, v);
    }
    let check = cli
        .run(&[
            "server",
            "--config",
            &p.config.display().to_string(),
            "--check-config",
        ])
        .await?;
    assert!(
        check.success(),
        "examples/{name} --check-config:\n{}",
        check.summary()
    );
    assert!(
        check.stdout.contains("configuration OK"),
        "{}",
        check.summary()
    );
    Ok(IdmintServer::start_with_config(bin(), p.dir, p.config, p.port, p.audit, p.env).await?)
}

async fn creds_status(
    server: &IdmintServer,
    token: &str,
    role: &str,
    scopes: Option<Vec<&str>>,
) -> anyhow::Result<u16> {
    let (_, client) = login(server, token).await?;
    let req = CredsRequest {
        scopes: scopes.map(|s| s.into_iter().map(str::to_string).collect()),
        ..Default::default()
    };
    match client.creds(role, &req).await {
        Ok(c) => {
            assert_eq!(c.role, role);
            Ok(200)
        }
        Err(ClientError::Api { status, code, .. }) => {
            assert!(status != 403 || code == "policy_denied", "{code}");
            Ok(status)
        }
        Err(e) => Err(e.into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_github_actions() -> anyhow::Result<()> {
    let idp = Idp::start().await?;
    let server = check_and_start("github-actions", &idp).await?;
    let release = Idp::github_claims(&json!({}));
    let token = idp.github_token("idmint", &release).await?;
    assert_eq!(
        creds_status(&server, &token, "deploy-api", None).await?,
        200,
        "release job on main, production"
    );
    let token = idp.github_token("idmint", &release).await?;
    assert_eq!(
        creds_status(&server, &token, "artifacts-read", None).await?,
        200,
        "any acme repository"
    );

    let staging = Idp::github_claims(&json!({"environment": "staging"}));
    let token = idp.github_token("idmint", &staging).await?;
    assert_eq!(
        creds_status(&server, &token, "deploy-api", None).await?,
        403,
        "not production"
    );
    let pr = Idp::github_claims(&json!({"event_name": "pull_request"}));
    let token = idp.github_token("idmint", &pr).await?;
    assert_eq!(
        creds_status(&server, &token, "artifacts-read", None).await?,
        403,
        "forbid pull requests"
    );

    // The example requires `environment` and refuses replays.
    let no_env = idmint_testkit::idp::without(Idp::github_claims(&json!({})), &["environment"]);
    let token = idp.github_token("idmint", &no_env).await?;
    let r = server.api().login(&token).await?;
    assert_eq!(
        (r.status, r.error_code()),
        (401, Some("invalid_token")),
        "{}",
        r.summary()
    );
    let token = idp.github_token("idmint", &release).await?;
    assert_eq!(server.api().login(&token).await?.status, 200);
    let r = server.api().login(&token).await?;
    assert_eq!(
        (r.status, r.error_code()),
        (401, Some("replayed_token")),
        "{}",
        r.summary()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_gitlab_ci() -> anyhow::Result<()> {
    let idp = Idp::start().await?;
    let server = check_and_start("gitlab-ci", &idp).await?;
    let job = |overrides: serde_json::Value| {
        let mut c = json!({
            "project_path": "platform/app",
            "namespace_path": "platform",
            "ref": "v1.2.3",
            "ref_type": "tag",
            "pipeline_source": "push",
            "pipeline_id": "991",
            "user_login": "dev1",
        });
        idmint_testkit::idp::merge(&mut c, &overrides);
        c
    };
    let token = idp.gitlab_style_token("idmint", &job(json!({}))).await?;
    assert_eq!(
        creds_status(&server, &token, "registry-push", None).await?,
        200,
        "protected tag"
    );
    let token = idp
        .gitlab_style_token("idmint", &job(json!({"ref": "main", "ref_type": "branch"})))
        .await?;
    assert_eq!(
        creds_status(&server, &token, "registry-push", None).await?,
        200,
        "main branch"
    );
    let token = idp
        .gitlab_style_token(
            "idmint",
            &job(json!({"pipeline_source": "merge_request_event"})),
        )
        .await?;
    assert_eq!(
        creds_status(&server, &token, "registry-push", None).await?,
        403,
        "forbid MR pipelines"
    );
    let token = idp
        .gitlab_style_token(
            "idmint",
            &job(json!({"ref": "feature", "ref_type": "branch"})),
        )
        .await?;
    assert_eq!(
        creds_status(&server, &token, "registry-push", None).await?,
        403,
        "feature branch"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_kubernetes() -> anyhow::Result<()> {
    let idp = Idp::start().await?;
    let server = check_and_start("kubernetes", &idp).await?;
    let pod = |namespace: &str, sa: &str| {
        json!({
            "sub": format!("system:serviceaccount:{namespace}:{sa}"),
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": sa, "uid": "5f7e0a4c-0000-4000-8000-000000000001"},
                "pod": {"name": format!("{sa}-7d9f"), "uid": "5f7e0a4c-0000-4000-8000-000000000002"},
            },
        })
    };
    let token = idp
        .gitlab_style_token("idmint", &pod("shop", "checkout"))
        .await?;
    let (resp, client) = login(&server, &token).await?;
    assert_eq!(resp.identity.kind, "workload");
    let me = client.whoami().await?;
    assert_eq!(
        (
            me.identity.attributes["namespace"].as_str(),
            me.identity.attributes["service_account"].as_str()
        ),
        (Some("shop"), Some("checkout"))
    );
    assert_eq!(
        client
            .creds("orders-api", &CredsRequest::default())
            .await?
            .role,
        "orders-api"
    );

    let token = idp
        .gitlab_style_token("idmint", &pod("shop", "reporting"))
        .await?;
    assert_eq!(
        creds_status(&server, &token, "orders-api", Some(vec!["orders:read"])).await?,
        200,
        "reporting reads"
    );
    let token = idp
        .gitlab_style_token("idmint", &pod("shop", "reporting"))
        .await?;
    assert_eq!(
        creds_status(&server, &token, "orders-api", None).await?,
        403,
        "reporting may not write"
    );
    let token = idp
        .gitlab_style_token("idmint", &pod("other", "checkout"))
        .await?;
    assert_eq!(
        creds_status(&server, &token, "orders-api", None).await?,
        403,
        "other namespace"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_generic_oidc() -> anyhow::Result<()> {
    let idp = Idp::start().await?;
    let server = check_and_start("generic-oidc", &idp).await?;
    let token = idp
        .gitlab_style_token("idmint", &json!({"client_id": "etl"}))
        .await?;
    assert_eq!(
        creds_status(&server, &token, "reporting-read", None).await?,
        200,
        "etl reads reports"
    );
    let token = idp
        .gitlab_style_token("idmint", &json!({"client_id": "intruder"}))
        .await?;
    assert_eq!(
        creds_status(&server, &token, "reporting-read", None).await?,
        403,
        "unknown client"
    );
    Ok(())
}

#[test]
fn every_example_directory_is_tested() -> anyhow::Result<()> {
    let mut found: Vec<String> = std::fs::read_dir(workspace_root().join("examples"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(
        found,
        ["generic-oidc", "github-actions", "gitlab-ci", "kubernetes"],
        "add a test for each new example"
    );
    Ok(())
}
