//! The PostgreSQL backend: for production and for several active servers
//! sharing one database.
//!
//! * Every [`Store`] method is one statement or one transaction, so it is
//!   atomic and durable when it returns (`synchronous_commit` is the
//!   database's business; the deployment guide says to keep it `on`).
//! * A bounded pool of connections ([`pool`]) reconnects by itself after a
//!   database restart or failover; while the database is unreachable every
//!   call fails fast with [`StoreError::Backend`] (the server answers 503).
//! * Reapers on several servers share work through
//!   [`Store::claim_due_leases`] (`FOR UPDATE SKIP LOCKED` plus a claim
//!   deadline), so one lease is never revoked twice.
//! * Writes other servers must apply at once (token denials, bundle
//!   activations, blob changes) `pg_notify` in the same statement; each
//!   server's [`listener`] turns them into [`StoreEvent`]s.

mod config;
mod listener;
mod pool;
mod rows;
mod schema;
mod sql;
#[cfg(test)]
mod tests;
mod tls;

pub use config::{PgTlsMode, PostgresConfig};

use crate::error::StoreError;
use crate::events::StoreEvent;
use crate::store::{
    check_transition_batch, due_window, LeaseFilter, Store, StoredBundle, MAX_BLOB_LIST,
    MAX_DUE_LIMIT,
};
use idmint_core::policy::SourceFile;
use idmint_core::{Lease, LeaseId, LeaseState, UnixTime};
use pool::{Conn, Dialer, Pool};
use rows::{bundle_from_row, get, is_duplicate, lease_from_row, pg_error, LeaseParams};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_postgres::types::ToSql;

/// Longest time one store operation may take before it is abandoned (its
/// connection is discarded). Bounds how long a request hangs when the
/// database vanishes without closing the connection (a network partition).
const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// [`Store`] backed by a PostgreSQL database.
pub struct PostgresStore {
    pool: Pool,
    target: String,
    feed: broadcast::Sender<StoreEvent>,
    listener: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Runs `$body` (an expression using `$c: &mut Conn`) on a pooled
/// connection within [`OP_TIMEOUT`]. A timed-out connection is discarded:
/// its state is unknown.
macro_rules! with_conn {
    ($self:ident, $context:expr, |$c:ident| $body:expr) => {{
        let mut pooled = $self.pool.get().await?;
        let outcome = {
            let $c: &mut Conn = pooled.conn()?;
            tokio::time::timeout(OP_TIMEOUT, async { $body }).await
        };
        match outcome {
            Ok(result) => result,
            Err(_) => {
                pooled.discard();
                Err(StoreError::Backend(format!(
                    "{}: PostgreSQL did not answer within {:?}; the outcome is unknown, retry once the database is reachable",
                    $context, OP_TIMEOUT
                )))
            }
        }
    }};
}

impl PostgresStore {
    /// Connects (failing at once if the database is unreachable, so a
    /// misconfiguration shows at start), runs the migrations and starts the
    /// change-notification listener. Must be called inside a tokio runtime.
    pub async fn open(settings: &PostgresConfig) -> Result<Self, StoreError> {
        let dialer = Dialer::new(settings)?;
        let target = dialer.target().to_owned();
        let mut first = dialer.connect().await?;
        schema::migrate(&mut first, &target).await?;
        drop(first);
        let listener_dialer = Arc::new(Dialer::new(settings)?);
        let (feed, _) = broadcast::channel(listener::FEED_CAPACITY);
        let listener = tokio::spawn(listener::run(listener_dialer, feed.clone()));
        tracing::debug!(database = %target, "opened PostgreSQL store");
        Ok(Self {
            pool: Pool::new(dialer, settings.pool_size()),
            target,
            feed,
            listener,
        })
    }

    /// Only runs the migrations (`idmint store migrate`); returns the schema
    /// version before and after.
    pub async fn migrate_only(settings: &PostgresConfig) -> Result<(i64, i64), StoreError> {
        let dialer = Dialer::new(settings)?;
        let mut client = dialer.connect().await?;
        let before = schema::recorded_version(&client).await?;
        schema::migrate(&mut client, dialer.target()).await?;
        let after = schema::recorded_version(&client).await?;
        Ok((before, after))
    }

