//! The [`Store`] trait: everything idmint keeps between restarts.
//!
//! One trait for every backend (SQLite, PostgreSQL) so that the
//! server never sees a database type, and so that one behaviour suite
//! ([`crate::conformance`]) pins down the semantics for all of them.

use crate::error::StoreError;
use crate::events::StoreEvent;
use idmint_core::policy::SourceFile;
use idmint_core::{Lease, LeaseId, LeaseState, UnixTime};

/// One stored policy bundle version, with its sources kept verbatim.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBundle {
    /// 1 for the first bundle, then +1 per activation; never reused.
    pub version: u64,
    pub sources: Vec<SourceFile>,
    /// Seconds since the Unix epoch when this version was stored.
    pub created_at: i64,
    pub author: String,
    pub comment: String,
}

/// Which leases [`Store::list_leases`] returns.
#[derive(Debug, Clone, Default)]
pub struct LeaseFilter {
    /// Only leases minted for exactly this principal key.
    pub principal: Option<String>,
    /// Only leases whose role name starts with this prefix.
    pub role_prefix: Option<String>,
    /// Only pending or active leases.
    pub live_only: bool,
    /// Maximum number of rows: 0 means [`LeaseFilter::DEFAULT_LIMIT`];
    /// larger values are capped at [`LeaseFilter::MAX_LIMIT`].
    pub limit: usize,
}

impl LeaseFilter {
    pub const DEFAULT_LIMIT: usize = 1000;
    pub const MAX_LIMIT: usize = 10_000;

    /// The row limit after applying the default and the cap.
    pub fn effective_limit(&self) -> usize {
        match self.limit {
            0 => Self::DEFAULT_LIMIT,
            n => n.min(Self::MAX_LIMIT),
        }
    }
}

/// Upper bound on [`Store::due_leases`]'s `limit`, so one reaper pass stays
/// bounded in memory whatever the caller asks for.
pub const MAX_DUE_LIMIT: usize = 10_000;

/// The bounds every backend applies to a due-lease query: `limit` capped at
/// [`MAX_DUE_LIMIT`] and a negative pending grace treated as none. `None`
/// when nothing may be returned (`limit` 0), so no query is run.
pub(crate) fn due_window(limit: usize, pending_grace_secs: i64) -> Option<(usize, i64)> {
    let limit = limit.min(MAX_DUE_LIMIT);
    (limit > 0).then_some((limit, pending_grace_secs.max(0)))
}

/// Refuses a [`Store::transition_leases`] batch above [`MAX_DUE_LIMIT`]
/// before anything is written.
pub(crate) fn check_transition_batch(len: usize) -> Result<(), StoreError> {
    if len > MAX_DUE_LIMIT {
        return Err(StoreError::Conflict(format!(
            "{len} leases in one state change; at most {MAX_DUE_LIMIT} per call, split the batch"
        )));
    }
    Ok(())
}

/// Upper bound on [`Store::list_blobs`]; blobs are keys and registrations,
/// never per-request data, so this is far above any real deployment.
pub const MAX_BLOB_LIST: usize = 10_000;

