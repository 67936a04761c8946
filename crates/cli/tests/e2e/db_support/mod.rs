//! Shared by the database end-to-end tests (`db_postgres.rs`,
//! `db_mariadb.rs`, `db_redis.rs`): callers whose OIDC tokens a
//! [`TestJwks`] signs (so a test can give them any subject and claims,
//! hostile ones included), the Cedar policy they run under, and the
//! mapping between a lease and the user idmint created for it.
//!
//! Each test file includes it with `mod db_support;`, so items one file
//! does not use are allowed to be dead there.
#![allow(dead_code)]

use idmint_client::proto::{Credential, CredsResponse, LeaseInfo, LoginRequest};
use idmint_client::{ClientError, IdmintClient, LeaseQuery};
use idmint_testkit::audit::events_of;
use idmint_testkit::wait::{poll_every, DEFAULT_POLL};
use idmint_testkit::{poll_until, IdmintServer, OidcSpec, TestJwks, TestkitError};
use serde_json::Value;
use std::future::Future;
use std::time::Duration;

/// Subject of the CI job that the policy lets get database users.
pub const APP_SUBJECT: &str = "repo:acme/app:ref:refs/heads/main";
/// Subject of the operator the policy makes admin.
pub const ADMIN_SUBJECT: &str = "repo:acme/ops:ref:refs/heads/main";
/// `[[auth.oidc]]` name of the test issuer.
pub const AUTH_NAME: &str = "ci";

/// `policy/db.cedar`: jobs of `acme/app` may get every role (what they get
/// is the role's template), pull requests nothing, and the identity whose
/// subject is [`ADMIN_SUBJECT`] is admin (revoke by prefix, rotate
/// target admin passwords) but gets no credentials itself.
pub const POLICY: &str = r#"
@id("acme-app-gets-db-users")
permit (principal, action == Action::"issue", resource)
when { principal has repository && principal.repository == "acme/app" };

@id("no-pull-requests")
forbid (principal, action == Action::"issue", resource)
when { principal has event_name && principal.event_name == "pull_request" };

@id("ops-admin")
permit (principal, action == Action::"admin", resource)
when { principal.subject == "repo:acme/ops:ref:refs/heads/main" };
"#;

/// The `[[auth.oidc]]` table trusting `jwks` as a GitHub Actions issuer.
pub fn oidc(jwks: &TestJwks) -> OidcSpec {
    OidcSpec::new(AUTH_NAME, &jwks.issuer()).preset("github-actions")
}

/// A TOML table from text (config snippets read better as TOML).
pub fn toml_table(text: &str) -> anyhow::Result<idmint_testkit::toml::Table> {
    Ok(idmint_testkit::toml::from_str(text)?)
}

/// A logged-in caller.
pub struct Caller {
    /// The session token (`idm_…`), for raw API calls.
    pub session: String,
    /// A client holding the session.
    pub client: IdmintClient,
    pub subject: String,
}

/// A GitHub-Actions-like token for `subject` from `jwks`, with the
/// standard claims overridden by `overrides` (a JSON object).
pub fn token_for(jwks: &TestJwks, subject: &str, overrides: &Value) -> anyhow::Result<String> {
    let mut claims = jwks.standard_claims(subject)?;
    if let (Some(c), Some(o)) = (claims.as_object_mut(), overrides.as_object()) {
        for (k, v) in o {
            c.insert(k.clone(), v.clone());
        }
    }
    Ok(jwks.sign_claims(&claims)?)
}

/// Log in to `server` as `subject` with `overrides` on the standard claims.
pub async fn login(
    server: &IdmintServer,
    jwks: &TestJwks,
    subject: &str,
    overrides: &Value,
) -> anyhow::Result<Caller> {
    let token = token_for(jwks, subject, overrides)?;
    let client = server.client()?;
    let resp = client
        .login(&LoginRequest {
            method: "oidc".into(),
            token,
            auth: None,
            access_token: None,
        })
        .await?;
    Ok(Caller {
        client: client.with_token(resp.token.clone()),
        session: resp.token,
        subject: subject.to_string(),
    })
}

/// The `acme/app` job.
pub async fn login_app(server: &IdmintServer, jwks: &TestJwks) -> anyhow::Result<Caller> {
    login(server, jwks, APP_SUBJECT, &serde_json::json!({})).await
}

/// The admin operator (repository `acme/ops`: it gets no credentials).
pub async fn login_admin(server: &IdmintServer, jwks: &TestJwks) -> anyhow::Result<Caller> {
    login(
        server,
        jwks,
        ADMIN_SUBJECT,
        &serde_json::json!({"repository": "acme/ops"}),
    )
    .await
}

