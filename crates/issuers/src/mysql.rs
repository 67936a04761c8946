//! The `mysql` issuer: a MySQL/MariaDB user per lease.
//!
//! Per issuance, on one pooled admin connection and in one round trip:
//!
//! ```sql
//! CREATE USER 'idm_role_subject_0123456789ab'@'%' IDENTIFIED BY '<32 random [A-Za-z0-9]>';
//! GRANT SELECT ON `app`.`orders` TO 'idm_…'@'%';          -- one per `grants` entry
//! GRANT `reader` TO 'idm_…'@'%';                          -- `member_of`, at most one
//! SET DEFAULT ROLE `reader` FOR 'idm_…'@'%'               -- MySQL: SET DEFAULT ROLE ALL TO …
//! ```
//!
//! MySQL commits each DDL statement on its own, so there is no transaction
//! to roll back: when any statement fails, the issuer runs `DROP USER IF
//! EXISTS` before returning the error, and no partial user is left behind.
//!
//! **Expiry** is enforced by idmint, not by the database: neither MySQL nor
//! MariaDB 10.11 can expire an account at a point in time (`PASSWORD EXPIRE
//! INTERVAL` counts whole days and only forces a password change). The user
//! lives until the lease's reaper calls [`MysqlIssuer::revoke`]; for the
//! same reason [`MysqlIssuer::renew`] has nothing to change in the database.
//!
//! **Revocation** ends access including open connections, because `DROP
//! USER` does not end live sessions (verified on MariaDB 10.11): it kills
//! the user's sessions (`information_schema.processlist`, `KILL
//! CONNECTION`), drops the user with `DROP USER IF EXISTS` (idempotent), and
//! kills again whatever logged in between the first sweep and the drop.
//!
//! **Quoting**: usernames are `[a-z0-9_]` ([`crate::naming::username`]) and
//! still quoted; the password cannot be a bound parameter (`CREATE USER` is
//! not preparable with placeholders in MariaDB), so it is a literal from
//! [`quoting::string_literal`], which is correct whatever `sql_mode`
//! (`NO_BACKSLASH_ESCAPES`) and client character set the session has.
//! Grant templates are parsed against a whitelist ([`template`]).
//!
//! **Admin privileges** the configured admin user needs: `CREATE USER`,
//! every privilege the templates grant `WITH GRANT OPTION`, `PROCESS` (to
//! see other users' sessions), `CONNECTION ADMIN` or `SUPER` (to kill
//! them), and the `member_of` roles `WITH ADMIN OPTION`. `ALL PRIVILEGES ON
//! *.* WITH GRANT OPTION` covers all of it except the roles: MariaDB still
//! refuses `GRANT <role> TO …` (error 1698) unless the admin holds that role
//! `WITH ADMIN OPTION`.
//!
//! Tested against MariaDB 10.11; MySQL 8 differs only where
//! [`statements`] says so (untested here: Debian ships no MySQL server).
//!
//! **No TLS**: this build of `mysql_async` has none (one TLS stack per
//! binary), so admin and issued-user traffic is plaintext. MySQL 8's
//! `caching_sha2_password` still works through its RSA key exchange, but
//! the server key is fetched over the same unauthenticated connection:
//! keep targets on a trusted network (loopback, a private subnet, a
//! sidecar).

mod pool;
mod quoting;
mod statements;
mod template;

pub use template::TemplateError;

use crate::target::{self, config as checks};
use crate::{naming, IssueError, IssueRequest, Issuer, Minted, PlanRequest};
use idmint_core::role::DatabaseTemplate;
use idmint_core::{RevocationHandle, Role, Secret, Ttl, UnixTime};
use idmint_proto::Credential;
use pool::{AdminConn, AdminPool, DbError, Endpoint};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// The revocation handle kind this issuer plans: the database user name.
pub use crate::target::DB_USER_HANDLE;

/// The `engine` of the credentials this issuer mints.
pub const ENGINE: &str = "mysql";

const DEFAULT_PORT: u16 = 3306;
const DEFAULT_POOL_SIZE: usize = 8;
const MAX_POOL_SIZE: usize = 256;
/// A longer connect timeout would let one dead target hold requests (and
/// admin connection slots) for minutes.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(120);
/// MariaDB allows 80 characters in a user name, MySQL 32.
const MAX_ADMIN_USER_LEN: usize = 80;

