//! The `mysql` issuer against a real MariaDB 10.11 (one server per test
//! binary, each test with its own databases and users).

use idmint_core::role::DatabaseTemplate;
use idmint_core::{
    Grant, Identity, IdentityKind, LeaseId, RequestId, RevocationHandle, Role, Secret, Ttl,
    UnixTime,
};
use idmint_issuers::mysql::{MysqlIssuer, MysqlIssuerConfig, DB_USER_HANDLE};
use idmint_issuers::{IssueError, IssueRequest, Issuer, Minted, PlanRequest};
use idmint_proto::Credential;
use idmint_testkit::mariadb::{unique_name, MariaDb};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONNECT_TIMEOUT_SECS: u64 = 2;

fn shared() -> &'static MariaDb {
    match MariaDb::shared() {
        Ok(server) => server,
        Err(e) => panic!("starting the shared MariaDB: {e}"),
    }
}

fn config(name: &str, host: &str, port: u16, database: &str, admin: &str) -> MysqlIssuerConfig {
    toml::from_str(&format!(
        r#"
name = "{name}"
host = "{host}"
port = {port}
database = "{database}"
admin_user = "{admin}"
admin_password_env = "NOT_READ_BY_THE_ISSUER"
pool_size = 4
connect_timeout = "{CONNECT_TIMEOUT_SECS}s"
"#
    ))
    .expect("issuer config parses")
}

fn issuer_on(server: &MariaDb, database: &str) -> MysqlIssuer {
    let cfg = config(
        "orders-db",
        server.host(),
        server.port(),
        database,
        server.admin_user(),
    );
    MysqlIssuer::new(&cfg, Secret::new(server.admin_password().to_string())).expect("issuer")
}

fn identity(subject: &str) -> Identity {
    Identity {
        kind: IdentityKind::Ci,
        subject: subject.to_string(),
        issuer: "https://idp.example".into(),
        method: "oidc".into(),
        auth: "ci".into(),
        attributes: Default::default(),
        proof_id: "proof-1".into(),
        expires_at: UnixTime::now().plus(Duration::from_secs(3600)),
    }
}

fn role(name: &str, grants: &[String], member_of: &[String], allow_dangerous: bool) -> Role {
    Role {
        name: name.to_string(),
        description: String::new(),
        issuer: "orders-db".into(),
        max_ttl: Ttl::from_secs(3600).expect("ttl"),
        default_ttl: None,
        audiences: vec![],
        scopes: vec![],
        labels: Default::default(),
        renewable: true,
        database: Some(DatabaseTemplate {
            grants: grants.to_vec(),
            member_of: member_of.to_vec(),
            username_prefix: None,
            password_length: None,
            allow_dangerous,
        }),
        redis: None,
        ssh: None,
        aws: None,
        azure: None,
        x509: None,
        static_secret: None,
        rabbitmq: None,
    }
}

fn grants(entries: &[&str]) -> Vec<String> {
    entries.iter().map(|s| s.to_string()).collect()
}

async fn mint(
    issuer: &MysqlIssuer,
    role: &Role,
    identity: &Identity,
    ttl_secs: u64,
) -> (RevocationHandle, Result<Minted, IssueError>) {
    let lease_id = LeaseId::generate().expect("lease id");
    let request_id = RequestId::generate().expect("request id");
    let handle = issuer
        .plan(&PlanRequest {
            lease_id: &lease_id,
            role,
            identity,
        })
        .expect("plan");
    let grant = Grant {
        ttl: Ttl::from_secs(ttl_secs).expect("ttl"),
        scopes: vec![],
        audience: None,
        ttl_clamped: false,
    };
    let minted = issuer
        .issue(&IssueRequest {
            lease_id: &lease_id,
            request_id: &request_id,
            identity,
            role,
            grant: &grant,
            policy_version: 1,
            now: UnixTime::now(),
            actor: None,
            revocation: &handle,
            csr: None,
        })
        .await;
    (handle, minted)
}

