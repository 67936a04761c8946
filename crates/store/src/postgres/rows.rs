//! Conversions between PostgreSQL rows and domain types, and error mapping.

use crate::error::StoreError;
use crate::store::StoredBundle;
use idmint_core::policy::SourceFile;
use idmint_core::{Lease, LeaseId, LeaseState, RequestId, RevocationHandle, UnixTime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// The useful part of a driver error: the server's message (and detail)
/// for a database error, the driver's text otherwise. Never includes
/// parameters, so no value (token id, blob) leaks into logs.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({}; {detail})", db.message(), db.code().code()),
            None => format!("{} ({})", db.message(), db.code().code()),
        },
        None => {
            // The driver's text is generic ("error performing TLS
            // handshake"); the cause (refused, certificate unknown…) is in
            // the source chain.
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}

/// Maps a driver error to the store error an operator can act on.
pub(crate) fn pg_error(context: &str, e: &tokio_postgres::Error) -> StoreError {
    if e.is_closed() || e.as_db_error().is_none() {
        return StoreError::Backend(format!(
            "{context}: lost the connection to PostgreSQL ({}); the request was not completed, retry once the database is reachable",
            describe(e)
        ));
    }
    match e.code() {
        Some(c) if *c == SqlState::DATA_CORRUPTED || *c == SqlState::INDEX_CORRUPTED => {
            StoreError::Corrupt(format!("{context}: {}", describe(e)))
        }
        Some(c) if *c == SqlState::UNDEFINED_TABLE || *c == SqlState::UNDEFINED_COLUMN => {
            StoreError::Migration(format!(
                "{context}: {}; the database schema is not the one this idmint expects: run `idmint store migrate`",
                describe(e)
            ))
        }
        _ => StoreError::Backend(format!("{context}: {}", describe(e))),
    }
}

/// Whether `e` is a primary-key or unique violation.
pub(crate) fn is_duplicate(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// Owned bind values for [`super::sql::INSERT_LEASE`], in column order.
/// `policy_version` is stored as the `i64` with the same bits (as in
/// SQLite), so every `u64` round-trips.
pub(crate) struct LeaseParams {
    text: [String; 8],
    ints: [i64; 5],
    fingerprint: Option<String>,
    last_error: Option<String>,
}

impl LeaseParams {
    pub(crate) fn new(lease: &Lease) -> Self {
        Self {
            text: [
                lease.id.as_str().to_owned(),
                lease.request_id.as_str().to_owned(),
                lease.role.clone(),
                lease.issuer.clone(),
                lease.principal.clone(),
                lease.state.as_str().to_owned(),
                lease.revocation.kind.clone(),
                lease.revocation.value.clone(),
            ],
            ints: [
                lease.policy_version as i64,
                lease.created_at.0,
                lease.expires_at.0,
                i64::from(lease.attempts),
                lease.next_attempt_at.0,
            ],
            fingerprint: lease.fingerprint.clone(),
            last_error: lease.last_error.clone(),
        }
    }

    pub(crate) fn as_params(&self) -> [&(dyn ToSql + Sync); 15] {
        let [id, request_id, role, issuer, principal, state, kind, value] = &self.text;
        let [policy_version, created_at, expires_at, attempts, next_attempt_at] = &self.ints;
        [
            id,
            request_id,
            role,
            issuer,
            principal,
            policy_version,
            created_at,
            expires_at,
            state,
            kind,
            value,
            &self.fingerprint,
            attempts,
            next_attempt_at,
            &self.last_error,
        ]
    }
}

/// Reads a lease from columns `0..15` (see `lease_columns!`).
pub(crate) fn lease_from_row(row: &Row) -> Result<Lease, StoreError> {
    let id: String = get(row, 0)?;
    let state: String = get(row, 8)?;
    let attempts: i64 = get(row, 12)?;
    let Some(state) = LeaseState::parse(&state) else {
        return Err(StoreError::Corrupt(format!(
            "lease {id} has unknown state {state:?}"
        )));
    };
    let Ok(attempts) = u32::try_from(attempts) else {
        return Err(StoreError::Corrupt(format!(
            "lease {id} has attempt count {attempts} out of range"
        )));
    };
    let policy_version: i64 = get(row, 5)?;
    Ok(Lease {
        request_id: RequestId::from_trusted(get(row, 1)?),
        role: get(row, 2)?,
        issuer: get(row, 3)?,
        principal: get(row, 4)?,
        policy_version: policy_version as u64,
        created_at: UnixTime(get(row, 6)?),
        expires_at: UnixTime(get(row, 7)?),
        state,
        revocation: RevocationHandle {
            kind: get(row, 9)?,
            value: get(row, 10)?,
        },
        fingerprint: get(row, 11)?,
        attempts,
        next_attempt_at: UnixTime(get(row, 13)?),
        last_error: get(row, 14)?,
        id: LeaseId::from_trusted(id),
    })
}

/// Reads a bundle from `version, sources, created_at, author, comment`.
pub(crate) fn bundle_from_row(row: &Row) -> Result<StoredBundle, StoreError> {
    let version: i64 = get(row, 0)?;
    let sources: String = get(row, 1)?;
    let Ok(version) = u64::try_from(version) else {
        return Err(StoreError::Corrupt(format!(
            "bundle version {version} is negative"
        )));
    };
    let sources: Vec<SourceFile> = serde_json::from_str(&sources).map_err(|e| {
        StoreError::Corrupt(format!("bundle v{version} sources are not valid JSON: {e}"))
    })?;
    Ok(StoredBundle {
        version,
        sources,
        created_at: get(row, 2)?,
        author: get(row, 3)?,
        comment: get(row, 4)?,
    })
}

/// A typed column, with a type mismatch reported as corrupt data rather
/// than a panic.
pub(crate) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    idx: usize,
) -> Result<T, StoreError> {
    row.try_get(idx).map_err(|e| {
        StoreError::Corrupt(format!("column {idx} does not have the expected type: {e}"))
    })
}
