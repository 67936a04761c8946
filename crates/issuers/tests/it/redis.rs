//! The `redis` issuer against a real Redis 7 (`redis-server` from Debian),
//! one throwaway server per test ([`RedisServer`], about 50 ms to start).
//!
//! The tests connect as the issued user and check what it can and cannot
//! do, that revocation closes open connections, that hostile subjects and
//! templates change nothing on the server, and how the issuer behaves when
//! the target is down, hangs, restarts or gets a new admin password.

use idmint_core::{
    Grant, Identity, IdentityKind, LeaseId, RequestId, RevocationHandle, Role, Secret, Ttl,
    UnixTime,
};
use idmint_issuers::redis::{
    RedisIssuer, RedisIssuerConfig, REDIS_DANGEROUS_COMMANDS, SHARED_STATE_COMMANDS,
};
use idmint_issuers::{IssueError, IssueRequest, Issuer, Minted, PlanRequest};
use idmint_proto::Credential;
use idmint_testkit::redis::RedisServer;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const PLAIN_ROLE: &str = r#"
[redis]
keys = ["app:*"]
commands = ["+get", "+set", "+ping"]
"#;

fn role(name: &str, body: &str) -> Role {
    let text = format!(
        "[[role]]\nname = {name:?}\nissuer = \"cache\"\nmax_ttl = \"1h\"\n{}",
        body.replace("[redis]", "[role.redis]")
    );
    Role::parse_file("roles.toml", &text)
        .unwrap()
        .remove(name)
        .unwrap()
}

fn identity(subject: &str) -> Identity {
    Identity {
        kind: IdentityKind::Ci,
        subject: subject.to_string(),
        issuer: "https://idp.example".into(),
        method: "oidc".into(),
        auth: "ci".into(),
        attributes: Default::default(),
        proof_id: "proof".into(),
        expires_at: UnixTime::now().plus(Duration::from_secs(3600)),
    }
}

fn config(host: &str, port: u16, timeout_secs: u64) -> RedisIssuerConfig {
    RedisIssuerConfig {
        name: "cache".into(),
        host: host.into(),
        port,
        admin_user: "admin".into(),
        admin_password_env: None,
        admin_password_file: None,
        pool_size: Some(2),
        connect_timeout: Some(Ttl::from_secs(timeout_secs).unwrap()),
        public_host: None,
    }
}

fn issuer_for(server: &RedisServer) -> RedisIssuer {
    let cfg = config(server.host(), server.port(), 5);
    RedisIssuer::new(&cfg, Secret::new(server.admin_password().to_string())).unwrap()
}

/// plan + issue, as the server drives it.
async fn mint(
    issuer: &RedisIssuer,
    role: &Role,
    identity: &Identity,
) -> Result<(RevocationHandle, Minted), IssueError> {
    let lease_id = LeaseId::generate().unwrap();
    let request_id = RequestId::generate().unwrap();
    let handle = issuer.plan(&PlanRequest {
        lease_id: &lease_id,
        role,
        identity,
    })?;
    let grant = Grant {
        ttl: Ttl::from_secs(600).unwrap(),
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
        .await?;
    Ok((handle, minted))
}

struct Creds {
    username: String,
    password: String,
    uri: String,
}

fn creds(minted: &Minted) -> Creds {
    match &minted.credential {
        Credential::DatabaseUser {
            username,
            password,
            uri,
            ..
        } => Creds {
            username: username.clone(),
            password: password.clone(),
            uri: uri.clone(),
        },
        other => panic!("expected a database user, got {other:?}"),
    }
}

async fn connect(url: &str) -> RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Duration::from_secs(5))
        .set_response_timeout(Duration::from_secs(5));
    redis::Client::open(url)?
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

async fn admin(server: &RedisServer) -> MultiplexedConnection {
    connect(&server.admin_url()).await.unwrap()
}

