//! The `rabbitmq` issuer against a real RabbitMQ 3.10 with the management
//! plugin (Debian's `rabbitmq-server`). The broker takes seconds to boot, so
//! all tests share one ([`RabbitBroker::shared`]); each test works in its
//! own vhost with its own users and only looks at those.
//!
//! Permissions are exercised with the issued user's own credentials over
//! the management API (declare, publish, get) and over AMQP itself
//! ([`AmqpProbe`]: login, and noticing when the broker closes the
//! connection).

use idmint_core::{
    Grant, Identity, IdentityKind, LeaseId, RequestId, RevocationHandle, Role, Secret, Ttl,
    UnixTime,
};
use idmint_issuers::rabbitmq::{RabbitmqIssuer, RabbitmqIssuerConfig};
use idmint_issuers::{IssueError, IssueRequest, Issuer, Minted, PlanRequest};
use idmint_proto::Credential;
use idmint_testkit::rabbitmq::{
    encode_segment, management_call, AmqpLogin, AmqpProbe, RabbitBroker,
};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn role(name: &str, body: &str) -> Role {
    let text = format!("[[role]]\nname = {name:?}\nissuer = \"mq\"\nmax_ttl = \"1h\"\n{body}");
    Role::parse_file("roles.toml", &text)
        .unwrap()
        .remove(name)
        .unwrap()
}

/// A role for `vhost` whose user may configure and read `app.*`, and write
/// `app.*` and the default exchange.
fn app_role(vhost: &str, extra: &str) -> Role {
    role(
        "mq/app",
        &format!(
            "[role.rabbitmq]\nvhost = {vhost:?}\nconfigure = '^app\\.'\nwrite = '^(app\\.|amq\\.default$)'\n\
             read = '^app\\.'\ntags = [\"management\"]\n{extra}"
        ),
    )
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

fn config(
    management_url: &str,
    amqp_port: u16,
    admin_user: &str,
    timeout_secs: u64,
) -> RabbitmqIssuerConfig {
    RabbitmqIssuerConfig {
        name: "mq".into(),
        management_url: management_url.into(),
        amqp_host: None,
        amqp_port,
        admin_user: admin_user.into(),
        admin_password_env: None,
        admin_password_file: None,
        pool_size: None,
        connect_timeout: Some(Ttl::from_secs(timeout_secs).unwrap()),
        public_host: None,
    }
}

fn issuer_for(broker: &RabbitBroker) -> RabbitmqIssuer {
    let cfg = config(
        &broker.management_url(),
        broker.amqp_port(),
        broker.admin_user(),
        10,
    );
    RabbitmqIssuer::new(&cfg, Secret::new(broker.admin_password().to_string())).unwrap()
}

/// The shared broker and a fresh vhost for one test.
async fn broker_with_vhost(vhost: &str) -> &'static RabbitBroker {
    let broker = RabbitBroker::shared().await.unwrap();
    broker.create_vhost(vhost).await.unwrap();
    broker
}

/// plan + issue, as the server drives it.
async fn mint(
    issuer: &RabbitmqIssuer,
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
    vhost: Option<String>,
}

fn creds(minted: &Minted) -> Creds {
    match &minted.credential {
        Credential::DatabaseUser {
            username,
            password,
            uri,
            database,
            ..
        } => Creds {
            username: username.clone(),
            password: password.clone(),
            uri: uri.clone(),
            vhost: database.clone(),
        },
        other => panic!("expected a database user, got {other:?}"),
    }
}

async fn as_user(
    broker: &RabbitBroker,
    c: &Creds,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, String) {
    management_call(
        &broker.management_url(),
        &c.username,
        &c.password,
        method,
        path,
        body,
    )
    .await
    .unwrap()
}

