//! The `postgres` issuer against a real PostgreSQL 15 (one throwaway server
//! per test, see `idmint_testkit::postgres`).
//!
//! The fixture database has a `reporting` schema (readable through the
//! group role `readonly`), an `app` schema nobody was granted, and canaries
//! (a table and a role) that hostile input must not touch.

use idmint_core::{
    Grant, Identity, IdentityKind, LeaseId, RequestId, RevocationHandle, Role, Secret, Ttl,
    UnixTime,
};
use idmint_issuers::postgres::{PostgresIssuer, PostgresIssuerConfig, DB_USER_HANDLE};
use idmint_issuers::{IssueError, IssueRequest, Issuer, Minted, PlanRequest};
use idmint_proto::Credential;
use idmint_testkit::poll_until;
use idmint_testkit::postgres::PgServer;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

const FIXTURE_SQL: &str = "
CREATE SCHEMA reporting;
CREATE TABLE reporting.sales (id int, amount int);
INSERT INTO reporting.sales VALUES (1, 10), (2, 20);
CREATE SCHEMA app;
CREATE TABLE app.secrets (id int);
INSERT INTO app.secrets VALUES (1);
CREATE ROLE readonly NOLOGIN;
GRANT USAGE ON SCHEMA reporting TO readonly;
GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO readonly;
CREATE TABLE public.canary (id int);
INSERT INTO public.canary VALUES (42);
CREATE ROLE canary_user NOLOGIN;
CREATE ROLE archive NOLOGIN;
";

/// A server with the fixture schema and an admin connection.
struct Fixture {
    pg: PgServer,
    admin: Client,
}

async fn connect(config: &tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

async fn connect_as(
    pg: &PgServer,
    user: &str,
    password: &str,
) -> Result<Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(pg.host())
        .port(pg.port())
        .dbname(pg.database())
        .user(user)
        .password(password)
        .connect_timeout(Duration::from_secs(5));
    connect(&config).await
}

impl Fixture {
    async fn start() -> Fixture {
        Self::start_with(&[]).await
    }

    async fn start_with(settings: &[(&str, &str)]) -> Fixture {
        let pg = PgServer::start_with(settings).expect("start PostgreSQL");
        let admin = connect_as(&pg, pg.admin_user(), pg.admin_password())
            .await
            .expect("admin login");
        admin.batch_execute(FIXTURE_SQL).await.expect("fixture SQL");
        Fixture { pg, admin }
    }

    fn config(&self) -> PostgresIssuerConfig {
        PostgresIssuerConfig {
            name: "orders-db".into(),
            host: self.pg.host().into(),
            port: self.pg.port(),
            database: self.pg.database().into(),
            admin_user: self.pg.admin_user().into(),
            admin_password_env: None,
            admin_password_file: None,
            pool_size: None,
            connect_timeout: Some(Ttl::from_secs(2).unwrap()),
            public_host: None,
            on_revoke: None,
            scram_iterations: None,
        }
    }

    fn issuer(&self) -> PostgresIssuer {
        self.issuer_with(self.config())
    }

    fn issuer_with(&self, cfg: PostgresIssuerConfig) -> PostgresIssuer {
        PostgresIssuer::new(&cfg, Secret::new(self.pg.admin_password().to_string()))
            .expect("issuer")
    }