async fn acl_users(admin: &mut MultiplexedConnection) -> BTreeSet<String> {
    redis::cmd("ACL")
        .arg("USERS")
        .query_async(admin)
        .await
        .unwrap()
}

/// The rules of `user` from `ACL LIST`, without its password hash, as a set
/// (Redis reorders command rules).
async fn acl_rules(admin: &mut MultiplexedConnection, user: &str) -> Option<BTreeSet<String>> {
    let lines: Vec<String> = redis::cmd("ACL")
        .arg("LIST")
        .query_async(admin)
        .await
        .unwrap();
    let prefix = format!("user {user} ");
    lines.iter().find_map(|l| {
        l.strip_prefix(&prefix).map(|rest| {
            rest.split(' ')
                .filter(|t| !t.starts_with('#'))
                .map(str::to_string)
                .collect()
        })
    })
}

fn set_of(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn error_code(r: RedisResult<redis::Value>) -> String {
    match r {
        Ok(v) => format!("ok: {v:?}"),
        Err(e) => e.code().unwrap_or("(no code)").to_string(),
    }
}

#[tokio::test]
async fn issued_user_can_do_exactly_what_the_template_grants() {
    let server = RedisServer::start().await.unwrap();
    let issuer = issuer_for(&server);
    let role = role("cache/app", PLAIN_ROLE);
    issuer.validate_role(&role).unwrap();
    let who = identity("repo:acme/app:ref:refs/heads/main");
    let before = UnixTime::now();
    let (handle, minted) = mint(&issuer, &role, &who).await.unwrap();
    let c = creds(&minted);

    assert_eq!(handle.value, c.username);
    assert!(
        c.username
            .starts_with("idm_cacheapp_repoacmeapprefrefsheadsmain_"),
        "{}",
        c.username
    );
    assert_eq!(
        c.uri,
        format!(
            "redis://{}:{}@127.0.0.1:{}/",
            c.username,
            c.password,
            server.port()
        )
    );
    assert_eq!(minted.secret_material.expose(), c.password.as_bytes());
    assert!(c.password.len() >= 32 && c.password.chars().all(|ch| ch.is_ascii_alphanumeric()));
    let Credential::DatabaseUser {
        engine,
        host,
        port,
        database,
        ..
    } = &minted.credential
    else {
        unreachable!()
    };
    assert_eq!(
        (engine.as_str(), host.as_str(), *port, database),
        ("redis", "127.0.0.1", server.port(), &None)
    );
    let ttl = minted.expires_at.secs() - before.secs();
    assert!((599..=601).contains(&ttl), "expires in {ttl}s");

    let mut user = connect(&c.uri).await.unwrap();
    let _: () = redis::cmd("PING").query_async(&mut user).await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("app:x")
        .arg("42")
        .query_async(&mut user)
        .await
        .unwrap();
    let got: String = redis::cmd("GET")
        .arg("app:x")
        .query_async(&mut user)
        .await
        .unwrap();
    assert_eq!(got, "42");
    for forbidden in [
        vec!["GET", "other:x"],
        vec!["SET", "other:x", "1"],
        vec!["DEL", "app:x"],
        vec!["FLUSHALL"],
        vec!["CONFIG", "GET", "maxmemory"],
        vec!["KEYS", "*"],
        vec!["ACL", "SETUSER", "evil", "on", ">x", "+@all"],
    ] {
        let r = redis::cmd(forbidden[0])
            .arg(&forbidden[1..])
            .query_async(&mut user)
            .await;
        assert_eq!(error_code(r), "NOPERM", "{forbidden:?}");
    }

    // Exactly the template, nothing else.
    let mut admin = admin(&server).await;
    let rules = acl_rules(&mut admin, &c.username).await.unwrap();
    assert_eq!(
        rules,
        set_of(&[
            "on",
            "sanitize-payload",
            "~app:*",
            "resetchannels",
            "-@all",
            "+get",
            "+set",
            "+ping"
        ])
    );
    let untouched: Option<String> = redis::cmd("GET")
        .arg("other:x")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(untouched, None);
    issuer
        .renew(&handle, UnixTime::now().plus(Duration::from_secs(60)))
        .await
        .unwrap();
}

#[tokio::test]
async fn revocation_closes_open_connections_and_is_idempotent() {
    let server = RedisServer::start().await.unwrap();
    let issuer = issuer_for(&server);
    let role = role("cache/app", PLAIN_ROLE);
    let (handle, minted) = mint(&issuer, &role, &identity("svc")).await.unwrap();
    let c = creds(&minted);
    let mut admin = admin(&server).await;
    let baseline = set_of(&["admin", "default"]);
    assert_eq!(
        acl_users(&mut admin).await,
        &baseline | &set_of(&[&c.username])
    );

    let mut open = connect(&c.uri).await.unwrap();
    let _: () = redis::cmd("PING").query_async(&mut open).await.unwrap();
    issuer.revoke(&handle).await.unwrap();

    // Redis closed the already-authenticated connection…
    let after = redis::cmd("PING").query_async::<()>(&mut open).await;
    let err = after.expect_err("the open connection must be closed by ACL DELUSER");
    assert!(
        err.is_io_error() || err.is_connection_dropped() || err.is_unrecoverable_error(),
        "{err:?}"
    );
    // …a new login fails…
    let again = connect(&c.uri)
        .await
        .expect_err("the revoked user must not log in");
    assert!(
        err_text(&again).contains("WRONGPASS")
            || again.kind() == redis::ErrorKind::AuthenticationFailed,
        "{again:?}"
    );
    // …and no user is left.
    assert_eq!(acl_users(&mut admin).await, baseline);
    assert!(acl_rules(&mut admin, &c.username).await.is_none());

    // Idempotent: again, and for a planned user that was never created.
    issuer.revoke(&handle).await.unwrap();
    let never = issuer
        .plan(&PlanRequest {
            lease_id: &LeaseId::generate().unwrap(),
            role: &role,
            identity: &identity("svc"),
        })
        .unwrap();
    issuer.revoke(&never).await.unwrap();
}

fn err_text(e: &redis::RedisError) -> String {
    format!("{e} {:?}", e.code())
}

#[tokio::test]
async fn hostile_subjects_and_role_names_change_nothing() {
    let server = RedisServer::start().await.unwrap();
    let issuer = issuer_for(&server);
    let mut admin = admin(&server).await;
    // A canary user and key that no issuance may touch.
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "canary",
            "on",
            ">canarypw",
            "~canary:*",
            "-@all",
            "+get",
        ])
        .query_async(&mut admin)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("canary:k")
        .arg("v")
        .query_async(&mut admin)
        .await
        .unwrap();
    let canary_rules = acl_rules(&mut admin, "canary").await.unwrap();
    let baseline = acl_users(&mut admin).await;

    let subjects = [
        "repo:a'b\";DROP ROLE x;--",
        "x on >pw ~* +@all",
        "x\r\nACL SETUSER evil on >pw +@all\r\n",
        "back\\slash\\\\",
        "nul\0byte",
        "unicodé 🦀 ä",
        "*",
        "sp ace",
        "-- comment",
        "/* c */",
        "%R~*",
        "&*",
        "",
    ];
    let roles = [
        role("cache/app", PLAIN_ROLE),
        role(
            "db/orders-readonly.v2",
            &format!("{PLAIN_ROLE}username_prefix = \"x'; +@all ~*\"\n"),
        ),
    ];
    let mut minted_users = Vec::new();
    for role in &roles {
        for subject in subjects {
            let (handle, minted) = mint(&issuer, role, &identity(subject)).await.unwrap();
            let c = creds(&minted);
            assert!(
                c.username.len() <= 64
                    && c.username
                        .chars()
                        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_'),
                "{subject:?} -> {:?}",
                c.username
            );
            let rules = acl_rules(&mut admin, &c.username).await.unwrap();
            assert_eq!(
                rules,
                set_of(&[
                    "on",
                    "sanitize-payload",
                    "~app:*",
                    "resetchannels",
                    "-@all",
                    "+get",
                    "+set",
                    "+ping"
                ]),
                "{subject:?}"
            );
            minted_users.push(c.username);
            issuer.revoke(&handle).await.unwrap();
        }
    }
    let distinct: BTreeSet<_> = minted_users.iter().collect();
    assert_eq!(distinct.len(), minted_users.len());
    // Nothing else happened: same users, canary unchanged, its key still there.
    assert_eq!(acl_users(&mut admin).await, baseline);
    assert_eq!(acl_rules(&mut admin, "canary").await.unwrap(), canary_rules);
    let v: Option<String> = redis::cmd("GET")
        .arg("canary:k")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("v"));
    let dbsize: i64 = redis::cmd("DBSIZE").query_async(&mut admin).await.unwrap();
    assert_eq!(dbsize, 1);
}

