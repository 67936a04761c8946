//! Persistent state of idmint: the [`Store`] trait, its SQLite and
//! PostgreSQL backends, schema migrations, and envelope encryption of
//! secrets at rest.
//!
//! The server only ever sees [`Store`] (no database types leak out); both
//! backends pass the same behaviour suite ([`conformance::run_store_suite`],
//! behind the `conformance` feature). [`StoreLocation`] and [`open_store`]
//! pick a backend from `[storage]` or a `sqlite://`/`postgres://` URL;
//! [`copy`] moves a deployment between backends.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod copy;
mod envelope;
mod error;
mod events;
mod location;
mod postgres;
mod root_key;
mod sealed_secret;
mod sqlite;
mod store;

pub use envelope::Envelope;
pub use error::StoreError;
pub use events::StoreEvent;
pub use idmint_core::policy::SourceFile;
pub use location::{open_store, StoreLocation};
pub use postgres::{PgTlsMode, PostgresConfig, PostgresStore};
pub use sealed_secret::get_or_create_secret;
pub use sqlite::SqliteStore;
pub use store::{LeaseFilter, Store, StoredBundle, MAX_BLOB_LIST, MAX_DUE_LIMIT};

/// The schema version this idmint writes and understands. Every backend
/// numbers its migrations the same way (v1 initial schema, v2 reaper
/// claims), so one number describes a deployment whatever its store.
pub const SCHEMA_VERSION: u32 = sqlite::SCHEMA_VERSION;

#[cfg(test)]
mod schema_version_tests {
    #[test]
    fn backends_agree_on_the_schema_version() {
        assert_eq!(
            i64::from(super::SCHEMA_VERSION),
            super::PostgresStore::schema_version()
        );
    }
}
