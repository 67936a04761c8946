//! `[storage] postgres = { url, pool_size, tls, ca_file }`.

use crate::error::StoreError;
use serde::Deserialize;
use std::path::PathBuf;
use std::str::FromStr;

/// Connections per server when `pool_size` is not set: enough for the lease
/// hot path to overlap round trips, small enough that a few servers stay far
/// below PostgreSQL's default `max_connections` (100).
pub const DEFAULT_POOL_SIZE: usize = 16;
/// Upper bound on `pool_size`: more connections than this only adds
/// contention inside PostgreSQL.
pub const MAX_POOL_SIZE: usize = 256;

/// How the connection to PostgreSQL is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PgTlsMode {
    /// Plain TCP. Only sensible on loopback or a private, trusted link.
    Disable,
    /// TLS, but the server certificate is not checked (like libpq's
    /// `sslmode=require`): protects against passive eavesdropping only.
    Require,
    /// TLS with the server certificate checked against `ca_file` and the
    /// host name in the URL (libpq's `sslmode=verify-full`).
    VerifyFull,
}

impl PgTlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PgTlsMode::Disable => "disable",
            PgTlsMode::Require => "require",
            PgTlsMode::VerifyFull => "verify-full",
        }
    }
}

/// Where and how to reach the PostgreSQL database.
///
/// `url` usually holds a password, so [`std::fmt::Debug`] and
/// [`PostgresConfig::redacted_url`] never show it.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/database` (libpq URL syntax).
    pub url: String,
    /// Connections this server keeps open at most (default
    /// [`DEFAULT_POOL_SIZE`]), plus one for change notifications.
    #[serde(default)]
    pub pool_size: Option<usize>,
    /// Default: `disable` when the host is loopback, else `verify-full`.
    #[serde(default)]
    pub tls: Option<PgTlsMode>,
    /// PEM file with the CA certificate(s) that sign the server's
    /// certificate; required for `verify-full`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &self.redacted_url())
            .field("pool_size", &self.pool_size)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl PostgresConfig {
    /// A config for `url` with every other setting at its default.
    pub fn from_url(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            pool_size: None,
            tls: None,
            ca_file: None,
        }
    }

    /// The URL without its password (and without query parameters, which
    /// may also carry one), for logs, errors and `describe()`.
    pub fn redacted_url(&self) -> String {
        match url::Url::parse(&self.url) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                u.set_query(None);
                u.to_string()
            }
            Err(_) => "postgres://<unparsable url>".to_owned(),
        }
    }

    pub fn pool_size(&self) -> usize {
        self.pool_size.unwrap_or(DEFAULT_POOL_SIZE)
    }

    /// The effective TLS mode (see [`PostgresConfig::tls`]).
    pub fn tls_mode(&self) -> PgTlsMode {
        if let Some(mode) = self.tls {
            return mode;
        }
        match tokio_postgres::Config::from_str(&self.url) {
            Ok(c) if c.get_hosts().iter().all(is_local_host) => PgTlsMode::Disable,
            _ => PgTlsMode::VerifyFull,
        }
    }

    /// Checks everything that can be checked without connecting; the
    /// messages name the key and say what to change.
    pub fn validate(&self) -> Result<tokio_postgres::Config, StoreError> {
        let config = self.parsed_url()?;
        let size = self.pool_size();
        if size == 0 || size > MAX_POOL_SIZE {
            return Err(StoreError::Config(format!(
                "[storage] postgres.pool_size = {size}: choose between 1 and {MAX_POOL_SIZE}"
            )));
        }
        if self.tls_mode() == PgTlsMode::VerifyFull && self.ca_file.is_none() {
            return Err(StoreError::Config(format!(
                "[storage] postgres: tls = \"verify-full\" (the default for a non-loopback host) needs ca_file = \"…\" with the CA that signs the database's certificate; or set tls = \"require\" / \"disable\" for {}",
                self.redacted_url()
            )));
        }
        Ok(config)
    }

    fn parsed_url(&self) -> Result<tokio_postgres::Config, StoreError> {
        if !(self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")) {
            return Err(StoreError::Config(
                "[storage] postgres.url must start with postgres:// (e.g. postgres://idmint:PASSWORD@db.internal:5432/idmint)".into(),
            ));
        }
        let config = tokio_postgres::Config::from_str(&self.url).map_err(|e| {
            StoreError::Config(format!(
                "[storage] postgres.url {} is not a valid PostgreSQL URL: {e}",
                self.redacted_url()
            ))
        })?;
        if config.get_dbname().is_none() {
            return Err(StoreError::Config(format!(
                "[storage] postgres.url {} names no database: add /DATABASE to the URL",
                self.redacted_url()
            )));
        }
        Ok(config)
    }
}

fn is_local_host(host: &tokio_postgres::config::Host) -> bool {
    match host {
        tokio_postgres::config::Host::Tcp(name) => {
            name == "localhost"
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .map(|ip| ip.is_loopback())
                    .unwrap_or(false)
        }
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_never_shown() {
        let c =
            PostgresConfig::from_url("postgres://idm:s3cr3t@db.example:5432/idmint?password=x2");
        assert_eq!(
            c.redacted_url(),
            "postgres://idm:***@db.example:5432/idmint"
        );
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("s3cr3t") && !debug.contains("x2"),
            "{debug}"
        );
    }

    #[test]
    fn tls_defaults_by_host() {
        assert_eq!(
            PostgresConfig::from_url("postgres://a:b@127.0.0.1:5/d").tls_mode(),
            PgTlsMode::Disable
        );
        assert_eq!(
            PostgresConfig::from_url("postgres://a:b@localhost/d").tls_mode(),
            PgTlsMode::Disable
        );
        let remote = PostgresConfig::from_url("postgres://a:b@db.example/d");
        assert_eq!(remote.tls_mode(), PgTlsMode::VerifyFull);
        let err = remote.validate().unwrap_err().to_string();
        assert!(err.contains("ca_file"), "{err}");
    }

    #[test]
    fn validation_messages_name_the_key() {
        let mut c = PostgresConfig::from_url("postgres://a:b@127.0.0.1/d");
        c.pool_size = Some(0);
        assert!(c.validate().unwrap_err().to_string().contains("pool_size"));
        let c = PostgresConfig::from_url("mysql://a@h/d");
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("postgres://"));
        let c = PostgresConfig::from_url("postgres://a:b@127.0.0.1");
        assert!(c.validate().unwrap_err().to_string().contains("database"));
        let ok = PostgresConfig::from_url("postgres://a:b@127.0.0.1:5432/d");
        assert!(ok.validate().is_ok());
    }
}