    /// The schema version this binary writes.
    pub fn schema_version() -> i64 {
        schema::KNOWN_VERSION
    }
}

impl PostgresStore {
    /// Stores `sources` as the next version and activates it, if the active
    /// version is `condition`'s (any when `condition` is `None`). The
    /// advisory lock serialises activations from every server, so the check
    /// and the insert cannot interleave with another activation.
    async fn activate(
        &self,
        condition: Option<Option<u64>>,
        sources: &[SourceFile],
        author: &str,
        comment: &str,
    ) -> Result<Option<u64>, StoreError> {
        let sources = serde_json::to_string(sources).map_err(|e| {
            StoreError::Backend(format!("cannot encode the policy bundle sources: {e}"))
        })?;
        let context = "activating a policy bundle";
        let now = UnixTime::now().0;
        with_conn!(self, context, |c| {
            let fail = |e: tokio_postgres::Error| pg_error(context, &e);
            let tx = c.client.transaction().await.map_err(fail)?;
            tx.execute(sql::LOCK_BUNDLES, &[]).await.map_err(fail)?;
            if let Some(expected) = condition {
                let active: Option<i64> = tx
                    .query_opt(sql::ACTIVE_BUNDLE_VERSION, &[])
                    .await
                    .map_err(fail)?
                    .map(|r| get(&r, 0))
                    .transpose()?;
                let active = active
                    .map(|v| {
                        u64::try_from(v).map_err(|_| {
                            StoreError::Corrupt(format!("active bundle version {v} is negative"))
                        })
                    })
                    .transpose()?;
                if active != expected {
                    return Ok(None);
                }
            }
            let version: i64 = get(
                &tx.query_one(sql::NEXT_BUNDLE_VERSION, &[])
                    .await
                    .map_err(fail)?,
                0,
            )?;
            tx.execute(
                sql::INSERT_BUNDLE,
                &[&version, &sources, &now, &author, &comment],
            )
            .await
            .map_err(fail)?;
            tx.execute(sql::SET_ACTIVE_BUNDLE, &[&version])
                .await
                .map_err(fail)?;
            tx.execute(sql::NOTIFY_BUNDLE, &[&version])
                .await
                .map_err(fail)?;
            tx.commit().await.map_err(fail)?;
            u64::try_from(version)
                .map(Some)
                .map_err(|_| StoreError::Corrupt(format!("bundle version {version} is negative")))
        })
    }
}

/// Due leases of `due_sql` + `stale_sql`, merged in due order and cut to
/// `limit` (the two halves of [`Store::due_leases`]).
async fn select_due(
    tx: &tokio_postgres::Transaction<'_>,
    due_sql: &tokio_postgres::Statement,
    stale_sql: &tokio_postgres::Statement,
    now: UnixTime,
    grace: i64,
    limit: usize,
) -> Result<Vec<Lease>, StoreError> {
    let context = "finding due leases";
    let cutoff = now.0.saturating_sub(grace);
    let lim = limit as i64;
    let mut due = Vec::new();
    for row in tx
        .query(due_sql, &[&now.0, &lim])
        .await
        .map_err(|e| pg_error(context, &e))?
    {
        due.push((get::<i64>(&row, 15)?, lease_from_row(&row)?));
    }
    for row in tx
        .query(stale_sql, &[&now.0, &cutoff, &grace, &lim])
        .await
        .map_err(|e| pg_error(context, &e))?
    {
        due.push((get::<i64>(&row, 15)?, lease_from_row(&row)?));
    }
    due.sort_by(|(a_due, a), (b_due, b)| a_due.cmp(b_due).then_with(|| a.id.cmp(&b.id)));
    due.truncate(limit);
    Ok(due.into_iter().map(|(_, lease)| lease).collect())
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    fn describe(&self) -> String {
        format!("postgres:{}", self.target)
    }

    async fn get_blob(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let context = format!("reading blob {name}");
        with_conn!(self, context, |c| {
            let stmt = c.statement(sql::GET_BLOB).await?;
            let row = c
                .client
                .query_opt(&stmt, &[&name])
                .await
                .map_err(|e| pg_error(&context, &e))?;
            row.map(|r| get::<Vec<u8>>(&r, 0)).transpose()
        })
    }

    async fn put_blob_if_absent(&self, name: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        let context = format!("storing blob {name}");
        let now = UnixTime::now().0;
        with_conn!(self, context, |c| {
            let insert = c.statement(sql::INSERT_BLOB_IF_ABSENT).await?;
            let read = c.statement(sql::GET_BLOB).await?;
            // Two statements: under READ COMMITTED the second one sees the
            // row a concurrent winner committed (ON CONFLICT waited for it).
            c.client
                .execute(&insert, &[&name, &value, &now])
                .await
                .map_err(|e| pg_error(&context, &e))?;
            let row = c
                .client
                .query_opt(&read, &[&name])
                .await
                .map_err(|e| pg_error(&context, &e))?
                .ok_or_else(|| {
                    StoreError::Backend(format!(
                        "{context}: blob vanished right after insert (deleted concurrently); retry"
                    ))
                })?;
            get::<Vec<u8>>(&row, 0)
        })
    }

    async fn put_blob(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let context = format!("storing blob {name}");
        let now = UnixTime::now().0;
        with_conn!(self, context, |c| {
            let stmt = c.statement(sql::UPSERT_BLOB).await?;
            c.client
                .execute(&stmt, &[&name, &value, &now])
                .await
                .map(|_| ())
                .map_err(|e| pg_error(&context, &e))
        })
    }

    async fn delete_blob(&self, name: &str) -> Result<bool, StoreError> {
        let context = format!("deleting blob {name}");
        with_conn!(self, context, |c| {
            let stmt = c.statement(sql::DELETE_BLOB).await?;
            c.client
                .execute(&stmt, &[&name])
                .await
                .map(|n| n > 0)
                .map_err(|e| pg_error(&context, &e))
        })
    }

    async fn list_blobs(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let context = "listing blobs";
        let limit = MAX_BLOB_LIST as i64;
        with_conn!(self, context, |c| {
            let stmt = c.statement(sql::LIST_BLOBS).await?;
            let rows = c
                .client
                .query(&stmt, &[&prefix, &limit])
                .await
                .map_err(|e| pg_error(context, &e))?;
            rows.iter().map(|r| Ok((get(r, 0)?, get(r, 1)?))).collect()
        })
    }

    async fn active_bundle(&self) -> Result<Option<StoredBundle>, StoreError> {
        let context = "reading the active policy bundle";
        with_conn!(self, context, |c| {
            let stmt = c.statement(sql::ACTIVE_BUNDLE).await?;
            let row = c
                .client
                .query_opt(&stmt, &[])
                .await
                .map_err(|e| pg_error(context, &e))?;
            row.map(|r| bundle_from_row(&r)).transpose()
        })
    }

    async fn activate_bundle(
        &self,
        sources: &[SourceFile],
        author: &str,
        comment: &str,
    ) -> Result<u64, StoreError> {
        self.activate(None, sources, author, comment)
            .await?
            .ok_or_else(|| StoreError::Backend("internal: unconditional activation refused".into()))
    }

    async fn activate_bundle_if(
        &self,
        expected_active: Option<u64>,
        sources: &[SourceFile],
        author: &str,
        comment: &str,
    ) -> Result<Option<u64>, StoreError> {
        self.activate(Some(expected_active), sources, author, comment)
            .await
    }

    async fn bundle_history(&self) -> Result<Vec<StoredBundle>, StoreError> {
        let context = "reading the policy bundle history";
        with_conn!(self, context, |c| {
            let stmt = c.statement(sql::BUNDLE_HISTORY).await?;
            let rows = c
                .client
                .query(&stmt, &[])
                .await
                .map_err(|e| pg_error(context, &e))?;
            rows.iter().map(bundle_from_row).collect()
        })
    }

    async fn insert_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let params = LeaseParams::new(lease);
        let id = &lease.id;
        with_conn!(self, format!("inserting lease {id}"), |c| {
            let stmt = c.statement(sql::INSERT_LEASE).await?;
            match c.client.execute(&stmt, &params.as_params()).await {
                Ok(_) => Ok(()),
                Err(e) if is_duplicate(&e) => {
                    Err(StoreError::Conflict(format!("lease {id} already exists")))
                }
                Err(e) => Err(pg_error(&format!("inserting lease {id}"), &e)),
            }
        })
    }

