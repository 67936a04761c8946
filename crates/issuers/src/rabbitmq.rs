//! The `rabbitmq` issuer: a RabbitMQ user per lease, with permissions on
//! one vhost, managed through the management plugin's HTTP API.
//!
//! Per credential idmint makes two calls as its admin user:
//!
//! ```text
//! PUT /api/users/<user>                  {"password": "<generated>", "tags": "<tags>"}
//! PUT /api/permissions/<vhost>/<user>    {"configure": "…", "write": "…", "read": "…"}
//! ```
//!
//! with the user name from [`crate::naming::username`] (`[a-z0-9_]`), path
//! segments percent-encoded (the default vhost `/` is `%2F`) and values as
//! JSON strings, so no template or identity value can change a request. If
//! the permission call fails the user is deleted again: no user without
//! its intended permissions is left behind. See [`template`] for what a
//! role may ask for and what counts as dangerous.
//!
//! Revocation deletes the user first (no new logins; RabbitMQ ≥ 3.7 also
//! closes the user's connections with `CONNECTION_FORCED - user … is
//! deleted`), then closes any connection still open under that name
//! (`DELETE /api/connections/username/<user>`) — in that order so the user
//! cannot reconnect between the two steps. Both steps treat "already gone"
//! as success, so a retried revocation finishes the job.
//!
//! RabbitMQ users have no expiry: a credential stops working when idmint's
//! reaper revokes it at lease end; renewal has nothing to extend.
//!
//! Configuration, `[[issuer.rabbitmq]]` in `idmint.toml`:
//!
//! ```toml
//! [[issuer.rabbitmq]]
//! name = "mq"
//! management_url = "http://10.0.0.7:15672"  # the management plugin
//! amqp_host = "10.0.0.7"                    # default: the management URL's host
//! amqp_port = 5672                          # default 5672
//! admin_user = "idmint"                     # needs the `administrator` tag
//! admin_password_file = "/run/secrets/mq"   # bootstrap only; sealed afterwards
//! pool_size = 8                             # idle HTTP connections kept; default 8
//! connect_timeout = "5s"                    # bounds every call; default 5s
//! public_host = "mq.internal"               # host in the URI; default amqp_host
//! ```

mod management;
pub mod template;

use crate::naming;
use crate::target::{self, config as checks, redact};
use crate::{IssueError, IssueRequest, Issuer, Minted, PlanRequest};
use idmint_core::role::RabbitmqTemplate;
use idmint_core::{RevocationHandle, Role, Secret, Ttl, UnixTime};
use idmint_proto::Credential;
use management::{encode_segment, Answer, ManagementApi, Unreachable};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;
use template::Permissions;

/// The revocation handle kind this issuer plans: the RabbitMQ user name.
pub use crate::target::DB_USER_HANDLE;

/// Longest user name idmint plans (RabbitMQ itself has no small limit).
pub const RABBITMQ_MAX_NAME: usize = 64;

const DEFAULT_AMQP_PORT: u16 = 5672;
const DEFAULT_POOL_SIZE: usize = 8;
const MAX_POOL_SIZE: usize = 256;

fn default_amqp_port() -> u16 {
    DEFAULT_AMQP_PORT
}

/// `[[issuer.rabbitmq]]` in `idmint.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RabbitmqIssuerConfig {
    pub name: String,
    /// Base URL of the management plugin, e.g. `http://10.0.0.7:15672`
    /// (a path prefix is kept, for a broker behind a reverse proxy).
    pub management_url: String,
    /// Host of the AMQP listener; default: the management URL's host.
    #[serde(default)]
    pub amqp_host: Option<String>,
    #[serde(default = "default_amqp_port")]
    pub amqp_port: u16,
    /// The user idmint manages users with; it needs the `administrator` tag.
    pub admin_user: String,
    /// Bootstrap only: environment variable holding the admin password on
    /// first start (the server seals it in its store afterwards).
    #[serde(default)]
    pub admin_password_env: Option<String>,
    /// Bootstrap only: file holding the admin password on first start.
    #[serde(default)]
    pub admin_password_file: Option<PathBuf>,
    /// Idle keep-alive HTTP connections kept to the API (default 8).
    #[serde(default)]
    pub pool_size: Option<usize>,
    /// Bounds connect and every whole API call (default 5s).
    #[serde(default)]
    pub connect_timeout: Option<Ttl>,
    /// Host put in the credential's URI; default `amqp_host`.
    #[serde(default)]
    pub public_host: Option<String>,
}

