//! The Vault-compatible API (`/v1/`) driven by real Vault clients: the
//! OpenBao CLI (`bao`) and hvac (from `.venv-testbed`), against the real
//! `idmint` server, a real PostgreSQL for `database/creds`, moto for
//! `aws/creds` and `aws/sts`, and `ssh-keygen -L` for `ssh/sign`.
//!
//! Need `bao` (they FAIL, saying to run `scripts/install-openbao.sh`, when
//! it is missing): `bao_cli_jwt_login_token_ssh_sign_and_lease_revoke`,
//! `database_creds_with_bao_and_hvac_against_real_postgres` (also hvac),
//! `aws_creds_and_sts_with_bao_against_moto`. Raw HTTP only:
//! `vault_errors_have_vault_shape_and_status`.

use crate::aws_support;
use crate::common;
use crate::db_support;
use crate::ssh_support;
use crate::vault_support;

use common::bin;
use db_support::{oidc, token_for, toml_table, ADMIN_SUBJECT, APP_SUBJECT, AUTH_NAME, POLICY};
use idmint_testkit::audit::events_of;
use idmint_testkit::postgres::PgServer;
use idmint_testkit::{free_port, unix_now, IdmintServer, ServerSpec, TestJwks};
use serde_json::{json, Value};
use ssh_support::{principals_of, spec, ssh_keygen, ssh_keygen_l};
use std::process::Command;
use tokio_postgres::NoTls;
use vault_support::{first_error, v1, venv_python, Bao};

