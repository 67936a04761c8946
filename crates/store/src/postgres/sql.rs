//! The SQL the PostgreSQL backend runs. Mirrors `sqlite/sql.rs` statement
//! for statement; writes other servers must hear about send their
//! `pg_notify` in the same statement or transaction, so a notification is
//! delivered exactly when (and only if) the change commits.

/// Lease columns in the order [`super::rows::lease_from_row`] reads them.
macro_rules! lease_columns {
    () => {
        "id, request_id, role, issuer, principal, policy_version, created_at, expires_at, \
         state, revocation_kind, revocation_value, fingerprint, attempts, next_attempt_at, \
         last_error"
    };
}

/// Notification channels (one per kind of change).
pub(crate) const CHANNEL_DENYLIST: &str = "idmint_denylist";
pub(crate) const CHANNEL_BUNDLE: &str = "idmint_bundle";
pub(crate) const CHANNEL_BLOB: &str = "idmint_blob";
pub(crate) const LISTEN_ALL: &str =
    "LISTEN idmint_denylist; LISTEN idmint_bundle; LISTEN idmint_blob";

pub(crate) const GET_BLOB: &str = "SELECT value FROM blobs WHERE name = $1";
/// Notifies only when the row was really inserted.
pub(crate) const INSERT_BLOB_IF_ABSENT: &str = "WITH ins AS ( \
     INSERT INTO blobs (name, value, created_at) VALUES ($1, $2, $3) \
     ON CONFLICT (name) DO NOTHING RETURNING name) \
     SELECT pg_notify('idmint_blob', name) FROM ins";
pub(crate) const UPSERT_BLOB: &str = "WITH up AS ( \
     INSERT INTO blobs (name, value, created_at) VALUES ($1, $2, $3) \
     ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value RETURNING name) \
     SELECT pg_notify('idmint_blob', name) FROM up";
pub(crate) const DELETE_BLOB: &str =
    "WITH del AS (DELETE FROM blobs WHERE name = $1 RETURNING name) \
     SELECT pg_notify('idmint_blob', name) FROM del";
/// `starts_with` instead of `LIKE` so `%`/`_` in names are literal.
pub(crate) const LIST_BLOBS: &str = "SELECT name, value FROM blobs \
     WHERE starts_with(name, $1) ORDER BY name LIMIT $2";

pub(crate) const ACTIVE_BUNDLE: &str =
    "SELECT b.version, b.sources, b.created_at, b.author, b.comment \
     FROM active_bundle a JOIN bundles b ON b.version = a.version WHERE a.id = 1";
pub(crate) const ACTIVE_BUNDLE_VERSION: &str = "SELECT version FROM active_bundle WHERE id = 1";
/// Serialises activations across servers for the rest of the transaction.
pub(crate) const LOCK_BUNDLES: &str = "SELECT pg_advisory_xact_lock(488205001)";
pub(crate) const NEXT_BUNDLE_VERSION: &str = "SELECT COALESCE(MAX(version), 0) + 1 FROM bundles";
pub(crate) const INSERT_BUNDLE: &str =
    "INSERT INTO bundles (version, sources, created_at, author, comment) \
     VALUES ($1, $2, $3, $4, $5)";
pub(crate) const SET_ACTIVE_BUNDLE: &str =
    "INSERT INTO active_bundle (id, version) VALUES (1, $1) \
     ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version";
pub(crate) const NOTIFY_BUNDLE: &str = "SELECT pg_notify('idmint_bundle', $1::bigint::text)";
pub(crate) const BUNDLE_HISTORY: &str =
    "SELECT version, sources, created_at, author, comment FROM bundles ORDER BY version DESC";

pub(crate) const INSERT_LEASE: &str = concat!(
    "INSERT INTO leases (",
    lease_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
);
pub(crate) const GET_LEASE: &str =
    concat!("SELECT ", lease_columns!(), " FROM leases WHERE id = $1");
pub(crate) const TRANSITION_LEASE: &str = "UPDATE leases \
     SET state = $3, fingerprint = COALESCE($4, fingerprint), last_error = $5 \
     WHERE id = $1 AND state = $2";
/// Batch form of [`TRANSITION_LEASE`] (fingerprint kept, `last_error`
/// cleared): `$1` ids, `$2` their expected states, `$3` the new state.
/// One statement, so atomic; returns the ids that changed. A row listed
/// twice is updated once.
pub(crate) const TRANSITION_LEASES: &str = "UPDATE leases AS l \
     SET state = $3, last_error = NULL \
     FROM unnest($1::text[], $2::text[]) AS v(id, state) \
     WHERE l.id = v.id AND l.state = v.state \
     RETURNING l.id";