/// The parts of a checked config the issuer keeps.
struct Endpoints {
    /// Management base URL without a trailing slash.
    management_base: String,
    amqp_host: String,
    public_host: String,
    pool_size: usize,
}

impl RabbitmqIssuerConfig {
    /// Config-time checks, so a broken entry stops startup with a message
    /// instead of failing every request.
    pub fn validate(&self) -> Result<(), String> {
        self.endpoints().map(|_| ())
    }

    fn endpoints(&self) -> Result<Endpoints, String> {
        let entry = format!("[[issuer.rabbitmq]] {:?}", self.name);
        checks::check_name("[[issuer.rabbitmq]]", &self.name)?;
        let url = url::Url::parse(&self.management_url).map_err(|e| {
            format!(
                "{entry}: `management_url` {:?} is not a URL: {e}",
                self.management_url
            )
        })?;
        if !matches!(url.scheme(), "http" | "https")
            || url.host_str().is_none()
            || url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(format!(
                "{entry}: `management_url` must be http(s)://host[:port][/prefix] without credentials, \
                 query or fragment (the admin password comes from admin_password_env/_file)"
            ));
        }
        let management_base = url.as_str().trim_end_matches('/').to_string();
        let url_host = url
            .host_str()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let amqp_host = self.amqp_host.clone().unwrap_or(url_host);
        let public_host = self
            .public_host
            .clone()
            .unwrap_or_else(|| amqp_host.clone());
        for (field, host) in [("amqp_host", &amqp_host), ("public_host", &public_host)] {
            if !checks::valid_host(host) {
                return Err(format!(
                    "{entry}: `{field}` {host:?} is not a host name or IP address"
                ));
            }
        }
        checks::check_port(&entry, "amqp_port", self.amqp_port)?;
        if self.admin_user.is_empty() || self.admin_user.chars().any(char::is_control) {
            return Err(format!(
                "{entry}: `admin_user` must be non-empty without control characters"
            ));
        }
        let pool_size =
            checks::pool_size(&entry, self.pool_size, DEFAULT_POOL_SIZE, MAX_POOL_SIZE)?;
        Ok(Endpoints {
            pool_size,
            management_base,
            amqp_host,
            public_host,
        })
    }
}

/// Mints RabbitMQ users through the management API.
pub struct RabbitmqIssuer {
    name: String,
    admin_user: String,
    amqp_host: String,
    public_host: String,
    amqp_port: u16,
    timeout: Duration,
    api: ManagementApi,
}

impl std::fmt::Debug for RabbitmqIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitmqIssuer")
            .field("name", &self.name)
            .field("management", &self.api.base())
            .field("amqp", &format!("{}:{}", self.amqp_host, self.amqp_port))
            .finish_non_exhaustive()
    }
}

impl RabbitmqIssuer {
    /// Build the issuer. No I/O: a broker that is down does not stop
    /// idmint from starting.
    pub fn new(
        cfg: &RabbitmqIssuerConfig,
        admin_password: Secret<String>,
    ) -> Result<Self, IssueError> {
        let endpoints = cfg.endpoints().map_err(IssueError::Config)?;
        let timeout = checks::connect_timeout(cfg.connect_timeout);
        let api = ManagementApi::new(
            endpoints.management_base,
            cfg.admin_user.clone(),
            admin_password,
            timeout,
            endpoints.pool_size,
        )
        .map_err(|e| {
            IssueError::Config(format!(
                "issuer {:?}: cannot build the HTTP client: {e}",
                cfg.name
            ))
        })?;
        Ok(Self {
            name: cfg.name.clone(),
            admin_user: cfg.admin_user.clone(),
            amqp_host: endpoints.amqp_host,
            public_host: endpoints.public_host,
            amqp_port: cfg.amqp_port,
            timeout,
            api,
        })
    }

