//! The `redis` issuer: a Redis 6+/7 ACL user per lease.
//!
//! Per credential idmint runs exactly one command on a pooled admin
//! connection:
//!
//! ```text
//! ACL SETUSER <user> reset on ><password> resetkeys ~<key>… resetchannels &<channel>… -@all <rule>…
//! ```
//!
//! with every token a separate RESP argument, the user name from
//! [`crate::naming::username`] (`[a-z0-9_]`, at most 64 characters) and the
//! rules from the role's `[role.redis]` template, checked against a
//! whitelist grammar when the role is loaded (see the `acl` submodule for
//! the grammar and what counts as dangerous). Unless the template sets
//! `allow_dangerous`, `-@dangerous` and removals of the commands that act on
//! state shared by all users (`FUNCTION FLUSH`, `SCRIPT FLUSH`, …) are
//! appended, so a category such as `+@read` never brings in `KEYS`.
//!
//! Revocation is `ACL DELUSER <user>`, which also closes the user's open
//! connections; deleting a user that is already gone is success.
//!
//! Redis has no expiry on ACL users: a credential stops working only when
//! idmint's reaper revokes it at lease end. Renewal therefore has nothing to
//! extend on the server and only validates the handle. idmint never runs
//! `ACL SAVE`: lease users live in the server's memory, so a Redis restart
//! (or `ACL LOAD`) drops them, and a later revocation finds them gone,
//! which is success. ACL changes are not replicated: point the issuer at
//! the server clients connect to (each primary of a cluster needs its own
//! issuer).
//!
//! Key patterns do not confine commands that list names without key
//! arguments (`SCAN`, `RANDOMKEY`): a user with `+@read` can see other
//! tenants' key *names*, never their values.
//!
//! Configuration, `[[issuer.redis]]` in `idmint.toml`:
//!
//! ```toml
//! [[issuer.redis]]
//! name = "cache"
//! host = "10.0.0.5"
//! port = 6379                          # default 6379
//! admin_user = "idmint"                # needs +acl|setuser +acl|deluser +ping
//! admin_password_env = "REDIS_ADMIN_PW" # bootstrap only; sealed afterwards
//! pool_size = 2                        # pipelined connections; default 2
//! connect_timeout = "5s"               # bounds every call; default 5s
//! public_host = "cache.internal"       # host in the URI; default `host`
//! ```

mod acl;
mod pool;

use crate::naming::{self, REDIS_MAX_NAME};
use crate::target::{self, config as checks, redact};
use crate::{IssueError, IssueRequest, Issuer, Minted, PlanRequest};
use acl::AclRules;
use idmint_core::role::RedisTemplate;
use idmint_core::{RevocationHandle, Role, Secret, Ttl, UnixTime};
use idmint_proto::Credential;
use pool::{AdminPool, PoolError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use zeroize::Zeroizing;

pub use acl::{REDIS_DANGEROUS_COMMANDS, SHARED_STATE_COMMANDS};

/// The revocation handle kind this issuer plans: the ACL user name.
pub use crate::target::DB_USER_HANDLE;

const DEFAULT_PORT: u16 = 6379;
/// Multiplexed connections pipeline everything; two spread the work over
/// two server-side clients, more is rarely useful.
const DEFAULT_POOL_SIZE: usize = 2;
const MAX_POOL_SIZE: usize = 64;

fn default_port() -> u16 {
    DEFAULT_PORT
}

/// `[[issuer.redis]]` in `idmint.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisIssuerConfig {
    pub name: String,
    /// Where idmint connects to Redis (name or IP address).
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// The ACL user idmint administers users with; it needs at least
    /// `+acl|setuser +acl|deluser +ping`.
    pub admin_user: String,
    /// Bootstrap only: environment variable holding the admin password on
    /// first start (the server seals it in its store afterwards).
    #[serde(default)]
    pub admin_password_env: Option<String>,
    /// Bootstrap only: file holding the admin password on first start.
    #[serde(default)]
    pub admin_password_file: Option<PathBuf>,
    /// Pipelined admin connections (default 2, at most 64).
    #[serde(default)]
    pub pool_size: Option<usize>,
    /// Bounds every connect and command (default 5s).
    #[serde(default)]
    pub connect_timeout: Option<Ttl>,
    /// Host put in the credential's URI when clients reach Redis under
    /// another name than idmint does; default `host`.
    #[serde(default)]
    pub public_host: Option<String>,
}