#[tokio::test]
async fn hostile_and_dangerous_templates_are_refused() {
    let server = RedisServer::start().await.unwrap();
    let issuer = issuer_for(&server);
    let refused = [
        ("keys = [\"app:* +@all\"]\ncommands = [\"+get\"]", "keys"),
        ("keys = [\"*\"]\ncommands = [\"+get\"]", "allow_dangerous"),
        ("keys = [\"allkeys\"]\ncommands = [\"+get\"]", "keys"),
        ("keys = [\"~app:*\"]\ncommands = [\"+get\"]", "keys"),
        ("keys = [\"app:*\\n\"]\ncommands = [\"+get\"]", "keys"),
        (
            "keys = [\"app:*\"]\nchannels = [\"*\"]\ncommands = [\"+get\"]",
            "allow_dangerous",
        ),
        (
            "keys = [\"app:*\"]\ncommands = [\"+get +@all\"]",
            "commands",
        ),
        ("keys = [\"app:*\"]\ncommands = [\">pw\"]", "commands"),
        ("keys = [\"app:*\"]\ncommands = [\"nopass\"]", "commands"),
        (
            "keys = [\"app:*\"]\ncommands = [\"+@all\"]",
            "allow_dangerous",
        ),
        (
            "keys = [\"app:*\"]\ncommands = [\"+@admin\"]",
            "allow_dangerous",
        ),
        (
            "keys = [\"app:*\"]\ncommands = [\"+@dangerous\"]",
            "allow_dangerous",
        ),
        ("keys = [\"app:*\"]\ncommands = [\"+@nosuch\"]", "category"),
        ("keys = [\"app:*\"]\ncommands = []", "empty"),
    ];
    for (body, why) in refused {
        let role = role("cache/bad", &format!("[redis]\n{body}\n"));
        let e = issuer.validate_role(&role).unwrap_err();
        assert!(e.contains("cache/bad") && e.contains(why), "{body}: {e}");
    }
    let no_template = role("cache/none", "");
    assert!(issuer
        .validate_role(&no_template)
        .unwrap_err()
        .contains("[role.redis]"));

    // Every command the running Redis calls dangerous is refused one by one.
    let mut admin = admin(&server).await;
    let live: Vec<String> = redis::cmd("ACL")
        .arg("CAT")
        .arg("dangerous")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(live.len() > 50, "{live:?}");
    for cmd in live.iter().chain(
        SHARED_STATE_COMMANDS
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .iter(),
    ) {
        assert!(
            REDIS_DANGEROUS_COMMANDS.contains(&cmd.as_str())
                || SHARED_STATE_COMMANDS.contains(&cmd.as_str()),
            "{cmd} is missing from REDIS_DANGEROUS_COMMANDS"
        );
        let role = role(
            "cache/bad",
            &format!("[redis]\nkeys = [\"app:*\"]\ncommands = [\"+{cmd}\"]\n"),
        );
        let e = issuer.validate_role(&role).unwrap_err();
        assert!(e.contains("allow_dangerous"), "+{cmd}: {e}");
    }

    // A broad template that passes validation is accepted by Redis, and the
    // appended removals keep dangerous commands out of broad categories.
    let broad = role(
        "cache/broad",
        "[redis]\nkeys = [\"app:*\", \"b?x[a-z]\\\\*\"]\nchannels = [\"ev:*\"]\n\
         commands = [\"+@read\", \"+@write\", \"+@scripting\", \"-del\", \"+client|setname\", \"+select|0\", \"+GEORADIUS_RO\"]\n",
    );
    issuer.validate_role(&broad).unwrap();
    let (_, minted) = mint(&issuer, &broad, &identity("svc")).await.unwrap();
    let user = creds(&minted).username;
    let dryrun = |args: &'static [&'static str]| {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("DRYRUN").arg(&user).arg(args);
        cmd
    };
    let allowed: String = dryrun(&["get", "app:1"])
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(allowed, "OK");
    for denied in [
        &["keys", "*"][..],
        &["flushall"],
        &["function", "flush"],
        &["script", "flush"],
        &["sort", "app:l"],
        &["del", "app:1"],
    ] {
        let answer: String = dryrun(denied).query_async(&mut admin).await.unwrap();
        assert!(answer.contains("no permissions"), "{denied:?}: {answer}");
    }

    // allow_dangerous lets an operator opt in deliberately.
    let wide = role(
        "cache/wide",
        "[redis]\nkeys = [\"*\"]\ncommands = [\"+@all\"]\nallow_dangerous = true\n",
    );
    issuer.validate_role(&wide).unwrap();
    let (_, minted) = mint(&issuer, &wide, &identity("ops")).await.unwrap();
    let mut ops = connect(&creds(&minted).uri).await.unwrap();
    let cfg: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query_async(&mut ops)
        .await
        .unwrap();
    assert_eq!(cfg.first().map(String::as_str), Some("maxmemory"));
}

