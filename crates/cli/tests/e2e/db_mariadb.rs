//! MySQL/MariaDB credentials end to end: the real `idmint` server against a
//! real MariaDB (shared by this test binary, one database set and one
//! issuer admin per test), callers authenticated by OIDC tokens from a
//! [`TestJwks`].
//!
//! MariaDB cannot expire an account at a point in time, so a user lives
//! until idmint's reaper drops it; `DROP USER` alone does not end open
//! sessions, so revocation must kill them first. Both are checked from the
//! issued user's own connection.

use crate::common;
use crate::db_support;

use common::bin;
use db_support::{
    assert_not_logged, audit_event_for, belongs_to, db_user, is_derived_username, lease,
    login_admin, login_app, oidc, toml_table, wait_until, DbUser, POLICY,
};
use idmint_client::proto::{CredsRequest, RenewRequest};
use idmint_testkit::mariadb::{unique_name, MariaDb};
use idmint_testkit::{unix_now, IdmintServer, ServerSpec, TestJwks};
use mysql_async::prelude::Queryable;
use std::time::Duration;

/// Longest MySQL user name.
const MYSQL_MAX_NAME: usize = 32;
/// How long the reaper (1 s interval) may take to act.
const REAPER_LIMIT: Duration = Duration::from_secs(20);
const ROLE: &str = "db/shop-reader";
/// Joins a group role the issuer admin may not grant.
const MISCONFIGURED: &str = "db/shop-misconfigured";
const ER_TABLEACCESS_DENIED: u16 = 1142;
const ER_DBACCESS_DENIED: u16 = 1044;

/// One test's slice of the shared server: its databases, group role and
/// issuer admin (all uniquely named).
struct Tenant {
    db: &'static MariaDb,
    /// Readable through the group role, one table writable per user.
    shop: String,
    /// Not granted at all.
    vault: String,
    /// MariaDB role holding `SELECT ON <shop>.orders`.
    reader: String,
    /// A role the issuer admin holds no ADMIN OPTION on (misconfiguration).
    foreign: String,
    admin_user: String,
    admin_password: String,
    target: String,
}

impl Tenant {
    async fn create() -> anyhow::Result<Self> {
        let db = tokio::task::spawn_blocking(MariaDb::shared).await??;
        let t = Self {
            db,
            shop: unique_name("shop"),
            vault: unique_name("vault"),
            reader: unique_name("reader"),
            foreign: unique_name("foreign"),
            admin_user: unique_name("idmadmin"),
            admin_password: "Adm1n-pw-for-idmint".into(),
            target: unique_name("shop-mysql").replace('_', "-"),
        };
        db.sql(&format!(
            "CREATE DATABASE {shop};
             CREATE TABLE {shop}.orders (id INT PRIMARY KEY, total INT NOT NULL);
             INSERT INTO {shop}.orders VALUES (1, 10), (2, 32);
             CREATE TABLE {shop}.events (note VARCHAR(64) NOT NULL);
             CREATE DATABASE {vault};
             CREATE TABLE {vault}.secrets (id INT PRIMARY KEY, secret VARCHAR(64) NOT NULL);
             INSERT INTO {vault}.secrets VALUES (1, 'do not read');
             CREATE ROLE {reader};
             GRANT SELECT ON {shop}.orders TO {reader};
             CREATE ROLE {foreign};",
            shop = t.shop,
            vault = t.vault,
            reader = t.reader,
            foreign = t.foreign,
        ))
        .await?;
        db.create_admin(&t.admin_user, &t.admin_password).await?;
        // MariaDB lets only holders of ADMIN OPTION grant a role; `ALL
        // PRIVILEGES ON *.* WITH GRANT OPTION` is not enough.
        db.sql(&format!(
            "GRANT {} TO '{}'@'%' WITH ADMIN OPTION",
            t.reader, t.admin_user
        ))
        .await?;
        Ok(t)
    }

    fn password_env(&self) -> String {
        format!("{}_PASSWORD", self.admin_user.to_ascii_uppercase())
    }

    fn spec(&self, jwks: &TestJwks) -> anyhow::Result<ServerSpec> {
        let issuer = toml_table(&format!(
            r#"
name = "{target}"
host = "127.0.0.1"
port = {port}
database = "{shop}"
admin_user = "{admin}"
admin_password_env = "{env}"
pool_size = 2
connect_timeout = "2s"
"#,
            target = self.target,
            port = self.db.port(),
            shop = self.shop,
            admin = self.admin_user,
            env = self.password_env(),
        ))?;
        let roles = format!(
            r#"
[[role]]
name = "{ROLE}"
issuer = "{target}"
max_ttl = "10m"
default_ttl = "1m"
renewable = true
[role.database]
member_of = ["{reader}"]
grants = ["INSERT ON {shop}.events"]

[[role]]
name = "{MISCONFIGURED}"
issuer = "{target}"
max_ttl = "10m"
[role.database]
grants = ["INSERT ON {shop}.events"]
member_of = ["{foreign}"]
"#,
            target = self.target,
            reader = self.reader,
            shop = self.shop,
            foreign = self.foreign,
        );
        let mut spec = ServerSpec::with_oidc(vec![oidc(jwks)]).with_issuer("mysql", issuer);
        spec.roles = roles;
        spec.policies = vec![("db.cedar".to_string(), POLICY.to_string())];
        spec.env = vec![(self.password_env(), self.admin_password.clone())];
        Ok(spec)
    }