impl RedisIssuerConfig {
    /// Config-time checks, so a broken entry stops startup with a message
    /// instead of failing every request.
    pub fn validate(&self) -> Result<(), String> {
        let entry = format!("[[issuer.redis]] {:?}", self.name);
        checks::check_name("[[issuer.redis]]", &self.name)?;
        if !checks::valid_host(&self.host) {
            return Err(format!(
                "{entry}: `host` {:?} is not a host name or IP address",
                self.host
            ));
        }
        if let Some(h) = &self.public_host {
            if !checks::valid_host(h) {
                return Err(format!(
                    "{entry}: `public_host` {h:?} is not a host name or IP address"
                ));
            }
        }
        checks::check_port(&entry, "port", self.port)?;
        if self.admin_user.is_empty() || !self.admin_user.chars().all(|c| c.is_ascii_graphic()) {
            return Err(format!(
                "{entry}: `admin_user` must be non-empty printable ASCII without spaces"
            ));
        }
        checks::pool_size(&entry, self.pool_size, DEFAULT_POOL_SIZE, MAX_POOL_SIZE)?;
        Ok(())
    }
}

/// Mints Redis ACL users.
pub struct RedisIssuer {
    name: String,
    /// `host:port`, for messages.
    endpoint: String,
    public_host: String,
    port: u16,
    admin_user: String,
    pool: AdminPool,
}

impl std::fmt::Debug for RedisIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisIssuer")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("admin_user", &self.admin_user)
            .finish_non_exhaustive()
    }
}

impl RedisIssuer {
    /// Build the issuer. No I/O: connections are opened on first use, so a
    /// Redis that is down does not stop idmint from starting.
    pub fn new(
        cfg: &RedisIssuerConfig,
        admin_password: Secret<String>,
    ) -> Result<Self, IssueError> {
        cfg.validate().map_err(IssueError::Config)?;
        let timeout = checks::connect_timeout(cfg.connect_timeout);
        Ok(Self {
            name: cfg.name.clone(),
            endpoint: format!("{}:{}", cfg.host, cfg.port),
            public_host: cfg.public_host.clone().unwrap_or_else(|| cfg.host.clone()),
            port: cfg.port,
            admin_user: cfg.admin_user.clone(),
            pool: AdminPool::new(
                cfg.host.clone(),
                cfg.port,
                cfg.admin_user.clone(),
                admin_password,
                cfg.pool_size.unwrap_or(DEFAULT_POOL_SIZE),
                timeout,
            ),
        })
    }

    fn template<'r>(&self, role: &'r Role) -> Result<&'r RedisTemplate, String> {
        role.redis.as_ref().ok_or_else(|| {
            format!(
                "role {:?} uses the redis issuer {:?} but has no [role.redis] template \
                 (keys, channels, commands)",
                role.name, self.name
            )
        })
    }

    /// The ACL user a handle names, refusing anything this issuer could not
    /// have planned — above all the admin user, which a corrupted lease row
    /// must never get deleted.
    fn planned_user<'h>(&self, handle: &'h RevocationHandle) -> Result<&'h str, IssueError> {
        target::planned_user(
            handle,
            "redis",
            &self.name,
            REDIS_MAX_NAME,
            Some(&self.admin_user),
        )
    }

    /// Word a pool failure for the operator; `action` says what was tried.
    fn target_error(&self, action: &str, e: PoolError) -> IssueError {
        let (message, retryable) = match e {
            PoolError::Timeout(t) => (
                format!("Redis at {} cannot be reached: no answer within {t:?} while trying to {action}", self.endpoint),
                true,
            ),
            PoolError::Unreachable(e) => (
                format!("Redis at {} cannot be reached while trying to {action}: {e}", self.endpoint),
                true,
            ),
            PoolError::AuthRejected(e) => (
                format!(
                    "Redis at {} rejected the admin user {:?} ({e}); the stored admin password is wrong \
                     or the user is disabled: fix it on the server or re-bootstrap the password",
                    self.endpoint, self.admin_user
                ),
                false,
            ),
            PoolError::Server(e) => {
                let busy = matches!(
                    e.kind(),
                    ::redis::ErrorKind::BusyLoadingError
                        | ::redis::ErrorKind::TryAgain
                        | ::redis::ErrorKind::MasterDown
                        | ::redis::ErrorKind::ReadOnly
                );
                let hint = if e.code() == Some("NOPERM") {
                    format!(
                        "; the admin user {:?} needs +acl|setuser and +acl|deluser",
                        self.admin_user
                    )
                } else {
                    String::new()
                };
                (format!("Redis at {} refused to {action}: {e}{hint}", self.endpoint), busy)
            }
        };
        IssueError::Target {
            target: self.name.clone(),
            message,
            retryable,
        }
    }

    /// The credential's connection URI. User and password are
    /// `[a-z0-9_]` / `[A-Za-z0-9]`, so they need no percent-encoding; an IPv6
    /// host gets its brackets.
    fn uri(&self, user: &str, password: &str) -> String {
        let host = target::uri::uri_host(&self.public_host);
        format!("redis://{user}:{password}@{host}:{}/", self.port)
    }
}

