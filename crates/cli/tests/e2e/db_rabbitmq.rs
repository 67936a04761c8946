//! RabbitMQ credentials end to end: the real `idmint` server against a real
//! RabbitMQ broker with the management plugin (shared by this test binary;
//! the test creates its own vhosts and issuer admin), callers authenticated
//! by OIDC tokens from a [`TestJwks`].
//!
//! RabbitMQ users have no expiry of their own: the user lives until idmint
//! deletes it, which also closes its AMQP connections.

use crate::common;
use crate::db_support;

use common::bin;
use db_support::{
    assert_not_logged, audit_event_for, belongs_to, db_user, is_derived_username, lease,
    login_admin, login_app, oidc, toml_table, wait_until, POLICY,
};
use idmint_client::proto::CredsRequest;
use idmint_testkit::keys::random_hex;
use idmint_testkit::rabbitmq::{encode_segment, AmqpLogin, AmqpProbe, RabbitBroker};
use idmint_testkit::{unix_now, IdmintServer, ServerSpec, TestJwks};
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

const ROLE: &str = "mq/orders-worker";
/// Longest RabbitMQ user name idmint derives.
const RABBITMQ_MAX_NAME: usize = 64;
/// How long the reaper (1 s interval) may take to act.
const REAPER_LIMIT: Duration = Duration::from_secs(20);
/// How long the broker may take to close a deleted user's connection.
const CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// The broker, this test's vhosts and its issuer admin.
struct Tenant {
    broker: &'static RabbitBroker,
    /// Where the role's permissions apply.
    vhost: String,
    /// A vhost the role has nothing on.
    other_vhost: String,
    admin_user: String,
    admin_password: String,
    target: String,
}

impl Tenant {
    async fn create() -> anyhow::Result<Self> {
        let broker = RabbitBroker::shared().await?;
        let id = random_hex(4)?;
        let t = Self {
            broker,
            vhost: format!("orders-{id}"),
            other_vhost: format!("billing-{id}"),
            admin_user: format!("idmint-admin-{id}"),
            admin_password: format!("Adm1n{}", random_hex(8)?),
            target: format!("orders-mq-{id}"),
        };
        broker.create_vhost(&t.vhost).await?;
        broker.create_vhost(&t.other_vhost).await?;
        broker
            .create_admin(&t.admin_user, &t.admin_password, &t.vhost)
            .await?;
        Ok(t)
    }

    fn password_env(&self) -> String {
        "ORDERS_MQ_ADMIN_PASSWORD".to_string()
    }

    fn spec(&self, jwks: &TestJwks) -> anyhow::Result<ServerSpec> {
        let issuer = toml_table(&format!(
            r#"
name = "{target}"
management_url = "{url}"
amqp_port = {amqp}
admin_user = "{admin}"
admin_password_env = "{env}"
connect_timeout = "5s"
"#,
            target = self.target,
            url = self.broker.management_url(),
            amqp = self.broker.amqp_port(),
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
[role.rabbitmq]
vhost = "{vhost}"
configure = '^orders\.'
write = '^orders\.'
read = '^orders\.'
"#,
            target = self.target,
            vhost = self.vhost,
        );
        let mut spec = ServerSpec::with_oidc(vec![oidc(jwks)]).with_issuer("rabbitmq", issuer);
        spec.roles = roles;
        spec.policies = vec![("db.cedar".to_string(), POLICY.to_string())];
        spec.env = vec![(self.password_env(), self.admin_password.clone())];
        Ok(spec)
    }

    /// `GET path` as the broker's bootstrap administrator: status and JSON.
    async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let (status, body) = self.broker.admin_api(Method::GET, path, None).await?;
        Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
    }

    async fn user_exists(&self, user: &str) -> anyhow::Result<bool> {
        let (status, body) = self
            .get(&format!("/api/users/{}", encode_segment(user)))
            .await?;
        anyhow::ensure!(
            status == 200 || status == 404,
            "GET user {user}: {status} {body}"
        );
        Ok(status == 200)
    }

