//! The shared PostgreSQL and the idmint server of the comparison.
//!
//! Both systems issue credentials on the *same* throwaway PostgreSQL, each
//! with its own superuser admin account, granting through the same group
//! role `readers` (per-user grants break PostgreSQL after ~2.4k live users,
//! TESTBED §7).

use super::aws::SharedMoto;
use crate::error::{BenchError, Result};
use crate::fixture::{Issuer, AUTH_NAME};
use crate::scenario::{POLICY, ROLES};
use idmint_testkit::postgres::PgServer;
use idmint_testkit::{IdmintServer, OidcSpec, ServerSpec};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

/// The group role issued users join.
pub const PG_GROUP: &str = "readers";
pub const PG_DATABASE: &str = "postgres";
/// idmint's admin account on the target, and OpenBao's.
pub const IDMINT_PG_ADMIN: &str = "idmint_admin";
pub const BAO_PG_ADMIN: &str = "bao_admin";
/// `[[issuer.postgres]] name` and the idmint role using it.
pub const IDMINT_PG_ISSUER: &str = "bench-pg";
pub const IDMINT_PG_ROLE: &str = "db/readers";
const ADMIN_PASSWORD_ENV: &str = "BENCH_PG_ADMIN_PASSWORD";
/// `[[issuer.ssh]] name` and the certificate-mode role signed by
/// `POST /api/v1/ssh/sign/{role}` (OpenBao: `ssh/sign/deploy`).
pub const IDMINT_SSH_ISSUER: &str = "bench-ssh";
pub const IDMINT_SSH_ROLE: &str = "deploy";

/// The throwaway PostgreSQL both systems issue users on.
pub struct SharedPg {
    pub pg: PgServer,
    pub idmint_password: String,
    pub bao_password: String,
}

impl SharedPg {
    /// Starts PostgreSQL (blocking initdb, on the blocking pool) and creates
    /// the group role and the two admin accounts.
    pub async fn start() -> Result<Self> {
        let pg = tokio::task::spawn_blocking(PgServer::start)
            .await
            .map_err(|e| BenchError::openbao("PostgreSQL", format!("the start task failed: {e}")))?
            .map_err(|e| BenchError::peer("starting PostgreSQL", e))?;
        let idmint_password = idmint_testkit::keys::random_hex(16)
            .map_err(|e| BenchError::peer("generating a password", e))?;
        let bao_password = idmint_testkit::keys::random_hex(16)
            .map_err(|e| BenchError::peer("generating a password", e))?;
        let sql = format!(
            "CREATE ROLE {PG_GROUP} NOLOGIN;
             CREATE ROLE {IDMINT_PG_ADMIN} LOGIN SUPERUSER PASSWORD '{idmint_password}';
             CREATE ROLE {BAO_PG_ADMIN} LOGIN SUPERUSER PASSWORD '{bao_password}';"
        );
        run_psql(&pg, &sql).await?;
        Ok(Self {
            pg,
            idmint_password,
            bao_password,
        })
    }

    pub fn port(&self) -> u16 {
        self.pg.port()
    }

    /// Users currently in `readers` (issued and not yet revoked).
    pub async fn live_users(&self) -> Result<u64> {
        let out = run_psql(
            &self.pg,
            &format!(
                "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid WHERE r.rolname = '{PG_GROUP}'"
            ),
        )
        .await?;
        out.trim()
            .parse()
            .map_err(|e| BenchError::openbao("PostgreSQL", format!("count of users {out:?}: {e}")))
    }
}