    async fn role_exists(&self, user: &str) -> bool {
        let row = self
            .admin
            .query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[&user])
            .await
            .unwrap();
        row.get::<_, i64>(0) == 1
    }

    async fn count_roles(&self) -> i64 {
        self.admin
            .query_one("SELECT count(*) FROM pg_roles", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Direct memberships of `user`, sorted.
    async fn groups_of(&self, user: &str) -> Vec<String> {
        self.admin
            .query(
                "SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid \
                 JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = $1 ORDER BY 1",
                &[&user],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    async fn valid_until(&self, user: &str) -> i64 {
        self.admin
            .query_one(
                "SELECT extract(epoch FROM rolvaliduntil)::bigint FROM pg_roles WHERE rolname = $1",
                &[&user],
            )
            .await
            .unwrap()
            .get(0)
    }

    async fn canaries_intact(&self) {
        let v: i32 = self
            .admin
            .query_one("SELECT id FROM public.canary", &[])
            .await
            .expect("canary table still exists")
            .get(0);
        assert_eq!(v, 42);
        assert!(self.role_exists("canary_user").await, "canary role dropped");
        assert!(self.role_exists("readonly").await, "group role dropped");
        let n: i64 = self
            .admin
            .query_one("SELECT count(*) FROM reporting.sales", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 2, "reporting.sales changed");
    }
}

fn identity(subject: &str) -> Identity {
    Identity {
        kind: IdentityKind::Ci,
        subject: subject.into(),
        issuer: "https://token.actions.githubusercontent.com".into(),
        method: "oidc".into(),
        auth: "github".into(),
        attributes: Default::default(),
        proof_id: "proof-1".into(),
        expires_at: UnixTime::now().plus(Duration::from_secs(3600)),
    }
}

fn role(name: &str, database: &str) -> Role {
    let text = format!(
        "[[role]]\nname = \"{name}\"\nissuer = \"orders-db\"\nmax_ttl = \"1h\"\nrenewable = true\n\
         [role.database]\n{database}\n"
    );
    Role::parse_file("roles.toml", &text)
        .unwrap()
        .remove(name)
        .unwrap()
}

fn readonly_role() -> Role {
    role("db/orders-readonly", "member_of = [\"readonly\"]")
}

fn grant(ttl_secs: u64) -> Grant {
    Grant {
        ttl: Ttl::from_secs(ttl_secs).unwrap(),
        scopes: vec![],
        audience: None,
        ttl_clamped: false,
    }
}

/// plan + issue, as the server does.
async fn mint(
    issuer: &PostgresIssuer,
    role: &Role,
    identity: &Identity,
    ttl_secs: u64,
) -> Result<(RevocationHandle, Minted), IssueError> {
    let lease_id = LeaseId::generate().unwrap();
    let handle = issuer.plan(&PlanRequest {
        lease_id: &lease_id,
        role,
        identity,
    })?;
    let request_id = RequestId::generate().unwrap();
    let g = grant(ttl_secs);
    let minted = issuer
        .issue(&IssueRequest {
            lease_id: &lease_id,
            request_id: &request_id,
            identity,
            role,
            grant: &g,
            policy_version: 1,
            now: UnixTime::now(),
            actor: None,
            revocation: &handle,
            csr: None,
        })
        .await?;
    Ok((handle, minted))
}

struct Issued {
    username: String,
    password: String,
    uri: String,
}

fn issued(m: &Minted) -> Issued {
    match &m.credential {
        Credential::DatabaseUser {
            engine,
            username,
            password,
            uri,
            ..
        } => {
            assert_eq!(engine, "postgres");
            Issued {
                username: username.clone(),
                password: password.clone(),
                uri: uri.clone(),
            }
        }
        other => panic!("expected a database user, got {other:?}"),
    }
}

async fn login_with_uri(uri: &str) -> Result<Client, tokio_postgres::Error> {
    let config: tokio_postgres::Config = uri.parse().expect("URI parses");
    connect(&config).await
}

fn code_of(e: &tokio_postgres::Error) -> Option<SqlState> {
    e.code().cloned()
}

#[tokio::test]
async fn issued_group_member_can_read_reporting_only() {
    let fx = Fixture::start().await;
    let issuer = fx.issuer();
    let r = readonly_role();
    issuer.validate_role(&r).unwrap();
    let before = UnixTime::now();
    let (handle, minted) = mint(
        &issuer,
        &r,
        &identity("repo:acme/app:ref:refs/heads/main"),
        600,
    )
    .await
    .unwrap();
    let user = issued(&minted);
    assert_eq!(handle.kind, DB_USER_HANDLE);
    assert_eq!(handle.value, user.username);
    assert_eq!(minted.secret_material.expose(), user.password.as_bytes());
    assert!(
        minted.expires_at.secs() >= before.secs() + 600
            && minted.expires_at.secs() <= before.secs() + 602
    );
    match &minted.credential {
        Credential::DatabaseUser {
            host,
            port,
            database,
            ..
        } => {
            assert_eq!(host, "127.0.0.1");
            assert_eq!(*port, fx.pg.port());
            assert_eq!(database.as_deref(), Some("postgres"));
        }
        _ => unreachable!(),
    }
    assert_eq!(
        user.uri,
        format!(
            "postgres://{}:{}@127.0.0.1:{}/postgres",
            user.username,
            user.password,
            fx.pg.port()
        )
    );

    // The catalog: a plain login role, member of exactly `readonly`, expiring with the lease.
    let row = fx
        .admin
        .query_one(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolcanlogin \
             FROM pg_roles WHERE rolname = $1",
            &[&user.username],
        )
        .await
        .unwrap();
    let flags: Vec<bool> = (0..6).map(|i| row.get(i)).collect();
    assert_eq!(flags, [false, false, false, false, false, true]);
    assert_eq!(fx.groups_of(&user.username).await, ["readonly"]);
    assert_eq!(
        fx.valid_until(&user.username).await,
        minted.expires_at.secs()
    );
    let stored: String = fx
        .admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&user.username],
        )
        .await
        .unwrap()
        .get(0);
    assert!(stored.starts_with("SCRAM-SHA-256$256:"), "{stored}");

    // Through the URI handed out: reads reporting, cannot write it, cannot read app.
    let c = login_with_uri(&user.uri)
        .await
        .expect("issued user logs in");
    let n: i64 = c
        .query_one("SELECT count(*) FROM reporting.sales", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    let e = c
        .batch_execute("INSERT INTO reporting.sales VALUES (3, 30)")
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), Some(SqlState::INSUFFICIENT_PRIVILEGE), "{e:?}");
    let e = c
        .batch_execute("DELETE FROM reporting.sales")
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), Some(SqlState::INSUFFICIENT_PRIVILEGE), "{e:?}");
    let e = c.query("SELECT * FROM app.secrets", &[]).await.unwrap_err();
    assert_eq!(code_of(&e), Some(SqlState::INSUFFICIENT_PRIVILEGE), "{e:?}");
    let e = c
        .batch_execute("CREATE TABLE reporting.mine (x int)")
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), Some(SqlState::INSUFFICIENT_PRIVILEGE), "{e:?}");
    let e = c.batch_execute("CREATE ROLE sneaky").await.unwrap_err();
    assert_eq!(code_of(&e), Some(SqlState::INSUFFICIENT_PRIVILEGE), "{e:?}");
    // A wrong password does not work.
    let e = connect_as(&fx.pg, &user.username, "wrong-password-wrong")
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), Some(SqlState::INVALID_PASSWORD), "{e:?}");

    issuer.revoke(&handle).await.unwrap();
    assert!(!fx.role_exists(&user.username).await);
    fx.canaries_intact().await;
}

