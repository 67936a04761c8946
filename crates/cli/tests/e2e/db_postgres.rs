//! PostgreSQL credentials end to end: the real `idmint` server and CLI
//! against a real PostgreSQL started per test, callers authenticated by
//! OIDC tokens from a [`TestJwks`].
//!
//! Every test connects to PostgreSQL as the issued user and checks what it
//! can really do, and inspects `pg_roles` through a separate superuser
//! (`inspector`), so that rotating the admin password idmint uses does not
//! blind the test.

use crate::common;
use crate::db_support;

use common::bin;
use db_support::{
    all_leases, api_error, assert_not_logged, audit_event_for, belongs_to, db_user,
    is_derived_username, lease, login, login_admin, login_app, oidc, toml_table, wait_for,
    wait_until, Caller, DbUser, ADMIN_SUBJECT, APP_SUBJECT, POLICY,
};
use idmint_client::proto::{CredsRequest, RenewRequest};
use idmint_testkit::audit::events_of;
use idmint_testkit::postgres::PgServer;
use idmint_testkit::{unix_now, Cli, CliOutput, IdmintServer, ServerSpec, TestJwks};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// `[[issuer.postgres]] name`.
const TARGET: &str = "orders-pg";
/// Where the server finds the admin password on its first start.
const ADMIN_PASSWORD_ENV: &str = "ORDERS_PG_ADMIN_PASSWORD";
/// `connect_timeout` of the target: bounds how long a dead target may hold
/// a request.
const CONNECT_TIMEOUT_SECS: u64 = 2;
/// The test's own superuser, distinct from the admin idmint rotates.
const INSPECTOR: &str = "inspector";
const INSPECTOR_PASSWORD: &str = "inspector-pw-5Rg8q";
/// Longest PostgreSQL identifier.
const PG_MAX_NAME: usize = 63;
/// How long the reaper (1 s interval) may take to act.
const REAPER_LIMIT: Duration = Duration::from_secs(20);

/// The database the targets start with: a `reporting` schema the role may
/// read (USAGE per user, SELECT through the group role `readonly`), an
/// `app` schema it may not, and canaries that injection would destroy.
const SETUP_SQL: &str = "
CREATE SCHEMA reporting;
CREATE TABLE reporting.orders (id int PRIMARY KEY, total int NOT NULL);
INSERT INTO reporting.orders VALUES (1, 10), (2, 32);
CREATE SCHEMA app;
CREATE TABLE app.customers (id int PRIMARY KEY, email text NOT NULL);
INSERT INTO app.customers VALUES (1, 'a@example.test');
CREATE ROLE readonly NOLOGIN;
GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO readonly;
CREATE ROLE canary NOLOGIN;
CREATE TABLE public.canary (note text NOT NULL);
INSERT INTO public.canary VALUES ('still here');
CREATE ROLE inspector LOGIN SUPERUSER PASSWORD 'inspector-pw-5Rg8q';
";

/// `roles.toml`: the database roles under test plus an oauth role, which
/// revocation by the `db/` prefix must leave alone.
const ROLES: &str = r#"
[[role]]
name = "db/orders-readonly"
issuer = "orders-pg"
description = "Read the reporting schema of the orders database"
max_ttl = "10m"
default_ttl = "1m"
renewable = true
[role.database]
member_of = ["readonly"]
grants = ["USAGE ON SCHEMA reporting"]

[[role]]
name = "db/orders-oneshot"
issuer = "orders-pg"
description = "Same access, not renewable"
max_ttl = "5m"
[role.database]
member_of = ["readonly"]
grants = ["USAGE ON SCHEMA reporting"]

[[role]]
name = "api/orders"
issuer = "oauth"
max_ttl = "5m"
audiences = ["https://api.example.test"]
scopes = ["orders:read"]
"#;

const READONLY: &str = "db/orders-readonly";
const ONESHOT: &str = "db/orders-oneshot";

/// A throwaway PostgreSQL with [`SETUP_SQL`] applied, and the test's
/// superuser connection to it.
struct Target {
    pg: PgServer,
    inspector: Client,
}

async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        // Ends when the server closes the session (e.g. on revocation).
        let _ = connection.await;
    });
    Ok(client)
}

impl Target {
    async fn start() -> anyhow::Result<Self> {
        let pg = tokio::task::spawn_blocking(PgServer::start).await??;
        let admin = connect(&pg.admin_url()).await?;
        admin.batch_execute(SETUP_SQL).await?;
        let inspector = connect(&format!(
            "postgres://{INSPECTOR}:{INSPECTOR_PASSWORD}@127.0.0.1:{}/postgres",
            pg.port()
        ))
        .await?;
        Ok(Self { pg, inspector })
    }

    /// The `[[issuer.postgres]]` table for this server, with `admin` as
    /// idmint's admin account.
    fn issuer_table(&self, admin: &str) -> anyhow::Result<idmint_testkit::toml::Table> {
        toml_table(&format!(
            r#"
name = "{TARGET}"
host = "127.0.0.1"
port = {port}
database = "postgres"
admin_user = "{admin}"
admin_password_env = "{ADMIN_PASSWORD_ENV}"
pool_size = 4
connect_timeout = "{CONNECT_TIMEOUT_SECS}s"
"#,
            port = self.pg.port(),
        ))
    }