fn default_port() -> u16 {
    DEFAULT_PORT
}

/// `[[issuer.mysql]]` in `idmint.toml`.
///
/// ```toml
/// [[issuer.mysql]]
/// name = "orders-db"
/// host = "10.0.0.5"
/// port = 3306                      # default 3306
/// database = "app"                 # optional: the database in the URI handed out
/// admin_user = "idmint_admin"
/// admin_password_env = "ORDERS_DB_ADMIN_PASSWORD"   # bootstrap only, then sealed in the store
/// # admin_password_file = "/run/secrets/orders-db-admin"
/// pool_size = 8                    # admin connections, default 8
/// connect_timeout = "5s"           # default 5s; statements get twice this
/// public_host = "orders-db.internal"  # host in the URI, default `host`
/// ```
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlIssuerConfig {
    pub name: String,
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// Database named in the connection URI handed to callers. The admin
    /// connection uses none.
    #[serde(default)]
    pub database: Option<String>,
    pub admin_user: String,
    /// Bootstrap-only sources of the admin password (read by the server).
    #[serde(default)]
    pub admin_password_env: Option<String>,
    #[serde(default)]
    pub admin_password_file: Option<PathBuf>,
    #[serde(default)]
    pub pool_size: Option<usize>,
    #[serde(default)]
    pub connect_timeout: Option<Ttl>,
    #[serde(default)]
    pub public_host: Option<String>,
}

impl MysqlIssuerConfig {
    /// Check the config without contacting the target; every message names
    /// the issuer and the field to fix.
    pub fn validate(&self) -> Result<(), String> {
        let name = &self.name;
        checks::check_name("[[issuer.mysql]]", name)?;
        let entry = format!("issuer {name:?}");
        if self.host.trim().is_empty() || self.host.chars().any(char::is_whitespace) {
            return Err(format!(
                "issuer {name:?}: `host` must be a host name or IP address"
            ));
        }
        checks::check_port(&entry, "port", self.port)?;
        if self.admin_user.is_empty() || self.admin_user.chars().count() > MAX_ADMIN_USER_LEN {
            return Err(format!(
                "issuer {name:?}: `admin_user` must be 1-{MAX_ADMIN_USER_LEN} characters"
            ));
        }
        checks::pool_size(&entry, self.pool_size, DEFAULT_POOL_SIZE, MAX_POOL_SIZE)?;
        if self.connect_timeout() > MAX_CONNECT_TIMEOUT {
            return Err(format!(
                "issuer {name:?}: `connect_timeout` must be at most {}s",
                MAX_CONNECT_TIMEOUT.as_secs()
            ));
        }
        if let Some(db) = &self.database {
            quoting::check_identifier(db)
                .map_err(|e| format!("issuer {name:?}: `database` {db:?} {e}"))?;
        }
        if let Some(host) = &self.public_host {
            if host.trim().is_empty() {
                return Err(format!("issuer {name:?}: `public_host` must not be empty"));
            }
        }
        let probe = Secret::new("probe".to_string());
        connection_uri(
            self.public_host(),
            self.port,
            self.database.as_deref(),
            "probe",
            &probe,
        )
        .map_err(|e| format!("issuer {name:?}: {e}"))?;
        Ok(())
    }

    fn public_host(&self) -> &str {
        self.public_host.as_deref().unwrap_or(&self.host)
    }

    fn connect_timeout(&self) -> Duration {
        checks::connect_timeout(self.connect_timeout)
    }
}

/// Mints MySQL/MariaDB users. See the module docs for what it runs.
pub struct MysqlIssuer {
    name: String,
    /// Where idmint connects (error messages); `public_host` goes into URIs.
    host: String,
    public_host: String,
    port: u16,
    database: Option<String>,
    pool: AdminPool,
}

