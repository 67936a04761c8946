//! Schema migrations for the PostgreSQL backend.
//!
//! The same numbered versions as the SQLite backend (v1 initial schema, v2
//! reaper claims), written in PostgreSQL's dialect. Each server runs
//! `migrate` at start: a transaction-scoped advisory lock serialises servers
//! starting together, so exactly one applies a migration and the others see
//! the result. A database written by a newer idmint is refused.

use super::rows::describe;
use crate::error::StoreError;
use tokio_postgres::Client;

/// Advisory lock key for migrations (any constant unique to idmint).
const MIGRATION_LOCK: i64 = 0x0001_d317_0001;

/// Version 1: the initial schema. Text keys use the "C" collation so that
/// ordering and prefix ranges compare bytes, exactly like SQLite's BINARY.
/// `seq` gives the insertion order ("newest first" listings).
const V1: &str = r#"
CREATE TABLE blobs (
    name       TEXT COLLATE "C" PRIMARY KEY,
    value      BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE bundles (
    version    BIGINT PRIMARY KEY CHECK (version > 0),
    sources    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    author     TEXT NOT NULL,
    comment    TEXT NOT NULL
);

CREATE TABLE active_bundle (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL REFERENCES bundles(version)
);

CREATE TABLE leases (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    id               TEXT COLLATE "C" PRIMARY KEY,
    request_id       TEXT NOT NULL,
    role             TEXT COLLATE "C" NOT NULL,
    issuer           TEXT NOT NULL,
    principal        TEXT COLLATE "C" NOT NULL,
    policy_version   BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    state            TEXT NOT NULL
                     CHECK (state IN ('pending', 'active', 'revoked', 'irrevocable')),
    revocation_kind  TEXT NOT NULL,
    revocation_value TEXT NOT NULL,
    fingerprint      TEXT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    last_error       TEXT
);

CREATE INDEX leases_due ON leases (GREATEST(expires_at, next_attempt_at), id)
    WHERE state IN ('pending', 'active');
CREATE INDEX leases_pending ON leases (created_at) WHERE state = 'pending';
CREATE INDEX leases_by_principal ON leases (principal, seq);
CREATE INDEX leases_by_role ON leases (role, seq);

CREATE TABLE denylist (
    token_id   TEXT COLLATE "C" PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

CREATE INDEX denylist_by_expiry ON denylist (expires_at);
"#;

/// Version 2: reaper claims (see the SQLite migration of the same number).
const V2: &str = "
ALTER TABLE leases ADD COLUMN claimed_until BIGINT NOT NULL DEFAULT 0;
";

/// Every migration, in order; append only.
const MIGRATIONS: &[&str] = &[V1, V2];

/// The schema version this binary writes and understands.
pub(crate) const KNOWN_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`KNOWN_VERSION`], or refuses if it is newer.
pub(crate) async fn migrate(client: &mut Client, target: &str) -> Result<(), StoreError> {
    let fail = |what: &str, e: tokio_postgres::Error| {
        StoreError::Migration(format!(
            "database {target}: {what} failed: {}; check that the idmint user owns the database (CREATE privilege)",
            describe(&e)
        ))
    };
    let tx = client
        .transaction()
        .await
        .map_err(|e| fail("starting the migration transaction", e))?;
    // `CREATE TABLE IF NOT EXISTS` would otherwise log a NOTICE on every start.
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await
        .map_err(|e| fail("configuring the migration session", e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| fail("locking the database for migration", e))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
            id      INTEGER PRIMARY KEY CHECK (id = 1),
            version BIGINT NOT NULL
        )",
    )
    .await
    .map_err(|e| fail("creating the schema_version table", e))?;
    let found: i64 = tx
        .query_opt("SELECT version FROM schema_version WHERE id = 1", &[])
        .await
        .map_err(|e| fail("reading the schema version", e))?
        .map(|row| row.get(0))
        .unwrap_or(0);
    if found < 0 {
        return Err(StoreError::Migration(format!(
            "database {target}: schema version {found} is not a valid version"
        )));
    }
    if found > KNOWN_VERSION {
        return Err(StoreError::Migration(format!(
            "database schema v{found} is newer than this idmint (knows v{KNOWN_VERSION}): upgrade idmint ({target})"
        )));
    }
    if found == KNOWN_VERSION {
        return Ok(());
    }
    for (index, script) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let to = index + 1;
        tx.batch_execute(script)
            .await
            .map_err(|e| fail(&format!("migration to schema v{to}"), e))?;
        tracing::info!(database = %target, version = to, "applied schema migration");
    }
    tx.execute(
        "INSERT INTO schema_version (id, version) VALUES (1, $1)
         ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version",
        &[&KNOWN_VERSION],
    )
    .await
    .map_err(|e| fail("recording the schema version", e))?;
    tx.commit()
        .await
        .map_err(|e| fail("committing the migration", e))?;
    Ok(())
}

/// The version recorded in the database (0 before the first migration).
pub(crate) async fn recorded_version(client: &Client) -> Result<i64, StoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
        .await
        .map_err(|e| StoreError::Backend(format!("reading the schema version: {}", describe(&e))))?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_opt("SELECT version FROM schema_version WHERE id = 1", &[])
        .await
        .map_err(|e| StoreError::Backend(format!("reading the schema version: {}", describe(&e))))?
        .map(|r| r.get(0))
        .unwrap_or(0))
}