pub(crate) const EXTEND_LEASE: &str = "UPDATE leases SET expires_at = $2 \
     WHERE id = $1 AND state IN ('pending', 'active')";
/// Saturates at `u32::MAX`; also releases a reaper's claim.
pub(crate) const RECORD_REVOKE_FAILURE: &str = "UPDATE leases \
     SET attempts = LEAST(attempts + 1, 4294967295), next_attempt_at = $2, last_error = $3, \
         claimed_until = 0 \
     WHERE id = $1";
pub(crate) const LIST_LEASES_PREFIX: &str = concat!("SELECT ", lease_columns!(), " FROM leases");

/// Expired or retry-due live leases, read off the `leases_due` index.
/// `$1` now, `$2` limit. [`FOR_CLAIM`] may be appended.
pub(crate) const DUE_LEASES: &str = concat!(
    "SELECT ",
    lease_columns!(),
    ", GREATEST(expires_at, next_attempt_at) FROM leases \
     WHERE state IN ('pending', 'active') AND GREATEST(expires_at, next_attempt_at) <= $1 \
     ORDER BY GREATEST(expires_at, next_attempt_at), id LIMIT $2"
);
/// Stale pending leases (see `sqlite/sql.rs`). `$1` now, `$2` cutoff,
/// `$3` grace, `$4` limit.
pub(crate) const STALE_PENDING_LEASES: &str = concat!(
    "SELECT ",
    lease_columns!(),
    ", CASE WHEN attempts = 0 THEN created_at + $3 \
            ELSE GREATEST(created_at + $3, next_attempt_at) END \
     FROM leases \
     WHERE state = 'pending' AND created_at <= $2 \
       AND GREATEST(expires_at, next_attempt_at) > $1 \
       AND (attempts = 0 OR next_attempt_at <= $1) \
     ORDER BY created_at LIMIT $4"
);
/// The claiming variants: unclaimed rows only, and rows another server is
/// claiming right now are skipped rather than waited for.
pub(crate) const CLAIMABLE_DUE_LEASES: &str = concat!(
    "SELECT ",
    lease_columns!(),
    ", GREATEST(expires_at, next_attempt_at) FROM leases \
     WHERE state IN ('pending', 'active') AND GREATEST(expires_at, next_attempt_at) <= $1 \
       AND claimed_until <= $1 \
     ORDER BY GREATEST(expires_at, next_attempt_at), id LIMIT $2 \
     FOR UPDATE SKIP LOCKED"
);
pub(crate) const CLAIMABLE_STALE_PENDING_LEASES: &str = concat!(
    "SELECT ",
    lease_columns!(),
    ", CASE WHEN attempts = 0 THEN created_at + $3 \
            ELSE GREATEST(created_at + $3, next_attempt_at) END \
     FROM leases \
     WHERE state = 'pending' AND created_at <= $2 \
       AND GREATEST(expires_at, next_attempt_at) > $1 \
       AND (attempts = 0 OR next_attempt_at <= $1) \
       AND claimed_until <= $1 \
     ORDER BY created_at LIMIT $4 \
     FOR UPDATE SKIP LOCKED"
);
/// `$1` ids, `$2` claim end.
pub(crate) const CLAIM_LEASES: &str =
    "UPDATE leases SET claimed_until = $2 WHERE id = ANY($1::text[])";
/// Keyset walk in insertion order (`seq`); `$1` the last id seen.
pub(crate) const EXPORT_LEASES: &str = concat!(
    "SELECT ",
    lease_columns!(),
    " FROM leases WHERE seq > COALESCE((SELECT seq FROM leases WHERE id = $1), 0) \
     ORDER BY seq LIMIT $2"
);
pub(crate) const COUNT_LEASES: &str = "SELECT count(*) FROM leases";
pub(crate) const COUNT_LIVE_LEASES: &str =
    "SELECT count(*) FROM leases WHERE state IN ('pending', 'active')";

/// Upsert keeping the later expiry, and tell every server in the same
/// statement: payload `<expires_at> <token_id>`.
pub(crate) const DENY_TOKEN: &str = "WITH up AS ( \
     INSERT INTO denylist (token_id, expires_at) VALUES ($1, $2) \
     ON CONFLICT (token_id) DO UPDATE \
     SET expires_at = GREATEST(denylist.expires_at, EXCLUDED.expires_at) \
     RETURNING token_id, expires_at) \
     SELECT pg_notify('idmint_denylist', expires_at::text || ' ' || token_id) FROM up";
pub(crate) const DENIED_TOKENS: &str =
    "SELECT token_id, expires_at FROM denylist WHERE expires_at > $1 ORDER BY expires_at";
pub(crate) const PURGE_DENIALS: &str = "DELETE FROM denylist WHERE expires_at <= $1";