/// `bao write auth/jwt/login` as the `acme/app` job; returns the token.
fn bao_login(bao: &Bao, jwt: &str) -> anyhow::Result<(String, Value)> {
    let role = format!("role={AUTH_NAME}");
    let jwt_arg = format!("jwt={jwt}");
    let out = bao.run(
        None,
        &["write", "-format=json", "auth/jwt/login", &role, &jwt_arg],
    )?;
    assert_eq!(out.code, 0, "{}", out.summary());
    let v = out.json()?;
    let token = v["auth"]["client_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(token.starts_with("idm_"), "{v}");
    Ok((token, v))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bao_cli_jwt_login_token_ssh_sign_and_lease_revoke() -> anyhow::Result<()> {
    vault_support::bao_path()?;
    let jwks = TestJwks::start().await?;
    let port = free_port()?;
    let hosts = vec![format!(
        "{{ name = \"web-1\", address = \"127.0.0.1\", port = {port}, labels = {{ env = \"prod\" }} }}"
    )];
    let server = IdmintServer::start(bin(), spec(&jwks, &hosts, "2s")?).await?;
    let bao = Bao::new(&server.base_url())?;

    // bao status: idmint reads as an initialized, unsealed server
    let status = bao.run(None, &["status", "-format=json"])?;
    assert_eq!(status.code, 0, "{}", status.summary());
    assert_eq!(status.json()?["sealed"], false);

    // login: Vault's auth object around an idmint session token
    let jwt = token_for(&jwks, APP_SUBJECT, &json!({}))?;
    let (token, login) = bao_login(&bao, &jwt)?;
    let auth = &login["auth"];
    assert_eq!(auth["renewable"], false, "{login}");
    assert_eq!(auth["metadata"]["subject"], APP_SUBJECT);
    assert_eq!(auth["metadata"]["role"], AUTH_NAME);
    let ttl = auth["lease_duration"].as_u64().unwrap_or_default();
    assert!((1..=300).contains(&ttl), "machine sessions last 5m: {ttl}");
    let accessor = auth["accessor"].as_str().unwrap_or_default().to_string();
    assert!(!accessor.is_empty());
    // `-field=token` prints just the token, for BAO_TOKEN=$(…)
    let jwt_b = token_for(&jwks, APP_SUBJECT, &json!({}))?;
    let field = bao.run(
        None,
        &[
            "write",
            "-field=token",
            "auth/jwt/login",
            &format!("role={AUTH_NAME}"),
            &format!("jwt={jwt_b}"),
        ],
    )?;
    assert_eq!(field.code, 0, "{}", field.summary());
    assert!(
        field.stdout.trim().starts_with("idm_v1."),
        "{}",
        field.summary()
    );
    // an unknown jwt role is refused with Vault's message
    let bad = bao.run(
        None,
        &[
            "write",
            "auth/jwt/login",
            "role=nope",
            &format!("jwt={jwt}"),
        ],
    )?;
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr.contains("role \"nope\" could not be found"),
        "{}",
        bad.summary()
    );

    // token lookup
    let look = bao.run(Some(&token), &["token", "lookup", "-format=json"])?;
    assert_eq!(look.code, 0, "{}", look.summary());
    let data = look.json()?["data"].clone();
    assert_eq!(data["accessor"], accessor.as_str());
    assert_eq!(data["meta"]["subject"], APP_SUBJECT);
    assert_eq!(data["path"], "auth/jwt/login");
    assert_eq!(data["renewable"], false);
    assert!(data["ttl"].as_u64().unwrap_or_default() <= ttl);

    // ssh/sign against the certificate-mode role, read back by ssh-keygen
    let dir = tempfile::tempdir()?;
    let (key, _) = ssh_keygen(dir.path(), "user_key")?;
    let pub_arg = format!("public_key=@{}", key.with_extension("pub").display());
    let signed = bao.run(
        Some(&token),
        &[
            "write",
            "-format=json",
            "ssh/sign/ci-cert",
            &pub_arg,
            "valid_principals=deployer",
            "ttl=120",
        ],
    )?;
    assert_eq!(signed.code, 0, "{}", signed.summary());
    let signed = signed.json()?;
    let cert = signed["data"]["signed_key"]
        .as_str()
        .unwrap_or_default()
        .trim()
        .to_string();
    let listing = ssh_keygen_l(dir.path(), &cert)?;
    assert_eq!(principals_of(&listing), vec!["deployer"], "{listing}");
    let serial_hex = signed["data"]["serial_number"].as_str().unwrap_or_default();
    let serial = u64::from_str_radix(serial_hex, 16)?;
    assert!(
        listing.contains(&format!("Serial: {serial}")),
        "{listing}\n{signed}"
    );
    let lease_duration = signed["lease_duration"].as_u64().unwrap_or_default();
    assert!((100..=121).contains(&lease_duration), "ttl=120: {signed}");
    // a principal outside the role is refused, Vault-style
    let other = bao.run(
        Some(&token),
        &[
            "write",
            "ssh/sign/ci-cert",
            &pub_arg,
            "valid_principals=root",
        ],
    )?;
    assert_ne!(other.code, 0);
    assert!(
        other
            .stderr
            .contains("root is not a valid value for valid_principals"),
        "{}",
        other.summary()
    );
    // a role that is not certificate-mode
    let jit = bao.run(Some(&token), &["write", "ssh/sign/web-deploy", &pub_arg])?;
    assert_ne!(jit.code, 0);
    assert!(
        jit.stderr.contains("not a certificate-mode"),
        "{}",
        jit.summary()
    );

    // lease lookup and revoke through sys/leases
    let lease_id = signed["lease_id"].as_str().unwrap_or_default().to_string();
    assert!(lease_id.starts_with("ssh/sign/ci-cert/lse_"), "{signed}");
    let lookup = bao.run(
        Some(&token),
        &["lease", "lookup", "-format=json", &lease_id],
    )?;
    assert_eq!(lookup.code, 0, "{}", lookup.summary());
    assert_eq!(lookup.json()?["data"]["state"], "active");
    let revoke = bao.run(Some(&token), &["lease", "revoke", &lease_id])?;
    assert_eq!(revoke.code, 0, "{}", revoke.summary());
    let lookup = bao.run(
        Some(&token),
        &["lease", "lookup", "-format=json", &lease_id],
    )?;
    assert_eq!(
        lookup.json()?["data"]["state"],
        "revoked",
        "{}",
        lookup.summary()
    );

    // renew-self is refused: sessions are not renewable
    let renew = bao.run(Some(&token), &["token", "renew"])?;
    assert_ne!(renew.code, 0);
    assert!(
        renew.stderr.contains("not renewable"),
        "{}",
        renew.summary()
    );

    // revoke-self: the token stops working at once
    let rev = bao.run(Some(&token), &["token", "revoke", "-self"])?;
    assert_eq!(rev.code, 0, "{}", rev.summary());
    let after = bao.run(Some(&token), &["token", "lookup"])?;
    assert_ne!(after.code, 0);
    assert!(
        after.stderr.contains("permission denied"),
        "{}",
        after.summary()
    );

    // every /v1/ request is audited with api = vault, linked by request id
    let events = server.audit_events()?;
    let vault_events = events_of(&events, "vault_request");
    for path in [
        "/v1/auth/jwt/login",
        "/v1/auth/token/lookup-self",
        "/v1/ssh/sign/{*role}",
        "/v1/sys/leases/revoke/{*lease_id}",
        "/v1/auth/token/revoke-self",
    ] {
        assert!(
            vault_events
                .iter()
                .any(|e| e["detail"]["path"] == path && e["detail"]["api"] == "vault"),
            "no vault_request for {path} in {:?}",
            vault_events
                .iter()
                .map(|e| e["action"].clone())
                .collect::<Vec<_>>()
        );
    }
    let issued = events_of(&events, "ssh_certificate_issued");
    let ok = issued.iter().find(|e| e["outcome"] == "success").cloned();
    let Some(ok) = ok else {
        anyhow::bail!("no ssh_certificate_issued event")
    };
    assert!(vault_events
        .iter()
        .any(|e| e["request_id"] == ok["request_id"]
            && e["detail"]["path"] == "/v1/ssh/sign/{*role}"));
    // the token never reaches the audit log
    let raw = std::fs::read_to_string(server.audit_file())?;
    assert!(!raw.contains(&token));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_errors_have_vault_shape_and_status() -> anyhow::Result<()> {
    let jwks = TestJwks::start().await?;
    let server = IdmintServer::start(bin(), ServerSpec::with_oidc(vec![oidc(&jwks)])).await?;
    let base = server.base_url();

    let health = v1(&base, "GET", "sys/health", None, None).await?;
    assert_eq!(health.status, 200);
    assert_eq!(health.body["sealed"], false);
    let unknown = v1(&base, "GET", "secret/data/x", None, None).await?;
    assert_eq!(
        (unknown.status, unknown.body.clone()),
        (404, json!({"errors": []}))
    );
    let no_token = v1(&base, "GET", "auth/token/lookup-self", None, None).await?;
    assert_eq!(no_token.status, 403);
    assert!(
        first_error(&no_token.body).starts_with("permission denied"),
        "{}",
        no_token.body
    );
    let junk = v1(
        &base,
        "GET",
        "auth/token/lookup-self",
        Some("idm_v1.junk"),
        None,
    )
    .await?;
    assert_eq!(junk.status, 403, "{}", junk.body);
    let bad_jwt = v1(
        &base,
        "POST",
        "auth/jwt/login",
        None,
        Some(&json!({"role": AUTH_NAME, "jwt": "a.b.c"})),
    )
    .await?;
    assert_eq!(bad_jwt.status, 403, "{}", bad_jwt.body);
    assert!(bad_jwt.body["errors"].is_array());
    let not_json = reqwest::Client::new()
        .post(format!("{base}/v1/auth/jwt/login"))
        .body("{")
        .send()
        .await?;
    assert_eq!(not_json.status().as_u16(), 400);

    // an unknown role through database/creds: 404 from the native issuance
    let jwt = token_for(&jwks, APP_SUBJECT, &json!({}))?;
    let login = v1(
        &base,
        "PUT",
        "auth/jwt/login",
        None,
        Some(&json!({"jwt": jwt})),
    )
    .await?;
    assert_eq!(login.status, 200, "{}", login.body);
    let token = login.body["auth"]["client_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let missing = v1(&base, "GET", "database/creds/nope", Some(&token), None).await?;
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert!(
        first_error(&missing.body).contains("does not exist"),
        "{}",
        missing.body
    );
    // a lease id that is not one
    let bad_lease = v1(
        &base,
        "PUT",
        "sys/leases/revoke",
        Some(&token),
        Some(&json!({"lease_id": "database/creds/x/zzz"})),
    )
    .await?;
    assert_eq!(bad_lease.status, 400, "{}", bad_lease.body);
    // revoke-prefix needs admin
    let prefix = v1(
        &base,
        "PUT",
        "sys/leases/revoke-prefix/database/creds/orders",
        Some(&token),
        None,
    )
    .await?;
    assert_eq!(prefix.status, 403, "{}", prefix.body);

    let events = server.audit_events()?;
    let denied: Vec<_> = events_of(&events, "vault_request")
        .into_iter()
        .filter(|e| e["outcome"] == "denied")
        .collect();
    assert!(
        denied.iter().any(|e| e["error"]["code"] == "unknown_role"),
        "{denied:?}"
    );
    assert!(
        denied.iter().any(|e| e["error"]["code"] == "missing_token"),
        "{denied:?}"
    );
    Ok(())
}

/// `roles.toml` of the database test: `database/creds/orders-readonly`
/// maps to `db/orders-readonly`.
const DB_ROLES: &str = r#"
[[role]]
name = "db/orders-readonly"
issuer = "orders-pg"
max_ttl = "10m"
default_ttl = "2m"
renewable = true
[role.database]
member_of = ["readonly"]
"#;

const ADMIN_PASSWORD_ENV: &str = "ORDERS_PG_ADMIN_PASSWORD";

async fn pg_role_exists(pg: &PgServer, name: &str) -> anyhow::Result<bool> {
    let (client, conn) = tokio_postgres::connect(&pg.admin_url(), NoTls).await?;
    tokio::spawn(conn);
    let row = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name])
        .await?;
    Ok(row.is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_creds_with_bao_and_hvac_against_real_postgres() -> anyhow::Result<()> {
    vault_support::bao_path()?;
    let python = venv_python()?;
    let pg = tokio::task::spawn_blocking(PgServer::start).await??;
    {
        let (admin, conn) = tokio_postgres::connect(&pg.admin_url(), NoTls).await?;
        tokio::spawn(conn);
        admin.batch_execute("CREATE ROLE readonly NOLOGIN;").await?;
    }
    let jwks = TestJwks::start().await?;
    let issuer = toml_table(&format!(
        "name = \"orders-pg\"\nhost = \"127.0.0.1\"\nport = {}\ndatabase = \"postgres\"\nadmin_user = \"{}\"\nadmin_password_env = \"{ADMIN_PASSWORD_ENV}\"\n",
        pg.port(),
        pg.admin_user()
    ))?;
    let mut spec = ServerSpec::with_oidc(vec![oidc(&jwks)]).with_issuer("postgres", issuer);
    spec.roles = DB_ROLES.to_string();
    spec.policies = vec![("db.cedar".to_string(), POLICY.to_string())];
    spec.env = vec![(
        ADMIN_PASSWORD_ENV.to_string(),
        pg.admin_password().to_string(),
    )];
    let server = IdmintServer::start(bin(), spec).await?;
    let bao = Bao::new(&server.base_url())?;

    let jwt = token_for(&jwks, APP_SUBJECT, &json!({}))?;
    let (token, _) = bao_login(&bao, &jwt)?;
    let read = bao.run(
        Some(&token),
        &["read", "-format=json", "database/creds/orders-readonly"],
    )?;
    assert_eq!(read.code, 0, "{}", read.summary());
    let creds = read.json()?;
    let username = creds["data"]["username"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let password = creds["data"]["password"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let lease_id = creds["lease_id"].as_str().unwrap_or_default().to_string();
    assert!(
        lease_id.starts_with("database/creds/orders-readonly/lse_"),
        "{creds}"
    );
    assert_eq!(creds["renewable"], true, "the role is renewable");
    let duration = creds["lease_duration"].as_u64().unwrap_or_default();
    assert!((100..=120).contains(&duration), "default_ttl 2m: {creds}");

    // the user is real: log in to PostgreSQL with it
    let url = format!(
        "postgres://{username}:{password}@127.0.0.1:{}/postgres",
        pg.port()
    );
    let (user_client, conn) = tokio_postgres::connect(&url, NoTls).await?;
    let conn_task = tokio::spawn(conn);
    let row = user_client
        .query_one("SELECT current_user::text", &[])
        .await?;
    assert_eq!(row.get::<_, String>(0), username);
    drop(user_client);
    let _ = conn_task.await;

    // renew through sys/leases/renew (the role is renewable)
    let renew = bao.run(
        Some(&token),
        &["lease", "renew", "-format=json", "-increment=5m", &lease_id],
    )?;
    assert_eq!(renew.code, 0, "{}", renew.summary());
    let renewed = renew.json()?["lease_duration"].as_u64().unwrap_or_default();
    assert!((280..=300).contains(&renewed), "{}", renew.summary());

    // bao lease revoke drops the user
    let revoke = bao.run(Some(&token), &["lease", "revoke", &lease_id])?;
    assert_eq!(revoke.code, 0, "{}", revoke.summary());
    assert!(
        !pg_role_exists(&pg, &username).await?,
        "the user must be gone after revoke"
    );

    // hvac: jwt login, lookup_self, database creds
    let script = r#"
import hvac, json, os
c = hvac.Client(url=os.environ["VAULT_ADDR"])
login = c.auth.jwt.jwt_login(role=os.environ["ROLE"], jwt=os.environ["JWT"])
me = c.auth.token.lookup_self()
creds = c.secrets.database.generate_credentials(name="orders-readonly")
dropped = c.secrets.database.generate_credentials(name="orders-readonly")
c.sys.revoke_lease(dropped["lease_id"])
print(json.dumps({"token": login["auth"]["client_token"], "subject": me["data"]["meta"]["subject"],
                  "username": creds["data"]["username"], "lease_id": creds["lease_id"],
                  "dropped": dropped["data"]["username"]}))
"#;
    let jwt2 = token_for(&jwks, APP_SUBJECT, &json!({}))?;
    let out = Command::new(&python)
        .args(["-c", script])
        .env("VAULT_ADDR", server.base_url())
        .env("ROLE", AUTH_NAME)
        .env("JWT", &jwt2)
        .output()?;
    assert!(
        out.status.success(),
        "hvac failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let hv: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(hv["subject"], APP_SUBJECT);
    let hv_user = hv["username"].as_str().unwrap_or_default().to_string();
    assert!(pg_role_exists(&pg, &hv_user).await?, "{hv}");
    let dropped = hv["dropped"].as_str().unwrap_or_default();
    assert!(
        !dropped.is_empty() && !pg_role_exists(&pg, dropped).await?,
        "hvac revoke_lease: {hv}"
    );
    assert!(hv["lease_id"]
        .as_str()
        .unwrap_or_default()
        .starts_with("database/creds/orders-readonly/"));

    // an admin revokes the role's leases by Vault prefix: the hvac user goes
    let not_admin = bao.run(
        Some(&token),
        &[
            "lease",
            "revoke",
            "-prefix",
            "database/creds/orders-readonly",
        ],
    )?;
    assert_ne!(not_admin.code, 0, "{}", not_admin.summary());
    let admin_jwt = token_for(&jwks, ADMIN_SUBJECT, &json!({"repository": "acme/ops"}))?;
    let (admin_token, _) = bao_login(&bao, &admin_jwt)?;
    let prefix = bao.run(
        Some(&admin_token),
        &[
            "lease",
            "revoke",
            "-prefix",
            "database/creds/orders-readonly",
        ],
    )?;
    assert_eq!(prefix.code, 0, "{}", prefix.summary());
    assert!(
        !pg_role_exists(&pg, &hv_user).await?,
        "revoke-prefix must drop {hv_user}"
    );

    // the audit trail: issuance as the native API does it, plus vault_request
    let events = server.audit_events()?;
    let issued: Vec<_> = events_of(&events, "credential_issued")
        .into_iter()
        .filter(|e| e["outcome"] == "success" && e["role"] == "db/orders-readonly")
        .collect();
    assert_eq!(issued.len(), 3, "one by bao, two by hvac");
    let raw = std::fs::read_to_string(server.audit_file())?;
    assert!(!raw.contains(&password), "a password reached the audit log");
    assert!(unix_now() > 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_creds_and_sts_with_bao_against_moto() -> anyhow::Result<()> {
    vault_support::bao_path()?;
    let env = aws_support::setup().await?;
    let bao = Bao::new(&env.server.base_url())?;
    let jwt = token_for(&env.jwks, APP_SUBJECT, &json!({}))?;
    let (token, _) = bao_login(&bao, &jwt)?;

    // aws/creds/ci-user → idmint role aws/ci-user (an IAM user + key)
    let read = bao.run(Some(&token), &["read", "-format=json", "aws/creds/ci-user"])?;
    assert_eq!(read.code, 0, "{}", read.summary());
    let creds = read.json()?;
    let data = &creds["data"];
    assert!(data["security_token"].is_null(), "{creds}");
    assert!(creds["lease_id"]
        .as_str()
        .unwrap_or_default()
        .starts_with("aws/creds/ci-user/lse_"));
    let key = idmint_testkit::moto::AwsKey::new(
        data["access_key"].as_str().unwrap_or_default(),
        data["secret_key"].as_str().unwrap_or_default(),
        None,
    );
    let who = env.moto.aws(&key, &["sts", "get-caller-identity"])?;
    assert!(who.success, "{who:?}");

    // aws/sts/deploy → idmint role aws/deploy (an STS session)
    let sts = bao.run(Some(&token), &["read", "-format=json", "aws/sts/deploy"])?;
    assert_eq!(sts.code, 0, "{}", sts.summary());
    let sts = sts.json()?;
    let d = &sts["data"];
    assert!(
        d["security_token"].as_str().is_some_and(|t| !t.is_empty()),
        "{sts}"
    );
    let session = idmint_testkit::moto::AwsKey::new(
        d["access_key"].as_str().unwrap_or_default(),
        d["secret_key"].as_str().unwrap_or_default(),
        d["security_token"].as_str(),
    );
    let who = env.moto.aws(&session, &["sts", "get-caller-identity"])?;
    assert!(who.success, "{who:?}");
    assert!(
        who.stdout.contains("assumed-role/deployer"),
        "{}",
        who.stdout
    );

    // a federated role has no access keys to hand out in Vault's shape
    let web = bao.run(Some(&token), &["read", "aws/creds/web"])?;
    assert_ne!(web.code, 0);
    assert!(
        web.stderr.contains("does not issue AWS access keys"),
        "{}",
        web.summary()
    );
    let events = env.server.audit_events()?;
    assert!(
        events_of(&events, "credential_issued")
            .iter()
            .all(|e| e["role"] != "aws/web"),
        "nothing may be minted for a role refused by its mount"
    );
    Ok(())
}
