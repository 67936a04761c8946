//! The `postgres` issuer: a PostgreSQL role that exists only for the lease.
//!
//! # Configuration
//!
//! ```toml
//! # idmint.toml
//! [[issuer.postgres]]
//! name = "orders-db"
//! host = "10.0.0.5"
//! port = 5432                       # default 5432
//! database = "orders"
//! admin_user = "idmint_admin"
//! admin_password_env = "ORDERS_DB_ADMIN_PASSWORD"   # first start only; then sealed in the store
//! pool_size = 8                     # admin connections, default 8
//! connect_timeout = "5s"            # default 5s; operations are bounded by 2x this (min 2s)
//! public_host = "orders-db.internal"   # host put into the URI; default `host`
//! on_revoke = "drop_owned"          # or "reassign_owned_to:<role>"
//! scram_iterations = 256            # PBKDF2 rounds of issued users' verifiers; see below
//! ```
//!
//! ```toml
//! # policy/roles.toml — grant through a group role (recommended)
//! [[role]]
//! name = "db/orders-readonly"
//! issuer = "orders-db"
//! max_ttl = "1h"
//! renewable = true
//! [role.database]
//! member_of = ["readonly"]          # CREATE ROLE readonly; GRANT USAGE ON SCHEMA reporting,
//!                                   # SELECT ON ALL TABLES IN SCHEMA reporting TO readonly
//! # grants = ["SELECT ON ALL TABLES IN SCHEMA reporting"]   # per-user grants: see below
//! ```
//!
//! **Prefer `member_of` over per-user `grants`.** A per-user grant adds an
//! entry to the ACL of every object it names; PostgreSQL keeps an object's
//! ACL in its catalog row, and past about 2,400 live users the row no longer
//! fits a page (`row is too big`, measured), so issuance starts failing.
//! Per-user grants also rewrite the same catalog rows for every user, which
//! PostgreSQL cannot do from two transactions at once (`tuple concurrently
//! updated`); idmint therefore serialises them (and the `DROP OWNED` that
//! undoes them) with a transaction-level advisory lock. A group role has
//! neither problem: the user only gets a membership row. Per-user grants stay
//! supported for small numbers of users.
//!
//! # What each call sends
//!
//! - [`Issuer::plan`]: nothing; the username is
//!   `naming::username(prefix, role, subject, lease)` (`[a-z0-9_]`, ≤ 63).
//! - [`Issuer::issue`]: ONE multi-statement query, which PostgreSQL runs as
//!   one implicit transaction (all or nothing):
//!   `[SELECT pg_advisory_xact_lock(K);]` (only with per-user grants),
//!   `CREATE ROLE "<user>" WITH LOGIN NOSUPERUSER … PASSWORD '<SCRAM verifier>'
//!   VALID UNTIL '<rfc3339>' [IN ROLE "<group>", …]`, one
//!   `GRANT <privs> ON <object> TO "<user>"` per template grant, and, when
//!   `member_of` is set and `allow_dangerous` is not, a `DO` block that rolls
//!   everything back if the user ends up (through nested groups) a member
//!   of a superuser/CREATEROLE/CREATEDB/REPLICATION/BYPASSRLS role or of a
//!   predefined `pg_*` role. The password is sent as a SCRAM-SHA-256
//!   verifier computed by idmint, never in clear, so it cannot appear in the
//!   server log, `pg_stat_activity` or `pg_stat_statements`.
//! - [`Issuer::renew`]: `ALTER ROLE "<user>" VALID UNTIL '<new>'`.
//! - [`Issuer::revoke`] (one pipelined round trip, three steps in order):
//!   `ALTER ROLE "<user>" NOLOGIN` (committed first: no new session can
//!   start); `SELECT pg_terminate_backend(pid, <wait>) FROM pg_stat_activity
//!   WHERE usename = $1` (waits until each session has really ended);
//!   then in one transaction `REASSIGN OWNED BY "<user>" TO CURRENT_USER`
//!   (or the configured role), `DROP OWNED BY "<user>"` (revokes its
//!   privileges) and `DROP ROLE IF EXISTS "<user>"`. A user that is already
//!   gone is success, so revoking twice is fine.
//! - [`Issuer::set_admin_password`]: `ALTER ROLE CURRENT_USER PASSWORD
//!   '<verifier>'`, then the pool reconnects with the new password and one
//!   fresh login proves it works.
//!
//! `on_revoke = "drop_owned"` (default) hands what the user created to the
//! admin before `DROP OWNED`, so no data is deleted; `"reassign_owned_to:<role>"`
//! hands it to `<role>` instead. Both run in the configured `database`
//! only: PostgreSQL scopes `REASSIGN/DROP OWNED` to the current database, so
//! if a user gained objects or privileges in another database, `DROP ROLE`
//! fails (SQLSTATE 2BP01) and the lease stays pending for an operator.
//!
//! # Throughput and `scram_iterations`
//!
//! The dominant cost of an issuance is not idmint: PostgreSQL checks every
//! `CREATE ROLE … PASSWORD` against the empty password, i.e. runs PBKDF2
//! once at the verifier's iteration count — about 3 ms of server CPU at
//! PostgreSQL's default of 4096 (measured with pgbench: 280 CREATE+DROP
//! ROLE/s on one connection with a password, 9,000/s with a 1-round
//! verifier), the same whether the password is sent in clear or pre-hashed.
//! Rounds only protect guessable passwords; the ones idmint generates
//! (≥ 16 random alphanumerics, ≥ 95 bits) cannot be brute-forced from a
//! stolen verifier at any count. Issued users' verifiers therefore use 256
//! rounds by default (measured here: ~2,400 issues/s at concurrency 32
//! against ~500/s with 4096), which libpq, pgjdbc and tokio-postgres accept
//! (they require ≥ 1). Set `scram_iterations = 4096` if a client library
//! insists on RFC 7677's "SHOULD be at least 4096". The admin password is
//! always hashed with 4096 rounds.
//!
//! # Dangerous templates (refused by `validate_role` unless `allow_dangerous`)
//!
//! - `ALL` / `ALL PRIVILEGES`;
//! - `CREATE ON DATABASE` (the user could create schemas: objects in places
//!   the admin did not plan for; `CREATE ON SCHEMA` stays allowed);
//! - grants on system schemas and catalogs (`pg_*`, `information_schema`;
//!   e.g. `SELECT ON TABLE pg_authid` would expose every password hash);
//! - `member_of` a predefined `pg_*` role (`pg_read_server_files`,
//!   `pg_write_server_files`, `pg_execute_server_program`,
//!   `pg_signal_backend`, …), `postgres`, or the issuer's own admin user.
//!
//! Role attributes (SUPERUSER, CREATEROLE, …) cannot be expressed in the
//! grammar at all; see [`grant`] for what can.
//!
//! # Requirements on the target
//!
//! PostgreSQL 14 or later (`pg_terminate_backend` with a wait). The admin
//! user needs `CREATEROLE`, membership in `pg_signal_backend` (or
//! superuser), the privileges it hands out `WITH GRANT OPTION` (or
//! ownership), and — on PostgreSQL 16+ — `ADMIN OPTION` on the `member_of`
//! groups. TLS to the target is not supported yet (the admin connection is
//! plain TCP); run idmint next to the database or through a tunnel.

