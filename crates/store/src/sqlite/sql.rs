//! The SQL the SQLite backend runs, in one place so that the query-plan test
//! checks exactly the statements the store executes.

/// Lease columns in the order [`super::rows::lease_from_row`] reads them.
macro_rules! lease_columns {
    () => {
        "id, request_id, role, issuer, principal, policy_version, created_at, expires_at, \
         state, revocation_kind, revocation_value, fingerprint, attempts, next_attempt_at, \
         last_error"
    };
}

pub(crate) const GET_BLOB: &str = "SELECT value FROM blobs WHERE name = ?1";
pub(crate) const INSERT_BLOB_IF_ABSENT: &str = "INSERT INTO blobs (name, value, created_at) \
     VALUES (?1, ?2, ?3) ON CONFLICT (name) DO NOTHING";

pub(crate) const UPSERT_BLOB: &str = "INSERT INTO blobs (name, value, created_at) \
     VALUES (?1, ?2, ?3) ON CONFLICT (name) DO UPDATE SET value = excluded.value";
pub(crate) const DELETE_BLOB: &str = "DELETE FROM blobs WHERE name = ?1";
/// `?1` is the prefix; `substr` instead of `LIKE` so `%`/`_` in names are literal.
pub(crate) const LIST_BLOBS: &str = "SELECT name, value FROM blobs \
     WHERE substr(name, 1, length(?1)) = ?1 ORDER BY name LIMIT ?2";

pub(crate) const ACTIVE_BUNDLE: &str =
    "SELECT b.version, b.sources, b.created_at, b.author, b.comment \
     FROM active_bundle a JOIN bundles b ON b.version = a.version WHERE a.id = 1";
pub(crate) const ACTIVE_BUNDLE_VERSION: &str = "SELECT version FROM active_bundle WHERE id = 1";
pub(crate) const NEXT_BUNDLE_VERSION: &str = "SELECT COALESCE(MAX(version), 0) + 1 FROM bundles";
pub(crate) const INSERT_BUNDLE: &str =
    "INSERT INTO bundles (version, sources, created_at, author, comment) \
     VALUES (?1, ?2, ?3, ?4, ?5)";
pub(crate) const SET_ACTIVE_BUNDLE: &str =
    "INSERT INTO active_bundle (id, version) VALUES (1, ?1) \
     ON CONFLICT (id) DO UPDATE SET version = excluded.version";
pub(crate) const BUNDLE_HISTORY: &str =
    "SELECT version, sources, created_at, author, comment FROM bundles ORDER BY version DESC";

pub(crate) const INSERT_LEASE: &str = concat!(
    "INSERT INTO leases (",
    lease_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
);
pub(crate) const GET_LEASE: &str =
    concat!("SELECT ", lease_columns!(), " FROM leases WHERE id = ?1");
/// `?5`: fingerprint or NULL to keep the stored one.
pub(crate) const TRANSITION_LEASE: &str = "UPDATE leases \
     SET state = ?3, fingerprint = COALESCE(?4, fingerprint), last_error = ?5 \
     WHERE id = ?1 AND state = ?2";
/// Saturates instead of overflowing the `u32` the domain type holds.
pub(crate) const EXTEND_LEASE: &str = "UPDATE leases SET expires_at = ?2 \
     WHERE id = ?1 AND state IN ('pending', 'active')";
/// Also releases a reaper's claim: the retry waits for `next_attempt_at`.
pub(crate) const RECORD_REVOKE_FAILURE: &str = "UPDATE leases \
     SET attempts = MIN(attempts + 1, 4294967295), next_attempt_at = ?2, last_error = ?3, \
         claimed_until = 0 \
     WHERE id = ?1";
/// Prefix of every listing query; filters and the order are appended.
pub(crate) const LIST_LEASES_PREFIX: &str = concat!("SELECT ", lease_columns!(), " FROM leases");
/// Expired or retry-due live leases, read straight off the `leases_due`
/// index; the expression must match the index's exactly.
pub(crate) const DUE_LEASES: &str = concat!(
    "SELECT ",
    lease_columns!(),
    ", max(expires_at, next_attempt_at) FROM leases \
     WHERE state IN ('pending', 'active') AND max(expires_at, next_attempt_at) <= ?1 \
     ORDER BY max(expires_at, next_attempt_at), id LIMIT ?2"
);
/// Pending leases older than the grace period that [`DUE_LEASES`] does not
/// already return, unless a revocation attempt failed and is backing off.
/// A stale pending lease that never failed is due at `created_at + grace`
/// whatever its `next_attempt_at` (which is typically its expiry).
/// `?1` now, `?2` cutoff (`now - grace`), `?3` grace, `?4` limit.
pub(crate) const STALE_PENDING_LEASES: &str = concat!(
    "SELECT ",
    lease_columns!(),
    ", CASE WHEN attempts = 0 THEN created_at + ?3 \
            ELSE max(created_at + ?3, next_attempt_at) END \
     FROM leases \
     WHERE state = 'pending' AND created_at <= ?2 \
       AND max(expires_at, next_attempt_at) > ?1 \
       AND (attempts = 0 OR next_attempt_at <= ?1) \
     ORDER BY created_at LIMIT ?4"
);
/// [`DUE_LEASES`] without leases claimed by another reaper (`?3` = now).
pub(crate) const CLAIMABLE_DUE_LEASES: &str = concat!(
    "SELECT ",
    lease_columns!(),
    ", max(expires_at, next_attempt_at) FROM leases \
     WHERE state IN ('pending', 'active') AND max(expires_at, next_attempt_at) <= ?1 \
       AND claimed_until <= ?1 \
     ORDER BY max(expires_at, next_attempt_at), id LIMIT ?2"
);
/// [`STALE_PENDING_LEASES`] without leases claimed by another reaper.
pub(crate) const CLAIMABLE_STALE_PENDING_LEASES: &str = concat!(
    "SELECT ",
    lease_columns!(),
    ", CASE WHEN attempts = 0 THEN created_at + ?3 \
            ELSE max(created_at + ?3, next_attempt_at) END \
     FROM leases \
     WHERE state = 'pending' AND created_at <= ?2 \
       AND max(expires_at, next_attempt_at) > ?1 \
       AND (attempts = 0 OR next_attempt_at <= ?1) \
       AND claimed_until <= ?1 \
     ORDER BY created_at LIMIT ?4"
);
/// `?1` id, `?2` claim end.
pub(crate) const CLAIM_LEASE: &str = "UPDATE leases SET claimed_until = ?2 WHERE id = ?1";
/// Keyset walk in insertion order for `store migrate`: `?1` the last id
/// seen ('' to start), so the copy keeps "newest first" listings intact.
pub(crate) const EXPORT_LEASES: &str = concat!(
    "SELECT ",
    lease_columns!(),
    " FROM leases WHERE rowid > COALESCE((SELECT rowid FROM leases WHERE id = ?1), 0) \
     ORDER BY rowid LIMIT ?2"
);
pub(crate) const COUNT_LEASES: &str = "SELECT count(*) FROM leases";
pub(crate) const COUNT_LIVE_LEASES: &str =
    "SELECT count(*) FROM leases WHERE state IN ('pending', 'active')";

pub(crate) const DENY_TOKEN: &str = "INSERT INTO denylist (token_id, expires_at) VALUES (?1, ?2) \
     ON CONFLICT (token_id) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)";
pub(crate) const DENIED_TOKENS: &str =
    "SELECT token_id, expires_at FROM denylist WHERE expires_at > ?1 ORDER BY expires_at";
pub(crate) const PURGE_DENIALS: &str = "DELETE FROM denylist WHERE expires_at <= ?1";