    async fn user_exists(&self, name: &str) -> anyhow::Result<bool> {
        let out = self
            .db
            .sql(&format!(
                "SELECT COUNT(*) FROM mysql.user WHERE User = '{name}'"
            ))
            .await?;
        Ok(out.trim() != "0")
    }

    async fn grants_of(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let out = self
            .db
            .sql(&format!("SHOW GRANTS FOR '{name}'@'%'"))
            .await?;
        let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
        lines.sort();
        Ok(lines)
    }
}

async fn connect(uri: &str) -> anyhow::Result<mysql_async::Conn> {
    let opts = mysql_async::Opts::from_url(uri)?;
    Ok(mysql_async::Conn::new(opts).await?)
}

fn server_error_code<T>(r: Result<T, mysql_async::Error>) -> Option<u16> {
    match r {
        Err(mysql_async::Error::Server(e)) => Some(e.code),
        _ => None,
    }
}

async fn setup() -> anyhow::Result<(Tenant, TestJwks, IdmintServer)> {
    let tenant = Tenant::create().await?;
    let jwks = TestJwks::start().await?;
    let server = IdmintServer::start(bin(), tenant.spec(&jwks)?).await?;
    Ok((tenant, jwks, server))
}

/// Connected as the issued user: reads `orders` through the group role,
/// appends to `events` through its own grant, and nothing else.
async fn assert_exact_access(t: &Tenant, user: &DbUser) -> anyhow::Result<mysql_async::Conn> {
    let mut conn = connect(&user.uri).await?;
    let me: Option<String> = conn.query_first("SELECT CURRENT_USER()").await?;
    assert_eq!(me, Some(format!("{}@%", user.username)));
    let role: Option<String> = conn.query_first("SELECT CURRENT_ROLE()").await?;
    assert_eq!(
        role.as_deref(),
        Some(t.reader.as_str()),
        "the group role is active by default"
    );
    let total: Option<i64> = conn
        .query_first(format!(
            "SELECT CAST(SUM(total) AS SIGNED) FROM {}.orders",
            t.shop
        ))
        .await?;
    assert_eq!(total, Some(42));
    conn.query_drop(format!("INSERT INTO {}.events VALUES ('hello')", t.shop))
        .await?;
    for sql in [
        format!("INSERT INTO {}.orders VALUES (3, 1)", t.shop),
        format!("SELECT note FROM {}.events", t.shop),
        format!("DELETE FROM {}.orders", t.shop),
        format!("SELECT secret FROM {}.secrets", t.vault),
        "SELECT authentication_string FROM mysql.user".to_string(),
    ] {
        let code = server_error_code(conn.query_drop(&sql).await);
        assert!(
            matches!(code, Some(ER_TABLEACCESS_DENIED | ER_DBACCESS_DENIED)),
            "must be denied: {sql} ({code:?})"
        );
    }
    let code = server_error_code(
        conn.query_drop(format!("CREATE DATABASE {}_x", t.shop))
            .await,
    );
    assert_eq!(code, Some(ER_DBACCESS_DENIED), "cannot create databases");
    Ok(conn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_user_has_exactly_the_template_and_revocation_ends_its_session() -> anyhow::Result<()>
{
    let (t, jwks, server) = setup().await?;
    let app = login_app(&server, &jwks).await?;
    let resp = app.client.creds(ROLE, &CredsRequest::default()).await?;
    let user = db_user(&resp)?;
    assert_eq!(user.engine, "mysql");
    assert_eq!(
        (user.host.as_str(), user.port, user.database.as_deref()),
        ("127.0.0.1", t.db.port(), Some(t.shop.as_str()))
    );
    assert!(
        is_derived_username(&user.username, MYSQL_MAX_NAME),
        "{}",
        user.username
    );
    assert!(belongs_to(&user.username, &resp.lease_id));
    assert_eq!(
        user.uri,
        format!(
            "mysql://{}:{}@127.0.0.1:{}/{}",
            user.username,
            user.password,
            t.db.port(),
            t.shop
        )
    );

    // The grants are exactly the template: the per-user INSERT, the role
    // and nothing else.
    let grants = t.grants_of(&user.username).await?;
    assert_eq!(grants.len(), 4, "{grants:#?}");
    assert!(
        grants
            .iter()
            .any(|g| g.starts_with(&format!("SET DEFAULT ROLE `{}` FOR", t.reader))),
        "{grants:#?}"
    );
    assert!(
        grants.iter().any(|g| g.starts_with("GRANT USAGE ON *.*")),
        "{grants:#?}"
    );
    assert!(
        grants
            .iter()
            .any(|g| g.starts_with(&format!("GRANT INSERT ON `{}`.`events`", t.shop))),
        "{grants:#?}"
    );
    assert!(
        grants
            .iter()
            .any(|g| g.starts_with(&format!("GRANT `{}` TO", t.reader))),
        "{grants:#?}"
    );
    let mut session = assert_exact_access(&t, &user).await?;
    assert_not_logged(&server, &user.password, "the issued password")?;
    audit_event_for(
        &server,
        "credential_issued",
        &resp.lease_id,
        Duration::from_secs(5),
    )
    .await?;

    // MariaDB has no expiry to extend: renewal is bookkeeping in idmint.
    let renewed = app
        .client
        .renew_lease(
            &resp.lease_id,
            &RenewRequest {
                ttl: Some("3m".into()),
            },
        )
        .await?;
    assert!(renewed.expires_at >= unix_now() + 170, "{renewed:?}");

    // Revocation kills the open session and drops the user.
    assert_eq!(
        app.client.revoke_lease(&resp.lease_id).await?.state,
        "revoked"
    );
    let after: Result<Option<i64>, _> = session.query_first("SELECT 1").await;
    assert!(
        after.is_err(),
        "the open session must be killed by revocation"
    );
    assert!(!t.user_exists(&user.username).await?, "the user is dropped");
    assert!(connect(&user.uri).await.is_err(), "a new login must fail");
    audit_event_for(
        &server,
        "lease_revoked",
        &resp.lease_id,
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!(
        app.client.revoke_lease(&resp.lease_id).await?.state,
        "revoked"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_drops_the_user_and_its_sessions_at_expiry() -> anyhow::Result<()> {
    let (t, jwks, server) = setup().await?;
    let app = login_app(&server, &jwks).await?;
    let resp = app
        .client
        .creds(
            ROLE,
            &CredsRequest {
                ttl: Some("3s".into()),
                ..Default::default()
            },
        )
        .await?;
    let user = db_user(&resp)?;
    let mut session = connect(&user.uri).await?;
    let one: Option<i64> = session.query_first("SELECT 1").await?;
    assert_eq!(one, Some(1));

    let gone = wait_until(
        "the reaper to drop the expired user",
        REAPER_LIMIT,
        || async { Ok((!t.user_exists(&user.username).await?).then_some(unix_now())) },
    )
    .await?;
    assert!(
        gone >= resp.expires_at,
        "dropped at {gone}, before expiry {}",
        resp.expires_at
    );
    let after: Result<Option<i64>, _> = session.query_first("SELECT 1").await;
    assert!(after.is_err(), "the open session ended with the lease");
    let ev = audit_event_for(
        &server,
        "lease_expired",
        &resp.lease_id,
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!(ev["detail"]["revoked_by"], "reaper");
    let admin = login_admin(&server, &jwks).await?;
    assert_eq!(lease(&admin, &resp.lease_id).await?.state, "revoked");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_the_admin_may_not_give_fails_cleanly_without_a_partial_user() -> anyhow::Result<()>
{
    let t = Tenant::create().await?;
    let jwks = TestJwks::start().await?;
    // Far longer than a MariaDB issuance takes (milliseconds), short
    // enough to watch the reaper reconcile the failed one.
    let spec = t.spec(&jwks)?.set_reaper("pending_grace", "5s");
    let server = IdmintServer::start(bin(), spec).await?;
    let app = login_app(&server, &jwks).await?;
    let admin = login_admin(&server, &jwks).await?;
    let r = server
        .api()
        .creds(&app.session, MISCONFIGURED, &serde_json::json!({}))
        .await?;
    assert_eq!(r.status, 502, "{}", r.summary());
    assert_eq!(r.error_code(), Some("target_failed"), "{}", r.summary());
    let message = r.error_message().unwrap_or_default().to_string();
    assert!(message.contains(&t.target), "names the target: {message}");
    // The user was created before the GRANT failed; it must be gone.
    let lease = db_support::all_leases(&admin)
        .await?
        .into_iter()
        .find(|l| l.role == MISCONFIGURED)
        .ok_or_else(|| anyhow::anyhow!("the write-ahead lease is listed"))?;
    // Never active; kept pending (with the error) so that the reaper
    // revokes again after `pending_grace`, in case a statement that timed
    // out still completes at the target.
    assert_eq!(lease.state, "pending", "{lease:?}");
    assert!(lease.last_error.is_some(), "{lease:?}");
    let leftovers =
        t.db.sql(&format!(
            "SELECT COUNT(*) FROM mysql.user WHERE User LIKE 'idm\\_%{}'",
            db_support::lease_suffix(&lease.id)
        ))
        .await?;
    assert_eq!(leftovers.trim(), "0", "no partial user is left behind");
    let reconciled = wait_until(
        "the reaper to settle the failed lease",
        REAPER_LIMIT,
        || async {
            let l = db_support::lease(&admin, &lease.id).await?;
            Ok((l.state != "pending").then_some(l))
        },
    )
    .await?;
    assert_eq!(reconciled.state, "revoked", "{reconciled:?}");
    audit_event_for(&server, "lease_expired", &lease.id, Duration::from_secs(5)).await?;
    // The well-configured role still works on the same target.
    let ok = app.client.creds(ROLE, &CredsRequest::default()).await?;
    assert_exact_access(&t, &db_user(&ok)?).await?;
    Ok(())
}