pub mod grant;
mod pool;
mod sql;
mod uri;

use crate::naming::{self, POSTGRES_MAX_NAME};
use crate::target::{self, config as checks};
use crate::{IssueError, IssueRequest, Issuer, Minted, PlanRequest};
use grant::{GrantSpec, Ident};
use idmint_core::role::DatabaseTemplate;
use idmint_core::{RevocationHandle, Role, Secret, Ttl, UnixTime};
use idmint_proto::Credential;
use pool::{AdminPool, Endpoint, PgError};
use serde::{Deserialize, Serialize};
use sql::{NewUser, OnRevoke, SqlTextError};
use std::path::PathBuf;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

pub use sql::{quote_literal, scram_verifier, ADMIN_SCRAM_ITERATIONS, DEFAULT_SCRAM_ITERATIONS};

/// The issuer type, as in `[[issuer.postgres]]`.
pub const KIND: &str = "postgres";
/// The revocation handle kind this issuer plans: the database username.
pub use crate::target::DB_USER_HANDLE;

const DEFAULT_PORT: u16 = 5432;
const DEFAULT_POOL_SIZE: usize = 8;
/// More admin connections than this only adds contention on the server.
const MAX_POOL_SIZE: usize = 256;
const MIN_OPERATION_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_SCRAM_ITERATIONS: u32 = 1_000_000;
/// Up to this many PBKDF2 rounds (a few microseconds) hashing runs inline
/// instead of on the blocking pool.
const INLINE_SCRAM_ITERATIONS: u32 = 64;
const ON_REVOKE_DEFAULT: &str = "drop_owned";
const ON_REVOKE_REASSIGN_PREFIX: &str = "reassign_owned_to:";
/// Roles a template may not join without `allow_dangerous`, besides `pg_*`.
const PRIVILEGED_ROLE_NAMES: &[&str] = &["postgres"];