    /// A server spec with this target, [`ROLES`] and [`POLICY`]; idmint's
    /// admin is the superuser `initdb` created.
    fn spec(&self, jwks: &TestJwks) -> anyhow::Result<ServerSpec> {
        self.spec_with_admin(jwks, self.pg.admin_user(), self.pg.admin_password())
    }

    /// [`Self::spec`] with another admin account for idmint.
    fn spec_with_admin(
        &self,
        jwks: &TestJwks,
        admin: &str,
        password: &str,
    ) -> anyhow::Result<ServerSpec> {
        let mut spec = ServerSpec::with_oidc(vec![oidc(jwks)])
            .with_issuer("postgres", self.issuer_table(admin)?);
        spec.roles = ROLES.to_string();
        spec.policies = vec![("db.cedar".to_string(), POLICY.to_string())];
        spec.env = vec![(ADMIN_PASSWORD_ENV.to_string(), password.to_string())];
        Ok(spec)
    }

    async fn role_exists(&self, name: &str) -> anyhow::Result<bool> {
        let row = self
            .inspector
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name])
            .await?;
        Ok(row.is_some())
    }

    /// `rolvaliduntil` as Unix seconds (`None`: no such role or no limit).
    async fn valid_until(&self, name: &str) -> anyhow::Result<Option<i64>> {
        let row = self
            .inspector
            .query_opt(
                "SELECT extract(epoch FROM rolvaliduntil)::bigint FROM pg_roles WHERE rolname = $1",
                &[&name],
            )
            .await?;
        Ok(row.and_then(|r| r.get::<_, Option<i64>>(0)))
    }

    /// The group roles `name` is a direct member of.
    async fn memberships(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let rows = self
            .inspector
            .query(
                "SELECT g.rolname::text FROM pg_auth_members m \
                 JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member \
                 WHERE u.rolname = $1 ORDER BY 1",
                &[&name],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Every role idmint created (default username prefix `idm`).
    async fn idm_users(&self) -> anyhow::Result<BTreeSet<String>> {
        let rows = self
            .inspector
            .query(
                r"SELECT rolname::text FROM pg_roles WHERE rolname LIKE 'idm\_%'",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn role_count(&self) -> anyhow::Result<i64> {
        Ok(self
            .inspector
            .query_one("SELECT count(*) FROM pg_roles", &[])
            .await?
            .get(0))
    }
}

/// The SQLSTATE of a failed statement, for assertions.
fn sqlstate<T>(r: Result<T, tokio_postgres::Error>) -> Option<SqlState> {
    r.err().and_then(|e| e.code().cloned())
}

/// Start a target, the test issuer and an idmint server for them.
async fn setup() -> anyhow::Result<(Target, TestJwks, IdmintServer)> {
    let target = Target::start().await?;
    let jwks = TestJwks::start().await?;
    let server = IdmintServer::start(bin(), target.spec(&jwks)?).await?;
    Ok((target, jwks, server))
}

async fn issue(caller: &Caller, role: &str, ttl: Option<&str>) -> anyhow::Result<(String, DbUser)> {
    let resp = caller
        .client
        .creds(
            role,
            &CredsRequest {
                ttl: ttl.map(str::to_string),
                ..Default::default()
            },
        )
        .await?;
    let user = db_user(&resp)?;
    Ok((resp.lease_id, user))
}

/// Connected as the issued user, it can read `reporting` and nothing else.
async fn assert_read_only_access(user: &DbUser) -> anyhow::Result<Client> {
    let session = connect(&user.uri).await?;
    let me: String = session
        .query_one("SELECT current_user::text", &[])
        .await?
        .get(0);
    assert_eq!(me, user.username);
    let total: i64 = session
        .query_one("SELECT sum(total) FROM reporting.orders", &[])
        .await?
        .get(0);
    assert_eq!(total, 42, "reads the reporting schema");
    for (what, sql) in [
        (
            "write reporting",
            "INSERT INTO reporting.orders VALUES (3, 1)",
        ),
        ("change reporting", "UPDATE reporting.orders SET total = 0"),
        ("read app", "SELECT email FROM app.customers"),
        ("create in reporting", "CREATE TABLE reporting.mine (a int)"),
        ("create in public", "CREATE TABLE public.mine (a int)"),
        ("become the admin", "SET ROLE admin"),
        ("read password hashes", "SELECT rolpassword FROM pg_authid"),
    ] {
        assert_eq!(
            sqlstate(session.batch_execute(sql).await),
            Some(SqlState::INSUFFICIENT_PRIVILEGE),
            "the issued user must not {what} ({sql})"
        );
    }
    Ok(session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_user_reads_reporting_only_and_revocation_ends_its_session() -> anyhow::Result<()> {
    let (target, jwks, server) = setup().await?;
    let app = login_app(&server, &jwks).await?;
    let roles_before = target.role_count().await?;

    let resp = app.client.creds(READONLY, &CredsRequest::default()).await?;
    let user = db_user(&resp)?;
    assert_eq!(user.engine, "postgres");
    assert_eq!(
        (user.host.as_str(), user.port, user.database.as_deref()),
        ("127.0.0.1", target.pg.port(), Some("postgres"))
    );
    assert!(
        is_derived_username(&user.username, PG_MAX_NAME) && user.username.starts_with("idm_"),
        "{}",
        user.username
    );
    assert!(
        belongs_to(&user.username, &resp.lease_id),
        "{} / {}",
        user.username,
        resp.lease_id
    );
    assert!(user.password.len() >= 16 && user.password.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(
        user.uri,
        format!(
            "postgres://{}:{}@127.0.0.1:{}/postgres",
            user.username,
            user.password,
            target.pg.port()
        )
    );
    assert_eq!(resp.ttl_seconds, 60, "role default_ttl");
    let now = unix_now();
    assert!(
        (now + 55..=now + 61).contains(&resp.expires_at),
        "{}",
        resp.expires_at
    );

    // PostgreSQL itself expires the user at the lease's end.
    assert_eq!(
        target.valid_until(&user.username).await?,
        Some(resp.expires_at)
    );
    // Exactly the template: one membership, no role attributes.
    assert_eq!(target.memberships(&user.username).await?, vec!["readonly"]);
    let attrs = target
        .inspector
        .query_one(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolcanlogin \
             FROM pg_roles WHERE rolname = $1",
            &[&user.username],
        )
        .await?;
    let flags: Vec<bool> = (0..6).map(|i| attrs.get(i)).collect();
    assert_eq!(flags, vec![false, false, false, false, false, true]);
    assert_eq!(
        target.role_count().await?,
        roles_before + 1,
        "one role was created"
    );

    let session = assert_read_only_access(&user).await?;

    // The issuance is audited with the credential's fingerprint, never
    // with the password.
    let issued = audit_event_for(
        &server,
        "credential_issued",
        &resp.lease_id,
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!(issued["outcome"], "success");
    assert_eq!(issued["fingerprint"], resp.fingerprint.as_str());
    assert_eq!(issued["role"], READONLY);
    assert_not_logged(&server, &user.password, "the issued password")?;

    // Revocation ends the open session and drops the user.
    let revoked = app.client.revoke_lease(&resp.lease_id).await?;
    assert_eq!(revoked.state, "revoked");
    let after = session.simple_query("SELECT 1").await;
    assert!(
        after.is_err(),
        "the open session must be terminated by revocation"
    );
    assert!(
        !target.role_exists(&user.username).await?,
        "the user is dropped"
    );
    assert!(connect(&user.uri).await.is_err(), "a new login must fail");
    assert_eq!(
        target.role_count().await?,
        roles_before,
        "nothing is left behind"
    );
    audit_event_for(
        &server,
        "lease_revoked",
        &resp.lease_id,
        Duration::from_secs(5),
    )
    .await?;

    // Revoking again is harmless.
    let again = app.client.revoke_lease(&resp.lease_id).await?;
    assert_eq!(again.state, "revoked");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_drops_the_user_at_lease_expiry() -> anyhow::Result<()> {
    let (target, jwks, server) = setup().await?;
    let app = login_app(&server, &jwks).await?;

    let resp = app
        .client
        .creds(
            READONLY,
            &CredsRequest {
                ttl: Some("3s".into()),
                ..Default::default()
            },
        )
        .await?;
    let user = db_user(&resp)?;
    assert_eq!(resp.ttl_seconds, 3);
    assert_eq!(
        target.valid_until(&user.username).await?,
        Some(resp.expires_at)
    );
    let session = connect(&user.uri).await?;
    session.simple_query("SELECT 1").await?;

    // VALID UNTIL only stops new logins; the reaper ends the session too.
    let gone = wait_until(
        "the reaper to drop the expired user",
        REAPER_LIMIT,
        || async { Ok((!target.role_exists(&user.username).await?).then_some(unix_now())) },
    )
    .await?;
    assert!(
        gone >= resp.expires_at,
        "dropped at {gone}, before expiry {}",
        resp.expires_at
    );
    assert!(
        session.simple_query("SELECT 1").await.is_err(),
        "the open session ended"
    );
    let expired = audit_event_for(
        &server,
        "lease_expired",
        &resp.lease_id,
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!(expired["outcome"], "success");
    assert_eq!(expired["detail"]["revoked_by"], "reaper");
    let admin = login_admin(&server, &jwks).await?;
    assert_eq!(lease(&admin, &resp.lease_id).await?.state, "revoked");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_moves_valid_until_and_the_lease_expiry() -> anyhow::Result<()> {
    let (target, jwks, server) = setup().await?;
    let app = login_app(&server, &jwks).await?;
    let (lease_id, user) = issue(&app, READONLY, None).await?;
    let first = target
        .valid_until(&user.username)
        .await?
        .unwrap_or_default();

    let renewed = app
        .client
        .renew_lease(
            &lease_id,
            &RenewRequest {
                ttl: Some("3m".into()),
            },
        )
        .await?;
    let now = unix_now();
    assert!(
        renewed.expires_at > first,
        "{} > {first}",
        renewed.expires_at
    );
    assert!(
        (now + 175..=now + 181).contains(&renewed.expires_at),
        "{}",
        renewed.expires_at
    );
    assert_eq!(
        target.valid_until(&user.username).await?,
        Some(renewed.expires_at)
    );
    let admin = login_admin(&server, &jwks).await?;
    assert_eq!(
        lease(&admin, &lease_id).await?.expires_at,
        renewed.expires_at
    );
    let ev = audit_event_for(&server, "lease_renewed", &lease_id, Duration::from_secs(5)).await?;
    assert_eq!(ev["detail"]["expires_at"], renewed.expires_at);
    // The user keeps working after renewal.
    assert_read_only_access(&user).await?;

    // Never past max_ttl (10m from creation) nor the caller's session.
    let capped = app
        .client
        .renew_lease(
            &lease_id,
            &RenewRequest {
                ttl: Some("1h".into()),
            },
        )
        .await?;
    assert!(capped.expires_at <= capped.created_at + 600, "{capped:?}");
    assert_eq!(
        target.valid_until(&user.username).await?,
        Some(capped.expires_at)
    );

    // A role without `renewable` refuses, and so does a revoked lease.
    let (oneshot, _) = issue(&app, ONESHOT, None).await?;
    let e = app
        .client
        .renew_lease(&oneshot, &RenewRequest::default())
        .await
        .expect_err("db/orders-oneshot is not renewable");
    let (status, code, message) = api_error(&e);
    assert_eq!((status, code.as_str()), (400, "not_renewable"), "{message}");
    assert!(message.contains(ONESHOT), "{message}");
    app.client.revoke_lease(&lease_id).await?;
    let e = app
        .client
        .renew_lease(&lease_id, &RenewRequest::default())
        .await
        .expect_err("revoked leases cannot be renewed");
    assert_eq!(api_error(&e).1, "unknown_lease");
    assert!(!target.role_exists(&user.username).await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_by_prefix_is_admin_only_and_revokes_every_live_db_lease() -> anyhow::Result<()> {
    let (target, jwks, server) = setup().await?;
    let app = login_app(&server, &jwks).await?;
    let prod = login(
        &server,
        &jwks,
        "repo:acme/app:environment:prod",
        &json!({"environment": "prod"}),
    )
    .await?;
    let admin = login_admin(&server, &jwks).await?;

    let mut db_leases = BTreeSet::new();
    let mut users = Vec::new();
    for (caller, role) in [(&app, READONLY), (&app, READONLY), (&prod, ONESHOT)] {
        let (id, user) = issue(caller, role, None).await?;
        db_leases.insert(id);
        users.push(user);
    }
    let open = connect(&users[0].uri).await?;
    open.simple_query("SELECT 1").await?;
    let token = app
        .client
        .creds("api/orders", &CredsRequest::default())
        .await?;

    // Incident response is admin-only.
    let e = app
        .client
        .revoke_prefix("db/")
        .await
        .expect_err("a plain caller cannot revoke by prefix");
    let (status, code, _) = api_error(&e);
    assert_eq!((status, code.as_str()), (403, "admin_required"));
    for u in &users {
        assert!(
            target.role_exists(&u.username).await?,
            "refused means untouched"
        );
    }

    let out = admin.client.revoke_prefix("db/").await?;
    assert!(out.failed.is_empty(), "{:?}", out.failed);
    assert_eq!(
        out.revoked.iter().cloned().collect::<BTreeSet<_>>(),
        db_leases
    );
    for u in &users {
        assert!(
            !target.role_exists(&u.username).await?,
            "{} dropped",
            u.username
        );
    }
    assert!(target.idm_users().await?.is_empty());
    assert!(
        open.simple_query("SELECT 1").await.is_err(),
        "open session ended"
    );
    for l in all_leases(&admin).await? {
        let want = if db_leases.contains(&l.id) {
            "revoked"
        } else {
            "active"
        };
        assert_eq!(l.state, want, "{l:?}");
    }
    assert_eq!(
        lease(&admin, &token.lease_id).await?.state,
        "active",
        "oauth lease untouched"
    );

    let events = server.audit_events()?;
    let admin_events = events_of(&events, "admin");
    let ev = admin_events
        .iter()
        .find(|e| e["action"] == "revoke_prefix")
        .ok_or_else(|| anyhow::anyhow!("no revoke_prefix audit event"))?;
    assert_eq!(ev["detail"]["revoked"], 3);
    assert_eq!(ev["identity"]["subject"], ADMIN_SUBJECT);
    // Nothing left to revoke: a second run is empty and succeeds.
    assert!(admin.client.revoke_prefix("db/").await?.revoked.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_rotation_locks_out_the_old_password_and_survives_a_restart() -> anyhow::Result<()> {
    let (target, jwks, mut server) = setup().await?;
    let app = login_app(&server, &jwks).await?;
    let admin = login_admin(&server, &jwks).await?;
    issue(&app, READONLY, None).await?;
    connect(&target.pg.admin_url()).await?; // the bootstrap password works

    let e = app
        .client
        .rotate_admin(TARGET)
        .await
        .expect_err("admin only");
    assert_eq!(api_error(&e).0, 403);
    let e = admin
        .client
        .rotate_admin("no-such-target")
        .await
        .expect_err("unknown");
    let (status, code, _) = api_error(&e);
    assert_eq!((status, code.as_str()), (404, "unknown_target"));

    let rotated = admin.client.rotate_admin(TARGET).await?;
    assert_eq!((rotated.target.as_str(), rotated.version), (TARGET, 2));
    // Nobody knows the admin password any more: the bootstrap one fails.
    let old = connect(&target.pg.admin_url()).await;
    assert_eq!(sqlstate(old), Some(SqlState::INVALID_PASSWORD));
    // idmint keeps issuing with the new one.
    let (_, user) = issue(&app, READONLY, None).await?;
    assert_read_only_access(&user).await?;
    let events = server.audit_events()?;
    assert!(
        events_of(&events, "admin")
            .iter()
            .any(|e| e["action"] == "rotate_admin"
                && e["outcome"] == "success"
                && e["detail"]["target"] == TARGET),
        "rotation is audited"
    );

    // After a restart the sealed rotated password is used; the environment
    // still holds the bootstrap one, which PostgreSQL now refuses.
    server.restart().await?;
    let app = login_app(&server, &jwks).await?;
    let (_, user) = issue(&app, READONLY, None).await?;
    assert_read_only_access(&user).await?;
    let admin = login_admin(&server, &jwks).await?;
    assert_eq!(admin.client.rotate_admin(TARGET).await?.version, 3);
    let (_, user) = issue(&app, READONLY, None).await?;
    assert_read_only_access(&user).await?;
    Ok(())
}

/// The admin account the issuer documents as sufficient, without
/// superuser: `CREATEROLE`, `pg_signal_backend`, and the privilege it hands
/// out per user `WITH GRANT OPTION` (SELECT comes through `readonly`).
const LEAST_PRIVILEGE_ADMIN_SQL: &str = "
CREATE ROLE idmint_admin LOGIN CREATEROLE PASSWORD 'Least-Priv-admin-pw1';
GRANT pg_signal_backend TO idmint_admin;
GRANT USAGE ON SCHEMA reporting TO idmint_admin WITH GRANT OPTION;
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_least_privilege_admin_can_issue_revoke_and_rotate() -> anyhow::Result<()> {
    let target = Target::start().await?;
    target
        .inspector
        .batch_execute(LEAST_PRIVILEGE_ADMIN_SQL)
        .await?;
    let jwks = TestJwks::start().await?;
    let spec = target.spec_with_admin(&jwks, "idmint_admin", "Least-Priv-admin-pw1")?;
    let server = IdmintServer::start(bin(), spec).await?;
    let app = login_app(&server, &jwks).await?;
    let admin = login_admin(&server, &jwks).await?;

    let (lease_id, user) = issue(&app, READONLY, None).await?;
    let session = assert_read_only_access(&user).await?;
    let revoked = app.client.revoke_lease(&lease_id).await;
    let revoked =
        revoked.map_err(|e| anyhow::anyhow!("revoking with a non-superuser admin: {e}"))?;
    assert_eq!(revoked.state, "revoked");
    assert!(
        session.simple_query("SELECT 1").await.is_err(),
        "session ended"
    );
    assert!(!target.role_exists(&user.username).await?, "user dropped");

    assert_eq!(admin.client.rotate_admin(TARGET).await?.version, 2);
    let (lease_id, user) = issue(&app, READONLY, None).await?;
    assert_read_only_access(&user).await?;
    app.client.revoke_lease(&lease_id).await?;
    assert!(target.idm_users().await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_is_down_gets_a_503_naming_it_and_no_active_lease() -> anyhow::Result<()> {
    let (target, jwks, server) = setup().await?;
    let app = login_app(&server, &jwks).await?;
    let admin = login_admin(&server, &jwks).await?;
    // One credential while it is up: its pooled connections go stale.
    let (before, _) = issue(&app, READONLY, None).await?;
    drop(target); // kills PostgreSQL

    for _ in 0..2 {
        let started = Instant::now();
        let r = server
            .api()
            .creds(&app.session, READONLY, &json!({}))
            .await?;
        let took = started.elapsed();
        assert_eq!(r.status, 503, "{}", r.summary());
        assert_eq!(
            r.error_code(),
            Some("target_unavailable"),
            "{}",
            r.summary()
        );
        let message = r.error_message().unwrap_or_default();
        assert!(message.contains(TARGET), "names the target: {message}");
        assert!(
            took < Duration::from_secs(CONNECT_TIMEOUT_SECS + 1),
            "answered in {took:?}"
        );
    }
    let leases = all_leases(&admin).await?;
    let active: Vec<_> = leases.iter().filter(|l| l.state == "active").collect();
    assert_eq!(
        active.len(),
        1,
        "only the lease issued while up: {leases:?}"
    );
    assert_eq!(active[0].id, before);
    let events = server.audit_events()?;
    let failed = events_of(&events, "issue_failed");
    assert_eq!(failed.len(), 2, "each failure is audited");
    assert!(failed.iter().all(|e| e["error"]["code"] == "issuer_failed"));

    // Revoking while the target is down fails loudly and keeps the lease.
    let e = app
        .client
        .revoke_lease(&before)
        .await
        .expect_err("target down");
    let (status, code, message) = api_error(&e);
    assert_eq!((status, code.as_str()), (502, "revoke_failed"), "{message}");
    assert!(message.contains(TARGET), "{message}");
    assert_eq!(lease(&admin, &before).await?.state, "active");
    Ok(())
}

/// A burst of requests is cut off by `kill -9`. What this proves:
///
/// 1. write-ahead: right after the crash every user idmint created on
///    PostgreSQL has a lease row (active, or pending when the crash hit
///    between `CREATE ROLE` and activation) — none is untracked;
/// 2. reconciliation: after a restart with `pending_grace = "1s"` the
///    reaper revokes every pending lease, so the only users left are those
///    of active leases (credentials that were handed out before the crash,
///    which keep working).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_burst_leaves_no_untracked_or_orphaned_user() -> anyhow::Result<()> {
    let (target, jwks, mut server) = setup().await?;
    let app = login_app(&server, &jwks).await?;

    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..120 {
        let api = server.api().clone();
        let session = app.session.clone();
        burst.spawn(async move { api.creds(&session, READONLY, &json!({})).await });
    }
    // Kill as soon as the first users exist: most requests are in flight.
    wait_for(
        "the burst to create users",
        Duration::from_secs(20),
        Duration::from_millis(2),
        || async { Ok((target.idm_users().await?.len() >= 2).then_some(())) },
    )
    .await?;
    server.kill()?;
    let mut answered = BTreeSet::new();
    while let Some(r) = burst.join_next().await {
        if let Ok(Ok(r)) = r {
            if r.status == 200 {
                answered.insert(r.body["lease_id"].as_str().unwrap_or_default().to_string());
            }
        }
    }
    let users_at_crash = target.idm_users().await?;

    // Restart with the default pending_grace (2 min): nothing is reaped yet.
    server.restart().await?;
    let admin = login_admin(&server, &jwks).await?;
    let leases = all_leases(&admin).await?;
    let states: HashMap<&str, &str> = leases
        .iter()
        .map(|l| (l.id.as_str(), l.state.as_str()))
        .collect();
    for user in &users_at_crash {
        let owner = leases.iter().find(|l| belongs_to(user, &l.id));
        let state = owner.map(|l| l.state.as_str());
        assert!(
            matches!(state, Some("active" | "pending")),
            "user {user} has no live lease row: {state:?}"
        );
    }
    for id in &answered {
        assert_eq!(
            states.get(id.as_str()),
            Some(&"active"),
            "answered lease {id}"
        );
    }
    let pending: Vec<String> = leases
        .iter()
        .filter(|l| l.state == "pending")
        .map(|l| l.id.clone())
        .collect();
    assert!(
        !pending.is_empty(),
        "the crash cut off requests after their write-ahead: {leases:?}"
    );
    let half_made = users_at_crash
        .iter()
        .filter(|u| pending.iter().any(|id| belongs_to(u, id)))
        .count();
    eprintln!(
        "crash: {} leases, {} answered, {} pending ({half_made} with a user created but never activated)",
        leases.len(),
        answered.len(),
        pending.len()
    );

    // Restart with pending_grace = 1s: reconciliation.
    server.stop()?;
    let spec = target.spec(&jwks)?.set_reaper("pending_grace", "1s");
    spec.write(server.dir(), server.port())?;
    server.restart().await?;
    let admin = login_admin(&server, &jwks).await?;
    let leases = wait_until(
        "every pending lease to be reconciled",
        REAPER_LIMIT,
        || async {
            let leases = all_leases(&admin).await?;
            Ok((!leases.iter().any(|l| l.state == "pending")).then_some(leases))
        },
    )
    .await?;
    let users = target.idm_users().await?;
    let active: Vec<_> = leases.iter().filter(|l| l.state == "active").collect();
    for user in &users {
        assert!(
            active.iter().any(|l| belongs_to(user, &l.id)),
            "{user} is left over without an active lease"
        );
    }
    assert_eq!(
        users.len(),
        active.len(),
        "every active lease still has its user"
    );
    for id in &pending {
        let now = leases
            .iter()
            .find(|l| &l.id == id)
            .map(|l| l.state.as_str());
        assert_eq!(now, Some("revoked"), "pending lease {id} was reconciled");
    }
    let events = server.audit_events()?;
    for id in &pending {
        assert!(
            events_of(&events, "lease_expired")
                .iter()
                .any(|e| e["lease_id"] == id.as_str()),
            "reconciliation of {id} is audited"
        );
    }
    Ok(())
}

/// Subject and claims full of SQL metacharacters, quotes, backslashes,
/// Unicode and control characters (JSON cannot carry NUL through the
/// token's claims as anything but text, and the authenticator refuses it).
const HOSTILE_SUBJECT: &str =
    "repo:acme/app'; DROP ROLE admin; --\"\\ \u{7}\t\r\nÜñí©ødé 🦀 /* */ $$ x $$:ref:refs/heads/main";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_identities_get_a_sanitized_user_and_change_nothing_else() -> anyhow::Result<()> {
    let (target, jwks, server) = setup().await?;
    let roles_before = target.role_count().await?;
    let hostile = login(
        &server,
        &jwks,
        HOSTILE_SUBJECT,
        &json!({
            "workflow": "'); DROP TABLE public.canary; --",
            "actor": "\"; DROP ROLE canary; --",
            "sha": "\\'\\\"\\\\",
            "run_id": "1 OR 1=1",
            "environment": "prod\u{1b}[31m",
        }),
    )
    .await?;
    let resp = hostile
        .client
        .creds(READONLY, &CredsRequest::default())
        .await?;
    let user = db_user(&resp)?;
    assert!(
        is_derived_username(&user.username, PG_MAX_NAME),
        "{}",
        user.username
    );
    assert!(belongs_to(&user.username, &resp.lease_id));
    // The tail of the subject survives as letters and digits only.
    assert!(user.username.contains("refsheadsmain"), "{}", user.username);

    // Exactly one new role with exactly the template; the canaries and the
    // admin are untouched.
    assert_eq!(target.role_count().await?, roles_before + 1);
    assert_eq!(target.memberships(&user.username).await?, vec!["readonly"]);
    for role in ["admin", "canary", "readonly", INSPECTOR] {
        assert!(target.role_exists(role).await?, "role {role} still exists");
    }
    let note: String = target
        .inspector
        .query_one("SELECT note FROM public.canary", &[])
        .await?
        .get(0);
    assert_eq!(note, "still here");
    assert_read_only_access(&user).await?;

    // The audit log keeps the subject verbatim (it is data there).
    let issued = audit_event_for(
        &server,
        "credential_issued",
        &resp.lease_id,
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!(issued["identity"]["subject"], HOSTILE_SUBJECT);
    hostile.client.revoke_lease(&resp.lease_id).await?;
    assert_eq!(target.role_count().await?, roles_before);
    Ok(())
}

/// What `idmint server --check-config` says about a config whose roles are
/// `roles`, and whether a server with it starts.
async fn check_roles(
    target: &Target,
    jwks: &TestJwks,
    roles: &str,
) -> anyhow::Result<(CliOutput, String)> {
    let mut spec = target.spec(jwks)?;
    spec.roles = roles.to_string();
    let dir = tempfile::tempdir()?;
    idmint_testkit::server::write_root_key(&dir.path().join("root.key"))?;
    let config = spec.write(dir.path(), idmint_testkit::free_port()?)?;
    let cli = Cli::new(bin())?;
    let check = cli
        .run_env(
            &[
                "server",
                "--config",
                &config.display().to_string(),
                "--check-config",
            ],
            &spec.env,
        )
        .await?;
    let started = match IdmintServer::start(bin(), spec).await {
        Ok(_) => String::from("started"),
        Err(e) => e.to_string(),
    };
    Ok((check, started))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dangerous_templates_are_refused_at_config_time() -> anyhow::Result<()> {
    let target = Target::start().await?;
    let jwks = TestJwks::start().await?;
    let role = |name: &str, template: &str| {
        format!("[[role]]\nname = \"{name}\"\nissuer = \"{TARGET}\"\nmax_ttl = \"5m\"\n[role.database]\n{template}\n")
    };
    for (name, template) in [
        (
            "db/everything",
            "grants = [\"ALL PRIVILEGES ON DATABASE postgres\"]",
        ),
        ("db/files", "member_of = [\"pg_write_server_files\"]"),
        (
            "db/injected",
            "grants = [\"SELECT ON TABLE t; DROP ROLE admin\"]",
        ),
    ] {
        let (check, started) = check_roles(&target, &jwks, &role(name, template)).await?;
        assert!(
            !check.success(),
            "--check-config must fail for {name}:\n{}",
            check.summary()
        );
        assert!(
            check.stderr.contains(name),
            "names the role:\n{}",
            check.summary()
        );
        assert!(
            started.contains(name),
            "the server refuses to start naming {name}: {started}"
        );
    }
    // The same grant passes when the template opts in explicitly.
    let allowed = role(
        "db/everything",
        "grants = [\"ALL PRIVILEGES ON DATABASE postgres\"]\nallow_dangerous = true",
    );
    let (check, started) = check_roles(&target, &jwks, &allowed).await?;
    assert!(check.success(), "{}", check.summary());
    assert_eq!(started, "started");
    Ok(())
}

fn ok(out: &CliOutput) -> anyhow::Result<Value> {
    anyhow::ensure!(out.success(), "{}", out.summary());
    Ok(out.json()?)
}

/// A CLI user logged in with a token for `subject`.
async fn cli_login(
    server: &IdmintServer,
    jwks: &TestJwks,
    subject: &str,
    overrides: &Value,
) -> anyhow::Result<Cli> {
    let mut cli = Cli::new(bin())?;
    cli.set_env("IDMINT_ADDR", &server.base_url());
    let token_file = cli.home().join("oidc-token");
    std::fs::write(
        &token_file,
        db_support::token_for(jwks, subject, overrides)?,
    )?;
    let out = cli
        .run(&["login", "--token-file", &token_file.display().to_string()])
        .await?;
    anyhow::ensure!(out.success(), "{}", out.summary());
    Ok(cli)
}

/// The leases of the CLI's identity, by id.
async fn cli_leases(cli: &Cli) -> anyhow::Result<HashMap<String, Value>> {
    let list = ok(&cli.run(&["leases", "list", "-o", "json"]).await?)?;
    let items = list["leases"]
        .as_array()
        .or_else(|| list.as_array())
        .cloned()
        .unwrap_or_default();
    Ok(items
        .into_iter()
        .map(|l| (l["id"].as_str().unwrap_or_default().to_string(), l))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_hands_out_uris_env_and_runs_commands_with_a_user() -> anyhow::Result<()> {
    let (target, jwks, server) = setup().await?;
    let cli = cli_login(&server, &jwks, APP_SUBJECT, &json!({})).await?;

    // -o uri: only the URI, ready for a client.
    let out = cli.run(&["creds", READONLY, "-o", "uri"]).await?;
    assert!(out.success(), "{}", out.summary());
    let uri = out.stdout.trim().to_string();
    assert!(
        uri.starts_with("postgres://idm_") && !uri.contains('\n'),
        "{uri}"
    );
    let session = connect(&uri).await?;
    let me: String = session
        .query_one("SELECT current_user::text", &[])
        .await?
        .get(0);
    assert!(
        uri.starts_with(&format!("postgres://{me}:")),
        "{uri} is {me}"
    );

    // -o env: export lines a real shell evaluates; psql connects with them.
    let out = cli.run(&["creds", READONLY, "-o", "env"]).await?;
    assert!(out.success(), "{}", out.summary());
    let env_file = cli.home().join("creds.env");
    std::fs::write(&env_file, &out.stdout)?;
    let shell = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(". \"$1\" && psql \"$DATABASE_URL\" -tAc 'select current_user' && echo \"$IDMINT_LEASE_ID\"")
        .arg("sh")
        .arg(&env_file)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .await?;
    let text = String::from_utf8_lossy(&shell.stdout).to_string();
    assert!(
        shell.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&shell.stderr)
    );
    let mut lines = text.lines();
    let (env_user, env_lease) = (
        lines.next().unwrap_or_default(),
        lines.next().unwrap_or_default(),
    );
    assert!(belongs_to(env_user, env_lease), "{env_user} / {env_lease}");

    // exec: psql finds the user in its environment; the lease is revoked
    // when the command ends.
    let out = cli
        .run(&[
            "exec",
            READONLY,
            "--",
            "psql",
            "-tAc",
            "select current_user",
        ])
        .await?;
    assert!(out.success(), "{}", out.summary());
    let exec_user = out.stdout.trim().to_string();
    assert!(
        is_derived_username(&exec_user, PG_MAX_NAME) && exec_user.starts_with("idm_"),
        "{exec_user}"
    );
    assert!(
        !target.role_exists(&exec_user).await?,
        "exec revoked its user"
    );
    let leases = cli_leases(&cli).await?;
    let exec_lease = leases
        .iter()
        .find(|(id, _)| belongs_to(&exec_user, id))
        .map(|(_, l)| l.clone())
        .ok_or_else(|| anyhow::anyhow!("no lease for {exec_user}: {leases:?}"))?;
    assert_eq!(exec_lease["state"], "revoked");

    // The command's exit code is passed through, and the lease still ends.
    let out = cli
        .run(&[
            "exec",
            READONLY,
            "--",
            "psql",
            "-tAc",
            "insert into reporting.orders values (9, 9)",
        ])
        .await?;
    assert_eq!(out.code, Some(1), "{}", out.summary());
    assert!(
        out.stderr.contains("permission denied"),
        "{}",
        out.summary()
    );
    assert!(
        target.idm_users().await?.len() == 2,
        "only the uri and env users remain"
    );

    // --no-revoke-after leaves the user to its TTL.
    let out = cli
        .run(&[
            "exec",
            READONLY,
            "--no-revoke-after",
            "--",
            "psql",
            "-tAc",
            "select current_user",
        ])
        .await?;
    assert!(out.success(), "{}", out.summary());
    let kept = out.stdout.trim().to_string();
    assert!(target.role_exists(&kept).await?, "{kept} kept");

    // leases renew moves VALID UNTIL.
    let kept_lease = cli_leases(&cli)
        .await?
        .into_keys()
        .find(|id| belongs_to(&kept, id))
        .ok_or_else(|| anyhow::anyhow!("no lease for {kept}"))?;
    let renewed = ok(&cli
        .run(&["leases", "renew", &kept_lease, "--ttl", "4m", "-o", "json"])
        .await?)?;
    let expires = renewed["expires_at"].as_i64().unwrap_or_default();
    assert!(expires >= unix_now() + 230, "{renewed}");
    assert_eq!(target.valid_until(&kept).await?, Some(expires));

    // The admin's CLI: rotate the target's admin password, then revoke
    // every db/ lease; issuance keeps working after the rotation.
    let ops = cli_login(
        &server,
        &jwks,
        ADMIN_SUBJECT,
        &json!({"repository": "acme/ops"}),
    )
    .await?;
    let rotated = ok(&ops
        .run(&["target", "rotate-admin", TARGET, "-o", "json"])
        .await?)?;
    assert_eq!(rotated["version"], 2, "{rotated}");
    assert_eq!(
        sqlstate(connect(&target.pg.admin_url()).await),
        Some(SqlState::INVALID_PASSWORD)
    );
    let out = cli.run(&["creds", READONLY, "-o", "uri"]).await?;
    assert!(out.success(), "{}", out.summary());
    connect(out.stdout.trim()).await?;
    assert_eq!(target.idm_users().await?.len(), 4);

    let denied = cli
        .run(&["leases", "revoke", "--prefix", "db/", "--yes"])
        .await?;
    assert!(!denied.success(), "{}", denied.summary());
    assert_eq!(
        target.idm_users().await?.len(),
        4,
        "a refused revoke changes nothing"
    );
    let out = ok(&ops
        .run(&["leases", "revoke", "--prefix", "db/", "--yes", "-o", "json"])
        .await?)?;
    assert_eq!(out["revoked"].as_array().map(Vec::len), Some(4), "{out}");
    assert!(target.idm_users().await?.is_empty());
    assert!(
        session.simple_query("SELECT 1").await.is_err(),
        "the -o uri session ended"
    );
    Ok(())
}