    fn template<'r>(&self, role: &'r Role) -> Result<&'r RabbitmqTemplate, String> {
        role.rabbitmq.as_ref().ok_or_else(|| {
            format!(
                "role {:?} uses the rabbitmq issuer {:?} but has no [role.rabbitmq] template \
                 (vhost, configure, write, read, tags)",
                role.name, self.name
            )
        })
    }

    /// The user a handle names, refusing anything this issuer could not
    /// have planned — above all the admin user.
    fn planned_user<'h>(&self, handle: &'h RevocationHandle) -> Result<&'h str, IssueError> {
        target::planned_user(
            handle,
            "rabbitmq",
            &self.name,
            RABBITMQ_MAX_NAME,
            Some(&self.admin_user),
        )
    }

    fn unreachable(&self, action: &str, e: &Unreachable) -> IssueError {
        let why = if e.0.is_timeout() {
            format!("no answer within {:?}", self.timeout)
        } else {
            crate::error::error_chain(&e.0)
        };
        IssueError::Target {
            target: self.name.clone(),
            message: format!(
                "RabbitMQ management API at {} cannot be reached while trying to {action}: {why}",
                self.api.base()
            ),
            retryable: true,
        }
    }

    /// An unexpected status, worded for the operator.
    fn refused(&self, action: &str, answer: &Answer) -> IssueError {
        let status = answer.status;
        let hint = match status {
            StatusCode::UNAUTHORIZED => format!(
                "; the admin user {:?} was rejected or lacks the administrator tag: fix it on the broker \
                 or re-bootstrap the password",
                self.admin_user
            ),
            _ => String::new(),
        };
        IssueError::Target {
            target: self.name.clone(),
            message: format!(
                "RabbitMQ at {} refused to {action}: HTTP {status}: {}{hint}",
                self.api.base(),
                answer.reason()
            ),
            retryable: status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// `amqp://user:password@host:port/<vhost>`; user and password need no
    /// encoding (`[a-z0-9_]`, `[A-Za-z0-9]`), the vhost is one encoded path
    /// segment (`/` is `%2F`), an IPv6 host gets its brackets.
    fn uri(&self, user: &str, password: &str, vhost: &str) -> String {
        let host = target::uri::uri_host(&self.public_host);
        format!(
            "amqp://{user}:{password}@{host}:{}/{}",
            self.amqp_port,
            encode_segment(vhost)
        )
    }

    async fn create_user(
        &self,
        user: &str,
        password: &Secret<String>,
        perms: &Permissions,
    ) -> Result<(), IssueError> {
        let user_path = format!("/api/users/{}", encode_segment(user));
        let body = json!({"password": password.expose(), "tags": perms.tags});
        let action = format!("create user {user:?}");
        let answer = self
            .api
            .call(Method::PUT, &user_path, Some(&body))
            .await
            .map_err(|e| self.unreachable(&action, &e))?;
        if !answer.is_success() {
            return Err(self.refused(&action, &answer));
        }
        let perm_path = format!(
            "/api/permissions/{}/{}",
            encode_segment(&perms.vhost),
            encode_segment(user)
        );
        let body = json!({"configure": perms.configure, "write": perms.write, "read": perms.read});
        let action = format!(
            "grant user {user:?} its permissions on vhost {:?}",
            perms.vhost
        );
        let granted = match self.api.call(Method::PUT, &perm_path, Some(&body)).await {
            Ok(a) if a.is_success() => Ok(()),
            Ok(a) if a.reason().contains("not_found") => Err(IssueError::Target {
                target: self.name.clone(),
                message: format!(
                    "RabbitMQ at {} has no vhost {:?} (HTTP {}: {}); create it or fix the role's vhost",
                    self.api.base(),
                    perms.vhost,
                    a.status,
                    a.reason()
                ),
                retryable: false,
            }),
            Ok(a) => Err(self.refused(&action, &a)),
            Err(e) => Err(self.unreachable(&action, &e)),
        };
        if let Err(e) = granted {
            // No user without its intended permissions: take it back. If
            // even that fails, the write-ahead lease still names it.
            if let Err(cleanup) = self.delete_user(user).await {
                tracing::warn!(issuer = %self.name, user, error = %cleanup, "could not delete a half-created rabbitmq user");
            }
            return Err(e);
        }
        Ok(())
    }

    /// `DELETE /api/users/<user>`; 404 means already gone.
    async fn delete_user(&self, user: &str) -> Result<(), IssueError> {
        let path = format!("/api/users/{}", encode_segment(user));
        let action = format!("delete user {user:?}");
        let answer = self
            .api
            .call(Method::DELETE, &path, None)
            .await
            .map_err(|e| self.unreachable(&action, &e))?;
        if answer.is_success() || answer.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(self.refused(&action, &answer))
        }
    }

    /// `DELETE /api/connections/username/<user>`; 404 means none.
    async fn close_connections(&self, user: &str) -> Result<(), IssueError> {
        let path = format!("/api/connections/username/{}", encode_segment(user));
        let action = format!("close the connections of user {user:?}");
        let answer = self
            .api
            .call(Method::DELETE, &path, None)
            .await
            .map_err(|e| self.unreachable(&action, &e))?;
        if answer.is_success() || answer.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(self.refused(&action, &answer))
        }
    }

    /// The admin user's tags, which `PUT /api/users` would otherwise reset.
    async fn admin_tags(&self) -> Result<String, Result<Answer, Unreachable>> {
        let path = format!("/api/users/{}", encode_segment(&self.admin_user));
        let answer = self.api.call(Method::GET, &path, None).await.map_err(Err)?;
        if !answer.is_success() {
            return Err(Ok(answer));
        }
        let user: serde_json::Value = serde_json::from_str(&answer.body).map_err(|_| Ok(answer))?;
        // 3.9+ answers a list, older brokers a comma-separated string.
        Ok(match user.get("tags") {
            Some(serde_json::Value::Array(tags)) => tags
                .iter()
                .filter_map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(","),
            Some(serde_json::Value::String(tags)) => tags.clone(),
            _ => String::new(),
        })
    }
}