#[async_trait::async_trait]
impl Issuer for RedisIssuer {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    fn plan(&self, plan: &PlanRequest<'_>) -> Result<RevocationHandle, IssueError> {
        let template = self.template(plan.role).map_err(IssueError::Config)?;
        Ok(target::planned_user_handle(
            template.username_prefix.as_deref(),
            plan,
            REDIS_MAX_NAME,
        ))
    }

    fn validate_role(&self, role: &Role) -> Result<(), String> {
        let template = self.template(role)?;
        AclRules::from_template(&role.name, template).map(|_| ())
    }

    async fn issue(&self, req: &IssueRequest<'_>) -> Result<Minted, IssueError> {
        let user = self.planned_user(req.revocation)?;
        let template = self.template(req.role).map_err(IssueError::Config)?;
        let rules =
            AclRules::from_template(&req.role.name, template).map_err(IssueError::Config)?;
        let expires_at = req.credential_expiry("the Redis user could be created")?;
        let password = naming::password(template.password_length)?;
        // The redis crate copies arguments into its own (not zeroized)
        // buffer; this copy at least is wiped.
        let password_rule = Zeroizing::new(format!(">{}", password.expose()));
        let mut cmd = ::redis::cmd("ACL");
        cmd.arg("SETUSER")
            .arg(user)
            .arg("reset")
            .arg("on")
            .arg(password_rule.as_str());
        for rule in rules.setuser_rules() {
            cmd.arg(rule);
        }
        // `reset` first makes a retry (or a leftover user of the same name)
        // end up with exactly these rules, so the command is idempotent.
        self.pool.query::<()>(&cmd).await.map_err(|e| {
            let e = self.target_error(&format!("create ACL user {user:?}"), e);
            redact(e, password.expose())
        })?;
        tracing::debug!(
            issuer = %self.name,
            lease_id = %req.lease_id,
            user,
            exp = expires_at.secs(),
            "created redis ACL user"
        );
        let uri = self.uri(user, password.expose());
        Ok(Minted {
            credential: Credential::DatabaseUser {
                engine: "redis".to_string(),
                username: user.to_string(),
                password: password.expose().clone(),
                uri,
                host: self.public_host.clone(),
                port: self.port,
                database: None,
            },
            expires_at,
            secret_material: Secret::new(password.expose().as_bytes().to_vec()),
        })
    }

    /// `ACL DELUSER`, which also disconnects the user's open connections.
    /// A user that is already gone counts as revoked.
    async fn revoke(&self, handle: &RevocationHandle) -> Result<(), IssueError> {
        let user = self.planned_user(handle)?;
        let mut cmd = ::redis::cmd("ACL");
        cmd.arg("DELUSER").arg(user);
        let deleted: i64 = self
            .pool
            .query(&cmd)
            .await
            .map_err(|e| self.target_error(&format!("delete ACL user {user:?}"), e))?;
        tracing::debug!(issuer = %self.name, user, deleted, "revoked redis ACL user");
        Ok(())
    }

    /// Redis ACL users have no expiry, so there is nothing to extend on the
    /// server: the lease's new end is enforced by idmint's reaper.
    async fn renew(
        &self,
        handle: &RevocationHandle,
        _new_expires_at: UnixTime,
    ) -> Result<(), IssueError> {
        self.planned_user(handle).map(|_| ())
    }