impl std::fmt::Debug for MysqlIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlIssuer")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("public_host", &self.public_host)
            .field("port", &self.port)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl MysqlIssuer {
    /// Build the issuer. Does no IO: the first request connects, so a
    /// target that is down does not keep idmint from starting.
    pub fn new(
        cfg: &MysqlIssuerConfig,
        admin_password: Secret<String>,
    ) -> Result<Self, IssueError> {
        cfg.validate().map_err(IssueError::Config)?;
        if admin_password.expose().is_empty() {
            return Err(IssueError::Config(format!(
                "issuer {:?}: the admin password is empty; set it with admin_password_env or \
                 admin_password_file",
                cfg.name
            )));
        }
        let connect_timeout = cfg.connect_timeout();
        let pool = AdminPool::new(
            Endpoint {
                host: cfg.host.clone(),
                port: cfg.port,
                user: cfg.admin_user.clone(),
            },
            admin_password,
            cfg.pool_size.unwrap_or(DEFAULT_POOL_SIZE),
            connect_timeout,
            // A statement may legitimately wait for a lock a little; one
            // that takes longer than twice the connect timeout is stuck.
            connect_timeout * 2,
        );
        Ok(Self {
            name: cfg.name.clone(),
            host: cfg.host.clone(),
            public_host: cfg.public_host().to_string(),
            port: cfg.port,
            database: cfg.database.clone(),
            pool,
        })
    }

    fn template<'r>(&self, role: &'r Role) -> Result<&'r DatabaseTemplate, String> {
        role.database.as_ref().ok_or_else(|| {
            format!(
                "role {:?} uses the mysql issuer {:?} but has no [role.database] template \
                 (grants, member_of)",
                role.name, self.name
            )
        })
    }

    fn parsed_template(&self, role: &Role) -> Result<template::GrantTemplate, String> {
        let t = self.template(role)?;
        template::parse(t).map_err(|e| format!("role {:?}: {e}", role.name))
    }

    /// Map a pool failure during `action` onto the error the server reports.
    fn target_error(&self, action: &str, error: DbError) -> IssueError {
        let retryable = match &error {
            DbError::Unreachable(_)
            | DbError::PoolBusy(_)
            | DbError::Timeout(_)
            | DbError::Broken(_) => true,
            DbError::AuthRejected(_) => false,
            DbError::Server { code, .. } => retryable_server_error(*code),
        };
        let message = match &error {
            DbError::Unreachable(_) => {
                format!("MySQL at {}:{} ({action}) {error}", self.host, self.port)
            }
            DbError::AuthRejected(_) => format!(
                "{action}: MySQL at {}:{} {error}; check admin_user and the admin password idmint \
                 holds for this target",
                self.host, self.port
            ),
            DbError::Server { .. } if !retryable => format!(
                "{action}: the server refused: {error}; fix the role template or the admin \
                 user's privileges"
            ),
            _ => format!("{action}: {error}"),
        };
        IssueError::Target {
            target: self.name.clone(),
            message,
            retryable,
        }
    }

    async fn acquire(&self, action: &str) -> Result<AdminConn<'_>, IssueError> {
        self.pool
            .acquire()
            .await
            .map_err(|e| self.target_error(action, e))
    }

    /// Create the user with its grants. On any failure the user is dropped
    /// again before the error is returned. A connection from the idle list
    /// that turns out to be dead (a restarted server) is retried once on a
    /// fresh one.
    async fn create_user(
        &self,
        username: &str,
        account: &str,
        password: &Secret<String>,
        template: &template::GrantTemplate,
    ) -> Result<(), IssueError> {
        let literal = zeroize::Zeroizing::new(
            quoting::string_literal(password.expose())
                .map_err(|e| IssueError::Internal(format!("generated password {e}")))?,
        );
        let mut attempts_left = 2;
        loop {
            attempts_left -= 1;
            let mut conn = self.acquire("connecting to create a user").await?;
            let batch = statements::create_user(conn.flavor(), account, &literal, template);
            let error = match conn.run(&batch).await {
                Ok(()) => {
                    conn.release();
                    return Ok(());
                }
                Err(e) => e,
            };
            drop(batch);
            let stale = conn.reused() && matches!(error, DbError::Broken(_));
            if stale {
                // One dead idle connection usually means they all are.
                self.pool.clear_idle();
            }
            let undo = self.drop_partial_user(conn, account).await;
            let error = redact(error, password);
            if stale && attempts_left > 0 && undo.is_ok() {
                tracing::info!(issuer = %self.name, user = %username,
                    "admin connection was stale; retrying on a fresh one");
                continue;
            }
            let mut err = self.target_error(&format!("creating user {username}"), error);
            if let (Err(undo_error), IssueError::Target { message, .. }) = (undo, &mut err) {
                tracing::warn!(issuer = %self.name, user = %username, error = %undo_error,
                    "could not drop a partially created user; the lease's revocation will");
                message.push_str(&format!(
                    "; dropping the partially created user also failed ({undo_error}), so it is \
                     left to the lease's revocation"
                ));
            }
            return Err(err);
        }
    }

    /// After a failed create: `DROP USER IF EXISTS`, on the same connection
    /// when it survived, else on a fresh one.
    async fn drop_partial_user(
        &self,
        mut conn: AdminConn<'_>,
        account: &str,
    ) -> Result<(), DbError> {
        let sql = statements::drop_user(account);
        match conn.run(&sql).await {
            Ok(()) => {
                conn.release();
                return Ok(());
            }
            Err(DbError::Server { code, message }) => {
                return Err(DbError::Server { code, message })
            }
            Err(_) => {}
        }
        drop(conn);
        let mut fresh = self.pool.acquire().await?;
        fresh.run(&sql).await?;
        fresh.release();
        Ok(())
    }

    /// Kill every session of `user`. A session that ended meanwhile
    /// (`ER_NO_SUCH_THREAD`) is fine.
    async fn kill_sessions(
        &self,
        conn: &mut AdminConn<'_>,
        user: &str,
    ) -> Result<usize, IssueError> {
        let ids = conn
            .session_ids(user)
            .await
            .map_err(|e| self.target_error(&format!("listing the sessions of {user}"), e))?;
        for id in &ids {
            match conn.run(&statements::kill_connection(*id)).await {
                Ok(()) => {}
                Err(DbError::Server {
                    code: ER_NO_SUCH_THREAD,
                    ..
                }) => {}
                Err(e) => {
                    return Err(self.target_error(&format!("killing session {id} of {user}"), e))
                }
            }
        }
        Ok(ids.len())
    }
}