fn default_port() -> u16 {
    DEFAULT_PORT
}

/// `[[issuer.postgres]]` in `idmint.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresIssuerConfig {
    pub name: String,
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// The database idmint's admin connections use; also the database in
    /// the URI handed out and the one `REASSIGN/DROP OWNED` clean.
    pub database: String,
    pub admin_user: String,
    /// Bootstrap only: the environment variable holding the admin password
    /// on first start (afterwards the sealed copy in the store is used).
    #[serde(default)]
    pub admin_password_env: Option<String>,
    /// Bootstrap only: a file holding the admin password on first start.
    #[serde(default)]
    pub admin_password_file: Option<PathBuf>,
    /// Admin connections (default 8).
    #[serde(default)]
    pub pool_size: Option<usize>,
    /// Bound on opening a connection (default 5s); operations get twice
    /// this, at least 2s.
    #[serde(default)]
    pub connect_timeout: Option<Ttl>,
    /// Host written into the credential's URI (default `host`), for when
    /// clients reach the database under another name than idmint does.
    #[serde(default)]
    pub public_host: Option<String>,
    /// `"drop_owned"` (default) or `"reassign_owned_to:<role>"`.
    #[serde(default)]
    pub on_revoke: Option<String>,
    /// PBKDF2 rounds of the SCRAM-SHA-256 verifiers of issued users
    /// (default 256; 1-1000000). PostgreSQL spends one PBKDF2 at this count
    /// per `CREATE ROLE`, so it bounds throughput (see the module docs).
    #[serde(default)]
    pub scram_iterations: Option<u32>,
}

impl PostgresIssuerConfig {
    /// Check the config without contacting the target.
    pub fn validate(&self) -> Result<(), String> {
        self.checked().map(|_| ())
    }

    fn checked(&self) -> Result<CheckedConfig, String> {
        let at = format!("[[issuer.postgres]] {:?}", self.name);
        checks::check_name("[[issuer.postgres]]", &self.name)?;
        let non_empty = |field: &str, value: &str| {
            if value.trim().is_empty() || value.contains('\0') {
                Err(format!(
                    "{at}: `{field}` must be a non-empty string without NUL"
                ))
            } else {
                Ok(())
            }
        };
        non_empty("host", &self.host)?;
        non_empty("database", &self.database)?;
        non_empty("admin_user", &self.admin_user)?;
        if let Some(p) = &self.public_host {
            non_empty("public_host", p)?;
        }
        checks::check_port(&at, "port", self.port)?;
        if self.admin_password_env.is_some() && self.admin_password_file.is_some() {
            return Err(format!(
                "{at}: set only one of `admin_password_env` and `admin_password_file`"
            ));
        }
        let pool_size = checks::pool_size(&at, self.pool_size, DEFAULT_POOL_SIZE, MAX_POOL_SIZE)?;
        let on_revoke = parse_on_revoke(self.on_revoke.as_deref())
            .map_err(|e| format!("{at}: `on_revoke`: {e}"))?;
        let scram_iterations = self.scram_iterations.unwrap_or(DEFAULT_SCRAM_ITERATIONS);
        if !(1..=MAX_SCRAM_ITERATIONS).contains(&scram_iterations) {
            return Err(format!(
                "{at}: `scram_iterations` must be 1-{MAX_SCRAM_ITERATIONS}, got {scram_iterations}"
            ));
        }
        let connect_timeout = checks::connect_timeout(self.connect_timeout);
        Ok(CheckedConfig {
            pool_size,
            on_revoke,
            scram_iterations,
            connect_timeout,
            operation_timeout: (connect_timeout * 2).max(MIN_OPERATION_TIMEOUT),
        })
    }
}

struct CheckedConfig {
    pool_size: usize,
    on_revoke: OnRevoke,
    scram_iterations: u32,
    connect_timeout: Duration,
    operation_timeout: Duration,
}

fn parse_on_revoke(text: Option<&str>) -> Result<OnRevoke, String> {
    match text.map(str::trim) {
        None | Some(ON_REVOKE_DEFAULT) => Ok(OnRevoke::ReassignToAdmin),
        Some(t) => match t.strip_prefix(ON_REVOKE_REASSIGN_PREFIX) {
            Some(role) => Ident::parse(role)
                .map(OnRevoke::ReassignTo)
                .map_err(|e| format!("{t:?}: the role is not a valid name: {e}")),
            None => Err(format!(
                "unknown value {t:?}; use \"{ON_REVOKE_DEFAULT}\" or \
                 \"{ON_REVOKE_REASSIGN_PREFIX}<role>\""
            )),
        },
    }
}