    async fn login(
        &self,
        vhost: &str,
        user: &str,
        password: &str,
    ) -> anyhow::Result<(Option<AmqpProbe>, AmqpLogin)> {
        Ok(AmqpProbe::login(self.broker.amqp_port(), vhost, user, password).await?)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_user_gets_exactly_its_vhost_and_ends_on_revoke_and_expiry() -> anyhow::Result<()> {
    let t = Tenant::create().await?;
    let jwks = TestJwks::start().await?;
    let server = IdmintServer::start(bin(), t.spec(&jwks)?).await?;
    let app = login_app(&server, &jwks).await?;

    let resp = app.client.creds(ROLE, &CredsRequest::default()).await?;
    let user = db_user(&resp)?;
    assert_eq!(user.engine, "rabbitmq");
    assert_eq!(
        (user.host.as_str(), user.port, user.database.as_deref()),
        ("127.0.0.1", t.broker.amqp_port(), Some(t.vhost.as_str()))
    );
    assert!(
        is_derived_username(&user.username, RABBITMQ_MAX_NAME),
        "{}",
        user.username
    );
    assert!(belongs_to(&user.username, &resp.lease_id));
    assert_eq!(
        user.uri,
        format!(
            "amqp://{}:{}@127.0.0.1:{}/{}",
            user.username,
            user.password,
            t.broker.amqp_port(),
            t.vhost
        )
    );

    // Exactly the template: one vhost, these patterns, no tags.
    let (status, perms) = t
        .get(&format!(
            "/api/users/{}/permissions",
            encode_segment(&user.username)
        ))
        .await?;
    assert_eq!(status, 200, "{perms}");
    let list = perms.as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 1, "{perms}");
    assert_eq!(list[0]["vhost"], t.vhost.as_str());
    for kind in ["configure", "write", "read"] {
        assert_eq!(list[0][kind], "^orders\\.", "{kind}: {perms}");
    }
    let (_, info) = t
        .get(&format!("/api/users/{}", encode_segment(&user.username)))
        .await?;
    let tags = &info["tags"];
    assert!(
        tags == "" || tags.as_array().is_some_and(Vec::is_empty),
        "no tags: {info}"
    );

    // It logs in to its vhost only.
    let (probe, outcome) = t.login(&t.vhost, &user.username, &user.password).await?;
    assert_eq!(outcome, AmqpLogin::Open);
    let mut probe = probe.ok_or_else(|| anyhow::anyhow!("no open connection"))?;
    let (_, elsewhere) = t
        .login(&t.other_vhost, &user.username, &user.password)
        .await?;
    assert!(matches!(elsewhere, AmqpLogin::Refused(_)), "{elsewhere:?}");
    assert_not_logged(&server, &user.password, "the issued password")?;

    // Revocation deletes the user and closes its open connection.
    assert_eq!(
        app.client.revoke_lease(&resp.lease_id).await?.state,
        "revoked"
    );
    let closed = probe.closed_by_broker(CLOSE_LIMIT).await;
    assert!(
        closed.is_some(),
        "the open connection must be closed by revocation"
    );
    assert!(!t.user_exists(&user.username).await?, "the user is deleted");
    let (_, again) = t.login(&t.vhost, &user.username, &user.password).await?;
    assert!(matches!(again, AmqpLogin::Refused(_)), "{again:?}");
    audit_event_for(
        &server,
        "lease_revoked",
        &resp.lease_id,
        Duration::from_secs(5),
    )
    .await?;

    // At expiry the reaper does the same.
    let short = app
        .client
        .creds(
            ROLE,
            &CredsRequest {
                ttl: Some("3s".into()),
                ..Default::default()
            },
        )
        .await?;
    let user = db_user(&short)?;
    let (probe, outcome) = t.login(&t.vhost, &user.username, &user.password).await?;
    assert_eq!(outcome, AmqpLogin::Open);
    let mut probe = probe.ok_or_else(|| anyhow::anyhow!("no open connection"))?;
    let gone = wait_until(
        "the reaper to delete the expired user",
        REAPER_LIMIT,
        || async { Ok((!t.user_exists(&user.username).await?).then_some(unix_now())) },
    )
    .await?;
    assert!(
        gone >= short.expires_at,
        "deleted at {gone}, before expiry {}",
        short.expires_at
    );
    assert!(
        probe.closed_by_broker(CLOSE_LIMIT).await.is_some(),
        "closed at expiry"
    );
    let ev = audit_event_for(
        &server,
        "lease_expired",
        &short.lease_id,
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!(ev["detail"]["revoked_by"], "reaper");
    let admin = login_admin(&server, &jwks).await?;
    assert_eq!(lease(&admin, &short.lease_id).await?.state, "revoked");
    Ok(())
}