    async fn get_lease(&self, id: &LeaseId) -> Result<Option<Lease>, StoreError> {
        let context = format!("reading lease {id}");
        with_conn!(self, context, |c| {
            let stmt = c.statement(sql::GET_LEASE).await?;
            let row = c
                .client
                .query_opt(&stmt, &[&id.as_str()])
                .await
                .map_err(|e| pg_error(&context, &e))?;
            row.map(|r| lease_from_row(&r)).transpose()
        })
    }

    async fn transition_lease(
        &self,
        id: &LeaseId,
        from: LeaseState,
        to: LeaseState,
        fingerprint: Option<&str>,
        last_error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let context = format!("updating lease {id}");
        with_conn!(self, context, |c| {
            let stmt = c.statement(sql::TRANSITION_LEASE).await?;
            c.client
                .execute(
                    &stmt,
                    &[
                        &id.as_str(),
                        &from.as_str(),
                        &to.as_str(),
                        &fingerprint,
                        &last_error,
                    ],
                )
                .await
                .map(|n| n == 1)
                .map_err(|e| pg_error(&context, &e))
        })
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
        let ids: Vec<&str> = leases.iter().map(|(id, _)| id.as_str()).collect();
        let from: Vec<&str> = leases.iter().map(|(_, state)| state.as_str()).collect();
        let context = "updating a batch of leases";
        let rows = with_conn!(self, context, |c| {
            let stmt = c.statement(sql::TRANSITION_LEASES).await?;
            c.client
                .query(&stmt, &[&ids, &from, &to.as_str()])
                .await
                .map_err(|e| pg_error(context, &e))
        })?;
        let mut changed_ids = std::collections::HashSet::with_capacity(rows.len());
        for row in &rows {
            let id: String = get(row, 0)?;
            changed_ids.insert(id);
        }
        // The first occurrence of an id gets its change, like the one-by-one
        // default where a repeat finds the state already moved.
        Ok(leases
            .iter()
            .map(|(id, _)| changed_ids.remove(id.as_str()))
            .collect())
    }

