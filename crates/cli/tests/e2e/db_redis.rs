//! Redis credentials end to end: the real `idmint` server against a real
//! Redis 7 started per test, callers authenticated by OIDC tokens from a
//! [`TestJwks`].
//!
//! Redis ACL users have no expiry of their own: the user lives until
//! idmint revokes it (`ACL DELUSER`, which also closes its connections),
//! on request or by the reaper at lease end.

use crate::common;
use crate::db_support;

use common::bin;
use db_support::{
    assert_not_logged, audit_event_for, belongs_to, db_user, is_derived_username, lease,
    login_admin, login_app, oidc, toml_table, wait_until, DbUser, POLICY,
};
use idmint_client::proto::CredsRequest;
use idmint_testkit::redis::RedisServer;
use idmint_testkit::{unix_now, IdmintServer, ServerSpec, TestJwks};
use redis::aio::MultiplexedConnection;
use std::time::Duration;

const TARGET: &str = "sessions-redis";
const ADMIN_PASSWORD_ENV: &str = "SESSIONS_REDIS_ADMIN_PASSWORD";
const ROLE: &str = "cache/sessions";
/// Longest Redis user name idmint derives.
const REDIS_MAX_NAME: usize = 64;
/// How long the reaper (1 s interval) may take to act.
const REAPER_LIMIT: Duration = Duration::from_secs(20);

const ROLES: &str = r#"
[[role]]
name = "cache/sessions"
issuer = "sessions-redis"
description = "Read and write session keys"
max_ttl = "10m"
default_ttl = "1m"
[role.redis]
keys = ["sess:*"]
commands = ["+@read", "+@write", "+ping"]
"#;

async fn connect(uri: &str) -> anyhow::Result<MultiplexedConnection> {
    Ok(redis::Client::open(uri)?
        .get_multiplexed_async_connection()
        .await?)
}

fn spec(redis: &RedisServer, jwks: &TestJwks) -> anyhow::Result<ServerSpec> {
    spec_with_admin(redis, jwks, redis.admin_user(), redis.admin_password())
}

/// [`spec`] with another ACL user as idmint's admin.
fn spec_with_admin(
    redis: &RedisServer,
    jwks: &TestJwks,
    admin: &str,
    password: &str,
) -> anyhow::Result<ServerSpec> {
    let issuer = toml_table(&format!(
        r#"
name = "{TARGET}"
host = "127.0.0.1"
port = {port}
admin_user = "{admin}"
admin_password_env = "{ADMIN_PASSWORD_ENV}"
connect_timeout = "2s"
"#,
        port = redis.port(),
    ))?;
    let mut spec = ServerSpec::with_oidc(vec![oidc(jwks)]).with_issuer("redis", issuer);
    spec.roles = ROLES.to_string();
    spec.policies = vec![("db.cedar".to_string(), POLICY.to_string())];
    spec.env = vec![(ADMIN_PASSWORD_ENV.to_string(), password.to_string())];
    Ok(spec)
}

async fn setup() -> anyhow::Result<(RedisServer, MultiplexedConnection, TestJwks, IdmintServer)> {
    let redis = RedisServer::start().await?;
    let mut admin = connect(&redis.admin_url()).await?;
    let () = redis::cmd("SET")
        .arg("other:secret")
        .arg("do not read")
        .query_async(&mut admin)
        .await?;
    let jwks = TestJwks::start().await?;
    let server = IdmintServer::start(bin(), spec(&redis, &jwks)?).await?;
    Ok((redis, admin, jwks, server))
}

/// The `ACL LIST` line of `user`, if it exists.
async fn acl_of(admin: &mut MultiplexedConnection, user: &str) -> anyhow::Result<Option<String>> {
    let list: Vec<String> = redis::cmd("ACL").arg("LIST").query_async(admin).await?;
    let prefix = format!("user {user} ");
    Ok(list.into_iter().find(|l| l.starts_with(&prefix)))
}