/// A role's database template, parsed and checked.
struct CompiledTemplate<'r> {
    template: &'r DatabaseTemplate,
    grants: Vec<GrantSpec>,
    member_of: Vec<Ident>,
}

/// Mints per-lease PostgreSQL users.
pub struct PostgresIssuer {
    name: String,
    host: String,
    port: u16,
    public_host: String,
    database: String,
    admin_user: String,
    on_revoke: OnRevoke,
    scram_iterations: u32,
    pool: AdminPool,
}

impl std::fmt::Debug for PostgresIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresIssuer")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("admin_user", &self.admin_user)
            .finish_non_exhaustive()
    }
}

impl PostgresIssuer {
    /// Build the issuer. Does no IO: the first operation connects, so a
    /// target that is down does not stop idmint from starting. Must be
    /// used from within a Tokio runtime (connections run as tasks).
    pub fn new(
        cfg: &PostgresIssuerConfig,
        admin_password: Secret<String>,
    ) -> Result<Self, IssueError> {
        let checked = cfg.checked().map_err(IssueError::Config)?;
        let pool = AdminPool::new(
            Endpoint {
                host: cfg.host.clone(),
                port: cfg.port,
                database: cfg.database.clone(),
                user: cfg.admin_user.clone(),
            },
            admin_password,
            checked.pool_size,
            checked.connect_timeout,
            checked.operation_timeout,
        );
        Ok(Self {
            name: cfg.name.clone(),
            host: cfg.host.clone(),
            port: cfg.port,
            public_host: cfg.public_host.clone().unwrap_or_else(|| cfg.host.clone()),
            database: cfg.database.clone(),
            admin_user: cfg.admin_user.clone(),
            on_revoke: checked.on_revoke,
            scram_iterations: checked.scram_iterations,
            pool,
        })
    }

    /// Parse and check a role's template. Errors name the role and entry.
    fn compile<'r>(&self, role: &'r Role) -> Result<CompiledTemplate<'r>, String> {
        let template = role.database.as_ref().ok_or_else(|| {
            format!(
                "role {:?} uses the postgres issuer {:?} but has no `database` template; \
                 add [role.database] with `member_of` and/or `grants`",
                role.name, self.name
            )
        })?;
        if role.redis.is_some() || role.rabbitmq.is_some() {
            return Err(format!(
                "role {:?} uses the postgres issuer {:?} but also has a redis/rabbitmq \
                 template, which this issuer would ignore; remove it",
                role.name, self.name
            ));
        }
        let dangerous = |entry: &str, why: &str| {
            format!(
                "role {:?}: {entry} is dangerous: {why}; remove it or set \
                 allow_dangerous = true in [role.database]",
                role.name
            )
        };
        let mut grants = Vec::with_capacity(template.grants.len());
        for entry in &template.grants {
            let spec = GrantSpec::parse(entry)
                .map_err(|e| format!("role {:?}: grant {entry:?}: {e}", role.name))?;
            if !template.allow_dangerous {
                if let Some(why) = spec.danger() {
                    return Err(dangerous(&format!("grant {entry:?}"), &why));
                }
            }
            grants.push(spec);
        }
        let mut member_of: Vec<Ident> = Vec::with_capacity(template.member_of.len());
        for entry in &template.member_of {
            let group = Ident::parse(entry)
                .map_err(|e| format!("role {:?}: member_of {entry:?}: {e}", role.name))?;
            if member_of.contains(&group) {
                return Err(format!(
                    "role {:?}: member_of names {entry:?} twice",
                    role.name
                ));
            }
            if !template.allow_dangerous {
                if group.is_system() {
                    return Err(dangerous(
                        &format!("member_of {entry:?}"),
                        "predefined pg_* roles grant server-level powers (files, programs, \
                         signalling other sessions, reading all data)",
                    ));
                }
                if group.as_str() == self.admin_user
                    || PRIVILEGED_ROLE_NAMES.contains(&group.as_str())
                {
                    return Err(dangerous(
                        &format!("member_of {entry:?}"),
                        "membership in an administrative role lets the user SET ROLE to it",
                    ));
                }
            }
            member_of.push(group);
        }
        Ok(CompiledTemplate {
            template,
            grants,
            member_of,
        })
    }

    fn target(&self, message: String, retryable: bool) -> IssueError {
        IssueError::Target {
            target: self.name.clone(),
            message,
            retryable,
        }
    }

    /// Turn a pool/driver failure into the error the server reports,
    /// saying what idmint was doing and what to do about it.
    fn target_error(&self, doing: &str, e: PgError) -> IssueError {
        let at = format!("PostgreSQL at {}:{}", self.host, self.port);
        match e {
            PgError::Unreachable(m) => {
                self.target(format!("{at} cannot be reached while {doing}: {m}"), true)
            }
            PgError::Server { code, message } => {
                let hint = hint_for(&code);
                self.target(
                    format!(
                        "{at} refused {doing}: {message} (SQLSTATE {}){hint}",
                        code.code()
                    ),
                    is_retryable(&code, &message),
                )
            }
        }
    }

    fn sql_text_error(&self, doing: &str, e: SqlTextError) -> IssueError {
        IssueError::Internal(format!(
            "issuer {:?}: cannot build the statement for {doing}: {e}",
            self.name
        ))
    }

    /// Run one batch on a pooled connection.
    async fn batch(&self, doing: &str, sql: &str) -> Result<(), IssueError> {
        self.batch_raw(sql)
            .await
            .map_err(|e| self.target_error(doing, e))
    }

    /// [`Self::batch`] without the error translation, for callers that
    /// handle some SQLSTATEs themselves.
    async fn batch_raw(&self, sql: &str) -> Result<(), PgError> {
        let conn = self.pool.get().await?;
        let client = conn.client()?;
        conn.run(client.batch_execute(sql)).await
    }

    /// The username planned for this lease; see [`target::planned_user`].
    fn planned_username<'h>(&self, handle: &'h RevocationHandle) -> Result<&'h str, IssueError> {
        target::planned_user(handle, KIND, &self.name, POSTGRES_MAX_NAME, None)
    }

    /// How long revocation waits for each terminated session to end: a
    /// quarter of the operation timeout, leaving the rest for the drop.
    fn terminate_wait_ms(&self) -> u64 {
        u64::try_from(self.pool.operation_timeout().as_millis() / 4).unwrap_or(u64::MAX)
    }
}

