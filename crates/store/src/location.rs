//! Which backend to open: `[storage]` in `idmint.toml`, or a store URL on
//! the command line (`idmint server --store postgres://…`,
//! `idmint store migrate --from sqlite://… --to postgres://…`).

use crate::error::StoreError;
use crate::postgres::{PostgresConfig, PostgresStore};
use crate::sqlite::SqliteStore;
use crate::store::Store;
use std::path::PathBuf;
use std::sync::Arc;

/// A backend and its settings.
#[derive(Debug, Clone)]
pub enum StoreLocation {
    Sqlite(PathBuf),
    Postgres(PostgresConfig),
}

impl StoreLocation {
    /// Parses `sqlite://PATH` (`sqlite:///abs/path` or
    /// `sqlite://relative/path`) or `postgres://…` / `postgresql://…`.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreError::Config(
                    "sqlite:// needs a file path, e.g. sqlite:///var/lib/idmint/idmint.db".into(),
                ));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let config = PostgresConfig::from_url(url);
            config.validate()?;
            return Ok(Self::Postgres(config));
        }
        Err(StoreError::Config(
            "a store URL starts with sqlite:// (e.g. sqlite:///var/lib/idmint/idmint.db) or postgres:// (e.g. postgres://idmint:PASSWORD@db:5432/idmint)".into(),
        ))
    }

    /// For messages: the path, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite://{}", path.display()),
            Self::Postgres(config) => config.redacted_url(),
        }
    }
}

/// Opens (and migrates) the store at `location`.
pub async fn open_store(location: &StoreLocation) -> Result<Arc<dyn Store>, StoreError> {
    match location {
        StoreLocation::Sqlite(path) => {
            let path = path.clone();
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path))
                .await
                .map_err(|e| StoreError::Backend(format!("opening the SQLite store: {e}")))??;
            Ok(Arc::new(store))
        }
        StoreLocation::Postgres(config) => Ok(Arc::new(PostgresStore::open(config).await?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_schemes() {
        match StoreLocation::parse("sqlite:///var/lib/idmint/idmint.db").unwrap() {
            StoreLocation::Sqlite(p) => assert_eq!(p, PathBuf::from("/var/lib/idmint/idmint.db")),
            other => panic!("{other:?}"),
        }
        match StoreLocation::parse("postgres://u:pw@127.0.0.1:5432/idmint").unwrap() {
            StoreLocation::Postgres(c) => {
                assert_eq!(c.redacted_url(), "postgres://u:***@127.0.0.1:5432/idmint")
            }
            other => panic!("{other:?}"),
        }
        assert!(StoreLocation::parse("mysql://x").is_err());
        assert!(StoreLocation::parse("sqlite://").is_err());
        let shown = StoreLocation::parse("postgresql://u:hunter2@127.0.0.1/d")
            .unwrap()
            .describe();
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
