//! The embedded SQLite backend: one file, WAL mode, a dedicated writer
//! thread with group commit ([`writer`]), a pool of readers ([`readers`])
//! and a background checkpoint thread ([`checkpoint`]), so no query ever
//! runs on a tokio worker thread.
//!
//! Durability choice: `synchronous = FULL`. In WAL mode `NORMAL` already
//! survives a *process* crash, but a power loss or kernel crash can drop the
//! last commits. A lease row is the write-ahead record that lets the reaper
//! revoke a credential; losing it after the credential was minted would
//! leave an untracked credential, which is exactly what the write-ahead
//! exists to prevent. `FULL` costs one fsync per commit, and group commit
//! shares that fsync across every write queued at the time, so the price is
//! latency under light load, not throughput under heavy load.

mod checkpoint;
mod readers;
pub(crate) mod rows;
mod schema;
mod sql;
#[cfg(test)]
mod tests;
mod writer;

use crate::error::StoreError;
use crate::store::{
    check_transition_batch, due_window, LeaseFilter, Store, StoredBundle, MAX_DUE_LIMIT,
};
use checkpoint::Checkpointer;
use idmint_core::policy::SourceFile;
use idmint_core::{Lease, LeaseId, LeaseState, UnixTime};
use readers::Readers;
use rows::{
    bundle_from_row, is_duplicate, lease_from_row, lease_params, prefix_upper_bound, sql_error,
};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::time::Duration;
use writer::Writer;

/// The schema version this binary writes (the same numbering for every
/// backend).
pub(crate) const SCHEMA_VERSION: u32 = schema::KNOWN_VERSION;

/// How long a statement waits for a lock held by another connection (another
/// process sharing the file, or a checkpoint) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Read connections. Reads are few and short (admin listings, the reaper);
/// this bounds the blocking threads they use.
const READERS: usize = 4;
/// Prepared statements kept per connection; above the number of distinct
/// statements the store runs, so none is ever re-parsed.
const STATEMENT_CACHE: usize = 64;
/// Page cache of the write connection, in KiB (negative `cache_size` in
/// SQLite's units): keeps the hot part of the lease indexes in memory so
/// group commits do not re-read them.
const WRITER_CACHE_KIB: i64 = 32 * 1024;
/// WAL size (pages) at which the writer checkpoints inline. Only a safety
/// net for when the checkpoint thread falls behind; see [`checkpoint`].
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 20_000;
/// After a checkpoint resets the WAL, truncate the file back to this size so
/// a burst does not leave a huge WAL on disk forever.
const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// [`Store`] backed by one SQLite file.
///
/// `open` is blocking (run it at start, or in `spawn_blocking`). Dropping the
/// store lets every write already queued commit and joins its threads, so it
/// blocks the dropping thread for at most one group commit; once dropped,
/// the file can be reopened at once.
pub struct SqliteStore {
    path: PathBuf,
    // Field order matters for drop: the writer finishes its queued jobs
    // first, then the checkpointer stops.
    writer: Writer,
    /// Held for its `Drop`, which stops the checkpoint thread.
    _checkpointer: Checkpointer,
    readers: Readers,
}

impl SqliteStore {
    /// Opens or creates the database at `path`: creates the parent
    /// directory, creates the file with mode 0600 (SQLite gives the `-wal`
    /// and `-shm` files the same mode), enables WAL with
    /// `synchronous = FULL` (see the module docs for why), a busy timeout
    /// and foreign keys, and runs the migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        prepare_file(path)?;
        let mut conn = open_connection(path)?;
        configure_writer(&conn, path)?;
        schema::migrate(&mut conn, path)?;
        let readers = Readers::open(path, READERS)?;
        let checkpointer = Checkpointer::start(open_connection(path)?)?;
        let writer = Writer::start(conn)?;
        tracing::debug!(database = %path.display(), "opened SQLite store");
        Ok(Self {
            path: path.to_path_buf(),
            writer,
            _checkpointer: checkpointer,
            readers,
        })
    }

    async fn read<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.readers.run(op).await
    }

    /// Runs `op` (at most one write statement) in the next group commit.
    async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.writer.submit(op).await
    }

    /// Runs `op` (several writes, all or nothing) in the next group commit.
    async fn write_atomic<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.writer.submit_atomic(op).await
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

