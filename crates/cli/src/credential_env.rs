//! Environment variables that carry a credential: the `export` lines of
//! `idmint creds -o env` and the environment `idmint exec` gives its command.
//!
//! Pure functions of the server's answer, so the exact variables per kind
//! and engine are tested without a server or a child process.

use anyhow::{bail, Result};
use idmint_client::SecretString;
use idmint_proto::{Credential, CredsResponse};

/// One variable. The value may be a password or token, so it is held as a
/// [`SecretString`] and never appears in `Debug` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub name: &'static str,
    pub value: SecretString,
}

/// What `idmint exec` changes in its command's environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildEnv {
    /// Set (or overwritten), in this order.
    pub set: Vec<EnvVar>,
    /// Removed: variables of the credential's engine that this credential
    /// does not define, so that a stale value from the caller's shell (say
    /// `PGDATABASE` of another database) is not mixed with the new user.
    pub remove: Vec<&'static str>,
}

/// Database engines whose own client programs get their native variables
/// from `idmint exec`. Other engines still get `DATABASE_URL` and the
/// `IDMINT_*` variables, so a newer server's engine works with this CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Postgres,
    /// MySQL and MariaDB: same client, same variables.
    Mysql,
    Redis,
    Rabbitmq,
    Other,
}

impl Engine {
    fn of(name: &str) -> Self {
        match name.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Engine::Postgres,
            "mysql" | "mariadb" => Engine::Mysql,
            "redis" => Engine::Redis,
            "rabbitmq" => Engine::Rabbitmq,
            _ => Engine::Other,
        }
    }
}

/// The variables of `idmint creds -o env`, in output order:
/// `IDMINT_LEASE_ID`, the credential's own variables, `IDMINT_EXPIRES_AT`.
///
/// Deliberately never `IDMINT_TOKEN`, which holds the idmint session and
/// would be overwritten by an `eval`.
pub fn exported(resp: &CredsResponse) -> Result<Vec<EnvVar>> {
    let mut vars = Vars::default();
    vars.push("IDMINT_LEASE_ID", &resp.lease_id)?;
    match &resp.credential {
        Credential::OauthToken {
            access_token,
            token_type,
            ..
        } => {
            vars.push("IDMINT_ACCESS_TOKEN", access_token)?;
            vars.push("IDMINT_TOKEN_TYPE", token_type)?;
        }
        Credential::DatabaseUser {
            username,
            password,
            uri,
            ..
        } => {
            vars.push("DATABASE_URL", uri)?;
            vars.push("IDMINT_USERNAME", username)?;
            vars.push("IDMINT_PASSWORD", password)?;
        }
        Credential::Aws {
            access_key_id,
            secret_access_key,
            session_token,
            region,
            ..
        } => {
            vars.push("AWS_ACCESS_KEY_ID", access_key_id)?;
            vars.push("AWS_SECRET_ACCESS_KEY", secret_access_key)?;
            if let Some(token) = session_token {
                vars.push("AWS_SESSION_TOKEN", token)?;
            }
            if let Some(region) = region {
                vars.push("AWS_REGION", region)?;
                vars.push("AWS_DEFAULT_REGION", region)?;
            }
        }
        Credential::AwsWebIdentity {
            token,
            role_arn,
            role_session_name,
            region,
            ..
        } => {
            vars.push("IDMINT_WEB_IDENTITY_TOKEN", token)?;
            vars.push("AWS_ROLE_ARN", role_arn)?;
            vars.push("AWS_ROLE_SESSION_NAME", role_session_name)?;
            if let Some(region) = region {
                vars.push("AWS_REGION", region)?;
                vars.push("AWS_DEFAULT_REGION", region)?;
            }
        }
        Credential::AzureClientSecret {
            tenant_id,
            client_id,
            client_secret,
            ..
        } => {
            // What Azure SDKs' EnvironmentCredential reads.
            vars.push("AZURE_TENANT_ID", tenant_id)?;
            vars.push("AZURE_CLIENT_ID", client_id)?;
            vars.push("AZURE_CLIENT_SECRET", client_secret)?;
        }
        Credential::AzureClientAssertion {
            tenant_id,
            client_id,
            assertion,
            ..
        } => {
            vars.push("AZURE_TENANT_ID", tenant_id)?;
            vars.push("AZURE_CLIENT_ID", client_id)?;
            vars.push("IDMINT_CLIENT_ASSERTION", assertion)?;
        }
        // PEM is multi-line: certificates and keys go to files (`-o json`),
        // the environment only names the SVID.
        Credential::X509Svid {
            spiffe_id, serial, ..
        } => {
            vars.push("IDMINT_SPIFFE_ID", spiffe_id)?;
            vars.push("IDMINT_X509_SERIAL", serial)?;
        }
        // Only reaches a workload when the role says `deliver_to = "any"`.
        Credential::StaticSecret { name, value } => {
            vars.push("IDMINT_SECRET_NAME", name)?;
            vars.push("IDMINT_SECRET", value)?;
        }
    }
    vars.push("IDMINT_EXPIRES_AT", &resp.expires_at.to_string())?;
    Ok(vars.0)
}

