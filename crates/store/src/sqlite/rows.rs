//! Conversions between rows and domain types, and SQLite error mapping.

use crate::error::StoreError;
use crate::store::StoredBundle;
use idmint_core::policy::SourceFile;
use idmint_core::{Lease, LeaseId, LeaseState, RequestId, RevocationHandle, UnixTime};
use rusqlite::types::Value;
use rusqlite::{ErrorCode, Row};

/// Maps a SQLite error to the store error an operator can act on, with
/// `context` saying what the store was doing.
pub(crate) fn sql_error(context: &str, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            StoreError::Corrupt(format!("{context}: {e}"))
        }
        _ => StoreError::Backend(format!("{context}: {e}")),
    }
}

/// Whether `e` is a primary-key or unique violation (a duplicate insert).
pub(crate) fn is_duplicate(e: &rusqlite::Error) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => matches!(
            f.extended_code,
            rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY | rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
        ),
        _ => false,
    }
}

/// Bind values for [`super::sql::INSERT_LEASE`], in column order.
///
/// `policy_version` is stored as the `i64` with the same bits: SQLite
/// integers are signed and the store never orders by it, so the round trip
/// is exact for every `u64`.
pub(crate) fn lease_params(lease: &Lease) -> [Value; 15] {
    let opt = |v: &Option<String>| v.clone().map_or(Value::Null, Value::Text);
    [
        Value::Text(lease.id.as_str().to_owned()),
        Value::Text(lease.request_id.as_str().to_owned()),
        Value::Text(lease.role.clone()),
        Value::Text(lease.issuer.clone()),
        Value::Text(lease.principal.clone()),
        Value::Integer(lease.policy_version as i64),
        Value::Integer(lease.created_at.0),
        Value::Integer(lease.expires_at.0),
        Value::Text(lease.state.as_str().to_owned()),
        Value::Text(lease.revocation.kind.clone()),
        Value::Text(lease.revocation.value.clone()),
        opt(&lease.fingerprint),
        Value::Integer(i64::from(lease.attempts)),
        Value::Integer(lease.next_attempt_at.0),
        opt(&lease.last_error),
    ]
}

/// Reads a lease from columns `0..15` (see `lease_columns!`). The outer
/// error is SQLite's; the inner one flags a row that does not parse.
pub(crate) fn lease_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Lease, StoreError>> {
    let id: String = row.get(0)?;
    let state: String = row.get(8)?;
    let attempts: i64 = row.get(12)?;
    let Some(state) = LeaseState::parse(&state) else {
        return Ok(Err(StoreError::Corrupt(format!(
            "lease {id} has unknown state {state:?}"
        ))));
    };
    let Ok(attempts) = u32::try_from(attempts) else {
        return Ok(Err(StoreError::Corrupt(format!(
            "lease {id} has attempt count {attempts} out of range"
        ))));
    };
    let policy_version: i64 = row.get(5)?;
    Ok(Ok(Lease {
        request_id: RequestId::from_trusted(row.get(1)?),
        role: row.get(2)?,
        issuer: row.get(3)?,
        principal: row.get(4)?,
        policy_version: policy_version as u64,
        created_at: UnixTime(row.get(6)?),
        expires_at: UnixTime(row.get(7)?),
        state,
        revocation: RevocationHandle {
            kind: row.get(9)?,
            value: row.get(10)?,
        },
        fingerprint: row.get(11)?,
        attempts,
        next_attempt_at: UnixTime(row.get(13)?),
        last_error: row.get(14)?,
        id: LeaseId::from_trusted(id),
    }))
}

/// Reads a bundle from `version, sources, created_at, author, comment`.
pub(crate) fn bundle_from_row(row: &Row<'_>) -> rusqlite::Result<Result<StoredBundle, StoreError>> {
    let version: i64 = row.get(0)?;
    let sources: String = row.get(1)?;
    let Ok(version) = u64::try_from(version) else {
        return Ok(Err(StoreError::Corrupt(format!(
            "bundle version {version} is negative"
        ))));
    };
    let sources: Vec<SourceFile> = match serde_json::from_str(&sources) {
        Ok(s) => s,
        Err(e) => {
            return Ok(Err(StoreError::Corrupt(format!(
                "bundle v{version} sources are not valid JSON: {e}"
            ))))
        }
    };
    Ok(Ok(StoredBundle {
        version,
        sources,
        created_at: row.get(2)?,
        author: row.get(3)?,
        comment: row.get(4)?,
    }))
}

/// The smallest string greater than every string starting with `prefix`, or
/// `None` if there is none. Lets a role-prefix filter be an index range
/// (`role >= prefix AND role < bound`): SQLite's default BINARY collation
/// compares UTF-8 bytes, which orders like code points.
pub(crate) fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::prefix_upper_bound;

    #[test]
    fn prefix_bounds() {
        assert_eq!(prefix_upper_bound("deploy-"), Some("deploy.".to_string()));
        assert_eq!(
            prefix_upper_bound("a\u{D7FF}"),
            Some("a\u{E000}".to_string())
        );
        assert_eq!(prefix_upper_bound("a\u{10FFFF}"), Some("b".to_string()));
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
        assert_eq!(prefix_upper_bound(""), None);
        let bound = prefix_upper_bound("ab").unwrap();
        for s in ["ab", "ab\u{10FFFF}", "abz"] {
            assert!(s >= "ab" && s < bound.as_str(), "{s}");
        }
        for s in ["aa", "ac", "b"] {
            assert!(!(s >= "ab" && s < bound.as_str()), "{s}");
        }
    }
}
