//! Persistent state of idmint: the [`Store`] trait, its SQLite and
//! PostgreSQL backends, schema migrations, and envelope encryption of
//! secrets at rest.
//!
//! The server only ever sees [`Store`] (no database types leak out), so a
//! PostgreSQL backend can be added behind the same trait and checked with the
//! same behaviour suite ([`conformance::run_store_suite`], behind the
//! `conformance` feature).

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
pub use location::{open_store, StoreLocation};
pub use postgres::{PgTlsMode, PostgresConfig, PostgresStore};
pub use idmint_core::policy::SourceFile;
pub use sealed_secret::get_or_create_secret;
pub use sqlite::SqliteStore;
pub use store::{LeaseFilter, Store, StoredBundle, MAX_BLOB_LIST, MAX_DUE_LIMIT};