#[tokio::test]
async fn per_user_grants_give_exactly_the_template() {
    let fx = Fixture::start().await;
    let issuer = fx.issuer();
    let r = role(
        "db/reporting-grants",
        "grants = [\"USAGE ON SCHEMA reporting\", \"SELECT ON ALL TABLES IN SCHEMA reporting\"]",
    );
    issuer.validate_role(&r).unwrap();
    let (handle, minted) = mint(&issuer, &r, &identity("svc"), 600).await.unwrap();
    let user = issued(&minted);
    assert!(fx.groups_of(&user.username).await.is_empty());
    let privs = fx
        .admin
        .query_one(
            "SELECT has_table_privilege($1, 'reporting.sales', 'SELECT'), \
                    has_table_privilege($1, 'reporting.sales', 'INSERT'), \
                    has_table_privilege($1, 'reporting.sales', 'UPDATE'), \
                    has_table_privilege($1, 'app.secrets', 'SELECT'), \
                    has_schema_privilege($1, 'reporting', 'CREATE')",
            &[&user.username],
        )
        .await
        .unwrap();
    let got: Vec<bool> = (0..5).map(|i| privs.get(i)).collect();
    assert_eq!(got, [true, false, false, false, false]);
    let c = login_with_uri(&user.uri).await.unwrap();
    assert_eq!(
        c.query("SELECT * FROM reporting.sales", &[])
            .await
            .unwrap()
            .len(),
        2
    );
    let e = c
        .batch_execute("UPDATE reporting.sales SET amount = 0")
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), Some(SqlState::INSUFFICIENT_PRIVILEGE), "{e:?}");
    let e = c.query("SELECT * FROM app.secrets", &[]).await.unwrap_err();
    assert_eq!(code_of(&e), Some(SqlState::INSUFFICIENT_PRIVILEGE), "{e:?}");

    // DROP OWNED removed the per-user ACL entries, so the drop succeeded.
    issuer.revoke(&handle).await.unwrap();
    assert!(!fx.role_exists(&user.username).await);
    let acl: String = fx
        .admin
        .query_one("SELECT coalesce(relacl::text, '') FROM pg_class WHERE oid = 'reporting.sales'::regclass", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!acl.contains(&user.username), "{acl}");
}

