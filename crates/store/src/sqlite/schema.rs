//! Schema migrations for the SQLite backend.
//!
//! Migrations are numbered SQL scripts embedded in the binary, applied in
//! order inside one `BEGIN IMMEDIATE` transaction, so two processes opening
//! the same fresh file cannot both migrate, and a failed migration leaves the
//! database as it was. A database written by a newer idmint is refused rather
//! than half-understood.

use crate::error::StoreError;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;

/// Version 1: the initial schema.
///
/// Index choices (every query the store runs is covered, so costs stay flat
/// with millions of leases; `sqlite::tests::query_plans_use_indexes` checks
/// it):
/// * `leases_due`: only live rows, keyed by the moment a lease becomes due
///   (`max(expires_at, next_attempt_at)`) then id. The reaper reads a prefix
///   of it; rows in revocation backoff are not rescanned on every pass, and
///   revoked rows leave the index.
/// * `leases_pending`: only pending rows by creation time, for leases left
///   pending by a crash between the write-ahead and the mint.
/// * `leases_by_principal`, `leases_by_role`: listing; newest-first order is
///   rowid order, which these indexes carry implicitly.
const V1: &str = "
CREATE TABLE blobs (
    name       TEXT PRIMARY KEY NOT NULL,
    value      BLOB NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE bundles (
    version    INTEGER PRIMARY KEY NOT NULL CHECK (version > 0),
    sources    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    author     TEXT NOT NULL,
    comment    TEXT NOT NULL
) STRICT;

CREATE TABLE active_bundle (
    id      INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    version INTEGER NOT NULL REFERENCES bundles(version)
) STRICT;

CREATE TABLE leases (
    id               TEXT PRIMARY KEY NOT NULL,
    request_id       TEXT NOT NULL,
    role             TEXT NOT NULL,
    issuer           TEXT NOT NULL,
    principal        TEXT NOT NULL,
    policy_version   INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    state            TEXT NOT NULL
                     CHECK (state IN ('pending', 'active', 'revoked', 'irrevocable')),
    revocation_kind  TEXT NOT NULL,
    revocation_value TEXT NOT NULL,
    fingerprint      TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_error       TEXT
) STRICT;

CREATE INDEX leases_due ON leases (max(expires_at, next_attempt_at), id)
    WHERE state IN ('pending', 'active');
CREATE INDEX leases_pending ON leases (created_at) WHERE state = 'pending';
CREATE INDEX leases_by_principal ON leases (principal);
CREATE INDEX leases_by_role ON leases (role);

CREATE TABLE denylist (
    token_id   TEXT PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;

CREATE INDEX denylist_by_expiry ON denylist (expires_at);
";

/// Version 2: `claimed_until`, the time until which one server's reaper
/// owns a due lease ([`crate::Store::claim_due_leases`]), so that servers
/// sharing a store never revoke the same lease twice. 0 = not claimed.
const V2: &str = "
ALTER TABLE leases ADD COLUMN claimed_until INTEGER NOT NULL DEFAULT 0;
";

/// Every migration, in order; `MIGRATIONS[n]` takes the schema from version
/// `n` to `n + 1`. Append only: a released migration never changes.
const MIGRATIONS: &[&str] = &[V1, V2];

/// The schema version this binary writes and understands.
pub(crate) const KNOWN_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the database to [`KNOWN_VERSION`], or refuses if it is newer.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let shown = path.display();
    let fail = |what: &str, e: rusqlite::Error| {
        StoreError::Migration(format!("database {shown}: {what} failed: {e}"))
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| fail("locking the database for migration", e))?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
            id      INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
            version INTEGER NOT NULL
        ) STRICT;",
    )
    .map_err(|e| fail("creating the schema_version table", e))?;
    let found: i64 = tx
        .query_row("SELECT version FROM schema_version WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(|e| fail("reading the schema version", e))?
        .unwrap_or(0);
    let found = u32::try_from(found).map_err(|_| {
        StoreError::Migration(format!(
            "database {shown}: schema version {found} is not a valid version"
        ))
    })?;
    if found > KNOWN_VERSION {
        return Err(StoreError::Migration(format!(
            "database schema v{found} is newer than this idmint (knows v{KNOWN_VERSION}): upgrade idmint ({shown})"
        )));
    }
    if found == KNOWN_VERSION {
        return Ok(());
    }
    for (index, script) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let to = index + 1;
        tx.execute_batch(script)
            .map_err(|e| fail(&format!("migration to schema v{to}"), e))?;
        tracing::info!(database = %shown, version = to, "applied schema migration");
    }
    tx.execute(
        "INSERT INTO schema_version (id, version) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET version = excluded.version",
        [KNOWN_VERSION],
    )
    .map_err(|e| fail("recording the schema version", e))?;
    tx.commit()
        .map_err(|e| fail("committing the migration", e))?;
    Ok(())
}

/// The version recorded in the database (0 for an empty file). Used by tests
/// and by status output.
#[cfg(test)]
pub(crate) fn recorded_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row("SELECT version FROM schema_version WHERE id = 1", [], |r| {
        r.get(0)
    })
}