#[tokio::test]
async fn unreachable_target_fails_fast_and_retryably() {
    let role = role("cache/app", PLAIN_ROLE);
    // Nothing listens: connection refused. `new` does no I/O, so this works.
    let dead_port = idmint_testkit::free_port().unwrap();
    let issuer =
        RedisIssuer::new(&config("127.0.0.1", dead_port, 2), Secret::new("pw".into())).unwrap();
    let started = Instant::now();
    let e = mint(&issuer, &role, &identity("svc")).await.err().unwrap();
    assert_retryable_unreachable(&e, &dead_port.to_string());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let handle = RevocationHandle {
        kind: "db_user".into(),
        value: "idm_x_y_0123456789ab".into(),
    };
    assert_retryable_unreachable(
        &issuer.revoke(&handle).await.unwrap_err(),
        &dead_port.to_string(),
    );

    // Accepts TCP but never answers: bounded by connect_timeout (1s).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = listener.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let issuer = RedisIssuer::new(
        &config("127.0.0.1", silent_port, 1),
        Secret::new("pw".into()),
    )
    .unwrap();
    for _ in 0..2 {
        let started = Instant::now();
        let e = mint(&issuer, &role, &identity("svc")).await.err().unwrap();
        assert_retryable_unreachable(&e, &silent_port.to_string());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    holder.abort();
}