async fn mint_ok(
    issuer: &MysqlIssuer,
    role: &Role,
    identity: &Identity,
) -> (RevocationHandle, Minted) {
    let (handle, minted) = mint(issuer, role, identity, 600).await;
    match minted {
        Ok(m) => (handle, m),
        Err(e) => panic!("issuing {}: {e}", handle.value),
    }
}

/// (username, password, uri) of a minted database user.
fn user_of(minted: &Minted) -> (String, String, String) {
    match &minted.credential {
        Credential::DatabaseUser {
            username,
            password,
            uri,
            ..
        } => (username.clone(), password.clone(), uri.clone()),
        other => panic!("expected a database user, got {other:?}"),
    }
}

/// Log in with the credential's own URI (over TCP, as a client would).
async fn login(uri: &str) -> Result<Conn, mysql_async::Error> {
    let opts = Opts::from_url(uri).expect("the credential's URI parses");
    Conn::new(OptsBuilder::from_opts(opts).prefer_socket(false)).await
}

async fn root(server: &MariaDb, sql: &str) -> String {
    match server.sql(sql).await {
        Ok(out) => out,
        Err(e) => panic!("root SQL failed: {e}"),
    }
}

async fn user_count(server: &MariaDb, user: &str) -> usize {
    root(
        server,
        &format!("SELECT COUNT(*) FROM mysql.user WHERE User = '{user}'"),
    )
    .await
    .trim()
    .parse()
    .expect("a count")
}