fn hint_for(code: &SqlState) -> &'static str {
    match code.code() {
        "28P01" | "28000" => {
            "; check `admin_user` and the admin password idmint holds for this target"
        }
        "42501" => {
            "; the admin user needs CREATEROLE, pg_signal_backend, the granted privileges \
             WITH GRANT OPTION and (PostgreSQL 16+) ADMIN OPTION on member_of groups"
        }
        "42704" => "; a role, schema or object named in the role template does not exist",
        "42P01" | "3F000" | "3D000" => {
            "; an object, schema or database named in the role template does not exist"
        }
        "54000" => {
            "; an object's ACL is full of per-user grants: grant to a group role and \
             use member_of instead"
        }
        "42883" => "; idmint needs PostgreSQL 14 or later (pg_terminate_backend with a wait)",
        "2BP01" => {
            "; the user owns objects or holds privileges in another database; run \
             REASSIGN OWNED / DROP OWNED there, then revoke again"
        }
        _ => "",
    }
}

/// Whether the same statement may succeed later: connection trouble,
/// overload, conflicts and timeouts yes; permissions and bad templates no.
fn is_retryable(code: &SqlState, message: &str) -> bool {
    let c = code.code();
    c.starts_with("08")
        || c.starts_with("40")
        || c.starts_with("53")
        || c.starts_with("57P")
        || c.starts_with("58")
        || c == "57014"
        || c == "55P03"
        || (c == "XX000" && message.contains("concurrently"))
}

fn is_undefined_role(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNDEFINED_OBJECT)
}

#[async_trait::async_trait]
impl Issuer for PostgresIssuer {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    fn plan(&self, plan: &PlanRequest<'_>) -> Result<RevocationHandle, IssueError> {
        let template = self
            .compile(plan.role)
            .map_err(IssueError::Config)?
            .template;
        Ok(target::planned_user_handle(
            template.username_prefix.as_deref(),
            plan,
            POSTGRES_MAX_NAME,
        ))
    }

    fn validate_role(&self, role: &Role) -> Result<(), String> {
        self.compile(role).map(|_| ())
    }