/// Variables that would make an AWS SDK or CLI ignore (or mix with) the
/// keys `idmint exec` sets: an explicit profile wins over environment
/// keys in the AWS CLI, and a stale session token would be sent with a
/// user's long-term key.
const AWS_SHADOWING: &[&str] = &[
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SECURITY_TOKEN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
];

/// The environment of `idmint exec`'s command: everything [`exported`]
/// sets, plus the variables the engine's own client programs read, so that
/// `psql` or `redis-cli -u "$REDIS_URL"` connect as the new user without
/// flags.
///
/// MySQL's client has no variable for the user name except `USER`, which
/// every other program reads as the login name; it is left alone and the
/// user name is in `IDMINT_USERNAME` (`mysql -u "$IDMINT_USERNAME"`).
pub fn for_child(resp: &CredsResponse) -> Result<ChildEnv> {
    let mut vars = Vars(exported(resp)?);
    let mut remove = Vec::new();
    if let Credential::DatabaseUser {
        engine,
        username,
        password,
        uri,
        host,
        port,
        database,
    } = &resp.credential
    {
        let port = port.to_string();
        match Engine::of(engine) {
            Engine::Postgres => {
                vars.push("PGHOST", host)?;
                vars.push("PGPORT", &port)?;
                vars.push("PGUSER", username)?;
                vars.push("PGPASSWORD", password)?;
                match database {
                    Some(db) => vars.push("PGDATABASE", db)?,
                    None => remove.push("PGDATABASE"),
                }
            }
            Engine::Mysql => {
                vars.push("MYSQL_HOST", host)?;
                vars.push("MYSQL_TCP_PORT", &port)?;
                vars.push("MYSQL_PWD", password)?;
            }
            Engine::Redis => vars.push("REDIS_URL", uri)?,
            Engine::Rabbitmq => vars.push("AMQP_URL", uri)?,
            Engine::Other => {}
        }
    }
    if let Credential::Aws { session_token, .. } = &resp.credential {
        remove.extend_from_slice(AWS_SHADOWING);
        if session_token.is_none() {
            remove.push("AWS_SESSION_TOKEN");
        }
    }
    Ok(ChildEnv {
        set: vars.0,
        remove,
    })
}

/// Collects variables, refusing values no environment can hold.
#[derive(Default)]
struct Vars(Vec<EnvVar>);

