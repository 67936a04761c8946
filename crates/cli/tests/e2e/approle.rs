//! AppRole end to end against the real server: secret ids created by an
//! admin (CLI, native and Vault-shaped API), logins through the CLI, raw
//! HTTP and the real OpenBao CLI, and hostile input — a reused, an expired
//! and a wrong-network secret id, brute force (429 + audit), and no secret
//! id in the audit log or the server's logs.
//!
//! Needs `bao` (fails, saying to run `scripts/install-openbao.sh`, when it
//! is missing): `approle_secret_ids_logins_and_hostile_input`,
//! `vault_agent_auto_auth_with_approle` (OpenBao's agent). Raw HTTP
//! only: `brute_force_from_one_address_is_throttled_across_role_ids`.

use crate::common;
use crate::db_support;
use crate::vault_support;

use common::bin;
use db_support::{login_admin, login_app, oidc};
use idmint_testkit::audit::events_of;
use idmint_testkit::server::write_root_key;
use idmint_testkit::{free_port, poll_until, unix_now, Cli, IdmintServer, ServerSpec, TestJwks};
use serde_json::{json, Value};
use std::time::Duration;
use vault_support::{first_error, v1, Bao};

const BILLING_ROLE_ID: &str = "billing-role-id-8f3a2c1d";
const MULTI_ROLE_ID: &str = "multi-role-id-77aa99bb";
const SHORT_ROLE_ID: &str = "short-role-id-0a1b2c3d";
const FENCED_ROLE_ID: &str = "fenced-role-id-5e6f7a8b";
const GUARDED_ROLE_ID: &str = "guarded-role-id-9c9c9c9c";

/// The AppRoles under test, appended to the rendered `idmint.toml`.
fn approles() -> String {
    format!(
        r#"
[[auth.approle]]
name = "billing"
role_id = "{BILLING_ROLE_ID}"
token_ttl = "2m"
metadata = {{ team = "orders" }}

[[auth.approle]]
name = "multi"
role_id = "{MULTI_ROLE_ID}"
secret_id_num_uses = 2

[[auth.approle]]
name = "short"
role_id = "{SHORT_ROLE_ID}"
secret_id_ttl = "2s"
secret_id_num_uses = 0

[[auth.approle]]
name = "fenced"
role_id = "{FENCED_ROLE_ID}"
secret_id_bound_cidrs = ["10.0.0.0/8"]

[[auth.approle]]
name = "guarded"
role_id = "{GUARDED_ROLE_ID}"
login_burst = 3
login_refill = "1h"
"#
    )
}

/// Cedar sees AppRole identities: kind `approle`, `metadata` attributes.
const POLICY: &str = r#"
@id("billing-approle-gets-demo-api")
permit (principal, action == Action::"issue", resource == Role::"demo-api")
when { principal.kind == "approle" && principal has team && principal.team == "orders" };

@id("ops-admin")
permit (principal, action == Action::"admin", resource)
when { principal.subject == "repo:acme/ops:ref:refs/heads/main" };
"#;

async fn start(jwks: &TestJwks) -> anyhow::Result<IdmintServer> {
    let mut spec = ServerSpec::with_oidc(vec![oidc(jwks)]);
    spec.policies = vec![("approle.cedar".to_string(), POLICY.to_string())];
    let dir = tempfile::Builder::new()
        .prefix("idmint-approle-")
        .tempdir()?;
    write_root_key(&dir.path().join("root.key"))?;
    let port = free_port()?;
    let config = spec.write(dir.path(), port)?;
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str(&approles());
    std::fs::write(&config, text)?;
    let audit = dir.path().join("audit.jsonl");
    Ok(IdmintServer::start_with_config(bin(), dir, config, port, audit, vec![]).await?)
}

/// `POST /api/v1/auth/approle/login`: (status, body).
async fn native_login(base: &str, role_id: &str, secret_id: &str) -> anyhow::Result<(u16, Value)> {
    let resp = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/approle/login"))
        .json(&json!({ "role_id": role_id, "secret_id": secret_id }))
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await?))
}

/// A secret id for `name`, made by the admin through the native API.
async fn secret_id(base: &str, admin: &str, name: &str) -> anyhow::Result<Value> {
    let resp = reqwest::Client::new()
        .post(format!("{base}/api/v1/approle/{name}/secret-id"))
        .bearer_auth(admin)
        .json(&json!({}))
        .send()
        .await?;
    anyhow::ensure!(
        resp.status().is_success(),
        "secret-id: {}",
        resp.text().await?
    );
    Ok(resp.json().await?)
}