/// Creates the parent directory and an empty 0600 file if missing, so the
/// database is never world-readable even for an instant.
fn prepare_file(path: &Path) -> Result<(), StoreError> {
    let shown = path.display();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            StoreError::Backend(format!(
                "cannot create directory {} for database {shown}: {e}",
                parent.display()
            ))
        })?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options
        .open(path)
        .map_err(|e| StoreError::Backend(format!("cannot open database {shown}: {e}")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file
            .metadata()
            .map_err(|e| StoreError::Backend(format!("cannot stat database {shown}: {e}")))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                database = %shown,
                mode = format!("{:04o}", mode & 0o777),
                "database file is accessible by group or others; run `chmod 600` on it"
            );
        }
    }
    drop(file);
    Ok(())
}

/// Opens a connection without URI interpretation (a path is a path) and with
/// the settings every connection needs.
fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let shown = path.display();
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sql_error(&format!("opening database {shown}"), e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| sql_error(&format!("configuring database {shown}"), e))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

fn configure_writer(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let shown = path.display();
    let fail = |e: rusqlite::Error| {
        if matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::NotADatabase)
        ) {
            StoreError::Corrupt(format!(
                "{shown} is not a SQLite database; point [storage] at an idmint database or a new path"
            ))
        } else {
            sql_error(&format!("configuring database {shown}"), e)
        }
    };
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(fail)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!(
            "database {shown}: cannot enable WAL mode (journal mode is {mode}); the file must be on a local filesystem"
        )));
    }
    // temp_store = MEMORY keeps savepoint sub-journals off the disk.
    conn.execute_batch(&format!(
        "PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -{WRITER_CACHE_KIB};
         PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT_PAGES};
         PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES};"
    ))
    .map_err(fail)?;
    Ok(())
}

/// A connection for the reader pool: same settings, and `query_only` so a
/// bug can never write outside the writer thread's transactions.
fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = open_connection(path)?;
    conn.execute_batch("PRAGMA query_only = ON;")
        .map_err(|e| sql_error(&format!("configuring database {}", path.display()), e))?;
    Ok(conn)
}

/// Collects rows mapped by a `rows::*_from_row` function.
fn collect<T>(
    rows: impl Iterator<Item = rusqlite::Result<Result<T, StoreError>>>,
    context: &str,
) -> Result<Vec<T>, StoreError> {
    rows.map(|r| r.map_err(|e| sql_error(context, e)).and_then(|x| x))
        .collect()
}

/// The due leases of `due_sql` and `stale_sql` (the two halves of
/// [`Store::due_leases`]), merged in due order and truncated to `limit`.
/// The caller runs it in one transaction so both halves see one snapshot.
fn select_due(
    conn: &Connection,
    due_sql: &str,
    stale_sql: &str,
    now: UnixTime,
    grace: i64,
    limit: usize,
) -> Result<Vec<Lease>, StoreError> {
    let context = "finding due leases";
    let fail = |e| sql_error(context, e);
    let cutoff = now.0.saturating_sub(grace);
    let due_row = |r: &rusqlite::Row<'_>| {
        let due_at: i64 = r.get(15)?;
        Ok(lease_from_row(r)?.map(|lease| (due_at, lease)))
    };
    let mut due = {
        let mut stmt = conn.prepare_cached(due_sql).map_err(fail)?;
        let rows = stmt
            .query_map(params![now.0, limit_param(limit)], due_row)
            .map_err(fail)?;
        collect(rows, context)?
    };
    {
        let mut stmt = conn.prepare_cached(stale_sql).map_err(fail)?;
        let rows = stmt
            .query_map(params![now.0, cutoff, grace, limit_param(limit)], due_row)
            .map_err(fail)?;
        due.extend(collect(rows, context)?);
    }
    due.sort_by(|(a_due, a), (b_due, b)| a_due.cmp(b_due).then_with(|| a.id.cmp(&b.id)));
    due.truncate(limit);
    Ok(due.into_iter().map(|(_, lease)| lease).collect())
}