/// `SHOW GRANTS` for the user, with the password hash cut off, sorted.
async fn grants_of(server: &MariaDb, user: &str) -> Vec<String> {
    let mut grants: Vec<String> = root(server, &format!("SHOW GRANTS FOR '{user}'@'%'"))
        .await
        .lines()
        .map(|l| match l.find(" IDENTIFIED BY PASSWORD") {
            Some(at) => l[..at].to_string(),
            None => l.to_string(),
        })
        .collect();
    grants.sort();
    grants
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// Databases `app_N` (tables `orders`, `secrets`, `canary`) and `other_N`
/// (table `t`) for one test.
struct Schema {
    app: String,
    other: String,
}

async fn schema(server: &MariaDb) -> Schema {
    let app = unique_name("app");
    let other = unique_name("other");
    root(
        server,
        &format!(
            "CREATE DATABASE {app}; CREATE DATABASE {other};
             CREATE TABLE {app}.orders (id INT PRIMARY KEY, item VARCHAR(20));
             CREATE TABLE {app}.secrets (id INT PRIMARY KEY, secret VARCHAR(20));
             CREATE TABLE {app}.canary (id INT);
             CREATE TABLE {other}.t (id INT);
             INSERT INTO {app}.orders VALUES (1, 'book'), (2, 'pen');
             INSERT INTO {app}.secrets VALUES (1, 'hunter2');
             INSERT INTO {other}.t VALUES (7);"
        ),
    )
    .await;
    Schema { app, other }
}

#[tokio::test]
async fn the_user_can_do_exactly_what_the_template_grants() {
    let server = shared();
    let s = schema(server).await;
    let issuer = issuer_on(server, &s.app);
    let role = role(
        "db/orders-readonly",
        &grants(&[&format!("SELECT ON {}.orders", s.app)]),
        &[],
        false,
    );
    assert_eq!(issuer.validate_role(&role), Ok(()));
    let mut ident = identity("repo:acme/orders:ref:refs/heads/main");
    let before = UnixTime::now();
    let (handle, minted) = mint_ok(&issuer, &role, &ident).await;
    let (user, password, uri) = user_of(&minted);

    assert_eq!(handle.kind, DB_USER_HANDLE);
    assert_eq!(handle.value, user);
    assert!(
        user.len() <= 32 && user.starts_with("idm_dborder"),
        "{user}"
    );
    assert_eq!(password.len(), 32);
    assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(minted.secret_material.expose(), password.as_bytes());
    assert_eq!(
        uri,
        format!(
            "mysql://{user}:{password}@127.0.0.1:{}/{}",
            server.port(),
            s.app
        )
    );
    match &minted.credential {
        Credential::DatabaseUser {
            engine,
            host,
            port,
            database,
            ..
        } => {
            assert_eq!(engine, "mysql");
            assert_eq!(host, "127.0.0.1");
            assert_eq!(*port, server.port());
            assert_eq!(database.as_deref(), Some(s.app.as_str()));
        }
        other => panic!("{other:?}"),
    }
    let expected_exp = before.plus(Duration::from_secs(600)).secs();
    assert!(
        (minted.expires_at.secs() - expected_exp).abs() <= 2,
        "{:?}",
        minted.expires_at
    );

    // Exactly one privilege besides the login itself.
    assert_eq!(
        grants_of(server, &user).await,
        sorted(vec![
            format!("GRANT USAGE ON *.* TO `{user}`@`%`"),
            format!("GRANT SELECT ON `{}`.`orders` TO `{user}`@`%`", s.app),
        ])
    );

    let mut conn = login(&uri)
        .await
        .expect("the issued user logs in with its URI");
    let items: Vec<String> = conn
        .query("SELECT item FROM orders ORDER BY id")
        .await
        .expect("select");
    assert_eq!(items, vec!["book", "pen"]);
    let insert = conn
        .query_drop("INSERT INTO orders VALUES (3, 'ink')")
        .await
        .unwrap_err();
    assert_eq!(server_code(&insert), Some(1142), "{insert}");
    let secrets = conn.query_drop("SELECT * FROM secrets").await.unwrap_err();
    assert_eq!(server_code(&secrets), Some(1142), "{secrets}");
    let other = conn
        .query_drop(format!("SELECT * FROM {}.t", s.other))
        .await
        .unwrap_err();
    assert_eq!(server_code(&other), Some(1142), "{other}");
    let create = conn
        .query_drop("CREATE TABLE mine (i INT)")
        .await
        .unwrap_err();
    assert_eq!(server_code(&create), Some(1142), "{create}");
    let databases: Vec<String> = conn.query("SHOW DATABASES").await.expect("show databases");
    assert!(!databases.contains(&s.other), "{databases:?}");
    conn.disconnect().await.expect("disconnect");

    // Renewal changes nothing in the database and keeps the user working.
    issuer
        .renew(&handle, UnixTime::now().plus(Duration::from_secs(1200)))
        .await
        .expect("renew");
    let mut conn = login(&uri).await.expect("still works after renew");
    conn.query_drop("SELECT 1 FROM orders")
        .await
        .expect("select after renew");
    conn.disconnect().await.expect("disconnect");

    // The credential never outlives the caller's proof.
    ident.expires_at = UnixTime::now().plus(Duration::from_secs(60));
    let (short, minted) = mint(&issuer, &role, &ident, 600).await;
    let minted = minted.expect("issue with a short proof");
    assert!(minted.expires_at <= ident.expires_at);
    issuer.revoke(&short).await.expect("revoke");
    issuer.revoke(&handle).await.expect("revoke");
}

#[tokio::test]
async fn revoke_ends_open_sessions_and_removes_the_user_idempotently() {
    let server = shared();
    let s = schema(server).await;
    let issuer = issuer_on(server, &s.app);
    let role = role(
        "db/app",
        &grants(&[&format!("SELECT ON {}.*", s.app)]),
        &[],
        false,
    );
    let (handle, minted) = mint_ok(&issuer, &role, &identity("svc")).await;
    let (user, _, uri) = user_of(&minted);

    let mut open = login(&uri).await.expect("login");
    let mut second = login(&uri).await.expect("second login");
    open.query_drop("SELECT * FROM orders")
        .await
        .expect("works before revoke");
    second
        .query_drop("SELECT 1")
        .await
        .expect("works before revoke");
    assert_eq!(user_count(server, &user).await, 1);

    issuer.revoke(&handle).await.expect("revoke");

    assert!(
        open.query_drop("SELECT * FROM orders").await.is_err(),
        "an open session survived the revocation"
    );
    assert!(
        second.query_drop("SELECT 1").await.is_err(),
        "the second session survived"
    );
    let relogin = login(&uri).await.map(|_| ()).unwrap_err();
    // MariaDB answers 1698 rather than 1045 for a user that does not exist.
    assert!(
        matches!(server_code(&relogin), Some(1045 | 1698)),
        "{relogin}"
    );
    assert_eq!(user_count(server, &user).await, 0);
    let sessions = root(
        server,
        &format!("SELECT COUNT(*) FROM information_schema.processlist WHERE user = '{user}'"),
    )
    .await;
    assert_eq!(sessions.trim(), "0");

    // Idempotent: again, and for a user that never existed.
    issuer.revoke(&handle).await.expect("second revoke");
    let never = RevocationHandle {
        kind: DB_USER_HANDLE.into(),
        value: "idm_never_created_000000000000".into(),
    };
    issuer
        .revoke(&never)
        .await
        .expect("revoking an unknown user");
    let foreign = RevocationHandle {
        kind: "token_id".into(),
        value: user.clone(),
    };
    assert!(matches!(
        issuer.revoke(&foreign).await,
        Err(IssueError::Internal(_))
    ));
}

#[tokio::test]
async fn hostile_subjects_and_role_names_change_no_statement() {
    let server = shared();
    let s = schema(server).await;
    let canary_user = unique_name("canary");
    root(
        server,
        &format!("CREATE USER '{canary_user}'@'%' IDENTIFIED BY 'x'"),
    )
    .await;
    // A database and table whose names need quoting, granted through a
    // backquoted template entry.
    let odd_db = format!("{} we`ird", s.app);
    root(
        server,
        &format!(
            "CREATE DATABASE `{}`; CREATE TABLE `{}`.`t-1` (i INT); INSERT INTO `{}`.`t-1` VALUES (5)",
            odd_db.replace('`', "``"),
            odd_db.replace('`', "``"),
            odd_db.replace('`', "``")
        ),
    )
    .await;
    let issuer = issuer_on(server, &s.app);
    let template = grants(&[
        &format!("SELECT ON {}.orders", s.app),
        &format!("select on `{}`.`t-1`", odd_db.replace('`', "``")),
    ]);
    let corpus = [
        "repo:a'b\";DROP USER admin;--",
        "x'); DROP TABLE canary; --",
        "\\'; GRANT ALL ON *.* TO CURRENT_USER; #",
        "nul\0byte",
        "é🦀 ünïcödé \u{202e}",
        "*",
        "%",
        "_",
        "a b\tc\nd",
        "-- comment",
        "/* comment */",
        "`backtick`",
        "",
        &"long".repeat(100),
    ];
    let mut users = Vec::new();
    for (i, hostile) in corpus.iter().enumerate() {
        let role = role(&format!("r'{i}\";--/*`"), &template, &[], false);
        let (handle, minted) = mint_ok(&issuer, &role, &identity(hostile)).await;
        let (user, _, uri) = user_of(&minted);
        assert!(
            user.len() <= 32
                && user
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{hostile:?} → {user:?}"
        );
        assert_eq!(
            grants_of(server, &user).await,
            sorted(vec![
                format!("GRANT USAGE ON *.* TO `{user}`@`%`"),
                format!("GRANT SELECT ON `{}`.`orders` TO `{user}`@`%`", s.app),
                format!(
                    "GRANT SELECT ON `{}`.`t-1` TO `{user}`@`%`",
                    odd_db.replace('`', "``")
                ),
            ]),
            "{hostile:?}"
        );
        let mut conn = login(&uri).await.expect("login");
        let v: Option<i32> = conn
            .query_first(format!(
                "SELECT i FROM `{}`.`t-1`",
                odd_db.replace('`', "``")
            ))
            .await
            .expect("reads the oddly named table");
        assert_eq!(v, Some(5));
        conn.disconnect().await.expect("disconnect");
        users.push((handle, user));
    }
    // Nothing else happened: the canaries and the admin are intact.
    assert_eq!(user_count(server, &canary_user).await, 1);
    assert_eq!(user_count(server, "admin").await, 1);
    assert_eq!(
        root(server, &format!("SELECT COUNT(*) FROM {}.canary", s.app))
            .await
            .trim(),
        "0"
    );
    for (handle, user) in &users {
        issuer.revoke(handle).await.expect("revoke");
        assert_eq!(user_count(server, user).await, 0, "{user}");
    }

    // Hostile template values never reach the server: they do not parse.
    for entry in [
        format!("SELECT ON {}.orders; DROP USER {canary_user}", s.app),
        format!("SELECT ON {}.orders TO '{canary_user}'@'%'", s.app),
        format!("SELECT ON `{}`.orders` -- ", s.app),
        format!("SELECT ON {}.orders /*", s.app),
        format!("SELECT ON {}.`or\\`ders`", s.app),
        format!("SELECT ON {}.`orders\0`", s.app),
    ] {
        let r = role("db/bad", std::slice::from_ref(&entry), &[], true);
        let err = issuer.validate_role(&r).unwrap_err();
        assert!(
            err.contains("db/bad") && err.contains("does not parse"),
            "{entry:?}: {err}"
        );
        let (_, minted) = mint(&issuer, &r, &identity("x"), 60).await;
        assert!(matches!(minted, Err(IssueError::Config(_))), "{entry:?}");
    }
    let r = role("db/bad", &[], &[format!("{canary_user}'@'%")], false);
    assert!(issuer.validate_role(&r).unwrap_err().contains("member_of"));
    assert_eq!(user_count(server, &canary_user).await, 1);
}

#[tokio::test]
async fn database_wildcards_in_names_are_taken_literally() {
    let server = shared();
    let exact = unique_name("a_b");
    let lookalike = exact.replacen('_', "x", 1);
    root(
        server,
        &format!(
            "CREATE DATABASE {exact}; CREATE TABLE {exact}.t (i INT);
             CREATE DATABASE {lookalike}; CREATE TABLE {lookalike}.t (i INT);"
        ),
    )
    .await;
    let issuer = issuer_on(server, &exact);
    let role = role(
        "db/wild",
        &grants(&[&format!("SELECT ON {exact}.*")]),
        &[],
        false,
    );
    let (handle, minted) = mint_ok(&issuer, &role, &identity("svc")).await;
    let (_, _, uri) = user_of(&minted);
    let mut conn = login(&uri).await.expect("login");
    conn.query_drop(format!("SELECT * FROM {exact}.t"))
        .await
        .expect("granted database");
    let err = conn
        .query_drop(format!("SELECT * FROM {lookalike}.t"))
        .await
        .unwrap_err();
    assert_eq!(
        server_code(&err),
        Some(1142),
        "`_` acted as a wildcard: {err}"
    );
    conn.disconnect().await.expect("disconnect");
    issuer.revoke(&handle).await.expect("revoke");
}

#[tokio::test]
async fn member_of_grants_and_activates_the_role() {
    let server = shared();
    let s = schema(server).await;
    let reader = unique_name("reader");
    // Granting a role needs it WITH ADMIN OPTION (its creator, root here,
    // has that implicitly; the issuer's admin does not).
    root(
        server,
        &format!(
            "CREATE ROLE {reader}; GRANT SELECT ON {}.secrets TO {reader};
             GRANT {reader} TO '{}'@'%' WITH ADMIN OPTION",
            s.app,
            server.admin_user()
        ),
    )
    .await;
    let issuer = issuer_on(server, &s.app);
    let role = role(
        "db/reader",
        &grants(&[&format!("SELECT ON {}.orders", s.app)]),
        std::slice::from_ref(&reader),
        false,
    );
    assert_eq!(issuer.validate_role(&role), Ok(()));
    let (handle, minted) = mint_ok(&issuer, &role, &identity("svc")).await;
    let (user, _, uri) = user_of(&minted);
    let mut conn = login(&uri).await.expect("login");
    let current: Option<String> = conn
        .query_first("SELECT CURRENT_ROLE()")
        .await
        .expect("role");
    assert_eq!(current.as_deref(), Some(reader.as_str()));
    let secret: Option<String> = conn
        .query_first("SELECT secret FROM secrets")
        .await
        .expect("the role's privilege is active at login");
    assert_eq!(secret.as_deref(), Some("hunter2"));
    conn.disconnect().await.expect("disconnect");
    issuer.revoke(&handle).await.expect("revoke");
    assert_eq!(user_count(server, &user).await, 0);
    // The role itself is untouched.
    assert_eq!(
        root(
            server,
            &format!("SELECT COUNT(*) FROM mysql.user WHERE User = '{reader}' AND is_role = 'Y'")
        )
        .await
        .trim(),
        "1"
    );
}

#[tokio::test]
async fn a_failing_grant_leaves_no_partial_user() {
    let server = shared();
    let s = schema(server).await;
    let issuer = issuer_on(server, &s.app);
    let broken = role(
        "db/broken",
        &grants(&[
            &format!("SELECT ON {}.orders", s.app),
            &format!("SELECT ON {}.no_such_table", s.app),
        ]),
        &[],
        false,
    );
    // The template is well-formed; only the server can tell the table is missing.
    assert_eq!(issuer.validate_role(&broken), Ok(()));
    let (handle, minted) = mint(&issuer, &broken, &identity("svc"), 60).await;
    let err = match minted {
        Err(e) => e,
        Ok(_) => panic!("a grant on a missing table succeeded"),
    };
    match &err {
        IssueError::Target {
            target,
            message,
            retryable,
        } => {
            assert_eq!(target, "orders-db");
            assert!(!retryable, "{message}");
            assert!(
                message.contains("no_such_table") && message.contains("1146"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        user_count(server, &handle.value).await,
        0,
        "partial user left behind"
    );
    // A role naming a role that does not exist fails the same way.
    let no_role = role("db/norole", &[], &[unique_name("missing_role")], false);
    let (handle, minted) = mint(&issuer, &no_role, &identity("svc"), 60).await;
    assert!(matches!(
        minted,
        Err(IssueError::Target {
            retryable: false,
            ..
        })
    ));
    assert_eq!(
        user_count(server, &handle.value).await,
        0,
        "partial user left behind"
    );
}

#[tokio::test]
async fn dangerous_templates_are_refused_at_config_time() {
    let server = shared();
    let issuer = issuer_on(server, "app");
    for entry in [
        "ALL PRIVILEGES ON app.*",
        "ALL ON app.orders",
        "SELECT ON *.*",
        "SUPER ON *.*",
        "FILE ON *.*",
        "PROCESS ON *.*",
        "SHUTDOWN ON *.*",
        "RELOAD ON *.*",
        "CREATE USER ON *.*",
        "GRANT OPTION ON app.*",
        "SELECT ON app.* WITH GRANT OPTION",
        "SELECT ON mysql.user",
        "SELECT ON performance_schema.*",
    ] {
        let dangerous = role("db/danger", &grants(&[entry]), &[], false);
        let err = issuer.validate_role(&dangerous).unwrap_err();
        assert!(
            err.contains("db/danger")
                && err.contains("dangerous")
                && err.contains("allow_dangerous"),
            "{entry}: {err}"
        );
        let (_, minted) = mint(&issuer, &dangerous, &identity("x"), 60).await;
        assert!(
            matches!(minted, Err(IssueError::Config(_))),
            "{entry} was minted"
        );
        let allowed = role("db/danger", &grants(&[entry]), &[], true);
        assert_eq!(issuer.validate_role(&allowed), Ok(()), "{entry}");
    }
    let mut no_template = role("db/none", &[], &[], false);
    no_template.database = None;
    assert!(issuer
        .validate_role(&no_template)
        .unwrap_err()
        .contains("[role.database]"));
    let empty = role("db/empty", &[], &[], false);
    assert!(issuer
        .validate_role(&empty)
        .unwrap_err()
        .contains("grants nothing"));
}

fn assert_fast_retryable(err: &IssueError, started: Instant) {
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(CONNECT_TIMEOUT_SECS + 1),
        "took {elapsed:?}: {err}"
    );
    match err {
        IssueError::Target {
            target, retryable, ..
        } => {
            assert_eq!(target, "orders-db");
            assert!(retryable, "{err}");
        }
        other => panic!("expected a retryable target error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_target_that_is_down_fails_fast_and_retryably() {
    let role = role("db/app", &grants(&["SELECT ON app.*"]), &[], false);
    // Nothing listens: connection refused.
    let closed_port = idmint_testkit::free_port().expect("free port");
    let cfg = config("orders-db", "127.0.0.1", closed_port, "app", "admin");
    let issuer = MysqlIssuer::new(&cfg, Secret::new("pw".into())).expect("new does no IO");
    let started = Instant::now();
    let (handle, minted) = mint(&issuer, &role, &identity("svc"), 60).await;
    let err = minted.err().expect("issued against a closed port");
    assert_fast_retryable(&err, started);
    assert!(err.to_string().contains("cannot be reached"), "{err}");
    let started = Instant::now();
    let err = issuer.revoke(&handle).await.unwrap_err();
    assert_fast_retryable(&err, started);

    // Something accepts TCP but never speaks: the handshake times out.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let cfg = config("orders-db", "127.0.0.1", port, "app", "admin");
    let issuer = MysqlIssuer::new(&cfg, Secret::new("pw".into())).expect("issuer");
    let started = Instant::now();
    let (_, minted) = mint(&issuer, &role, &identity("svc"), 60).await;
    let err = minted.err().expect("issued against a silent listener");
    assert_fast_retryable(&err, started);
    assert!(err.to_string().contains("cannot be reached"), "{err}");
    holder.abort();
}

#[tokio::test]
async fn a_server_dying_under_pooled_connections_is_a_retryable_error() {
    let mut own = tokio::task::spawn_blocking(MariaDb::start)
        .await
        .expect("join")
        .expect("starting a MariaDB of its own");
    own.sql("CREATE DATABASE app; CREATE TABLE app.t (i INT)")
        .await
        .expect("setup");
    let issuer = issuer_on(&own, "app");
    let role = role("db/app", &grants(&["SELECT ON app.t"]), &[], false);
    let (handle, _) = mint_ok(&issuer, &role, &identity("svc")).await;
    own.kill().expect("kill");
    let started = Instant::now();
    let (_, minted) = mint(&issuer, &role, &identity("svc"), 60).await;
    assert_fast_retryable(&minted.err().expect("issued on a dead server"), started);
    let started = Instant::now();
    let err = issuer.revoke(&handle).await.unwrap_err();
    assert_fast_retryable(&err, started);
}

#[tokio::test]
async fn set_admin_password_changes_it_and_the_issuer_keeps_working() {
    let server = shared();
    let s = schema(server).await;
    let admin = unique_name("rotadmin");
    let old_password = "old-password";
    server
        .create_admin(&admin, old_password)
        .await
        .expect("create admin");
    let cfg = config("orders-db", server.host(), server.port(), &s.app, &admin);
    let issuer = MysqlIssuer::new(&cfg, Secret::new(old_password.into())).expect("issuer");
    let role = role(
        "db/app",
        &grants(&[&format!("SELECT ON {}.orders", s.app)]),
        &[],
        false,
    );
    let (before, _) = mint_ok(&issuer, &role, &identity("svc")).await;

    // A quote in the new password exercises the literal escaping for real.
    let new_password = "n3w-Pass'word \"with\" quotes";
    issuer
        .set_admin_password(&Secret::new(new_password.into()))
        .await
        .expect("rotate");
    let admin_uri = |pw: &str| {
        let mut url =
            url::Url::parse(&format!("mysql://127.0.0.1:{}/", server.port())).expect("url");
        url.set_username(&admin).expect("user");
        url.set_password(Some(pw)).expect("password");
        url.to_string()
    };
    let old = login(&admin_uri(old_password))
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(
        server_code(&old),
        Some(1045),
        "the old password still works: {old}"
    );
    let mut new = login(&admin_uri(new_password))
        .await
        .expect("the new password works");
    new.query_drop("SELECT 1").await.expect("query");
    new.disconnect().await.expect("disconnect");

    let (after, minted) = mint_ok(&issuer, &role, &identity("svc")).await;
    let (user, _, _) = user_of(&minted);
    assert_eq!(user_count(server, &user).await, 1);
    issuer.revoke(&before).await.expect("revoke after rotation");
    issuer.revoke(&after).await.expect("revoke after rotation");

    // A password that cannot be written portably is refused before anything changes.
    let err = issuer
        .set_admin_password(&Secret::new("back\\slash".into()))
        .await
        .unwrap_err();
    assert!(matches!(err, IssueError::Config(_)), "{err}");
    assert!(!err.to_string().contains("back\\slash"), "{err}");
    let still = login(&admin_uri(new_password)).await.expect("unchanged");
    still.disconnect().await.expect("disconnect");
}

#[tokio::test]
async fn sixteen_parallel_issues_all_succeed() {
    let server = shared();
    let s = schema(server).await;
    let issuer = Arc::new(issuer_on(server, &s.app));
    let role = Arc::new(role(
        "db/par",
        &grants(&[&format!("SELECT ON {}.orders", s.app)]),
        &[],
        false,
    ));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16 {
        let issuer = Arc::clone(&issuer);
        let role = Arc::clone(&role);
        tasks.spawn(async move {
            let (handle, minted) = mint(&issuer, &role, &identity(&format!("svc-{i}")), 600).await;
            (handle, minted.map(|m| user_of(&m)))
        });
    }
    let mut minted = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (handle, result) = joined.expect("task");
        let (user, _, uri) = result.unwrap_or_else(|e| panic!("parallel issue failed: {e}"));
        minted.push((handle, user, uri));
    }
    assert_eq!(minted.len(), 16);
    let mut names: Vec<&str> = minted.iter().map(|(_, u, _)| u.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 16, "user names collided");
    for (_, user, uri) in &minted {
        let mut conn = login(uri).await.unwrap_or_else(|e| panic!("{user}: {e}"));
        conn.query_drop("SELECT * FROM orders")
            .await
            .expect("select");
        conn.disconnect().await.expect("disconnect");
    }
    let mut revokes = tokio::task::JoinSet::new();
    for (handle, _, _) in &minted {
        let handle = handle.clone();
        let issuer = Arc::clone(&issuer);
        revokes.spawn(async move { issuer.revoke(&handle).await });
    }
    while let Some(joined) = revokes.join_next().await {
        joined.expect("task").expect("parallel revoke");
    }
    for (_, user, _) in &minted {
        assert_eq!(user_count(server, user).await, 0, "{user}");
    }
}