/// `KILL` of a connection that no longer exists.
const ER_NO_SUCH_THREAD: u16 = 1094;

/// Server errors that may go away on their own: lock waits, deadlocks,
/// connection limits, a server shutting down or killing our query.
fn retryable_server_error(code: u16) -> bool {
    matches!(
        code,
        1040 | 1053 | 1203 | 1205 | 1213 | 1317 | 1927 | 2006 | 2013
    )
}

/// Make sure a server message cannot carry the password on (a syntax error
/// quotes the statement text "near" the error).
fn redact(error: DbError, password: &Secret<String>) -> DbError {
    match error {
        DbError::Server { code, message } if message.contains(password.expose().as_str()) => {
            DbError::Server {
                code,
                message: message.replace(password.expose().as_str(), "<redacted>"),
            }
        }
        other => other,
    }
}

/// The user name planned for this lease; see [`target::planned_user`].
fn planned_username<'h>(handle: &'h RevocationHandle, issuer: &str) -> Result<&'h str, IssueError> {
    target::planned_user(handle, ENGINE, issuer, naming::MYSQL_MAX_NAME, None)
}

fn quoted_account(username: &str) -> Result<String, IssueError> {
    quoting::account(username)
        .map_err(|e| IssueError::Internal(format!("user name {username:?} {e}")))
}

/// `mysql://user:password@host:port/database`, every part percent-encoded.
fn connection_uri(
    host: &str,
    port: u16,
    database: Option<&str>,
    user: &str,
    password: &Secret<String>,
) -> Result<String, String> {
    let host = target::uri::uri_host(host);
    let mut url = url::Url::parse(&format!("mysql://{host}:{port}/"))
        .map_err(|e| format!("{host:?} cannot be used as the host of a connection URI: {e}"))?;
    url.set_username(user)
        .map_err(|()| format!("user name {user:?} cannot be put into a URI"))?;
    url.set_password(Some(password.expose()))
        .map_err(|()| "the password cannot be put into a URI".to_string())?;
    if let Some(db) = database {
        url.path_segments_mut()
            .map_err(|()| "the URI cannot carry a database path".to_string())?
            .pop_if_empty()
            .push(db);
    }
    Ok(url.into())
}