fn limit_param(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    async fn get_blob(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(sql::GET_BLOB)
                .and_then(|mut s| s.query_row([&name], |r| r.get(0)).optional())
                .map_err(|e| sql_error(&format!("reading blob {name}"), e))
        })
        .await
    }

    async fn put_blob_if_absent(&self, name: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        let name = name.to_owned();
        let value = value.to_vec();
        self.write_atomic(move |conn| {
            let context = || format!("storing blob {name}");
            conn.prepare_cached(sql::INSERT_BLOB_IF_ABSENT)
                .and_then(|mut s| s.execute(params![name, value, UnixTime::now().0]))
                .map_err(|e| sql_error(&context(), e))?;
            conn.prepare_cached(sql::GET_BLOB)
                .and_then(|mut s| s.query_row([&name], |r| r.get(0)))
                .map_err(|e| sql_error(&context(), e))
        })
        .await
    }

    async fn put_blob(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let name = name.to_owned();
        let value = value.to_vec();
        self.write_atomic(move |conn| {
            conn.prepare_cached(sql::UPSERT_BLOB)
                .and_then(|mut s| s.execute(params![name, value, UnixTime::now().0]))
                .map(|_| ())
                .map_err(|e| sql_error(&format!("storing blob {name}"), e))
        })
        .await
    }

    async fn delete_blob(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.write_atomic(move |conn| {
            conn.prepare_cached(sql::DELETE_BLOB)
                .and_then(|mut s| s.execute([&name]))
                .map(|n| n > 0)
                .map_err(|e| sql_error(&format!("deleting blob {name}"), e))
        })
        .await
    }

    async fn list_blobs(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let prefix = prefix.to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(sql::LIST_BLOBS)
                .map_err(|e| sql_error("listing blobs", e))?;
            let rows = stmt
                .query_map(params![prefix, crate::store::MAX_BLOB_LIST as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(|e| sql_error("listing blobs", e))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(|e| sql_error("listing blobs", e))
        })
        .await
    }

    async fn active_bundle(&self) -> Result<Option<StoredBundle>, StoreError> {
        self.read(|conn| {
            let context = "reading the active policy bundle";
            conn.prepare_cached(sql::ACTIVE_BUNDLE)
                .and_then(|mut s| s.query_row([], bundle_from_row).optional())
                .map_err(|e| sql_error(context, e))?
                .transpose()
        })
        .await
    }

    async fn activate_bundle(
        &self,
        sources: &[SourceFile],
        author: &str,
        comment: &str,
    ) -> Result<u64, StoreError> {
        let row = BundleRow::new(sources, author, comment)?;
        self.write_atomic(move |conn| row.insert_and_activate(conn))
            .await
    }

    async fn activate_bundle_if(
        &self,
        expected_active: Option<u64>,
        sources: &[SourceFile],
        author: &str,
        comment: &str,
    ) -> Result<Option<u64>, StoreError> {
        let row = BundleRow::new(sources, author, comment)?;
        self.write_atomic(move |conn| {
            // The writer runs every job inside `BEGIN IMMEDIATE`, so no other
            // connection (or process sharing the file) can activate between
            // this read and the insert below.
            let active: Option<i64> = conn
                .prepare_cached(sql::ACTIVE_BUNDLE_VERSION)
                .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
                .map_err(|e| sql_error("reading the active bundle version", e))?;
            let active = active
                .map(|v| {
                    u64::try_from(v).map_err(|_| {
                        StoreError::Corrupt(format!("active bundle version {v} is negative"))
                    })
                })
                .transpose()?;
            if active != expected_active {
                return Ok(None);
            }
            row.insert_and_activate(conn).map(Some)
        })
        .await
    }

    async fn bundle_history(&self) -> Result<Vec<StoredBundle>, StoreError> {
        self.read(|conn| {
            let context = "reading the policy bundle history";
            let mut stmt = conn
                .prepare_cached(sql::BUNDLE_HISTORY)
                .map_err(|e| sql_error(context, e))?;
            let rows = stmt
                .query_map([], bundle_from_row)
                .map_err(|e| sql_error(context, e))?;
            collect(rows, context)
        })
        .await
    }

    async fn insert_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let id = lease.id.clone();
        let values = lease_params(lease);
        self.write(move |conn| {
            match conn
                .prepare_cached(sql::INSERT_LEASE)
                .and_then(|mut s| s.execute(rusqlite::params_from_iter(values)))
            {
                Ok(_) => Ok(()),
                Err(e) if is_duplicate(&e) => {
                    Err(StoreError::Conflict(format!("lease {id} already exists")))
                }
                Err(e) => Err(sql_error(&format!("inserting lease {id}"), e)),
            }
        })
        .await
    }

    async fn get_lease(&self, id: &LeaseId) -> Result<Option<Lease>, StoreError> {
        let id = id.clone();
        self.read(move |conn| {
            conn.prepare_cached(sql::GET_LEASE)
                .and_then(|mut s| s.query_row([id.as_str()], lease_from_row).optional())
                .map_err(|e| sql_error(&format!("reading lease {id}"), e))?
                .transpose()
        })
        .await
    }

    async fn transition_lease(
        &self,
        id: &LeaseId,
        from: LeaseState,
        to: LeaseState,
        fingerprint: Option<&str>,
        last_error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let id = id.clone();
        let fingerprint = fingerprint.map(str::to_owned);
        let last_error = last_error.map(str::to_owned);
        self.write(move |conn| {
            conn.prepare_cached(sql::TRANSITION_LEASE)
                .and_then(|mut s| {
                    s.execute(params![
                        id.as_str(),
                        from.as_str(),
                        to.as_str(),
                        fingerprint,
                        last_error
                    ])
                })
                .map(|changed| changed == 1)
                .map_err(|e| sql_error(&format!("updating lease {id}"), e))
        })
        .await
    }

    async fn transition_leases(
        &self,
        leases: &[(LeaseId, LeaseState)],
        to: LeaseState,
    ) -> Result<Vec<bool>, StoreError> {
        check_transition_batch(leases.len())?;
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let leases = leases.to_vec();
        // One job in its own savepoint: all of the batch or none of it, in
        // the group commit's one transaction (one fsync for the batch).
        self.write_atomic(move |conn| {
            let mut stmt = conn
                .prepare_cached(sql::TRANSITION_LEASE)
                .map_err(|e| sql_error("updating a batch of leases", e))?;
            let mut changed = Vec::with_capacity(leases.len());
            for (id, from) in &leases {
                let n = stmt
                    .execute(params![
                        id.as_str(),
                        from.as_str(),
                        to.as_str(),
                        None::<&str>,
                        None::<&str>
                    ])
                    .map_err(|e| sql_error(&format!("updating lease {id}"), e))?;
                changed.push(n == 1);
            }
            Ok(changed)
        })
        .await
    }

    async fn extend_lease(
        &self,
        id: &LeaseId,
        new_expires_at: UnixTime,
    ) -> Result<bool, StoreError> {
        let id = id.clone();
        self.write(move |conn| {
            conn.prepare_cached(sql::EXTEND_LEASE)
                .and_then(|mut s| s.execute(params![id.as_str(), new_expires_at.0]))
                .map(|n| n > 0)
                .map_err(|e| sql_error(&format!("extending lease {id}"), e))
        })
        .await
    }

    async fn record_revoke_failure(
        &self,
        id: &LeaseId,
        next_attempt_at: UnixTime,
        error: &str,
    ) -> Result<(), StoreError> {
        let id = id.clone();
        let error = error.to_owned();
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(sql::RECORD_REVOKE_FAILURE)
                .and_then(|mut s| s.execute(params![id.as_str(), next_attempt_at.0, error]))
                .map_err(|e| {
                    sql_error(&format!("recording a revocation failure of lease {id}"), e)
                })?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("lease {id}")));
            }
            Ok(())
        })
        .await
    }

    async fn list_leases(&self, filter: &LeaseFilter) -> Result<Vec<Lease>, StoreError> {
        let mut conditions: Vec<&str> = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        if let Some(principal) = &filter.principal {
            conditions.push("principal = ?");
            values.push(Value::Text(principal.clone()));
        }
        if let Some(prefix) = filter.role_prefix.as_deref().filter(|p| !p.is_empty()) {
            conditions.push("role >= ?");
            values.push(Value::Text(prefix.to_owned()));
            if let Some(bound) = prefix_upper_bound(prefix) {
                conditions.push("role < ?");
                values.push(Value::Text(bound));
            }
        }
        if filter.live_only {
            conditions.push("state IN ('pending', 'active')");
        }
        let mut query = String::from(sql::LIST_LEASES_PREFIX);
        if !conditions.is_empty() {
            query.push_str(" WHERE ");
            query.push_str(&conditions.join(" AND "));
        }
        // Newest first = most recently inserted: rowid order, which every
        // index carries, so a principal listing needs no sort.
        query.push_str(" ORDER BY rowid DESC LIMIT ?");
        values.push(Value::Integer(limit_param(filter.effective_limit())));
        self.read(move |conn| {
            let context = "listing leases";
            let mut stmt = conn
                .prepare_cached(&query)
                .map_err(|e| sql_error(context, e))?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(values), lease_from_row)
                .map_err(|e| sql_error(context, e))?;
            collect(rows, context)
        })
        .await
    }

    async fn due_leases(
        &self,
        now: UnixTime,
        pending_grace_secs: i64,
        limit: usize,
    ) -> Result<Vec<Lease>, StoreError> {
        let Some((limit, grace)) = due_window(limit, pending_grace_secs) else {
            return Ok(Vec::new());
        };
        self.read(move |conn| {
            // One read transaction: both queries see the same snapshot, so
            // no lease is reported twice or missed between them.
            let tx = conn
                .unchecked_transaction()
                .map_err(|e| sql_error("finding due leases", e))?;
            let due = select_due(
                &tx,
                sql::DUE_LEASES,
                sql::STALE_PENDING_LEASES,
                now,
                grace,
                limit,
            )?;
            tx.finish()
                .map_err(|e| sql_error("finding due leases", e))?;
            Ok(due)
        })
        .await
    }

    async fn claim_due_leases(
        &self,
        now: UnixTime,
        pending_grace_secs: i64,
        limit: usize,
        claim_until: UnixTime,
    ) -> Result<Vec<Lease>, StoreError> {
        let Some((limit, grace)) = due_window(limit, pending_grace_secs) else {
            return Ok(Vec::new());
        };
        // Selecting and claiming in one write transaction: the writer thread
        // serialises it against every other claim on this file.
        self.write_atomic(move |conn| {
            let due = select_due(
                conn,
                sql::CLAIMABLE_DUE_LEASES,
                sql::CLAIMABLE_STALE_PENDING_LEASES,
                now,
                grace,
                limit,
            )?;
            let mut stmt = conn
                .prepare_cached(sql::CLAIM_LEASE)
                .map_err(|e| sql_error("claiming due leases", e))?;
            for lease in &due {
                stmt.execute(params![lease.id.as_str(), claim_until.0])
                    .map_err(|e| sql_error(&format!("claiming lease {}", lease.id), e))?;
            }
            Ok(due)
        })
        .await
    }

    async fn export_leases(
        &self,
        after: Option<&LeaseId>,
        limit: usize,
    ) -> Result<Vec<Lease>, StoreError> {
        let after = after.map(|id| id.as_str().to_owned()).unwrap_or_default();
        let limit = limit_param(limit.min(MAX_DUE_LIMIT));
        self.read(move |conn| {
            let context = "exporting leases";
            let mut stmt = conn
                .prepare_cached(sql::EXPORT_LEASES)
                .map_err(|e| sql_error(context, e))?;
            let rows = stmt
                .query_map(params![after, limit], lease_from_row)
                .map_err(|e| sql_error(context, e))?;
            collect(rows, context)
        })
        .await
    }

    async fn import_bundles(
        &self,
        bundles: &[StoredBundle],
        active: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut rows = Vec::with_capacity(bundles.len());
        for b in bundles {
            let sources = serde_json::to_string(&b.sources).map_err(|e| {
                StoreError::Backend(format!("cannot encode policy bundle v{}: {e}", b.version))
            })?;
            rows.push((
                b.version as i64,
                sources,
                b.created_at,
                b.author.clone(),
                b.comment.clone(),
            ));
        }
        self.write_atomic(move |conn| {
            let mut insert = conn
                .prepare_cached(sql::INSERT_BUNDLE)
                .map_err(|e| sql_error("importing policy bundles", e))?;
            for (version, sources, created_at, author, comment) in &rows {
                match insert.execute(params![version, sources, created_at, author, comment]) {
                    Ok(_) => {}
                    Err(e) if is_duplicate(&e) => {
                        return Err(StoreError::Conflict(format!(
                            "policy bundle v{version} already exists in the target store"
                        )))
                    }
                    Err(e) => {
                        return Err(sql_error(&format!("importing policy bundle v{version}"), e))
                    }
                }
            }
            if let Some(version) = active {
                conn.prepare_cached(sql::SET_ACTIVE_BUNDLE)
                    .and_then(|mut s| s.execute([version as i64]))
                    .map_err(|e| sql_error("setting the active policy bundle", e))?;
            }
            Ok(())
        })
        .await
    }

    async fn count_leases(&self, live_only: bool) -> Result<u64, StoreError> {
        self.read(move |conn| {
            let query = if live_only {
                sql::COUNT_LIVE_LEASES
            } else {
                sql::COUNT_LEASES
            };
            let count: i64 = conn
                .prepare_cached(query)
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .map_err(|e| sql_error("counting leases", e))?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
        .await
    }

    async fn deny_token(&self, token_id: &str, expires_at: UnixTime) -> Result<(), StoreError> {
        let token_id = token_id.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(sql::DENY_TOKEN)
                .and_then(|mut s| s.execute(params![token_id, expires_at.0]))
                .map(|_| ())
                .map_err(|e| sql_error(&format!("denying token {token_id}"), e))
        })
        .await
    }

    async fn denied_tokens(&self, now: UnixTime) -> Result<Vec<(String, UnixTime)>, StoreError> {
        self.read(move |conn| {
            let context = "reading the token denylist";
            let mut stmt = conn
                .prepare_cached(sql::DENIED_TOKENS)
                .map_err(|e| sql_error(context, e))?;
            let rows = stmt
                .query_map([now.0], |r| Ok((r.get(0)?, UnixTime(r.get(1)?))))
                .map_err(|e| sql_error(context, e))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(|e| sql_error(context, e))
        })
        .await
    }

    async fn purge_expired_denials(&self, now: UnixTime) -> Result<u64, StoreError> {
        self.write(move |conn| {
            conn.prepare_cached(sql::PURGE_DENIALS)
                .and_then(|mut s| s.execute([now.0]))
                .map(|n| n as u64)
                .map_err(|e| sql_error("purging expired token denials", e))
        })
        .await
    }
}