#[tokio::test]
async fn valid_until_ends_new_logins() {
    let fx = Fixture::start().await;
    let issuer = fx.issuer();
    let (handle, minted) = mint(&issuer, &readonly_role(), &identity("short"), 3)
        .await
        .unwrap();
    let user = issued(&minted);
    login_with_uri(&user.uri)
        .await
        .expect("login before expiry");
    let refused = poll_until(
        "the expired user's login to be refused",
        Duration::from_secs(15),
        || async {
            match login_with_uri(&user.uri).await {
                Ok(_) => Ok(None),
                Err(e) => Ok(Some((UnixTime::now(), code_of(&e)))),
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(
        refused.1,
        Some(SqlState::INVALID_PASSWORD),
        "expired logins fail authentication"
    );
    assert!(
        refused.0 >= minted.expires_at,
        "refused at {:?}, before expiry {:?}",
        refused.0,
        minted.expires_at
    );
    // Expired users are still dropped by revoke (the reaper's job).
    issuer.revoke(&handle).await.unwrap();
    assert!(!fx.role_exists(&user.username).await);
}

#[tokio::test]
async fn revoke_ends_open_sessions_drops_the_user_and_is_idempotent() {
    let fx = Fixture::start().await;
    let issuer = fx.issuer();
    let (handle, minted) = mint(&issuer, &readonly_role(), &identity("victim"), 600)
        .await
        .unwrap();
    let user = issued(&minted);
    let open = login_with_uri(&user.uri).await.unwrap();
    let second = login_with_uri(&user.uri).await.unwrap();
    assert_eq!(
        open.query("SELECT 1 FROM reporting.sales", &[])
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(second.query("SELECT 1", &[]).await.unwrap().len(), 1);

    issuer.revoke(&handle).await.unwrap();

    // revoke waits for the sessions to end: the very next query fails.
    assert!(open
        .query("SELECT 1 FROM reporting.sales", &[])
        .await
        .is_err());
    assert!(second.query("SELECT 1", &[]).await.is_err());
    assert!(!fx.role_exists(&user.username).await, "no user is left");
    let sessions: i64 = fx
        .admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
            &[&user.username],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(sessions, 0);
    let e = login_with_uri(&user.uri).await.unwrap_err();
    assert_eq!(code_of(&e), Some(SqlState::INVALID_PASSWORD), "{e:?}");

    issuer.revoke(&handle).await.expect("second revoke is Ok");
    // A handle that never existed is Ok too (crash between plan and issue).
    issuer
        .revoke(&RevocationHandle {
            kind: DB_USER_HANDLE.into(),
            value: "idm_never_created_1".into(),
        })
        .await
        .unwrap();
    fx.canaries_intact().await;
}

#[tokio::test]
async fn revoke_keeps_created_objects_by_reassigning_them() {
    let fx = Fixture::start().await;
    let r = role(
        "db/app-writer",
        "grants = [\"USAGE, CREATE ON SCHEMA app\"]",
    );
    // Default: objects go to the admin.
    let issuer = fx.issuer();
    let (handle, minted) = mint(&issuer, &r, &identity("writer"), 600).await.unwrap();
    let c = login_with_uri(&issued(&minted).uri).await.unwrap();
    c.batch_execute(
        "CREATE TABLE app.made_by_user (x int); INSERT INTO app.made_by_user VALUES (7)",
    )
    .await
    .unwrap();
    issuer.revoke(&handle).await.unwrap();
    let owner: String = fx
        .admin
        .query_one("SELECT tableowner::text FROM pg_tables WHERE schemaname = 'app' AND tablename = 'made_by_user'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, "admin");
    let x: i32 = fx
        .admin
        .query_one("SELECT x FROM app.made_by_user", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(x, 7, "data survives revocation");

    // reassign_owned_to:<role>
    let mut cfg = fx.config();
    cfg.on_revoke = Some("reassign_owned_to:archive".into());
    let issuer = fx.issuer_with(cfg);
    let (handle, minted) = mint(&issuer, &r, &identity("writer2"), 600).await.unwrap();
    let user = issued(&minted);
    let c = login_with_uri(&user.uri).await.unwrap();
    c.batch_execute("CREATE TABLE app.second (x int)")
        .await
        .unwrap();
    issuer.revoke(&handle).await.unwrap();
    assert!(!fx.role_exists(&user.username).await);
    let owner: String = fx
        .admin
        .query_one(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 'second'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, "archive");
}

#[tokio::test]
async fn fewer_scram_rounds_still_authenticate() {
    let fx = Fixture::start().await;
    let mut cfg = fx.config();
    cfg.scram_iterations = Some(16);
    let issuer = fx.issuer_with(cfg);
    let (handle, minted) = mint(&issuer, &readonly_role(), &identity("fast"), 600)
        .await
        .unwrap();
    let user = issued(&minted);
    let stored: String = fx
        .admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&user.username],
        )
        .await
        .unwrap()
        .get(0);
    assert!(stored.starts_with("SCRAM-SHA-256$16:"), "{stored}");
    let c = login_with_uri(&user.uri)
        .await
        .expect("login with a 16-round verifier");
    assert_eq!(
        c.query("SELECT * FROM reporting.sales", &[])
            .await
            .unwrap()
            .len(),
        2
    );
    let e = connect_as(&fx.pg, &user.username, "wrong-password-wrong")
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), Some(SqlState::INVALID_PASSWORD), "{e:?}");
    issuer.revoke(&handle).await.unwrap();
}

#[tokio::test]
async fn renew_extends_valid_until() {
    let fx = Fixture::start().await;
    let issuer = fx.issuer();
    let (handle, minted) = mint(&issuer, &readonly_role(), &identity("renewer"), 60)
        .await
        .unwrap();
    let user = issued(&minted);
    assert_eq!(
        fx.valid_until(&user.username).await,
        minted.expires_at.secs()
    );
    let later = minted.expires_at.plus(Duration::from_secs(3600));
    issuer.renew(&handle, later).await.unwrap();
    assert_eq!(fx.valid_until(&user.username).await, later.secs());
    login_with_uri(&user.uri)
        .await
        .expect("still logs in after renewal");

    issuer.revoke(&handle).await.unwrap();
    let e = issuer.renew(&handle, later).await.unwrap_err();
    match e {
        IssueError::Target {
            retryable, message, ..
        } => {
            assert!(!retryable);
            assert!(message.contains("no longer exists"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

/// Identity claims (subjects) and role names that try to break out of the
/// statement; none may change anything but the one user created.
#[tokio::test]
async fn injection_corpus_changes_no_statement() {
    let fx = Fixture::start_with(&[("log_statement", "all")]).await;
    let issuer = fx.issuer();
    let subjects = [
        "repo:acme/app'; DROP TABLE public.canary; --",
        "\"; DROP ROLE canary_user; --",
        "x\\'; SELECT pg_sleep(10); --",
        "a\0b",
        "*",
        "has spaces and -- comments /* here */",
        "ユニコード🦀é",
        "$$; DROP TABLE public.canary; $$",
        "E'\\x27'",
        "",
    ];
    let role_names = [
        "db/orders-readonly",
        "r'; DROP TABLE public.canary; --",
        "r\"x",
        "рол😀",
        "a/*b*/c",
    ];
    let roles_before = fx.count_roles().await;
    let mut handles = Vec::new();
    for (i, subject) in subjects.iter().enumerate() {
        let mut r = readonly_role();
        r.name = role_names[i % role_names.len()].to_string();
        let (handle, minted) = mint(&issuer, &r, &identity(subject), 600).await.unwrap();
        let user = issued(&minted);
        assert!(
            user.username
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{}",
            user.username
        );
        assert!(fx.role_exists(&user.username).await);
        assert_eq!(fx.groups_of(&user.username).await, ["readonly"]);
        let c = login_with_uri(&user.uri).await.unwrap();
        assert_eq!(
            c.query("SELECT * FROM reporting.sales", &[])
                .await
                .unwrap()
                .len(),
            2
        );
        handles.push((handle, user.password));
    }
    assert_eq!(
        fx.count_roles().await,
        roles_before + subjects.len() as i64,
        "exactly one role per issue"
    );
    fx.canaries_intact().await;

    // The clear password never reaches the server (only a SCRAM verifier does).
    let log = fx.pg.server_log().unwrap();
    assert!(log.contains("CREATE ROLE"), "log_statement=all is on");
    for (_, password) in &handles {
        assert!(
            !log.contains(password.as_str()),
            "a password reached the server log"
        );
    }

    // A quoted member_of name carrying SQL is just a (missing) role name.
    let hostile_group = role(
        "db/evil-group",
        "member_of = [\"\\\"readonly\\\"\\\"; DROP TABLE public.canary; --\\\"\"]",
    );
    issuer
        .validate_role(&hostile_group)
        .expect("a quoted name is a valid name");
    let e = mint(&issuer, &hostile_group, &identity("g"), 600)
        .await
        .err()
        .expect("must fail");
    match e {
        IssueError::Target {
            retryable, message, ..
        } => {
            assert!(!retryable, "{message}");
            assert!(message.contains("does not exist"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Hostile grant strings never get that far.
    for entry in [
        "SELECT ON TABLE public.canary; DROP TABLE public.canary",
        "SELECT ON TABLE public.canary TO canary_user",
        "SELECT ON TABLE public.canary WITH GRANT OPTION",
        "SELECT ON TABLE public.canary -- x",
        "SELECT ON TABLE public.canary /* x */",
        "SELECT ON TABLE 'x'",
        "SELECT ON TABLE a\\b",
        "SELECT ON TABLE \"a\0b\"",
        "DROP ON TABLE public.canary",
        "SELECT ON *.*",
    ] {
        let quoted = entry
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\0', "\\u0000");
        let r = role("db/evil-grant", &format!("grants = [\"{quoted}\"]"));
        let err = issuer.validate_role(&r).unwrap_err();
        assert!(
            err.contains("db/evil-grant") && err.contains("grant"),
            "{entry}: {err}"
        );
        let e = mint(&issuer, &r, &identity("g"), 600)
            .await
            .err()
            .expect("must fail");
        assert!(matches!(e, IssueError::Config(_)), "{entry}: {e:?}");
    }
    assert_eq!(
        fx.count_roles().await,
        roles_before + subjects.len() as i64,
        "failed issues left nothing"
    );
    fx.canaries_intact().await;

    for (handle, _) in &handles {
        issuer.revoke(handle).await.unwrap();
    }
    assert_eq!(fx.count_roles().await, roles_before);
    fx.canaries_intact().await;
}

#[tokio::test]
async fn dangerous_templates_are_refused() {
    let fx = Fixture::start().await;
    let issuer = fx.issuer();
    for template in [
        "grants = [\"ALL PRIVILEGES ON ALL TABLES IN SCHEMA reporting\"]",
        "grants = [\"ALL ON TABLE app.secrets\"]",
        "grants = [\"CREATE ON DATABASE postgres\"]",
        "grants = [\"SELECT ON TABLE pg_authid\"]",
        "grants = [\"SELECT ON ALL TABLES IN SCHEMA pg_catalog\"]",
        "member_of = [\"pg_read_server_files\"]",
        "member_of = [\"pg_write_server_files\"]",
        "member_of = [\"pg_execute_server_program\"]",
        "member_of = [\"pg_signal_backend\"]",
        "member_of = [\"admin\"]",
        "member_of = [\"postgres\"]",
    ] {
        let r = role("db/too-much", template);
        let err = issuer.validate_role(&r).unwrap_err();
        assert!(
            err.contains("dangerous") && err.contains("allow_dangerous"),
            "{template}: {err}"
        );
        let e = mint(&issuer, &r, &identity("d"), 600)
            .await
            .err()
            .expect("must fail");
        assert!(matches!(e, IssueError::Config(_)), "{template}: {e:?}");
    }
    // A group that looks harmless but is a superuser, or nests a pg_* role:
    // validate_role cannot know, the guard inside the transaction does.
    fx.admin
        .batch_execute(
            "CREATE ROLE dba SUPERUSER NOLOGIN; CREATE ROLE ops NOLOGIN; \
             CREATE ROLE ops_inner NOLOGIN IN ROLE ops; GRANT pg_read_server_files TO ops_inner; \
             CREATE ROLE makers CREATEROLE NOLOGIN",
        )
        .await
        .unwrap();
    let before = fx.count_roles().await;
    for group in ["dba", "ops_inner", "makers"] {
        let r = role(
            "db/sneaky",
            &format!("member_of = [\"readonly\", \"{group}\"]"),
        );
        issuer.validate_role(&r).unwrap();
        let e = mint(&issuer, &r, &identity("s"), 600)
            .await
            .err()
            .expect("must fail");
        match e {
            IssueError::Target {
                retryable, message, ..
            } => {
                assert!(!retryable);
                assert!(message.contains("privileged role"), "{group}: {message}");
            }
            other => panic!("{group}: {other:?}"),
        }
    }
    assert_eq!(
        fx.count_roles().await,
        before,
        "refused issues leave no user"
    );

    // allow_dangerous lets an operator opt in explicitly.
    let r = role(
        "db/ops",
        "member_of = [\"ops_inner\"]\nallow_dangerous = true",
    );
    issuer.validate_role(&r).unwrap();
    let (handle, _) = mint(&issuer, &r, &identity("ops"), 600).await.unwrap();
    issuer.revoke(&handle).await.unwrap();
}

#[tokio::test]
async fn unreachable_target_fails_fast_and_retryably() {
    let port = idmint_testkit::free_port().unwrap();
    let cfg = PostgresIssuerConfig {
        name: "down-db".into(),
        host: "127.0.0.1".into(),
        port,
        database: "postgres".into(),
        admin_user: "admin".into(),
        admin_password_env: None,
        admin_password_file: None,
        pool_size: Some(2),
        connect_timeout: Some(Ttl::from_secs(2).unwrap()),
        public_host: None,
        on_revoke: None,
        scram_iterations: None,
    };
    // Constructing it does no IO.
    let issuer = PostgresIssuer::new(&cfg, Secret::new("pw".into())).unwrap();
    let started = Instant::now();
    let e = mint(&issuer, &readonly_role(), &identity("x"), 60)
        .await
        .err()
        .expect("must fail");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    match &e {
        IssueError::Target {
            target,
            message,
            retryable,
        } => {
            assert_eq!(target, "down-db");
            assert!(*retryable);
            assert!(message.contains("cannot be reached"), "{message}");
            assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.is_retryable());
    let started = Instant::now();
    let e = issuer
        .revoke(&RevocationHandle {
            kind: DB_USER_HANDLE.into(),
            value: "idm_x_y_1".into(),
        })
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn set_admin_password_rotates_and_keeps_working() {
    let fx = Fixture::start().await;
    let issuer = fx.issuer();
    // Warm the pool so there are connections logged in with the old password.
    let (h1, _) = mint(&issuer, &readonly_role(), &identity("before"), 600)
        .await
        .unwrap();
    let old = fx.pg.admin_password().to_string();
    let new = Secret::new("N3w-admin-pass'word\\with\"quotes".to_string());
    issuer.set_admin_password(&new).await.unwrap();

    let e = connect_as(&fx.pg, "admin", &old).await.unwrap_err();
    assert_eq!(
        code_of(&e),
        Some(SqlState::INVALID_PASSWORD),
        "old password must fail: {e:?}"
    );
    connect_as(&fx.pg, "admin", new.expose())
        .await
        .expect("new password works");
    let stored: String = fx
        .admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'admin'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        stored.starts_with("SCRAM-SHA-256$4096:"),
        "admin gets full rounds: {stored}"
    );

    // The issuer keeps working (its pool reconnected with the new password).
    let (h2, m2) = mint(&issuer, &readonly_role(), &identity("after"), 600)
        .await
        .unwrap();
    login_with_uri(&issued(&m2).uri).await.unwrap();
    issuer.revoke(&h1).await.unwrap();
    issuer.revoke(&h2).await.unwrap();

    // An issuer built with the old password now fails, clearly and not retryably.
    let stale = fx.issuer();
    match mint(&stale, &readonly_role(), &identity("stale"), 60)
        .await
        .err()
        .expect("must fail")
    {
        IssueError::Target {
            retryable, message, ..
        } => {
            assert!(!retryable, "{message}");
            assert!(message.contains("28P01"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A retry after a lost answer: the old password fails, the new one is
    // already in force, and the issuer adopts it.
    stale
        .set_admin_password(&new)
        .await
        .expect("adopts the already-rotated password");
    let (h3, _) = mint(&stale, &readonly_role(), &identity("adopted"), 60)
        .await
        .unwrap();
    stale.revoke(&h3).await.unwrap();
    let wrong = fx.issuer();
    let e = wrong
        .set_admin_password(&Secret::new("not-the-real-one".into()))
        .await
        .unwrap_err();
    assert!(!e.is_retryable(), "{e:?}");
    assert!(e.to_string().contains("not changed"), "{e}");
    // Unusable passwords are refused before anything changes.
    let e = issuer
        .set_admin_password(&Secret::new("pässwört".into()))
        .await
        .unwrap_err();
    assert!(matches!(e, IssueError::Config(_)), "{e:?}");
    connect_as(&fx.pg, "admin", new.expose())
        .await
        .expect("password unchanged");
}

async fn issue_concurrently(
    issuer: &Arc<PostgresIssuer>,
    r: &Role,
    n: usize,
) -> Vec<RevocationHandle> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let issuer = Arc::clone(issuer);
        let r = r.clone();
        tasks.spawn(async move {
            let (handle, minted) =
                mint(&issuer, &r, &identity(&format!("worker-{i}")), 600).await?;
            assert_eq!(handle.value, issued(&minted).username);
            Ok::<_, IssueError>(handle)
        });
    }
    let mut handles = Vec::new();
    while let Some(done) = tasks.join_next().await {
        handles.push(done.unwrap().unwrap());
    }
    handles
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_issues_all_succeed_with_distinct_users() {
    let fx = Fixture::start().await;
    let issuer = Arc::new(fx.issuer());
    for r in [
        readonly_role(),
        // Per-user grants on the same table from parallel transactions need
        // the ACL lock (PostgreSQL: "tuple concurrently updated").
        role("db/grants", "grants = [\"USAGE ON SCHEMA reporting\", \"SELECT ON ALL TABLES IN SCHEMA reporting\"]"),
    ] {
        let handles = issue_concurrently(&issuer, &r, 32).await;
        let mut names: Vec<String> = handles.iter().map(|h| h.value.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 32, "distinct users");
        for name in &names {
            assert!(fx.role_exists(name).await, "{name}");
        }
        let mut tasks = tokio::task::JoinSet::new();
        for h in handles {
            let issuer = Arc::clone(&issuer);
            tasks.spawn(async move { issuer.revoke(&h).await });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
        for name in &names {
            assert!(!fx.role_exists(name).await, "{name}");
        }
    }
    fx.canaries_intact().await;
}

/// Not a timed assertion: prints issue+revoke throughput at concurrency 32
/// for the report (`cargo test --release … -- --nocapture throughput`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_issue_and_revoke_at_concurrency_32() {
    const WORKERS: usize = 32;
    const PER_WORKER: usize = 50;
    let fx = Fixture::start().await;
    let before = fx.count_roles().await;
    let grants = role(
        "db/grants",
        "grants = [\"USAGE ON SCHEMA reporting\", \"SELECT ON ALL TABLES IN SCHEMA reporting\"]",
    );
    for (label, r, rounds) in [
        (
            "member_of group, scram_iterations 4096",
            readonly_role(),
            4096,
        ),
        (
            "member_of group, scram_iterations 256",
            readonly_role(),
            256,
        ),
        ("member_of group, scram_iterations 16", readonly_role(), 16),
        ("per-user grants, scram_iterations 256", grants, 256),
    ] {
        let mut cfg = fx.config();
        cfg.scram_iterations = Some(rounds);
        let issuer = Arc::new(fx.issuer_with(cfg));
        // Phase 1: issue only (the request path); phase 2: revoke them all
        // (the reaper's work), both with WORKERS callers in parallel.
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..WORKERS {
            let issuer = Arc::clone(&issuer);
            let r = r.clone();
            tasks.spawn(async move {
                let id = identity(&format!("bench-{w}"));
                let mut handles = Vec::with_capacity(PER_WORKER);
                for _ in 0..PER_WORKER {
                    handles.push(mint(&issuer, &r, &id, 600).await?.0);
                }
                Ok::<_, IssueError>(handles)
            });
        }
        let mut batches = Vec::new();
        while let Some(done) = tasks.join_next().await {
            batches.push(done.unwrap().unwrap());
        }
        let issue_secs = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for handles in batches {
            let issuer = Arc::clone(&issuer);
            tasks.spawn(async move {
                for h in handles {
                    issuer.revoke(&h).await?;
                }
                Ok::<_, IssueError>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
        let revoke_secs = started.elapsed().as_secs_f64();
        let total = (WORKERS * PER_WORKER) as f64;
        println!(
            "postgres issuer, {label}: {total} creds at concurrency {WORKERS}: issue {:.0}/s \
             (mean latency {:.1} ms), revoke {:.0}/s, issue+revoke {:.0} pairs/s",
            total / issue_secs,
            issue_secs * 1000.0 * WORKERS as f64 / total,
            total / revoke_secs,
            total / (issue_secs + revoke_secs),
        );
    }
    assert_eq!(
        fx.count_roles().await,
        before,
        "every issued user was dropped"
    );
    // The client-side cost of pre-hashing (PBKDF2, 4096 rounds) per credential.
    let t = Instant::now();
    for _ in 0..100 {
        let v = idmint_issuers::postgres::scram_verifier("abcdefghijklmnopqrstuvwxyz012345", 4096)
            .unwrap();
        assert!(v.expose().starts_with("SCRAM-SHA-256$4096:"));
    }
    println!(
        "SCRAM-SHA-256 verifier at 4096 rounds: {:.2} ms each (idmint side)",
        t.elapsed().as_secs_f64() * 1000.0 / 100.0
    );
}