fn error_code<T>(r: redis::RedisResult<T>) -> Option<String> {
    r.err().and_then(|e| e.code().map(str::to_string))
}

/// Connected as the issued user: reads and writes `sess:*` and nothing else.
async fn assert_exact_access(user: &DbUser) -> anyhow::Result<MultiplexedConnection> {
    let mut conn = connect(&user.uri).await?;
    let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
    assert_eq!(pong, "PONG");
    let () = redis::cmd("SET")
        .arg("sess:1")
        .arg("hello")
        .query_async(&mut conn)
        .await?;
    let back: String = redis::cmd("GET")
        .arg("sess:1")
        .query_async(&mut conn)
        .await?;
    assert_eq!(back, "hello");
    for (what, cmd) in [
        (
            "read other keys",
            redis::cmd("GET").arg("other:secret").clone(),
        ),
        (
            "write other keys",
            redis::cmd("SET").arg("other:x").arg("1").clone(),
        ),
        ("list every key", redis::cmd("KEYS").arg("*").clone()),
        ("flush everything", redis::cmd("FLUSHALL").clone()),
        (
            "change the ACL",
            redis::cmd("ACL").arg("SETUSER").arg("x").arg("on").clone(),
        ),
        (
            "reconfigure",
            redis::cmd("CONFIG").arg("GET").arg("*").clone(),
        ),
    ] {
        let r: redis::RedisResult<redis::Value> = cmd.query_async(&mut conn).await;
        assert_eq!(
            error_code(r).as_deref(),
            Some("NOPERM"),
            "the issued user must not {what}"
        );
    }
    Ok(conn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_user_has_exactly_the_template_and_revocation_closes_its_connection(
) -> anyhow::Result<()> {
    let (redis, mut admin, jwks, server) = setup().await?;
    let app = login_app(&server, &jwks).await?;
    let resp = app.client.creds(ROLE, &CredsRequest::default()).await?;
    let user = db_user(&resp)?;
    assert_eq!(user.engine, "redis");
    assert_eq!(
        (user.host.as_str(), user.port, user.database.as_deref()),
        ("127.0.0.1", redis.port(), None)
    );
    assert!(
        is_derived_username(&user.username, REDIS_MAX_NAME),
        "{}",
        user.username
    );
    assert!(belongs_to(&user.username, &resp.lease_id));
    assert_eq!(
        user.uri,
        format!(
            "redis://{}:{}@127.0.0.1:{}/",
            user.username,
            user.password,
            redis.port()
        )
    );
    let now = unix_now();
    assert!(
        (now + 55..=now + 61).contains(&resp.expires_at),
        "{}",
        resp.expires_at
    );

    // The ACL is the template plus idmint's safety net, nothing more.
    let acl = acl_of(&mut admin, &user.username)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no ACL user {}", user.username))?;
    assert!(acl.contains(" on "), "{acl}");
    assert!(
        acl.contains(" ~sess:* ") && !acl.contains("~*") && !acl.contains("allkeys"),
        "{acl}"
    );
    // Redis stores categories expanded; what matters is the effect.
    assert!(acl.contains(" resetchannels -@all "), "{acl}");
    for removed in [" -flushall", " -keys", " -flushdb"] {
        assert!(
            acl.contains(removed),
            "dangerous commands are removed ({removed}): {acl}"
        );
    }
    for (args, allowed) in [
        (&["get", "sess:1"][..], true),
        (&["set", "sess:1", "v"][..], true),
        (&["get", "other:secret"][..], false),
        (&["del", "other:secret"][..], false),
        (&["flushall"][..], false),
    ] {
        let dry: redis::RedisResult<String> = redis::cmd("ACL")
            .arg("DRYRUN")
            .arg(&user.username)
            .arg(args)
            .query_async(&mut admin)
            .await;
        // DRYRUN answers OK, or a bulk string saying why not.
        let ok = matches!(dry.as_deref(), Ok("OK"));
        assert_eq!(ok, allowed, "ACL DRYRUN {args:?}: {dry:?}");
    }
    assert!(
        !acl.contains(&user.password),
        "only a hash is stored: {acl}"
    );

    let mut session = assert_exact_access(&user).await?;
    assert_not_logged(&server, &user.password, "the issued password")?;
    audit_event_for(
        &server,
        "credential_issued",
        &resp.lease_id,
        Duration::from_secs(5),
    )
    .await?;

    // ACL DELUSER closes the open connection; the user is gone.
    assert_eq!(
        app.client.revoke_lease(&resp.lease_id).await?.state,
        "revoked"
    );
    let after: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut session).await;
    assert!(
        after.is_err(),
        "the open connection must be closed by revocation"
    );
    assert_eq!(acl_of(&mut admin, &user.username).await?, None);
    let relogin = connect(&user.uri).await;
    assert!(relogin.is_err(), "a new login must fail");
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
async fn the_reaper_deletes_the_user_at_expiry() -> anyhow::Result<()> {
    let (_redis, mut admin, jwks, server) = setup().await?;
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
    let pong: String = redis::cmd("PING").query_async(&mut session).await?;
    assert_eq!(pong, "PONG");

    let gone = wait_until(
        "the reaper to delete the expired user",
        REAPER_LIMIT,
        || {
            let mut admin = admin.clone();
            let name = user.username.clone();
            async move {
                Ok(acl_of(&mut admin, &name)
                    .await?
                    .is_none()
                    .then_some(unix_now()))
            }
        },
    )
    .await?;
    assert!(
        gone >= resp.expires_at,
        "deleted at {gone}, before expiry {}",
        resp.expires_at
    );
    let after: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut session).await;
    assert!(after.is_err(), "the open connection ended with the lease");
    let ev = audit_event_for(
        &server,
        "lease_expired",
        &resp.lease_id,
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!(ev["detail"]["revoked_by"], "reaper");
    let ops = login_admin(&server, &jwks).await?;
    assert_eq!(lease(&ops, &resp.lease_id).await?.state, "revoked");
    assert_eq!(acl_of(&mut admin, &user.username).await?, None);
    Ok(())
}

/// The smallest admin the issuer documents: it may only manage ACL users
/// and ping, and holds no key or channel permissions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_least_privilege_admin_can_issue_revoke_and_rotate() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let mut root = connect(&redis.admin_url()).await?;
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("idmint")
        .arg(
            &[
                "on",
                ">Least-priv-pw-7",
                "resetkeys",
                "resetchannels",
                "-@all",
            ][..],
        )
        .arg(&["+acl|setuser", "+acl|deluser", "+ping"][..])
        .query_async(&mut root)
        .await?;
    let jwks = TestJwks::start().await?;
    let server = IdmintServer::start(
        bin(),
        spec_with_admin(&redis, &jwks, "idmint", "Least-priv-pw-7")?,
    )
    .await?;
    let app = login_app(&server, &jwks).await?;
    let ops = login_admin(&server, &jwks).await?;

    let resp = app.client.creds(ROLE, &CredsRequest::default()).await?;
    let user = db_user(&resp)?;
    let mut session = assert_exact_access(&user).await?;
    assert_eq!(
        app.client.revoke_lease(&resp.lease_id).await?.state,
        "revoked"
    );
    let after: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut session).await;
    assert!(after.is_err(), "revocation closed the session");
    assert_eq!(acl_of(&mut root, &user.username).await?, None);

    // Rotation: the old admin password stops working, issuance goes on.
    assert_eq!(ops.client.rotate_admin(TARGET).await?.version, 2);
    let old = connect(&format!(
        "redis://idmint:Least-priv-pw-7@127.0.0.1:{}/",
        redis.port()
    ))
    .await;
    assert!(old.is_err(), "the bootstrap admin password no longer works");
    let again = app.client.creds(ROLE, &CredsRequest::default()).await?;
    assert_exact_access(&db_user(&again)?).await?;
    Ok(())
}