    async fn issue(&self, req: &IssueRequest<'_>) -> Result<Minted, IssueError> {
        let username = self.planned_username(req.revocation)?;
        let compiled = self.compile(req.role).map_err(IssueError::Config)?;
        let expires_at = req.credential_expiry("the user could be created")?;
        let password = naming::password(compiled.template.password_length)?;
        let rounds = self.scram_iterations;
        let verifier = if rounds <= INLINE_SCRAM_ITERATIONS {
            scram_verifier(password.expose(), rounds)
        } else {
            // PBKDF2 costs ~0.16 µs per round (0.65 ms at 4096): keep it
            // off the async worker threads.
            let hashing = password.clone();
            tokio::task::spawn_blocking(move || scram_verifier(hashing.expose(), rounds))
                .await
                .map_err(|e| IssueError::Internal(format!("password hashing task failed: {e}")))?
        }
        .map_err(|e| self.sql_text_error("creating the user", e))?;
        let statement = sql::create_user(&NewUser {
            username,
            verifier: &verifier,
            valid_until: expires_at,
            member_of: &compiled.member_of,
            grants: &compiled.grants,
            guard_membership: !compiled.template.allow_dangerous,
        })
        .map_err(|e| self.sql_text_error("creating the user", e))?;
        let doing = format!("creating user {username:?} for role {:?}", req.role.name);
        self.batch(&doing, statement.expose()).await?;
        tracing::debug!(
            issuer = %self.name,
            lease_id = %req.lease_id,
            user = %username,
            expires_at = expires_at.secs(),
            "created postgres user"
        );
        let uri = uri::connection_uri(
            username,
            password.expose(),
            &self.public_host,
            self.port,
            &self.database,
        );
        Ok(Minted {
            credential: Credential::DatabaseUser {
                engine: KIND.to_string(),
                username: username.to_string(),
                password: password.expose().clone(),
                uri,
                host: self.public_host.clone(),
                port: self.port,
                database: Some(self.database.clone()),
            },
            expires_at,
            secret_material: Secret::new(password.expose().as_bytes().to_vec()),
        })
    }

    async fn revoke(&self, handle: &RevocationHandle) -> Result<(), IssueError> {
        let username = self.planned_username(handle)?;
        let doing = format!("revoking user {username:?}");
        let disable = sql::disable_login(username);
        let terminate = sql::terminate_sessions(self.terminate_wait_ms());
        let drop = sql::drop_user(username, &self.on_revoke)
            .map_err(|e| self.sql_text_error(&doing, e))?;
        let conn = self
            .pool
            .get()
            .await
            .map_err(|e| self.target_error(&doing, e))?;
        let client = conn.client().map_err(|e| self.target_error(&doing, e))?;
        let params: [(&(dyn tokio_postgres::types::ToSql + Sync), Type); 1] =
            [(&username, Type::TEXT)];
        // Pipelined: sent together, executed in this order, each step in
        // its own transaction so NOLOGIN is visible before sessions die.
        let (disabled, terminated, dropped) = conn
            .run(async {
                Ok(tokio::join!(
                    client.batch_execute(&disable),
                    client.query_typed(&terminate, &params),
                    client.batch_execute(&drop),
                ))
            })
            .await
            .map_err(|e| self.target_error(&doing, e))?;
        let first_error = [disabled.err(), dropped.err()]
            .into_iter()
            .flatten()
            .find(|e| !is_undefined_role(e));
        let rows = match terminated {
            Ok(rows) => rows,
            Err(e) => return Err(self.target_error(&doing, PgError::from_driver(e))),
        };
        if let Some(e) = first_error {
            return Err(self.target_error(&doing, PgError::from_driver(e)));
        }
        let lingering = rows
            .iter()
            .filter(|r| {
                !r.try_get::<_, Option<bool>>(0)
                    .ok()
                    .flatten()
                    .unwrap_or(false)
            })
            .count();
        if lingering > 0 {
            tracing::warn!(
                issuer = %self.name,
                user = %username,
                sessions = lingering,
                "postgres sessions did not end within the wait; the user was dropped anyway"
            );
        }
        tracing::debug!(issuer = %self.name, user = %username, sessions = rows.len(), "revoked postgres user");
        Ok(())
    }

    async fn renew(
        &self,
        handle: &RevocationHandle,
        new_expires_at: UnixTime,
    ) -> Result<(), IssueError> {
        let username = self.planned_username(handle)?;
        let doing = format!(
            "extending user {username:?} to {}",
            new_expires_at.rfc3339()
        );
        let statement = sql::set_valid_until(username, new_expires_at)
            .map_err(|e| self.sql_text_error(&doing, e))?;
        match self.batch_raw(&statement).await {
            Ok(()) => Ok(()),
            Err(PgError::Server { code, .. }) if code == SqlState::UNDEFINED_OBJECT => Err(self
                .target(
                    format!(
                        "user {username:?} no longer exists at PostgreSQL {}:{} (revoked or \
                     never created); request a new credential",
                        self.host, self.port
                    ),
                    false,
                )),
            Err(e) => Err(self.target_error(&doing, e)),
        }
    }