fn assert_retryable_unreachable(e: &IssueError, port: &str) {
    match e {
        IssueError::Target {
            target,
            message,
            retryable,
        } => {
            assert_eq!(target, "cache");
            assert!(*retryable, "{message}");
            assert!(
                message.contains("cannot be reached") && message.contains(port),
                "{message}"
            );
        }
        other => panic!("expected a retryable target error, got {other:?}"),
    }
}

#[tokio::test]
async fn reconnects_after_the_server_restarts() {
    let mut server = RedisServer::start().await.unwrap();
    let issuer = issuer_for(&server);
    let role = role("cache/app", PLAIN_ROLE);
    mint(&issuer, &role, &identity("svc")).await.unwrap();

    server.kill().unwrap();
    let e = mint(&issuer, &role, &identity("svc")).await.err().unwrap();
    assert_retryable_unreachable(&e, &server.port().to_string());

    let pw = server.admin_password().to_string();
    server.restart_with_password(&pw).await.unwrap();
    let (handle, minted) = mint(&issuer, &role, &identity("svc")).await.unwrap();
    let mut user = connect(&creds(&minted).uri).await.unwrap();
    let _: () = redis::cmd("PING").query_async(&mut user).await.unwrap();
    issuer.revoke(&handle).await.unwrap();
}