#[async_trait::async_trait]
impl Issuer for RabbitmqIssuer {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "rabbitmq"
    }

    fn plan(&self, plan: &PlanRequest<'_>) -> Result<RevocationHandle, IssueError> {
        let template = self.template(plan.role).map_err(IssueError::Config)?;
        Ok(target::planned_user_handle(
            template.username_prefix.as_deref(),
            plan,
            RABBITMQ_MAX_NAME,
        ))
    }

    fn validate_role(&self, role: &Role) -> Result<(), String> {
        let template = self.template(role)?;
        Permissions::from_template(&role.name, template).map(|_| ())
    }

    async fn issue(&self, req: &IssueRequest<'_>) -> Result<Minted, IssueError> {
        let user = self.planned_user(req.revocation)?;
        let template = self.template(req.role).map_err(IssueError::Config)?;
        let perms =
            Permissions::from_template(&req.role.name, template).map_err(IssueError::Config)?;
        let expires_at = req.credential_expiry("the RabbitMQ user could be created")?;
        let password = naming::password(None)?;
        self.create_user(user, &password, &perms)
            .await
            .map_err(|e| redact(e, password.expose()))?;
        tracing::debug!(
            issuer = %self.name,
            lease_id = %req.lease_id,
            user,
            vhost = %perms.vhost,
            exp = expires_at.secs(),
            "created rabbitmq user"
        );
        Ok(Minted {
            credential: Credential::DatabaseUser {
                engine: "rabbitmq".to_string(),
                username: user.to_string(),
                password: password.expose().clone(),
                uri: self.uri(user, password.expose(), &perms.vhost),
                host: self.public_host.clone(),
                port: self.amqp_port,
                database: Some(perms.vhost.clone()),
            },
            expires_at,
            secret_material: Secret::new(password.expose().as_bytes().to_vec()),
        })
    }

    /// Delete the user (no new logins; the broker closes its connections),
    /// then close whatever connection is still open under its name.
    async fn revoke(&self, handle: &RevocationHandle) -> Result<(), IssueError> {
        let user = self.planned_user(handle)?;
        self.delete_user(user).await?;
        self.close_connections(user).await?;
        tracing::debug!(issuer = %self.name, user, "revoked rabbitmq user");
        Ok(())
    }

    /// RabbitMQ users have no expiry, so there is nothing to extend on the
    /// broker: the lease's new end is enforced by idmint's reaper.
    async fn renew(
        &self,
        handle: &RevocationHandle,
        _new_expires_at: UnixTime,
    ) -> Result<(), IssueError> {
        self.planned_user(handle).map(|_| ())
    }

    /// `PUT /api/users/<admin>` with the new password and the admin's
    /// current tags (a PUT replaces them). When the old password is already
    /// refused but the new one works, an earlier attempt got through before
    /// its answer was lost; that counts as done, so the server can retry.
    async fn set_admin_password(&self, new: &Secret<String>) -> Result<(), IssueError> {
        if new.expose().is_empty() || new.expose().chars().any(char::is_control) {
            return Err(IssueError::Config(
                "a new RabbitMQ admin password must be non-empty and contain no control characters"
                    .into(),
            ));
        }
        let action = "change the admin password";
        let whoami = |answer: Result<Answer, Unreachable>| match answer {
            Ok(a) if a.is_success() => Ok(()),
            Ok(a) => Err(self.refused("log in with the new admin password", &a)),
            Err(e) => Err(self.unreachable("log in with the new admin password", &e)),
        };
        let tags = match self.admin_tags().await {
            Ok(tags) => tags,
            Err(Ok(answer)) if answer.status == StatusCode::UNAUTHORIZED => {
                let probe = self
                    .api
                    .call_as(&self.admin_user, new, Method::GET, "/api/whoami", None)
                    .await;
                if whoami(probe).is_err() {
                    return Err(self.refused(action, &answer));
                }
                tracing::info!(issuer = %self.name, "rabbitmq admin password was already changed; adopting it");
                self.api.use_password(new.clone());
                return Ok(());
            }
            Err(Ok(answer)) => return Err(self.refused(action, &answer)),
            Err(Err(e)) => return Err(self.unreachable(action, &e)),
        };
        let path = format!("/api/users/{}", encode_segment(&self.admin_user));
        let body = json!({"password": new.expose(), "tags": tags});
        let answer = self
            .api
            .call(Method::PUT, &path, Some(&body))
            .await
            .map_err(|e| self.unreachable(action, &e))?;
        if !answer.is_success() {
            return Err(redact(self.refused(action, &answer), new.expose()));
        }
        self.api.use_password(new.clone());
        whoami(self.api.call(Method::GET, "/api/whoami", None).await)?;
        tracing::info!(issuer = %self.name, admin_user = %self.admin_user, "rotated the rabbitmq admin password");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> RabbitmqIssuerConfig {
        serde_json::from_value(json!({"name": "mq", "management_url": url, "admin_user": "admin"}))
            .unwrap()
    }

    fn issuer(cfg: &RabbitmqIssuerConfig) -> RabbitmqIssuer {
        RabbitmqIssuer::new(cfg, Secret::new("pw".into())).unwrap()
    }

    #[test]
    fn config_defaults_uri_and_refusals() {
        let i = issuer(&config("http://10.0.0.7:15672/"));
        assert_eq!(i.kind(), "rabbitmq");
        assert_eq!(i.api.base(), "http://10.0.0.7:15672");
        assert_eq!((i.amqp_host.as_str(), i.amqp_port), ("10.0.0.7", 5672));
        assert_eq!(
            i.uri("u_1", "P4ss", "/"),
            "amqp://u_1:P4ss@10.0.0.7:5672/%2F"
        );
        assert_eq!(
            i.uri("u_1", "P4ss", "orders/eu"),
            "amqp://u_1:P4ss@10.0.0.7:5672/orders%2Feu"
        );
        let proxied = issuer(&config("https://[::1]:8443/rabbitmq/"));
        assert_eq!(proxied.api.base(), "https://[::1]:8443/rabbitmq");
        assert_eq!(proxied.uri("u", "p", "v"), "amqp://u:p@[::1]:5672/v");

        for bad in [
            "ftp://h",
            "http://u:p@h:15672",
            "http://h/?x=1",
            "not a url",
            "http://h#f",
        ] {
            let e = RabbitmqIssuer::new(&config(bad), Secret::new("pw".into())).unwrap_err();
            assert!(
                matches!(e, IssueError::Config(ref m) if m.contains("management_url")),
                "{bad}: {e}"
            );
        }
        let mut c = config("http://h:15672");
        c.public_host = Some("h/x".into());
        assert!(c.validate().unwrap_err().contains("public_host"));
        let mut c = config("http://h:15672");
        c.pool_size = Some(0);
        assert!(c.validate().unwrap_err().contains("pool_size"));
        let unknown =
            json!({"name": "mq", "management_url": "http://h", "admin_user": "a", "vhost": "/"});
        assert!(serde_json::from_value::<RabbitmqIssuerConfig>(unknown).is_err());
    }

    #[test]
    fn handles_other_than_planned_users_are_refused() {
        let i = issuer(&config("http://h:15672"));
        let handle = |kind: &str, value: &str| RevocationHandle {
            kind: kind.into(),
            value: value.into(),
        };
        assert!(i
            .planned_user(&handle(DB_USER_HANDLE, "idm_r_s_0123456789ab"))
            .is_ok());
        for (kind, value) in [
            ("token_id", "idm_x"),
            (DB_USER_HANDLE, "admin"),
            (DB_USER_HANDLE, "guest"),
            (DB_USER_HANDLE, "a_b/../x"),
            (DB_USER_HANDLE, ""),
        ] {
            let h = handle(kind, value);
            assert!(
                matches!(i.planned_user(&h), Err(IssueError::Internal(_))),
                "{kind}/{value}"
            );
        }
    }
}