    async fn set_admin_password(&self, new: &Secret<String>) -> Result<(), IssueError> {
        let doing = "changing the admin password";
        // The admin password may be chosen by a person: full rounds.
        let verifier = scram_verifier(new.expose(), ADMIN_SCRAM_ITERATIONS).map_err(|e| {
            IssueError::Config(format!(
                "issuer {:?}: the new admin password cannot be used: {e}",
                self.name
            ))
        })?;
        let statement =
            sql::set_own_password(&verifier).map_err(|e| self.sql_text_error(doing, e))?;
        match self.batch_raw(statement.expose()).await {
            Ok(()) => {}
            // An earlier attempt may have changed the password and lost the
            // answer (timeout): then the old one fails and the new one is
            // already in force. The check below tells.
            Err(PgError::Server { code, .. }) if code == SqlState::INVALID_PASSWORD => {
                tracing::warn!(
                    issuer = %self.name,
                    "the current admin password was refused; trying the new one"
                );
            }
            Err(e) => return Err(self.target_error(doing, e)),
        }
        self.pool.replace_password(new.clone());
        // Prove the new password works now, not at the next issuance.
        self.batch_raw("SELECT 1").await.map_err(|e| {
            let message = match self.target_error("logging in with the new admin password", e) {
                IssueError::Target { message, .. } => message,
                other => other.to_string(),
            };
            self.target(
                format!(
                    "the admin password was not changed or the new one does not work: {message}"
                ),
                false,
            )
        })?;
        tracing::info!(issuer = %self.name, "postgres admin password rotated");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idmint_core::{Identity, IdentityKind, LeaseId};

    fn config() -> PostgresIssuerConfig {
        toml::from_str(
            r#"
name = "orders-db"
host = "127.0.0.1"
database = "orders"
admin_user = "idmint_admin"
admin_password_env = "PGPW"
"#,
        )
        .unwrap()
    }

    fn issuer() -> PostgresIssuer {
        PostgresIssuer::new(&config(), Secret::new("pw".into())).unwrap()
    }

    fn role(database: &str) -> Role {
        let text = format!(
            "[[role]]\nname = \"db/orders-ro\"\nissuer = \"orders-db\"\nmax_ttl = \"1h\"\n\
             [role.database]\n{database}\n"
        );
        Role::parse_file("roles.toml", &text)
            .unwrap()
            .remove("db/orders-ro")
            .unwrap()
    }

    #[test]
    fn config_defaults_and_checks() {
        let c = config();
        assert_eq!(c.port, 5432);
        let checked = c.checked().unwrap();
        assert_eq!(checked.pool_size, 8);
        assert_eq!(checked.connect_timeout, Duration::from_secs(5));
        assert_eq!(checked.operation_timeout, Duration::from_secs(10));
        assert_eq!(checked.on_revoke, OnRevoke::ReassignToAdmin);
        assert_eq!(checked.scram_iterations, 256);

        let mut c = config();
        c.on_revoke = Some("reassign_owned_to:Archive".into());
        assert_eq!(
            c.checked().unwrap().on_revoke,
            OnRevoke::ReassignTo(Ident::parse("archive").unwrap())
        );
        for (edit, want) in [
            (
                Box::new(|c: &mut PostgresIssuerConfig| c.on_revoke = Some("drop".into()))
                    as Box<dyn Fn(&mut PostgresIssuerConfig)>,
                "unknown value",
            ),
            (
                Box::new(|c| c.on_revoke = Some("reassign_owned_to:a;b".into())),
                "not a valid name",
            ),
            (Box::new(|c| c.pool_size = Some(0)), "pool_size"),
            (
                Box::new(|c| c.scram_iterations = Some(0)),
                "scram_iterations",
            ),
            (Box::new(|c| c.host = " ".into()), "`host`"),
            (Box::new(|c| c.database = String::new()), "`database`"),
            (Box::new(|c| c.name = String::new()), "non-empty `name`"),
            (Box::new(|c| c.port = 0), "`port`"),
            (
                Box::new(|c| c.admin_password_file = Some("/x".into())),
                "only one of",
            ),
        ] {
            let mut c = config();
            edit(&mut c);
            let err = c.validate().unwrap_err();
            assert!(err.contains(want), "{err}");
            assert!(matches!(
                PostgresIssuer::new(&c, Secret::new("pw".into())),
                Err(IssueError::Config(_))
            ));
        }
        let unknown: Result<PostgresIssuerConfig, _> =
            toml::from_str("name='x'\nhost='h'\ndatabase='d'\nadmin_user='a'\nbogus=1\n");
        assert!(unknown.unwrap_err().to_string().contains("bogus"));
    }

    #[test]
    fn validate_role_accepts_safe_templates() {
        let i = issuer();
        i.validate_role(&role(
            "member_of = [\"readonly\", \"\\\"Report Readers\\\"\"]\n\
             grants = [\"SELECT ON ALL TABLES IN SCHEMA reporting\", \"USAGE ON SCHEMA reporting\"]",
        ))
        .unwrap();
        i.validate_role(&role(
            "member_of = [\"pg_read_server_files\"]\nallow_dangerous = true",
        ))
        .unwrap();
        i.validate_role(&role(
            "grants = [\"ALL ON TABLE t\"]\nallow_dangerous = true",
        ))
        .unwrap();
    }

    #[test]
    fn validate_role_refuses_bad_and_dangerous_templates() {
        let i = issuer();
        let no_template = Role::parse_file(
            "r.toml",
            "[[role]]\nname='x'\nissuer='orders-db'\nmax_ttl='1h'\n",
        )
        .unwrap()
        .remove("x")
        .unwrap();
        assert!(i
            .validate_role(&no_template)
            .unwrap_err()
            .contains("no `database` template"));
        for (template, want) in [
            (
                "grants = [\"SELECT ON TABLE t; DROP TABLE x\"]",
                "unexpected character ';'",
            ),
            (
                "grants = [\"ALL PRIVILEGES ON ALL TABLES IN SCHEMA s\"]",
                "dangerous",
            ),
            ("grants = [\"CREATE ON DATABASE orders\"]", "dangerous"),
            ("grants = [\"SELECT ON TABLE pg_authid\"]", "dangerous"),
            ("member_of = [\"pg_execute_server_program\"]", "dangerous"),
            ("member_of = [\"pg_signal_backend\"]", "dangerous"),
            ("member_of = [\"PG_WRITE_SERVER_FILES\"]", "dangerous"),
            ("member_of = [\"postgres\"]", "dangerous"),
            ("member_of = [\"idmint_admin\"]", "dangerous"),
            ("member_of = [\"a; DROP ROLE x\"]", "member_of"),
            ("member_of = [\"readonly\", \"READONLY\"]", "twice"),
            ("member_of = [\"\"]", "member_of"),
        ] {
            let err = i.validate_role(&role(template)).unwrap_err();
            assert!(err.contains(want), "{template}: {err}");
            assert!(err.contains("db/orders-ro"), "{err}");
        }
    }

    #[test]
    fn plan_derives_a_safe_username() {
        let i = issuer();
        let r = role("member_of = [\"readonly\"]\nusername_prefix = \"svc\"");
        let identity = Identity {
            kind: IdentityKind::Ci,
            subject: "repo:a'b\";DROP ROLE x;--\\\0é:ref:refs/heads/main".into(),
            issuer: "https://idp".into(),
            method: "oidc".into(),
            auth: "gh".into(),
            attributes: Default::default(),
            proof_id: "p".into(),
            expires_at: UnixTime(0),
        };
        let lease = LeaseId::generate().unwrap();
        let handle = i
            .plan(&PlanRequest {
                lease_id: &lease,
                role: &r,
                identity: &identity,
            })
            .unwrap();
        assert_eq!(handle.kind, DB_USER_HANDLE);
        assert!(handle.value.starts_with("svc_"), "{}", handle.value);
        assert_eq!(i.planned_username(&handle).unwrap(), handle.value);
        for bad in ["", "Upper", "a;b", "1abc", &"a".repeat(64)] {
            let h = RevocationHandle {
                kind: DB_USER_HANDLE.into(),
                value: bad.into(),
            };
            assert!(
                matches!(i.planned_username(&h), Err(IssueError::Internal(_))),
                "{bad}"
            );
        }
        let other = RevocationHandle {
            kind: "token_id".into(),
            value: "abc".into(),
        };
        assert!(matches!(
            i.planned_username(&other),
            Err(IssueError::Internal(_))
        ));
    }

    #[test]
    fn retryability_follows_the_sqlstate() {
        for c in [
            "08006", "40001", "40P01", "53300", "57P01", "57P03", "57014", "55P03",
        ] {
            assert!(is_retryable(&SqlState::from_code(c), ""), "{c}");
        }
        for c in ["42501", "42704", "28P01", "54000", "42710"] {
            assert!(!is_retryable(&SqlState::from_code(c), ""), "{c}");
        }
        assert!(is_retryable(
            &SqlState::from_code("XX000"),
            "tuple concurrently updated"
        ));
        assert!(!is_retryable(
            &SqlState::from_code("XX000"),
            "cache lookup failed"
        ));
    }
}