    async fn extend_lease(
        &self,
        id: &LeaseId,
        new_expires_at: UnixTime,
    ) -> Result<bool, StoreError> {
        let context = format!("extending lease {id}");
        with_conn!(self, context, |c| {
            let stmt = c.statement(sql::EXTEND_LEASE).await?;
            c.client
                .execute(&stmt, &[&id.as_str(), &new_expires_at.0])
                .await
                .map(|n| n > 0)
                .map_err(|e| pg_error(&context, &e))
        })
    }

    async fn record_revoke_failure(
        &self,
        id: &LeaseId,
        next_attempt_at: UnixTime,
        error: &str,
    ) -> Result<(), StoreError> {
        let context = format!("recording a revocation failure of lease {id}");
        with_conn!(self, context, |c| {
            let stmt = c.statement(sql::RECORD_REVOKE_FAILURE).await?;
            let changed = c
                .client
                .execute(&stmt, &[&id.as_str(), &next_attempt_at.0, &error])
                .await
                .map_err(|e| pg_error(&context, &e))?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("lease {id}")));
            }
            Ok(())
        })
    }

    async fn list_leases(&self, filter: &LeaseFilter) -> Result<Vec<Lease>, StoreError> {
        let mut conditions: Vec<String> = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        if let Some(principal) = &filter.principal {
            texts.push(principal.clone());
            conditions.push(format!("principal = ${}", texts.len()));
        }
        if let Some(prefix) = filter.role_prefix.as_deref().filter(|p| !p.is_empty()) {
            texts.push(prefix.to_owned());
            conditions.push(format!("role >= ${}", texts.len()));
            if let Some(bound) = crate::sqlite::rows::prefix_upper_bound(prefix) {
                texts.push(bound);
                conditions.push(format!("role < ${}", texts.len()));
            }
        }
        if filter.live_only {
            conditions.push("state IN ('pending', 'active')".to_owned());
        }
        let mut query = String::from(sql::LIST_LEASES_PREFIX);
        if !conditions.is_empty() {
            query.push_str(" WHERE ");
            query.push_str(&conditions.join(" AND "));
        }
        let limit = filter.effective_limit() as i64;
        query.push_str(&format!(" ORDER BY seq DESC LIMIT ${}", texts.len() + 1));
        let context = "listing leases";
        with_conn!(self, context, |c| {
            let mut params: Vec<&(dyn ToSql + Sync)> =
                texts.iter().map(|t| t as &(dyn ToSql + Sync)).collect();
            params.push(&limit);
            let rows = c
                .client
                .query(query.as_str(), &params)
                .await
                .map_err(|e| pg_error(context, &e))?;
            rows.iter().map(lease_from_row).collect()
        })
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
        let context = "finding due leases";
        with_conn!(self, context, |c| {
            let due_sql = c.statement(sql::DUE_LEASES).await?;
            let stale_sql = c.statement(sql::STALE_PENDING_LEASES).await?;
            // One snapshot for both halves: no lease reported twice or missed.
            let tx = c
                .client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(|e| pg_error(context, &e))?;
            let due = select_due(&tx, &due_sql, &stale_sql, now, grace, limit).await?;
            tx.commit().await.map_err(|e| pg_error(context, &e))?;
            Ok(due)
        })
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
        let context = "claiming due leases";
        with_conn!(self, context, |c| {
            let due_sql = c.statement(sql::CLAIMABLE_DUE_LEASES).await?;
            let stale_sql = c.statement(sql::CLAIMABLE_STALE_PENDING_LEASES).await?;
            let claim = c.statement(sql::CLAIM_LEASES).await?;
            // READ COMMITTED + FOR UPDATE SKIP LOCKED: rows another server
            // is claiming are skipped; rows it claimed and committed are
            // re-checked against `claimed_until <= now` and drop out.
            let tx = c
                .client
                .transaction()
                .await
                .map_err(|e| pg_error(context, &e))?;
            let due = select_due(&tx, &due_sql, &stale_sql, now, grace, limit).await?;
            if !due.is_empty() {
                let ids: Vec<&str> = due.iter().map(|l| l.id.as_str()).collect();
                tx.execute(&claim, &[&ids, &claim_until.0])
                    .await
                    .map_err(|e| pg_error(context, &e))?;
            }
            tx.commit().await.map_err(|e| pg_error(context, &e))?;
            Ok(due)
        })
    }

    async fn export_leases(
        &self,
        after: Option<&LeaseId>,
        limit: usize,
    ) -> Result<Vec<Lease>, StoreError> {
        let after = after.map(LeaseId::as_str).unwrap_or("");
        let limit = limit.min(MAX_DUE_LIMIT) as i64;
        let context = "exporting leases";
        with_conn!(self, context, |c| {
            let stmt = c.statement(sql::EXPORT_LEASES).await?;
            let rows = c
                .client
                .query(&stmt, &[&after, &limit])
                .await
                .map_err(|e| pg_error(context, &e))?;
            rows.iter().map(lease_from_row).collect()
        })
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
            rows.push((b.version as i64, sources, b));
        }
        let context = "importing policy bundles";
        with_conn!(self, context, |c| {
            let fail = |e: tokio_postgres::Error| pg_error(context, &e);
            let tx = c.client.transaction().await.map_err(fail)?;
            tx.execute(sql::LOCK_BUNDLES, &[]).await.map_err(fail)?;
            for (version, sources, b) in &rows {
                match tx
                    .execute(
                        sql::INSERT_BUNDLE,
                        &[version, sources, &b.created_at, &b.author, &b.comment],
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(e) if is_duplicate(&e) => {
                        return Err(StoreError::Conflict(format!(
                            "policy bundle v{version} already exists in the target store"
                        )))
                    }
                    Err(e) => return Err(fail(e)),
                }
            }
            if let Some(version) = active {
                let version = version as i64;
                tx.execute(sql::SET_ACTIVE_BUNDLE, &[&version])
                    .await
                    .map_err(fail)?;
                tx.execute(sql::NOTIFY_BUNDLE, &[&version])
                    .await
                    .map_err(fail)?;
            }
            tx.commit().await.map_err(fail)?;
            Ok(())
        })
    }

    async fn count_leases(&self, live_only: bool) -> Result<u64, StoreError> {
        let context = "counting leases";
        let query = if live_only {
            sql::COUNT_LIVE_LEASES
        } else {
            sql::COUNT_LEASES
        };
        with_conn!(self, context, |c| {
            let stmt = c.statement(query).await?;
            let row = c
                .client
                .query_one(&stmt, &[])
                .await
                .map_err(|e| pg_error(context, &e))?;
            Ok(count(get(&row, 0)?))
        })
    }

    async fn deny_token(&self, token_id: &str, expires_at: UnixTime) -> Result<(), StoreError> {
        let context = format!("denying token {token_id}");
        with_conn!(self, context, |c| {
            let stmt = c.statement(sql::DENY_TOKEN).await?;
            c.client
                .execute(&stmt, &[&token_id, &expires_at.0])
                .await
                .map(|_| ())
                .map_err(|e| pg_error(&context, &e))
        })
    }

    async fn denied_tokens(&self, now: UnixTime) -> Result<Vec<(String, UnixTime)>, StoreError> {
        let context = "reading the token denylist";
        with_conn!(self, context, |c| {
            let stmt = c.statement(sql::DENIED_TOKENS).await?;
            let rows = c
                .client
                .query(&stmt, &[&now.0])
                .await
                .map_err(|e| pg_error(context, &e))?;
            rows.iter()
                .map(|r| Ok((get(r, 0)?, UnixTime(get(r, 1)?))))
                .collect()
        })
    }

    async fn purge_expired_denials(&self, now: UnixTime) -> Result<u64, StoreError> {
        let context = "purging expired token denials";
        with_conn!(self, context, |c| {
            let stmt = c.statement(sql::PURGE_DENIALS).await?;
            c.client
                .execute(&stmt, &[&now.0])
                .await
                .map_err(|e| pg_error(context, &e))
        })
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<StoreEvent>> {
        Some(self.feed.subscribe())
    }
}