/// Persistent state of an idmint server.
///
/// Every method is atomic on its own. A successful write is durable when the
/// future resolves, which is what makes the lease write-ahead meaningful:
/// the credential is minted only after `insert_lease` returned `Ok`.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Human name of the backend for logs/status (`"sqlite:/path"`).
    fn describe(&self) -> String;

    // --- sealed blobs (signing keys, fingerprint key, …) ---

    /// The blob stored under `name`. Values are opaque bytes, already sealed
    /// by the caller (see [`crate::Envelope`]).
    async fn get_blob(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Insert if absent; returns the value now stored (ours, or the one a
    /// concurrent writer won with). This makes "generate key on first start"
    /// race-free across servers sharing one database.
    async fn put_blob_if_absent(&self, name: &str, value: &[u8]) -> Result<Vec<u8>, StoreError>;
    /// Insert or replace (e.g. an SSH host's re-enrolled agent key).
    async fn put_blob(&self, name: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Remove; returns whether it existed. Used for single-use values (join
    /// tokens): exactly one concurrent caller sees `true`.
    async fn delete_blob(&self, name: &str) -> Result<bool, StoreError>;
    /// Names and values of every blob whose name starts with `prefix`,
    /// ordered by name (at most [`MAX_BLOB_LIST`]).
    async fn list_blobs(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    // --- policy bundles ---

    /// The bundle currently in force, `None` before the first activation.
    async fn active_bundle(&self) -> Result<Option<StoredBundle>, StoreError>;
    /// Stores a new bundle as the next version and makes it active,
    /// atomically. Returns its version (1 for the first).
    async fn activate_bundle(
        &self,
        sources: &[SourceFile],
        author: &str,
        comment: &str,
    ) -> Result<u64, StoreError>;
    /// Compare-and-set activation: stores `sources` as the next version and
    /// makes it active only if the active version is still
    /// `expected_active` (`None`: no bundle active yet), atomically.
    ///
    /// Returns `Some(version)` when it activated, `None` when the active
    /// version had changed (nothing is stored then). This is what makes a
    /// policy-draft approval race-free across servers sharing one database:
    /// of two concurrent approvals based on the same version, exactly one
    /// gets `Some`.
    async fn activate_bundle_if(
        &self,
        expected_active: Option<u64>,
        sources: &[SourceFile],
        author: &str,
        comment: &str,
    ) -> Result<Option<u64>, StoreError>;
    /// Every stored bundle, newest first, sources included.
    async fn bundle_history(&self) -> Result<Vec<StoredBundle>, StoreError>;

    // --- leases ---

    /// Write-ahead record of a credential. A duplicate id is
    /// [`StoreError::Conflict`].
    async fn insert_lease(&self, lease: &Lease) -> Result<(), StoreError>;
    async fn get_lease(&self, id: &LeaseId) -> Result<Option<Lease>, StoreError>;
    /// Compare-and-set on state: changes the row only if its current state
    /// is `from`; returns whether it changed. When it changes, also sets the
    /// fingerprint (if `Some`; `None` keeps the stored one) and `last_error`
    /// (`None` clears it).
    async fn transition_lease(
        &self,
        id: &LeaseId,
        from: LeaseState,
        to: LeaseState,
        fingerprint: Option<&str>,
        last_error: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// Compare-and-set of many leases at once, for the reaper: each
    /// `(id, from)` moves to `to` only if its state is still `from`, with
    /// the stored fingerprint kept and `last_error` cleared — exactly what
    /// [`Store::transition_lease`]`(id, from, to, None, None)` does for one.
    /// Returns, in input order, whether each changed (an id given twice
    /// changes at most once: its first occurrence).
    ///
    /// All of it is one atomic, durable write (one transaction, one commit),
    /// which is the point: 100 000 expired leases cost ~100 commits instead
    /// of 100 000. At most [`MAX_DUE_LIMIT`] leases per call; more is
    /// [`StoreError::Conflict`] (nothing is written). The default applies
    /// the leases one by one (not atomically); every backend here overrides
    /// it.
    async fn transition_leases(
        &self,
        leases: &[(LeaseId, LeaseState)],
        to: LeaseState,
    ) -> Result<Vec<bool>, StoreError> {
        check_transition_batch(leases.len())?;
        let mut changed = Vec::with_capacity(leases.len());
        for (id, from) in leases {
            changed.push(self.transition_lease(id, *from, to, None, None).await?);
        }
        Ok(changed)
    }
    /// Moves a live lease's expiry (renewal). Returns false when the lease
    /// is not live (pending/active) any more, so a renewal can never revive
    /// a revoked lease.
    async fn extend_lease(
        &self,
        id: &LeaseId,
        new_expires_at: UnixTime,
    ) -> Result<bool, StoreError>;
    /// Records a failed revocation attempt: `attempts += 1`,
    /// `next_attempt_at`, `last_error`. An unknown id is
    /// [`StoreError::NotFound`].
    async fn record_revoke_failure(
        &self,
        id: &LeaseId,
        next_attempt_at: UnixTime,
        error: &str,
    ) -> Result<(), StoreError>;
    /// Leases matching `filter`, newest (most recently inserted) first.
    async fn list_leases(&self, filter: &LeaseFilter) -> Result<Vec<Lease>, StoreError>;
    /// The reaper's work list, at most `limit` (capped at [`MAX_DUE_LIMIT`]):
    ///
    /// * live leases (pending/active) with `expires_at <= now` and
    ///   `next_attempt_at <= now`;
    /// * pending leases created more than `pending_grace_secs` ago (a crash
    ///   between the write-ahead and the mint), before their expiry; once a
    ///   revocation attempt on one has failed (`attempts > 0`) it also
    ///   waits for `next_attempt_at <= now`.
    ///
    /// Ordered by the moment each lease became due, earliest first: its
    /// expiry for a lease that has not failed yet (so oldest expiry first),
    /// its retry time for one in backoff, `created_at + grace` for a stale
    /// pending one (or its retry time if later). Ties are broken by id.
    async fn due_leases(
        &self,
        now: UnixTime,
        pending_grace_secs: i64,
        limit: usize,
    ) -> Result<Vec<Lease>, StoreError>;
    /// The reaper's work list when several servers share the store: the
    /// same leases, in the same order, as [`Store::due_leases`], minus those
    /// another caller claimed and whose claim has not lapsed (`claimed_until
    /// > now`); every lease returned is claimed until `claim_until`.
    ///
    /// Claiming is atomic: two concurrent callers never get the same lease,
    /// so two servers never revoke one credential twice. A claim ends when
    /// it lapses (the claimer died), when the lease leaves the live states,
    /// or when [`Store::record_revoke_failure`] records a failed attempt
    /// (the retry then waits for `next_attempt_at` like any other).
    async fn claim_due_leases(
        &self,
        now: UnixTime,
        pending_grace_secs: i64,
        limit: usize,
        claim_until: UnixTime,
    ) -> Result<Vec<Lease>, StoreError>;
    /// Leases in insertion order (oldest first), starting after the lease
    /// `after` (from the start when `None`), at most `limit` (capped at
    /// [`MAX_DUE_LIMIT`]): a stable keyset walk over the whole table for
    /// `idmint store migrate`, whatever its size. Inserting them in this
    /// order into another store keeps its "newest first" listings the same.
    async fn export_leases(
        &self,
        after: Option<&LeaseId>,
        limit: usize,
    ) -> Result<Vec<Lease>, StoreError>;
    /// Writes `bundles` exactly as given (versions, times, authors kept) and
    /// makes `active` the active version, all or nothing. For copying a
    /// deployment into an empty store; a version that already exists is
    /// [`StoreError::Conflict`].
    async fn import_bundles(
        &self,
        bundles: &[StoredBundle],
        active: Option<u64>,
    ) -> Result<(), StoreError>;
    /// Number of leases, or of live (pending/active) leases only.
    async fn count_leases(&self, live_only: bool) -> Result<u64, StoreError>;

    // --- session-token denylist ---

    /// Denies a session token until `expires_at` (when the token would have
    /// expired anyway). Denying twice keeps the later expiry.
    async fn deny_token(&self, token_id: &str, expires_at: UnixTime) -> Result<(), StoreError>;
    /// All denials not yet expired (`expires_at > now`); the server loads
    /// them into memory at start.
    async fn denied_tokens(&self, now: UnixTime) -> Result<Vec<(String, UnixTime)>, StoreError>;
    /// Deletes denials with `expires_at <= now`; returns how many.
    async fn purge_expired_denials(&self, now: UnixTime) -> Result<u64, StoreError>;

    // --- change feed ---

    /// Changes committed by *any* server sharing this store (token denials,
    /// bundle activations, blob writes such as key rotations), for backends
    /// that several servers can share. `None` for a single-server backend
    /// (SQLite): nothing else can change the data behind its back.
    ///
    /// Delivery is best effort (a lagging receiver or a lost database
    /// connection drops events; the latter is followed by
    /// [`StoreEvent::Resync`]), so a subscriber must also resync
    /// periodically from the store itself.
    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<StoreEvent>> {
        None
    }
}