#[tokio::test]
async fn set_admin_password_rotates_and_the_issuer_keeps_working() {
    let server = RedisServer::start().await.unwrap();
    let issuer = issuer_for(&server);
    let role = role("cache/app", PLAIN_ROLE);
    let old_url = server.admin_url();
    let new = Secret::new("N3wAdminPassw0rdN3wAdminPassw0rd".to_string());

    issuer.set_admin_password(&new).await.unwrap();
    let refused = connect(&old_url)
        .await
        .expect_err("the old admin password must stop working");
    assert!(
        err_text(&refused).contains("WRONGPASS")
            || refused.kind() == redis::ErrorKind::AuthenticationFailed,
        "{refused:?}"
    );
    let new_url = format!(
        "redis://admin:{}@127.0.0.1:{}/",
        new.expose(),
        server.port()
    );
    let mut admin = connect(&new_url).await.unwrap();

    let (handle, minted) = mint(&issuer, &role, &identity("svc")).await.unwrap();
    let user = creds(&minted).username;
    assert!(acl_users(&mut admin).await.contains(&user));
    issuer.revoke(&handle).await.unwrap();
    assert!(!acl_users(&mut admin).await.contains(&user));

    // An issuer still holding the old password (a change whose answer was
    // lost) adopts the new one instead of failing forever.
    let stale = issuer_for(&server);
    stale.set_admin_password(&new).await.unwrap();
    mint(&stale, &role, &identity("svc")).await.unwrap();

    // A wrong admin password is reported as such, and is not retryable.
    let wrong = RedisIssuer::new(
        &config(server.host(), server.port(), 5),
        Secret::new("wrong".into()),
    )
    .unwrap();
    match mint(&wrong, &role, &identity("svc")).await.err().unwrap() {
        IssueError::Target {
            message, retryable, ..
        } => {
            assert!(!retryable, "{message}");
            assert!(message.contains("rejected the admin user"), "{message}");
        }
        other => panic!("expected a target error, got {other:?}"),
    }
}

#[tokio::test]
async fn concurrent_issuance_on_a_small_pool() {
    let server = RedisServer::start().await.unwrap();
    let issuer = std::sync::Arc::new(issuer_for(&server));
    let role = std::sync::Arc::new(role("cache/app", PLAIN_ROLE));
    const N: usize = 256;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let (issuer, role) = (issuer.clone(), role.clone());
        tasks.spawn(async move { mint(&issuer, &role, &identity(&format!("svc{i}"))).await });
    }
    let mut handles = Vec::new();
    while let Some(r) = tasks.join_next().await {
        handles.push(r.unwrap().unwrap().0);
    }
    let rate = N as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "redis issuer: {N} credentials in {:?} ({rate:.0}/s)",
        started.elapsed()
    );
    let mut admin = admin(&server).await;
    assert_eq!(acl_users(&mut admin).await.len(), N + 2);
    for h in &handles {
        issuer.revoke(h).await.unwrap();
    }
    assert_eq!(acl_users(&mut admin).await, set_of(&["admin", "default"]));
}