impl Vars {
    /// A NUL byte cannot be part of an environment variable (the C string
    /// ends there) and would be silently cut in `eval "$(…)"`; the value
    /// would then be a different, wrong credential, so it is an error.
    fn push(&mut self, name: &'static str, value: &str) -> Result<()> {
        if value.contains('\0') {
            bail!(
                "the credential's value for {name} contains a NUL byte, which no environment variable can hold; use `--output json` instead"
            );
        }
        self.0.push(EnvVar {
            name,
            value: SecretString::new(value.to_string()),
        });
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A database credential response for tests.
    pub(crate) fn db_resp(
        engine: &str,
        username: &str,
        password: &str,
        database: Option<&str>,
    ) -> CredsResponse {
        CredsResponse {
            lease_id: "lease_db1".into(),
            role: "db/orders-readonly".into(),
            issuer: engine.into(),
            expires_at: 900,
            ttl_seconds: 900,
            ttl_clamped: false,
            policy_version: 4,
            fingerprint: "fp_db".into(),
            credential: Credential::DatabaseUser {
                engine: engine.into(),
                username: username.into(),
                password: password.into(),
                uri: format!("{engine}://u:p@db.internal:5432/orders"),
                host: "db.internal".into(),
                port: 5432,
                database: database.map(str::to_string),
            },
        }
    }

    pub(crate) fn oauth_resp() -> CredsResponse {
        CredsResponse {
            lease_id: "lease_1".into(),
            role: "demo-api".into(),
            issuer: "oauth".into(),
            expires_at: 300,
            ttl_seconds: 300,
            ttl_clamped: true,
            policy_version: 3,
            fingerprint: "fp_abc".into(),
            credential: Credential::OauthToken {
                access_token: "eyJ.x.y".into(),
                token_type: "Bearer".into(),
                audience: Some("https://api.example.test".into()),
                scopes: vec!["orders:read".into()],
                token_id: "jti_1".into(),
            },
        }
    }

    fn pairs(vars: &[EnvVar]) -> Vec<(&str, &str)> {
        vars.iter().map(|v| (v.name, v.value.expose())).collect()
    }

    #[test]
    fn exported_oauth_token() {
        assert_eq!(
            pairs(&exported(&oauth_resp()).unwrap()),
            vec![
                ("IDMINT_LEASE_ID", "lease_1"),
                ("IDMINT_ACCESS_TOKEN", "eyJ.x.y"),
                ("IDMINT_TOKEN_TYPE", "Bearer"),
                ("IDMINT_EXPIRES_AT", "300"),
            ]
        );
    }

    #[test]
    fn exported_database_user() {
        assert_eq!(
            pairs(&exported(&db_resp("postgres", "v_app", "pw", Some("orders"))).unwrap()),
            vec![
                ("IDMINT_LEASE_ID", "lease_db1"),
                ("DATABASE_URL", "postgres://u:p@db.internal:5432/orders"),
                ("IDMINT_USERNAME", "v_app"),
                ("IDMINT_PASSWORD", "pw"),
                ("IDMINT_EXPIRES_AT", "900"),
            ]
        );
    }

    /// The variables `for_child` adds beyond `exported`.
    fn engine_vars(env: &ChildEnv) -> Vec<(&str, &str)> {
        pairs(&env.set)
            .into_iter()
            .filter(|(n, _)| {
                !matches!(
                    *n,
                    "IDMINT_LEASE_ID"
                        | "DATABASE_URL"
                        | "IDMINT_USERNAME"
                        | "IDMINT_PASSWORD"
                        | "IDMINT_EXPIRES_AT"
                )
            })
            .collect()
    }

    #[test]
    fn child_env_postgres() {
        let env = for_child(&db_resp("postgres", "v_app", "pw", Some("orders"))).unwrap();
        assert_eq!(
            engine_vars(&env),
            vec![
                ("PGHOST", "db.internal"),
                ("PGPORT", "5432"),
                ("PGUSER", "v_app"),
                ("PGPASSWORD", "pw"),
                ("PGDATABASE", "orders"),
            ]
        );
        assert!(env.remove.is_empty());
        // Every variable of `creds -o env` is there too.
        assert_eq!(
            pairs(&env.set)[..5],
            pairs(&exported(&db_resp("postgres", "v_app", "pw", Some("orders"))).unwrap())[..]
        );

        // No database: a PGDATABASE inherited from the shell must not stay.
        let env = for_child(&db_resp("postgresql", "v_app", "pw", None)).unwrap();
        assert!(!engine_vars(&env).iter().any(|(n, _)| *n == "PGDATABASE"));
        assert_eq!(env.remove, vec!["PGDATABASE"]);
    }

    #[test]
    fn child_env_mysql_and_mariadb() {
        for engine in ["mysql", "mariadb", "MySQL"] {
            let env = for_child(&db_resp(engine, "v_app", "pw", Some("orders"))).unwrap();
            assert_eq!(
                engine_vars(&env),
                vec![
                    ("MYSQL_HOST", "db.internal"),
                    ("MYSQL_TCP_PORT", "5432"),
                    ("MYSQL_PWD", "pw"),
                ],
                "{engine}"
            );
            assert!(!pairs(&env.set).iter().any(|(n, _)| *n == "USER"));
        }
    }

    #[test]
    fn child_env_redis_rabbitmq_and_unknown_engines() {
        let env = for_child(&db_resp("redis", "u", "pw", None)).unwrap();
        assert_eq!(
            engine_vars(&env),
            vec![("REDIS_URL", "redis://u:p@db.internal:5432/orders")]
        );
        let env = for_child(&db_resp("rabbitmq", "u", "pw", None)).unwrap();
        assert_eq!(
            engine_vars(&env),
            vec![("AMQP_URL", "rabbitmq://u:p@db.internal:5432/orders")]
        );
        // An engine this CLI does not know: the generic variables only.
        let env = for_child(&db_resp("cassandra", "u", "pw", None)).unwrap();
        assert!(engine_vars(&env).is_empty());
        assert!(
            pairs(&env.set).contains(&("DATABASE_URL", "cassandra://u:p@db.internal:5432/orders"))
        );
        assert!(env.remove.is_empty());
    }

    #[test]
    fn child_env_oauth_token() {
        let env = for_child(&oauth_resp()).unwrap();
        assert_eq!(pairs(&env.set), pairs(&exported(&oauth_resp()).unwrap()));
        assert!(pairs(&env.set).contains(&("IDMINT_ACCESS_TOKEN", "eyJ.x.y")));
        assert!(env.remove.is_empty());
    }

    pub(crate) fn aws_resp(session_token: Option<&str>) -> CredsResponse {
        CredsResponse {
            lease_id: "lease_aws".into(),
            role: "aws/deploy".into(),
            issuer: "aws".into(),
            expires_at: 600,
            ttl_seconds: 600,
            ttl_clamped: false,
            policy_version: 2,
            fingerprint: "fp_aws".into(),
            credential: Credential::Aws {
                access_key_id: "ASIAEXAMPLE".into(),
                secret_access_key: "se/cr+et".into(),
                session_token: session_token.map(str::to_string),
                expiration: "1970-01-01T00:10:00Z".into(),
                region: Some("eu-west-1".into()),
                mode: "assumed_role".into(),
                arn: None,
            },
        }
    }

    #[test]
    fn aws_keys_become_the_sdk_variables() {
        assert_eq!(
            pairs(&exported(&aws_resp(Some("tok"))).unwrap()),
            vec![
                ("IDMINT_LEASE_ID", "lease_aws"),
                ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE"),
                ("AWS_SECRET_ACCESS_KEY", "se/cr+et"),
                ("AWS_SESSION_TOKEN", "tok"),
                ("AWS_REGION", "eu-west-1"),
                ("AWS_DEFAULT_REGION", "eu-west-1"),
                ("IDMINT_EXPIRES_AT", "600"),
            ]
        );
        let env = for_child(&aws_resp(Some("tok"))).unwrap();
        assert!(env.remove.contains(&"AWS_PROFILE"));
        assert!(!env.remove.contains(&"AWS_SESSION_TOKEN"));
        // An IAM user's key has no token: an inherited one must not stay.
        let env = for_child(&aws_resp(None)).unwrap();
        assert!(env.remove.contains(&"AWS_SESSION_TOKEN"));
        assert!(!pairs(&env.set)
            .iter()
            .any(|(n, _)| *n == "AWS_SESSION_TOKEN"));
    }

    #[test]
    fn nul_bytes_are_refused_and_the_value_is_not_echoed() {
        let e = exported(&db_resp("postgres", "v_app", "se\0cret", None)).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("IDMINT_PASSWORD") && msg.contains("NUL"),
            "{msg}"
        );
        assert!(!msg.contains("se\0cret") && !msg.contains("cret"), "{msg}");
        assert!(for_child(&db_resp("postgres", "v\0x", "pw", None)).is_err());
    }

    #[test]
    fn debug_never_shows_values() {
        let env = for_child(&db_resp("postgres", "v_app", "hunter2-secret", None)).unwrap();
        let debug = format!("{env:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("PGPASSWORD"), "{debug}");
    }
}