/// The fields of a database credential.
#[derive(Debug, Clone)]
pub struct DbUser {
    pub engine: String,
    pub username: String,
    pub password: String,
    pub uri: String,
    pub host: String,
    pub port: u16,
    pub database: Option<String>,
}

/// The database user in a creds response; fails on any other kind.
pub fn db_user(resp: &CredsResponse) -> anyhow::Result<DbUser> {
    match &resp.credential {
        Credential::DatabaseUser {
            engine,
            username,
            password,
            uri,
            host,
            port,
            database,
        } => Ok(DbUser {
            engine: engine.clone(),
            username: username.clone(),
            password: password.clone(),
            uri: uri.clone(),
            host: host.clone(),
            port: *port,
            database: database.clone(),
        }),
        _ => {
            anyhow::bail!(
                "role {} returned another kind of credential, not a database user",
                resp.role
            )
        }
    }
}

/// The part of a lease id that ends the username idmint derives for it
/// (the last 12 hex digits, the random part; see `naming::username`).
pub fn lease_suffix(lease_id: &str) -> String {
    let hex = lease_id.trim_start_matches(idmint_core::LeaseId::PREFIX);
    hex[hex.len().saturating_sub(12)..].to_string()
}

/// Whether `username` is the user planned for `lease_id`.
pub fn belongs_to(username: &str, lease_id: &str) -> bool {
    username.ends_with(&format!("_{}", lease_suffix(lease_id)))
}

/// A username as idmint derives it: `[a-z][a-z0-9_]*`, at most `max`.
pub fn is_derived_username(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `(status, code, message)` of an API error.
pub fn api_error(e: &ClientError) -> (u16, String, String) {
    match e {
        ClientError::Api {
            status,
            code,
            message,
            ..
        } => (*status, code.clone(), message.clone()),
        other => (0, "not_an_api_error".into(), other.to_string()),
    }
}

/// One lease by id, as the admin sees it.
pub async fn lease(admin: &Caller, id: &str) -> anyhow::Result<LeaseInfo> {
    let list = admin
        .client
        .leases(&LeaseQuery {
            all: true,
            ..Default::default()
        })
        .await?;
    list.leases
        .into_iter()
        .find(|l| l.id == id)
        .ok_or_else(|| anyhow::anyhow!("lease {id} is not listed"))
}

/// Every lease on the server (admin view).
pub async fn all_leases(admin: &Caller) -> anyhow::Result<Vec<LeaseInfo>> {
    Ok(admin
        .client
        .leases(&LeaseQuery {
            all: true,
            ..Default::default()
        })
        .await?
        .leases)
}

/// [`poll_until`] for checks that fail with `anyhow` errors (database
/// clients, the idmint client): poll `check` every `every` until it
/// returns `Some`, for at most `limit`.
pub async fn wait_for<T, F, Fut>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    Ok(poll_every(what, limit, every, &mut || {
        let attempt = check();
        async move {
            attempt.await.map_err(|e| TestkitError::Protocol {
                peer: "test check".into(),
                message: format!("{e:#}"),
            })
        }
    })
    .await?)
}

/// [`wait_for`] at the test kit's default poll period.
pub async fn wait_until<T, F, Fut>(what: &str, limit: Duration, check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    wait_for(what, limit, DEFAULT_POLL, check).await
}

/// Wait until the audit log holds an `event` for `lease_id`; returns it.
pub async fn audit_event_for(
    server: &IdmintServer,
    event: &str,
    lease_id: &str,
    limit: Duration,
) -> anyhow::Result<Value> {
    let what = format!("audit event {event} for lease {lease_id}");
    Ok(poll_until(&what, limit, || async {
        let events = server.audit_events()?;
        Ok(events_of(&events, event)
            .into_iter()
            .find(|e| e["lease_id"] == lease_id)
            .cloned())
    })
    .await?)
}

/// Fails if `secret` appears anywhere in the server's audit log or output.
pub fn assert_not_logged(server: &IdmintServer, secret: &str, what: &str) -> anyhow::Result<()> {
    let audit = std::fs::read_to_string(server.audit_file())?;
    anyhow::ensure!(!audit.contains(secret), "{what} is in the audit log");
    let output = server.log_tail(100_000);
    anyhow::ensure!(!output.contains(secret), "{what} is in the server's output");
    Ok(())
}