    /// `ACL SETUSER <admin> resetpass ><new>`: every other password of the
    /// admin user stops working. Redis keeps already-authenticated
    /// connections open, but the pool reconnects with the new password right
    /// away so a problem shows now.
    ///
    /// When the old password is already refused but the new one works, an
    /// earlier attempt got through before its answer was lost; that counts
    /// as done, so the server can simply retry.
    async fn set_admin_password(&self, new: &Secret<String>) -> Result<(), IssueError> {
        if new.expose().is_empty() || new.expose().chars().any(|c| c.is_ascii_control()) {
            return Err(IssueError::Config(
                "a new Redis admin password must be non-empty and contain no control characters"
                    .into(),
            ));
        }
        let password_rule = Zeroizing::new(format!(">{}", new.expose()));
        let mut cmd = ::redis::cmd("ACL");
        cmd.arg("SETUSER")
            .arg(&self.admin_user)
            .arg("resetpass")
            .arg(password_rule.as_str());
        match self.pool.query::<()>(&cmd).await {
            Ok(()) => {}
            Err(PoolError::AuthRejected(old_refused)) => {
                if self.pool.ping_with(new).await.is_err() {
                    return Err(self.target_error(
                        "change the admin password",
                        PoolError::AuthRejected(old_refused),
                    ));
                }
                tracing::info!(issuer = %self.name, "redis admin password was already changed; adopting it");
            }
            Err(e) => {
                let e = self.target_error("change the admin password", e);
                return Err(redact(e, new.expose()));
            }
        }
        self.pool.use_password(new.clone()).await;
        self.pool
            .query::<()>(&::redis::cmd("PING"))
            .await
            .map_err(|e| self.target_error("reconnect with the new admin password", e))?;
        tracing::info!(issuer = %self.name, admin_user = %self.admin_user, "rotated the redis admin password");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RedisIssuerConfig {
        serde_json::from_value(serde_json::json!({
            "name": "cache", "host": "127.0.0.1", "admin_user": "admin"
        }))
        .unwrap()
    }

    fn issuer(cfg: &RedisIssuerConfig) -> RedisIssuer {
        RedisIssuer::new(cfg, Secret::new("pw".to_string())).unwrap()
    }

    #[test]
    fn config_defaults_and_refusals() {
        let cfg = config();
        assert_eq!(cfg.port, 6379);
        let i = issuer(&cfg);
        assert_eq!(i.kind(), "redis");
        assert_eq!(i.uri("u_1", "P4ss"), "redis://u_1:P4ss@127.0.0.1:6379/");
        let mut v6 = cfg.clone();
        v6.public_host = Some("::1".into());
        assert_eq!(issuer(&v6).uri("u", "p"), "redis://u:p@[::1]:6379/");

        let unknown = serde_json::json!({"name": "c", "host": "h", "admin_user": "a", "bogus": 1});
        let e = serde_json::from_value::<RedisIssuerConfig>(unknown).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");

        for (field, bad) in [
            ("host", "h/x"),
            ("host", ""),
            ("host", "a b"),
            ("public_host", "u@h"),
            ("admin_user", "a b"),
            ("name", " "),
        ] {
            let mut c = serde_json::to_value(&cfg).unwrap();
            c[field] = bad.into();
            let c: RedisIssuerConfig = serde_json::from_value(c).unwrap();
            let e = RedisIssuer::new(&c, Secret::new("pw".into())).unwrap_err();
            assert!(matches!(e, IssueError::Config(_)), "{field}={bad:?}: {e}");
        }
        let mut c = cfg.clone();
        c.pool_size = Some(0);
        assert!(c.validate().unwrap_err().contains("pool_size"));
    }

    #[test]
    fn handles_other_than_planned_users_are_refused() {
        let i = issuer(&config());
        let handle = |kind: &str, value: &str| RevocationHandle {
            kind: kind.into(),
            value: value.into(),
        };
        assert!(i
            .planned_user(&handle(DB_USER_HANDLE, "idm_r_s_0123456789ab"))
            .is_ok());
        let too_long = "a_".repeat(REDIS_MAX_NAME);
        for (kind, value) in [
            ("token_id", "idm_x"),
            (DB_USER_HANDLE, "admin"),
            (DB_USER_HANDLE, ""),
            (DB_USER_HANDLE, "default"),
            (DB_USER_HANDLE, "a b"),
            (DB_USER_HANDLE, "Admin"),
            (DB_USER_HANDLE, too_long.as_str()),
        ] {
            let h = handle(kind, value);
            let r = i.planned_user(&h);
            assert!(matches!(r, Err(IssueError::Internal(_))), "{kind}/{value}");
        }
        let mut underscored_admin = config();
        underscored_admin.admin_user = "idm_admin".into();
        let i = issuer(&underscored_admin);
        assert!(i
            .planned_user(&handle(DB_USER_HANDLE, "idm_admin"))
            .is_err());
    }
}