/// A bundle version about to be stored, with its sources already encoded.
struct BundleRow {
    sources: String,
    author: String,
    comment: String,
}

impl BundleRow {
    fn new(sources: &[SourceFile], author: &str, comment: &str) -> Result<Self, StoreError> {
        let sources = serde_json::to_string(sources).map_err(|e| {
            StoreError::Backend(format!("cannot encode the policy bundle sources: {e}"))
        })?;
        Ok(Self {
            sources,
            author: author.to_owned(),
            comment: comment.to_owned(),
        })
    }

    /// Stores the row as the next version and points `active_bundle` at it.
    /// Must run inside one atomic write job.
    fn insert_and_activate(&self, conn: &Connection) -> Result<u64, StoreError> {
        let context = "activating a policy bundle";
        let version: i64 = conn
            .prepare_cached(sql::NEXT_BUNDLE_VERSION)
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(|e| sql_error(context, e))?;
        conn.prepare_cached(sql::INSERT_BUNDLE)
            .and_then(|mut s| {
                s.execute(params![
                    version,
                    self.sources,
                    UnixTime::now().0,
                    self.author,
                    self.comment
                ])
            })
            .map_err(|e| sql_error(context, e))?;
        conn.prepare_cached(sql::SET_ACTIVE_BUNDLE)
            .and_then(|mut s| s.execute([version]))
            .map_err(|e| sql_error(context, e))?;
        u64::try_from(version)
            .map_err(|_| StoreError::Corrupt(format!("bundle version {version} is negative")))
    }
}