async fn as_admin(
    broker: &RabbitBroker,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let (status, text) = broker.admin_api(method, path, body).await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Users whose names start with `prefix`.
async fn users_with_prefix(broker: &RabbitBroker, prefix: &str) -> BTreeSet<String> {
    let (status, users) = as_admin(broker, Method::GET, "/api/users", None).await;
    assert_eq!(status, 200, "{users}");
    users
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["name"].as_str())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

fn publish(routing_key: &str) -> Value {
    json!({"properties": {}, "routing_key": routing_key, "payload": "hi", "payload_encoding": "string"})
}

#[tokio::test]
async fn issued_user_has_exactly_its_vhost_permissions() {
    let vhost = "t_exact";
    let broker = broker_with_vhost(vhost).await;
    broker.create_vhost("t_exact_other").await.unwrap();
    let issuer = issuer_for(broker);
    let role = app_role(vhost, "");
    issuer.validate_role(&role).unwrap();
    let before = UnixTime::now();
    let (handle, minted) = mint(
        &issuer,
        &role,
        &identity("repo:acme/app:ref:refs/heads/main"),
    )
    .await
    .unwrap();
    let c = creds(&minted);

    assert_eq!(handle.value, c.username);
    assert!(c.username.starts_with("idm_mqapp_"), "{}", c.username);
    assert_eq!(c.vhost.as_deref(), Some(vhost));
    assert_eq!(
        c.uri,
        format!(
            "amqp://{}:{}@127.0.0.1:{}/t_exact",
            c.username,
            c.password,
            broker.amqp_port()
        )
    );
    assert_eq!(minted.secret_material.expose(), c.password.as_bytes());
    let Credential::DatabaseUser {
        engine, host, port, ..
    } = &minted.credential
    else {
        unreachable!()
    };
    assert_eq!(
        (engine.as_str(), host.as_str(), *port),
        ("rabbitmq", "127.0.0.1", broker.amqp_port())
    );
    let ttl = minted.expires_at.secs() - before.secs();
    assert!((599..=601).contains(&ttl), "expires in {ttl}s");

    // Exactly the template on exactly one vhost, and the template's tags.
    let user_path = encode_segment(&c.username);
    let (_, perms) = as_admin(
        broker,
        Method::GET,
        &format!("/api/users/{user_path}/permissions"),
        None,
    )
    .await;
    let perms = perms.as_array().unwrap();
    assert_eq!(perms.len(), 1, "{perms:?}");
    assert_eq!(
        (
            &perms[0]["vhost"],
            &perms[0]["configure"],
            &perms[0]["write"],
            &perms[0]["read"]
        ),
        (
            &json!(vhost),
            &json!("^app\\."),
            &json!("^(app\\.|amq\\.default$)"),
            &json!("^app\\.")
        )
    );
    let (status, me) = as_user(broker, &c, Method::GET, "/api/whoami", None).await;
    assert_eq!(status, 200, "{me}");
    let me: Value = serde_json::from_str(&me).unwrap();
    assert_eq!(
        (&me["name"], &me["tags"]),
        (&json!(c.username), &json!(["management"]))
    );

    // Configure: own prefix only.
    let q = |name: &str| format!("/api/queues/{vhost}/{name}");
    let (status, body) = as_user(
        broker,
        &c,
        Method::PUT,
        &q("app.q"),
        Some(&json!({"durable": false})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = as_user(
        broker,
        &c,
        Method::PUT,
        &q("other.q"),
        Some(&json!({"durable": false})),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    // Write: the default exchange, not amq.topic.
    let exchange = |name: &str| format!("/api/exchanges/{vhost}/{name}/publish");
    let (status, body) = as_user(
        broker,
        &c,
        Method::POST,
        &exchange("amq.default"),
        Some(&publish("app.q")),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, r#"{"routed":true}"#));
    let (status, body) = as_user(
        broker,
        &c,
        Method::POST,
        &exchange("amq.topic"),
        Some(&publish("app.q")),
    )
    .await;
    assert!(
        status >= 400 && body.contains("ACCESS_REFUSED"),
        "{status} {body}"
    );
    // Read: own queue yes, a queue outside the pattern no.
    let get = json!({"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"});
    let (status, body) = as_user(
        broker,
        &c,
        Method::POST,
        &format!("{}/get", q("app.q")),
        Some(&get),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""payload":"hi""#), "{body}");
    let (status, _) = as_admin(
        broker,
        Method::PUT,
        &q("other.q"),
        Some(&json!({"durable": false})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, body) = as_user(
        broker,
        &c,
        Method::POST,
        &format!("{}/get", q("other.q")),
        Some(&get),
    )
    .await;
    assert!(
        status == 401 && body.contains("ACCESS_REFUSED"),
        "{status} {body}"
    );
    // Another vhost: nothing, over HTTP and AMQP.
    let other = "/api/exchanges/t_exact_other/amq.default/publish";
    let (status, body) = as_user(broker, &c, Method::POST, other, Some(&publish("x"))).await;
    assert_eq!(status, 401, "{body}");
    let (_, login) = AmqpProbe::login(broker.amqp_port(), vhost, &c.username, &c.password)
        .await
        .unwrap();
    assert_eq!(login, AmqpLogin::Open);
    let (_, login) = AmqpProbe::login(
        broker.amqp_port(),
        "t_exact_other",
        &c.username,
        &c.password,
    )
    .await
    .unwrap();
    assert!(
        matches!(login, AmqpLogin::Refused(ref why) if why.contains("530")),
        "{login:?}"
    );
    // Users are an administrator's business.
    let (status, _) = as_user(broker, &c, Method::GET, "/api/users", None).await;
    assert_eq!(status, 401);

    issuer
        .renew(&handle, UnixTime::now().plus(Duration::from_secs(60)))
        .await
        .unwrap();
    issuer.revoke(&handle).await.unwrap();
}

#[tokio::test]
async fn revocation_closes_open_connections_and_is_idempotent() {
    let vhost = "t_revoke";
    let broker = broker_with_vhost(vhost).await;
    let issuer = issuer_for(broker);
    let role = app_role(vhost, "username_prefix = \"rev\"\n");
    let (handle, minted) = mint(&issuer, &role, &identity("svc")).await.unwrap();
    let c = creds(&minted);
    assert_eq!(
        users_with_prefix(broker, "rev_").await,
        BTreeSet::from([c.username.clone()])
    );

    let (probe, login) = AmqpProbe::login(broker.amqp_port(), vhost, &c.username, &c.password)
        .await
        .unwrap();
    assert_eq!(login, AmqpLogin::Open);
    let mut open = probe.unwrap();
    assert_eq!(
        open.closed_by_broker(Duration::from_millis(200)).await,
        None,
        "open before revocation"
    );

    issuer.revoke(&handle).await.unwrap();
    // The broker closed the already-open connection…
    let why = open.closed_by_broker(Duration::from_secs(10)).await;
    assert!(
        why.is_some(),
        "the open AMQP connection must be closed by revocation"
    );
    // …new logins fail, over AMQP and HTTP…
    let (_, login) = AmqpProbe::login(broker.amqp_port(), vhost, &c.username, &c.password)
        .await
        .unwrap();
    assert!(matches!(login, AmqpLogin::Refused(_)), "{login:?}");
    let (status, _) = as_user(broker, &c, Method::GET, "/api/whoami", None).await;
    assert_eq!(status, 401);
    // …and no user is left.
    assert!(users_with_prefix(broker, "rev_").await.is_empty());

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

#[tokio::test]
async fn hostile_subjects_and_vhost_names_change_nothing() {
    let vhost = "t hostile/'\"%?#&;--é";
    let broker = broker_with_vhost(vhost).await;
    let issuer = issuer_for(broker);
    // A canary user that no issuance may touch.
    let (status, _) = as_admin(
        broker,
        Method::PUT,
        "/api/users/hcanary_user",
        Some(&json!({"password": "canarypw", "tags": ""})),
    )
    .await;
    assert_eq!(status, 201);
    let canary = as_admin(broker, Method::GET, "/api/users/hcanary_user", None).await;

    let subjects = [
        "repo:a'b\";DROP ROLE x;--",
        "../../api/users/admin",
        "x%2F..%2Fadmin",
        "back\\slash\\\\",
        "nul\0byte",
        "unicodé 🦀 ä",
        "*",
        "sp ace",
        "-- comment",
        "/* c */",
        "",
    ];
    let role = role(
        "mq/hostile",
        &format!(
            "[role.rabbitmq]\nvhost = {vhost:?}\nconfigure = '^app\\.'\nwrite = ''\nread = ''\n\
             username_prefix = \"h'; x/../\"\n"
        ),
    );
    let mut minted_users = Vec::new();
    for subject in subjects {
        let (handle, minted) = mint(&issuer, &role, &identity(subject)).await.unwrap();
        let c = creds(&minted);
        assert!(
            c.username.starts_with("hx_")
                && c.username
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_'),
            "{subject:?} -> {:?}",
            c.username
        );
        assert!(
            c.uri.ends_with(&format!("/{}", encode_segment(vhost))),
            "{}",
            c.uri
        );
        let (_, perms) = as_admin(
            broker,
            Method::GET,
            &format!("/api/users/{}/permissions", c.username),
            None,
        )
        .await;
        assert_eq!(
            perms,
            json!([{"user": c.username, "vhost": vhost, "configure": "^app\\.", "write": "", "read": ""}]),
            "{subject:?}"
        );
        let (status, _) = as_admin(
            broker,
            Method::GET,
            &format!("/api/users/{}", c.username),
            None,
        )
        .await;
        assert_eq!(status, 200);
        minted_users.push((handle, c.username));
    }
    assert_eq!(users_with_prefix(broker, "hx_").await.len(), subjects.len());
    for (handle, _) in &minted_users {
        issuer.revoke(handle).await.unwrap();
    }
    // Nothing else happened: no user left, canary and admin unchanged.
    assert!(users_with_prefix(broker, "hx_").await.is_empty());
    assert_eq!(
        as_admin(broker, Method::GET, "/api/users/hcanary_user", None).await,
        canary
    );
    let (status, admin) = as_admin(broker, Method::GET, "/api/users/admin", None).await;
    assert_eq!((status, &admin["tags"]), (200, &json!(["administrator"])));
}

#[tokio::test]
async fn hostile_and_dangerous_templates_are_refused() {
    let vhost = "t_templates";
    let broker = broker_with_vhost(vhost).await;
    let issuer = issuer_for(broker);
    let refused = [
        ("tags = [\"management,administrator\"]", "tag"),
        ("tags = [\"administrator\"]", "allow_dangerous"),
        ("tags = [\"monitoring\"]", "allow_dangerous"),
        ("tags = [\"policymaker\"]", "allow_dangerous"),
        ("tags = [\"impersonator\"]", "allow_dangerous"),
        ("configure = '.*'", "allow_dangerous"),
        ("configure = '^app\\.|^.*$'", "allow_dangerous"),
        ("read = \"^a\\u0000\"", "read"),
    ];
    for (extra, why) in refused {
        let role = role(
            "mq/bad",
            &format!("[role.rabbitmq]\nvhost = {vhost:?}\n{extra}\n"),
        );
        let e = issuer.validate_role(&role).unwrap_err();
        assert!(e.contains("mq/bad") && e.contains(why), "{extra}: {e}");
    }
    for bad_vhost in ["..", ".", ""] {
        let role = role(
            "mq/bad",
            &format!("[role.rabbitmq]\nvhost = {bad_vhost:?}\n"),
        );
        assert!(
            issuer.validate_role(&role).unwrap_err().contains("vhost"),
            "{bad_vhost:?}"
        );
    }
    assert!(issuer
        .validate_role(&role("mq/none", ""))
        .unwrap_err()
        .contains("[role.rabbitmq]"));

    // allow_dangerous is a deliberate opt-in.
    let wide = role(
        "mq/wide",
        &format!("[role.rabbitmq]\nvhost = {vhost:?}\nconfigure = '.*'\ntags = [\"administrator\"]\nallow_dangerous = true\n"),
    );
    issuer.validate_role(&wide).unwrap();

    // What only the broker can judge fails the issuance cleanly: no user
    // without its permissions is left behind.
    let bad_regex = role(
        "mq/regex",
        &format!(
            "[role.rabbitmq]\nvhost = {vhost:?}\nconfigure = '^app('\nusername_prefix = \"rgx\"\n"
        ),
    );
    issuer.validate_role(&bad_regex).unwrap();
    match mint(&issuer, &bad_regex, &identity("svc"))
        .await
        .err()
        .unwrap()
    {
        IssueError::Target {
            message, retryable, ..
        } => {
            assert!(
                !retryable && message.contains("invalid_regexp"),
                "{message}"
            );
        }
        other => panic!("expected a target error, got {other:?}"),
    }
    let no_vhost = role(
        "mq/novhost",
        "[role.rabbitmq]\nvhost = \"t_does_not_exist\"\nusername_prefix = \"nov\"\n",
    );
    match mint(&issuer, &no_vhost, &identity("svc"))
        .await
        .err()
        .unwrap()
    {
        IssueError::Target {
            message, retryable, ..
        } => {
            assert!(
                !retryable && message.contains("t_does_not_exist"),
                "{message}"
            );
        }
        other => panic!("expected a target error, got {other:?}"),
    }
    assert!(users_with_prefix(broker, "rgx_").await.is_empty());
    assert!(users_with_prefix(broker, "nov_").await.is_empty());
}

#[tokio::test]
async fn unreachable_broker_fails_fast_and_retryably() {
    let role = app_role("/", "");
    // Nothing listens: connection refused. `new` does no I/O.
    let dead_port = idmint_testkit::free_port().unwrap();
    let url = format!("http://127.0.0.1:{dead_port}");
    let issuer =
        RabbitmqIssuer::new(&config(&url, 5672, "admin", 2), Secret::new("pw".into())).unwrap();
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
    let url = format!("http://127.0.0.1:{silent_port}");
    let issuer =
        RabbitmqIssuer::new(&config(&url, 5672, "admin", 1), Secret::new("pw".into())).unwrap();
    let started = Instant::now();
    let e = mint(&issuer, &role, &identity("svc")).await.err().unwrap();
    assert_retryable_unreachable(&e, &silent_port.to_string());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    holder.abort();
}

fn assert_retryable_unreachable(e: &IssueError, port: &str) {
    match e {
        IssueError::Target {
            target,
            message,
            retryable,
        } => {
            assert_eq!(target, "mq");
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
async fn set_admin_password_rotates_and_the_issuer_keeps_working() {
    let vhost = "t_rotate";
    let broker = broker_with_vhost(vhost).await;
    // An administrator of this test's own, so rotating it disturbs no one.
    broker
        .create_admin("adm_rotate", "oldpw", vhost)
        .await
        .unwrap();
    let cfg = config(
        &broker.management_url(),
        broker.amqp_port(),
        "adm_rotate",
        10,
    );
    let issuer = RabbitmqIssuer::new(&cfg, Secret::new("oldpw".into())).unwrap();
    let new = Secret::new("N3wAdminPassw0rdN3wAdminPassw0rd".to_string());
    let whoami = |pw: &str| {
        let (base, pw) = (broker.management_url(), pw.to_string());
        async move {
            management_call(&base, "adm_rotate", &pw, Method::GET, "/api/whoami", None)
                .await
                .unwrap()
        }
    };

    issuer.set_admin_password(&new).await.unwrap();
    assert_eq!(
        whoami("oldpw").await.0,
        401,
        "the old admin password must stop working"
    );
    let (status, me) = whoami(new.expose()).await;
    assert_eq!(status, 200);
    let me: Value = serde_json::from_str(&me).unwrap();
    assert_eq!(
        me["tags"],
        json!(["administrator"]),
        "the admin keeps its tags"
    );

    let role = app_role(vhost, "username_prefix = \"rot\"\n");
    let (handle, minted) = mint(&issuer, &role, &identity("svc")).await.unwrap();
    assert!(users_with_prefix(broker, "rot_")
        .await
        .contains(&creds(&minted).username));
    issuer.revoke(&handle).await.unwrap();
    assert!(!users_with_prefix(broker, "rot_")
        .await
        .contains(&creds(&minted).username));

    // An issuer still holding the old password (a change whose answer was
    // lost) adopts the new one instead of failing forever.
    let stale = RabbitmqIssuer::new(&cfg, Secret::new("oldpw".into())).unwrap();
    stale.set_admin_password(&new).await.unwrap();
    let (handle, _) = mint(&stale, &role, &identity("svc")).await.unwrap();
    stale.revoke(&handle).await.unwrap();

    // A wrong admin password is reported as such, and is not retryable.
    let wrong = RabbitmqIssuer::new(&cfg, Secret::new("wrong".into())).unwrap();
    match mint(&wrong, &role, &identity("svc")).await.err().unwrap() {
        IssueError::Target {
            message, retryable, ..
        } => {
            assert!(!retryable, "{message}");
            assert!(
                message.contains("adm_rotate") && message.contains("401"),
                "{message}"
            );
        }
        other => panic!("expected a target error, got {other:?}"),
    }
    assert!(users_with_prefix(broker, "rot_").await.is_empty());
}

#[tokio::test]
async fn concurrent_issuance() {
    let vhost = "t_concurrent";
    let broker = broker_with_vhost(vhost).await;
    let issuer = std::sync::Arc::new(issuer_for(broker));
    let role = std::sync::Arc::new(app_role(vhost, "username_prefix = \"conc\"\n"));
    const N: usize = 32;
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
        "rabbitmq issuer: {N} credentials in {:?} ({rate:.0}/s)",
        started.elapsed()
    );
    assert_eq!(users_with_prefix(broker, "conc_").await.len(), N);
    for h in &handles {
        issuer.revoke(h).await.unwrap();
    }
    assert!(users_with_prefix(broker, "conc_").await.is_empty());
}