#[async_trait::async_trait]
impl Issuer for MysqlIssuer {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "mysql"
    }

    /// The user name: `<prefix>_<role>_<subject>_<lease>`, at most 32
    /// characters of `[a-z0-9_]`, derived from the lease id so it is unique.
    fn plan(&self, plan: &PlanRequest<'_>) -> Result<RevocationHandle, IssueError> {
        let template = self.template(plan.role).map_err(IssueError::Config)?;
        Ok(target::planned_user_handle(
            template.username_prefix.as_deref(),
            plan,
            naming::MYSQL_MAX_NAME,
        ))
    }

    fn validate_role(&self, role: &Role) -> Result<(), String> {
        self.parsed_template(role).map(|_| ())
    }

    async fn issue(&self, req: &IssueRequest<'_>) -> Result<Minted, IssueError> {
        let username = planned_username(req.revocation, &self.name)?;
        let template = self.parsed_template(req.role).map_err(IssueError::Config)?;
        let password_length = self
            .template(req.role)
            .map_err(IssueError::Config)?
            .password_length;
        let expires_at = req.credential_expiry("the user could be created")?;
        let password = naming::password(password_length)?;
        let uri = connection_uri(
            &self.public_host,
            self.port,
            self.database.as_deref(),
            username,
            &password,
        )
        .map_err(IssueError::Config)?;
        let account = quoted_account(username)?;
        self.create_user(username, &account, &password, &template)
            .await?;
        tracing::debug!(
            issuer = %self.name,
            lease_id = %req.lease_id,
            user = %username,
            exp = expires_at.secs(),
            "created mysql user"
        );
        let secret_material = Secret::new(password.expose().as_bytes().to_vec());
        Ok(Minted {
            credential: Credential::DatabaseUser {
                engine: ENGINE.to_string(),
                username: username.to_string(),
                password: password.expose().clone(),
                uri,
                host: self.public_host.clone(),
                port: self.port,
                database: self.database.clone(),
            },
            expires_at,
            secret_material,
        })
    }

    /// Kill the user's sessions, drop the user, kill again. Idempotent: a
    /// user that is already gone has no sessions, and `DROP USER IF EXISTS`
    /// succeeds.
    async fn revoke(&self, handle: &RevocationHandle) -> Result<(), IssueError> {
        let username = planned_username(handle, &self.name)?;
        let account = quoted_account(username)?;
        let mut conn = self
            .acquire(&format!("connecting to revoke user {username}"))
            .await?;
        let killed = self.kill_sessions(&mut conn, username).await?;
        conn.run(&statements::drop_user(&account))
            .await
            .map_err(|e| self.target_error(&format!("dropping user {username}"), e))?;
        // A session that logged in after the first sweep but before the
        // drop keeps running without its user: end it too.
        let late = self.kill_sessions(&mut conn, username).await?;
        conn.release();
        tracing::debug!(issuer = %self.name, user = %username, sessions = killed + late, "dropped mysql user");
        Ok(())
    }

    /// Nothing to extend in the database: the user has no expiry of its own
    /// (see the module docs); the server moves the lease's expiry, which is
    /// when the reaper revokes.
    async fn renew(
        &self,
        handle: &RevocationHandle,
        _new_expires_at: UnixTime,
    ) -> Result<(), IssueError> {
        planned_username(handle, &self.name)?;
        Ok(())
    }

    /// `ALTER USER '<admin>'@'<host>' IDENTIFIED BY '<new>'` (the account
    /// from `SELECT CURRENT_USER()`; see [`statements::set_password`] for
    /// why not `CURRENT_USER()` itself), then every new connection uses
    /// `new` (idle ones are closed) and one is opened right away to prove
    /// it works.
    async fn set_admin_password(&self, new: &Secret<String>) -> Result<(), IssueError> {
        let literal =
            zeroize::Zeroizing::new(quoting::string_literal(new.expose()).map_err(|e| {
                IssueError::Config(format!(
                    "issuer {:?}: the new admin password {e}; generate another",
                    self.name
                ))
            })?);
        let mut conn = self
            .acquire("connecting to rotate the admin password")
            .await?;
        let current = conn
            .current_user()
            .await
            .map_err(|e| self.target_error("looking up the admin account", e))?;
        let account = quoting::account_at(&current).map_err(|e| {
            IssueError::Config(format!(
                "issuer {:?}: the admin account {current:?} {e}",
                self.name
            ))
        })?;
        conn.run(&statements::set_password(&account, &literal))
            .await
            .map_err(|e| self.target_error("changing the admin password", redact(e, new)))?;
        drop(conn);
        self.pool.set_password(new.clone());
        let check = self
            .acquire("logging in with the new admin password")
            .await?;
        check.release();
        tracing::info!(issuer = %self.name, account = %account, "admin password rotated");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MysqlIssuerConfig {
        serde_json::from_value(serde_json::json!({
            "name": "orders-db",
            "host": "127.0.0.1",
            "admin_user": "admin",
            "admin_password_env": "PW",
            "database": "app",
        }))
        .unwrap()
    }

    #[test]
    fn config_defaults_and_validation() {
        let cfg = config();
        assert_eq!(cfg.port, 3306);
        assert!(cfg.validate().is_ok());
        let issuer = MysqlIssuer::new(&cfg, Secret::new("pw".into())).unwrap();
        assert_eq!(issuer.kind(), "mysql");
        assert_eq!(issuer.public_host, "127.0.0.1");

        let bad = |f: &dyn Fn(&mut MysqlIssuerConfig)| {
            let mut c = config();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(bad(&|c| c.name = " ".into()).contains("name"));
        assert!(bad(&|c| c.host = "a b".into()).contains("host"));
        assert!(bad(&|c| c.port = 0).contains("port"));
        assert!(bad(&|c| c.pool_size = Some(0)).contains("pool_size"));
        assert!(
            bad(&|c| c.connect_timeout = Some("1h".parse().unwrap())).contains("connect_timeout")
        );
        assert!(bad(&|c| c.database = Some("a\\b".into())).contains("database"));
        assert!(bad(&|c| c.admin_user = String::new()).contains("admin_user"));
        let unknown = serde_json::from_value::<MysqlIssuerConfig>(
            serde_json::json!({"name": "x", "host": "h", "admin_user": "a", "bogus": 1}),
        );
        assert!(unknown.unwrap_err().to_string().contains("bogus"));
        assert!(matches!(
            MysqlIssuer::new(&cfg, Secret::new(String::new())),
            Err(IssueError::Config(_))
        ));
    }

    #[test]
    fn uris_are_percent_encoded() {
        let pw = Secret::new("p@ss:w/rd".to_string());
        assert_eq!(
            connection_uri("db.example", 3306, Some("my db"), "u_1", &pw).unwrap(),
            "mysql://u_1:p%40ss%3Aw%2Frd@db.example:3306/my%20db"
        );
        assert_eq!(
            connection_uri("::1", 3307, None, "u", &Secret::new("x".into())).unwrap(),
            "mysql://u:x@[::1]:3307/"
        );
    }

    #[test]
    fn handles_are_checked() {
        let ok = RevocationHandle {
            kind: DB_USER_HANDLE.into(),
            value: "idm_r_s_0123456789ab".into(),
        };
        assert_eq!(
            planned_username(&ok, "orders-db").unwrap(),
            "idm_r_s_0123456789ab"
        );
        for (kind, value) in [
            ("token_id", "idm_x"),
            (DB_USER_HANDLE, ""),
            (DB_USER_HANDLE, "x'; DROP USER admin; --"),
            (DB_USER_HANDLE, "Upper"),
            (DB_USER_HANDLE, &"a".repeat(33)),
        ] {
            let h = RevocationHandle {
                kind: kind.into(),
                value: value.into(),
            };
            assert!(
                matches!(
                    planned_username(&h, "orders-db"),
                    Err(IssueError::Internal(_))
                ),
                "{value:?}"
            );
        }
    }

    #[test]
    fn server_messages_never_carry_the_password() {
        let pw = Secret::new("Sup3rSecret".to_string());
        let e = redact(
            DbError::Server {
                code: 1064,
                message: "syntax error near 'Sup3rSecret'".into(),
            },
            &pw,
        );
        assert!(!e.to_string().contains("Sup3rSecret"), "{e}");
    }
}