/// Runs `sql` as the superuser with `psql` (the bench has no PostgreSQL
/// client library of its own; `psql` comes with the server packages).
async fn run_psql(pg: &PgServer, sql: &str) -> Result<String> {
    let out = tokio::process::Command::new("psql")
        .arg(pg.admin_url())
        .args(["-v", "ON_ERROR_STOP=1", "-qAtc", sql])
        .output()
        .await
        .map_err(|e| BenchError::io("running psql (apt-get install postgresql-client-15)", e))?;
    if !out.status.success() {
        return Err(BenchError::openbao(
            "PostgreSQL setup",
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The certificate-mode SSH role (no agent: the peer of OpenBao's
/// `ssh/sign`), for the same login as OpenBao's role.
fn ssh_role() -> String {
    format!(
        r#"
[[role]]
name = "{IDMINT_SSH_ROLE}"
issuer = "{IDMINT_SSH_ISSUER}"
description = "SSH user certificate for the deploy login"
max_ttl = "10m"
default_ttl = "5m"
ssh = {{ mode = "certificate", principals = ["{user}"] }}
"#,
        user = crate::openbao::setup::SSH_USER
    )
}

/// `roles.toml` of the comparison: the oauth role of `login-exchange`, the
/// SSH role and the database role.
fn roles() -> String {
    format!(
        r#"{ROLES}{ssh}
[[role]]
name = "{IDMINT_PG_ROLE}"
issuer = "{IDMINT_PG_ISSUER}"
description = "Read access through the readers group"
max_ttl = "2h"
default_ttl = "{ttl}"
[role.database]
member_of = ["{PG_GROUP}"]
"#,
        ttl = crate::openbao::setup::DB_TTL,
        ssh = ssh_role()
    )
}

/// `bench.cedar` plus: the database role for the same CI identity, and
/// admin (revoke any lease) for it too — OpenBao revokes with its root
/// token, so idmint's revoking caller is an admin as well.
fn policy() -> String {
    format!(
        r#"{POLICY}
@id("acme-app-main-gets-db-readers")
permit (principal, action == Action::"issue", resource == Role::"{IDMINT_PG_ROLE}")
when {{ principal has repository && principal.repository == "acme/app"
       && principal has ref && principal.ref == "refs/heads/main" }};

@id("acme-app-main-gets-ssh-deploy")
permit (principal, action == Action::"issue", resource == Role::"{IDMINT_SSH_ROLE}")
when {{ principal has repository && principal.repository == "acme/app"
       && principal has ref && principal.ref == "refs/heads/main" }};

@id("bench-operator")
permit (principal, action == Action::"admin", resource)
when {{ principal has actor && principal.actor == "octocat" }};
"#
    )
}

/// The idmint server of the comparison: like `login-exchange`'s, plus the
/// PostgreSQL issuer when `pg` is given and the AWS issuer (on moto) when
/// `aws` is.
///
/// With `servers > 1` (`all --idmint-servers N`, or `--idmint-postgres`
/// for one) it is a deployment of N identical servers on one PostgreSQL
/// *store* (a PostgreSQL of its own, not the issuers' target) sharing one
/// root key, as in docs/deployment.md; the load is spread over them
/// connection by connection.
pub struct IdmintTarget {
    pub server: IdmintServer,
    /// The other servers of a multi-server deployment.
    replicas: Vec<IdmintServer>,
    /// The store of a multi-server deployment; dropped after the servers.
    _store: Option<PgServer>,
}

impl IdmintTarget {
    pub async fn start(
        bin: &Path,
        issuer: &Issuer,
        pg: Option<&SharedPg>,
        aws: Option<&SharedMoto>,
        servers: usize,
        on_postgres: bool,
    ) -> Result<Self> {
        if !bin.is_file() {
            return Err(BenchError::ServerBinaryMissing {
                path: bin.to_path_buf(),
            });
        }
        let spec = server_spec(issuer, pg, aws)?;
        if servers <= 1 && !on_postgres {
            let server = IdmintServer::start(bin, spec)
                .await
                .map_err(|e| BenchError::peer("starting idmint server", e))?;
            return Ok(Self {
                server,
                replicas: Vec::new(),
                _store: None,
            });
        }
        let store = tokio::task::spawn_blocking(PgServer::start)
            .await
            .map_err(|e| BenchError::openbao("PostgreSQL", format!("the start task failed: {e}")))?
            .map_err(|e| BenchError::peer("starting the PostgreSQL store", e))?;
        let keys = tempfile::tempdir().map_err(|e| BenchError::io("creating a key dir", e))?;
        let root_key = keys.path().join("root.key");
        idmint_testkit::server::write_root_key(&root_key)
            .map_err(|e| BenchError::peer("writing the shared root key", e))?;
        let servers = servers.max(1);
        let mut started = Vec::with_capacity(servers);
        for _ in 0..servers {
            let dir = tempfile::Builder::new()
                .prefix("idmint-srv-")
                .tempdir()
                .map_err(|e| BenchError::io("creating a server dir", e))?;
            let port =
                idmint_testkit::free_port().map_err(|e| BenchError::peer("picking a port", e))?;
            let config = spec
                .write(dir.path(), port)
                .map_err(|e| BenchError::peer("writing idmint.toml", e))?;
            std::fs::copy(&root_key, dir.path().join("root.key"))
                .map_err(|e| BenchError::io("copying the root key", e))?;
            let audit = dir.path().join("audit.jsonl");
            let mut env = spec.env.clone();
            env.push(("IDMINT_STORE".into(), store.admin_url()));
            // One at a time: the first one runs the store's migrations.
            started.push(
                IdmintServer::start_with_config(bin, dir, config, port, audit, env)
                    .await
                    .map_err(|e| BenchError::peer("starting idmint server on PostgreSQL", e))?,
            );
        }
        let server = started.remove(0);
        Ok(Self {
            server,
            replicas: started,
            _store: Some(store),
        })
    }

    /// Every server but the first: address and pid.
    pub fn more(&self) -> Vec<(SocketAddr, Option<u32>)> {
        self.replicas
            .iter()
            .map(|s| (SocketAddr::from((Ipv4Addr::LOCALHOST, s.port())), s.pid()))
            .collect()
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.server.port()))
    }

    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }
}

/// The comparison's server config, for one server or each of several.
fn server_spec(
    issuer: &Issuer,
    pg: Option<&SharedPg>,
    aws: Option<&SharedMoto>,
) -> Result<ServerSpec> {
    let mut spec = ServerSpec {
        oidc: vec![OidcSpec::new(AUTH_NAME, &issuer.url()).preset("github-actions")],
        roles: roles(),
        policies: vec![("bench.cedar".to_string(), policy())],
        oauth_algorithm: Some("ES256".into()),
        reaper_interval: "5s".into(),
        env: vec![("IDMINT_LOG".into(), "info".into())],
        ..ServerSpec::default()
    };
    let ssh: idmint_testkit::toml::Table =
        idmint_testkit::toml::from_str(&format!("name = \"{IDMINT_SSH_ISSUER}\"\n"))
            .map_err(|e| BenchError::openbao("idmint config", e))?;
    spec.issuers.push(("ssh".into(), ssh));
    if let Some(pg) = pg {
        let table: idmint_testkit::toml::Table = idmint_testkit::toml::from_str(&format!(
            r#"
name = "{IDMINT_PG_ISSUER}"
host = "127.0.0.1"
port = {port}
database = "{PG_DATABASE}"
admin_user = "{IDMINT_PG_ADMIN}"
admin_password_env = "{ADMIN_PASSWORD_ENV}"
pool_size = 8
"#,
            port = pg.port()
        ))
        .map_err(|e| BenchError::openbao("idmint config", e))?;
        spec.issuers.push(("postgres".into(), table));
        spec.env
            .push((ADMIN_PASSWORD_ENV.into(), pg.idmint_password.clone()));
    } else {
        // Without PostgreSQL the database role would name an unknown
        // issuer.
        spec.roles = format!("{ROLES}{}", ssh_role());
    }
    if let Some(aws) = aws {
        let table: idmint_testkit::toml::Table = idmint_testkit::toml::from_str(&aws.issuer_toml())
            .map_err(|e| BenchError::openbao("idmint config", e))?;
        spec.issuers.push(("aws".into(), table));
        spec.roles.push_str(&super::aws::role());
        if let Some((_, policy)) = spec.policies.first_mut() {
            policy.push_str(&super::aws::policy());
        }
        spec.env.extend(aws.server_env());
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_role_and_its_permit_agree() {
        let roles = roles();
        assert!(roles.contains(&format!("name = \"{IDMINT_PG_ROLE}\"")));
        assert!(roles.contains(&format!("issuer = \"{IDMINT_PG_ISSUER}\"")));
        assert!(roles.contains("member_of = [\"readers\"]"));
        let policy = policy();
        assert!(policy.contains(&format!("Role::\"{IDMINT_PG_ROLE}\"")));
        assert!(policy.contains("Action::\"admin\""));
        assert!(roles.contains(&format!("name = \"{IDMINT_SSH_ROLE}\"")));
        assert!(roles.contains("mode = \"certificate\""));
        assert!(policy.contains(&format!("Role::\"{IDMINT_SSH_ROLE}\"")));
    }
}