/// The `login_failed` reasons audited so far.
fn failure_codes(server: &IdmintServer) -> anyhow::Result<Vec<String>> {
    Ok(events_of(&server.audit_events()?, "login_failed")
        .iter()
        .filter_map(|e| e["error"]["code"].as_str().map(str::to_string))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_secret_ids_logins_and_hostile_input() -> anyhow::Result<()> {
    vault_support::bao_path()?;
    let jwks = TestJwks::start().await?;
    let server = start(&jwks).await?;
    let base = server.base_url();
    let admin = login_admin(&server, &jwks).await?;
    let app = login_app(&server, &jwks).await?;
    let mut secrets: Vec<String> = vec![];

    // Only an admin creates secret ids.
    let mut cli = Cli::new(bin())?;
    cli.set_env("IDMINT_TOKEN", &app.session);
    let refused = cli
        .run(&["approle", "secret-id", "billing", "--server", &base])
        .await?;
    assert!(
        !refused.success() && refused.stderr.contains("admin"),
        "{}",
        refused.summary()
    );
    cli.set_env("IDMINT_TOKEN", &admin.session);
    let created = cli
        .run(&[
            "approle",
            "secret-id",
            "billing",
            "-o",
            "json",
            "--server",
            &base,
        ])
        .await?;
    assert!(created.success(), "{}", created.summary());
    let created = created.json()?;
    let sid = created["secret_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(sid.len(), 64);
    assert_eq!(created["secret_id_num_uses"], 1, "single-use by default");
    secrets.push(sid.clone());
    let unknown = cli
        .run(&["approle", "secret-id", "nope", "--server", &base])
        .await?;
    assert!(
        !unknown.success() && unknown.stderr.contains("no [[auth.approle]]"),
        "{}",
        unknown.summary()
    );

    // `idmint login --approle`: the session is an approle identity that
    // Cedar sees with its metadata.
    let sid_file = cli.home().join("secret-id");
    std::fs::write(&sid_file, format!("{sid}\n"))?;
    let mut app_cli = Cli::new(bin())?;
    let sid_path = sid_file.display().to_string();
    let login = app_cli
        .run(&[
            "login",
            "--approle",
            "billing",
            "--role-id",
            BILLING_ROLE_ID,
            "--secret-id-file",
            &sid_path,
            "-o",
            "json",
            "--server",
            &base,
        ])
        .await?;
    assert!(login.success(), "{}", login.summary());
    let session = login.json()?;
    assert_eq!(session["identity"]["kind"], "approle");
    assert_eq!(session["identity"]["subject"], "billing");
    let lifetime = session["expires_at"].as_i64().unwrap_or_default() - unix_now();
    assert!((100..=120).contains(&lifetime), "token_ttl 2m: {lifetime}");
    let creds = app_cli
        .run(&["creds", "demo-api", "-o", "json", "--server", &base])
        .await?;
    assert!(
        creds.success(),
        "policy permits team=orders approles: {}",
        creds.summary()
    );
    let denied = app_cli
        .run(&["creds", "short-lived", "--server", &base])
        .await?;
    assert!(!denied.success(), "{}", denied.summary());
    app_cli.set_env("IDMINT_TOKEN", "");

    // Reused: the single-use secret id is gone (native and Vault API).
    let (status, body) = native_login(&base, BILLING_ROLE_ID, &sid).await?;
    assert_eq!(status, 401, "{body}");
    let bao = Bao::new(&base)?;
    let again = bao.run(
        None,
        &[
            "write",
            "auth/approle/login",
            &format!("role_id={BILLING_ROLE_ID}"),
            &format!("secret_id={sid}"),
        ],
    )?;
    assert_ne!(again.code, 0);
    assert!(
        again.stderr.contains("invalid role id or secret id"),
        "{}",
        again.summary()
    );
    // A wrong role id for a valid secret id of another AppRole fails too.
    let other = secret_id(&base, &admin.session, "billing").await?;
    let other_sid = other["secret_id"].as_str().unwrap_or_default().to_string();
    secrets.push(other_sid.clone());
    let (status, _) = native_login(&base, MULTI_ROLE_ID, &other_sid).await?;
    assert_eq!(status, 401);

    // Vault-shaped creation and a bao login with it.
    let made = v1(
        &base,
        "POST",
        "auth/approle/role/billing/secret-id",
        Some(&admin.session),
        None,
    )
    .await?;
    assert_eq!(made.status, 200, "{}", made.body);
    let vault_sid = made.body["data"]["secret_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    secrets.push(vault_sid.clone());
    let bao_login = bao.run(
        None,
        &[
            "write",
            "-format=json",
            "auth/approle/login",
            &format!("role_id={BILLING_ROLE_ID}"),
            &format!("secret_id={vault_sid}"),
        ],
    )?;
    assert_eq!(bao_login.code, 0, "{}", bao_login.summary());
    let token = bao_login.json()?["auth"]["client_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let look = bao.run(Some(&token), &["token", "lookup", "-format=json"])?;
    assert_eq!(look.code, 0, "{}", look.summary());
    let data = look.json()?["data"].clone();
    assert_eq!(data["path"], "auth/approle/login");
    assert_eq!(data["meta"]["kind"], "approle");
    assert_eq!(data["meta"]["subject"], "billing");
    let non_admin = v1(
        &base,
        "POST",
        "auth/approle/role/billing/secret-id",
        Some(&token),
        None,
    )
    .await?;
    assert_eq!(non_admin.status, 403, "{}", non_admin.body);

    // secret_id_num_uses = 2: two logins, then refused.
    let multi = secret_id(&base, &admin.session, "multi").await?;
    let multi_sid = multi["secret_id"].as_str().unwrap_or_default().to_string();
    secrets.push(multi_sid.clone());
    assert_eq!(native_login(&base, MULTI_ROLE_ID, &multi_sid).await?.0, 200);
    assert_eq!(native_login(&base, MULTI_ROLE_ID, &multi_sid).await?.0, 200);
    assert_eq!(native_login(&base, MULTI_ROLE_ID, &multi_sid).await?.0, 401);

    // Wrong network: bound to 10.0.0.0/8, used from 127.0.0.1.
    let fenced = secret_id(&base, &admin.session, "fenced").await?;
    assert_eq!(fenced["bound_cidrs"], json!(["10.0.0.0/8"]));
    let fenced_sid = fenced["secret_id"].as_str().unwrap_or_default().to_string();
    secrets.push(fenced_sid.clone());
    let (status, body) = native_login(&base, FENCED_ROLE_ID, &fenced_sid).await?;
    assert_eq!(status, 401, "{body}");
    assert!(failure_codes(&server)?.contains(&"source_not_allowed".to_string()));

    // Expired: secret_id_ttl = 2s (unlimited uses, so a login before
    // expiry does not consume it).
    let short = secret_id(&base, &admin.session, "short").await?;
    let short_sid = short["secret_id"].as_str().unwrap_or_default().to_string();
    secrets.push(short_sid.clone());
    let expires_at = short["expires_at"].as_i64().unwrap_or_default();
    assert_eq!(native_login(&base, SHORT_ROLE_ID, &short_sid).await?.0, 200);
    poll_until(
        "the secret id's expiry",
        Duration::from_secs(10),
        || async { Ok((unix_now() > expires_at).then_some(())) },
    )
    .await?;
    let (status, body) = native_login(&base, SHORT_ROLE_ID, &short_sid).await?;
    assert_eq!(status, 401, "{body}");
    assert!(failure_codes(&server)?.contains(&"secret_id_expired".to_string()));
    // The caller learns nothing about why.
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("invalid role id or secret id"));

    // Brute force against one role id: login_burst = 3, then 429 even for
    // the right secret id; audited as rate_limited.
    let guarded = secret_id(&base, &admin.session, "guarded").await?;
    let guarded_sid = guarded["secret_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    secrets.push(guarded_sid.clone());
    let mut statuses = vec![];
    for i in 0..4 {
        statuses.push(
            native_login(&base, GUARDED_ROLE_ID, &format!("{i:064x}"))
                .await?
                .0,
        );
    }
    assert_eq!(statuses, vec![401, 401, 401, 429]);
    let (status, _) = native_login(&base, GUARDED_ROLE_ID, &guarded_sid).await?;
    assert_eq!(
        status, 429,
        "throttled role ids are refused before the secret id is checked"
    );
    let vault_429 = v1(
        &base,
        "PUT",
        "auth/approle/login",
        None,
        Some(&json!({"role_id": GUARDED_ROLE_ID, "secret_id": guarded_sid})),
    )
    .await?;
    assert_eq!(vault_429.status, 429, "{}", vault_429.body);
    assert!(
        first_error(&vault_429.body).contains("too many"),
        "{}",
        vault_429.body
    );
    let codes = failure_codes(&server)?;
    assert!(
        codes.iter().filter(|c| *c == "rate_limited").count() >= 3,
        "{codes:?}"
    );

    // No secret id anywhere in the audit log or the server's output; the
    // audit log has their accessors instead.
    let audit = std::fs::read_to_string(server.audit_file())?;
    let logs = server.log_tail(100_000);
    for s in &secrets {
        assert!(
            !audit.contains(s.as_str()),
            "a secret id reached the audit log"
        );
        assert!(
            !logs.contains(s.as_str()),
            "a secret id reached the server log"
        );
    }
    assert!(audit.contains(created["secret_id_accessor"].as_str().unwrap_or("missing")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_from_one_address_is_throttled_across_role_ids() -> anyhow::Result<()> {
    let jwks = TestJwks::start().await?;
    let server = start(&jwks).await?;
    let base = server.base_url();
    let mut first_429 = None;
    for i in 0..30 {
        let (status, _) = native_login(&base, &format!("guess-role-id-{i:08}"), "x").await?;
        if status == 429 {
            first_429 = Some(i);
            break;
        }
        assert_eq!(status, 401);
    }
    assert_eq!(first_429, Some(20), "per-address burst is 20 failed logins");
    let events = server.audit_events()?;
    let failed = events_of(&events, "login_failed");
    assert_eq!(failed.len(), 21);
    assert!(failed.iter().all(|e| e["source_ip"] == "127.0.0.1"));
    assert_eq!(
        failed
            .iter()
            .filter(|e| e["error"]["code"] == "unknown_role_id")
            .count(),
        20
    );
    Ok(())
}

/// Kills the agent this test started when the test ends, pass or fail.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_agent_auto_auth_with_approle() -> anyhow::Result<()> {
    let bao = vault_support::bao_path()?;
    let jwks = TestJwks::start().await?;
    let server = start(&jwks).await?;
    let base = server.base_url();
    let admin = login_admin(&server, &jwks).await?;
    let made = secret_id(&base, &admin.session, "billing").await?;
    let dir = tempfile::tempdir()?;
    let role_id_file = dir.path().join("role-id");
    let secret_id_file = dir.path().join("secret-id");
    let sink = dir.path().join("token");
    std::fs::write(&role_id_file, BILLING_ROLE_ID)?;
    std::fs::write(
        &secret_id_file,
        made["secret_id"].as_str().unwrap_or_default(),
    )?;
    let config = dir.path().join("agent.hcl");
    std::fs::write(
        &config,
        format!(
            r#"
vault {{
  address = "{base}"
}}
auto_auth {{
  method "approle" {{
    config = {{
      role_id_file_path = "{}"
      secret_id_file_path = "{}"
      remove_secret_id_file_after_reading = false
    }}
  }}
  sink "file" {{
    config = {{
      path = "{}"
    }}
  }}
}}
"#,
            role_id_file.display(),
            secret_id_file.display(),
            sink.display()
        ),
    )?;
    let log = std::fs::File::create(dir.path().join("agent.log"))?;
    let child = std::process::Command::new(&bao)
        .arg("agent")
        .arg(format!("-config={}", config.display()))
        .env("HOME", dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let _agent = ChildGuard(child);
    let token = poll_until(
        "the agent's token sink",
        Duration::from_secs(20),
        || async {
            Ok(std::fs::read_to_string(&sink)
                .ok()
                .filter(|t| t.starts_with("idm_v1.")))
        },
    )
    .await
    .map_err(|e| {
        let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();
        anyhow::anyhow!("{e}\nagent log:\n{log}")
    })?;
    let me = v1(
        &base,
        "GET",
        "auth/token/lookup-self",
        Some(token.trim()),
        None,
    )
    .await?;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["data"]["meta"]["subject"], "billing");
    assert_eq!(me.body["data"]["meta"]["kind"], "approle");
    Ok(())
}
