//! Approvals at rest: one JSON blob per identity and role under
//! [`APPROVAL_PREFIX`], shared by every server on the database.
//!
//! The id is derived from the identity and role, so a retry (on any
//! server) finds the same record, and there is at most one per pair. An
//! approved record is single-use: the retry that finds it deletes it, and
//! the store's delete tells exactly one concurrent caller that it existed.

use idmint_core::{Identity, UnixTime};
use idmint_proto::anomaly::{AnomalyApproval, ApprovalState};
use idmint_store::{Store, StoreError};

/// Blob-name prefix of approvals: `anomaly/approval/<id>`.
pub const APPROVAL_PREFIX: &str = "anomaly/approval/";
/// Hex characters in an approval id.
const ID_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("no pending anomaly approval {0:?}; list them with `idmint approvals list`")]
    NotFound(String),
    #[error("approval {0} asks for a second person: the identity that raised it cannot approve it; ask another admin")]
    SelfApproval(String),
    #[error("approval {0} is already approved; the requester can retry now")]
    AlreadyApproved(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored approval {id} is not valid JSON ({message}); an operator must delete blob {APPROVAL_PREFIX}{id}")]
    Corrupt { id: String, message: String },
}

/// The approval id for `principal` asking for `role`.
pub fn id_for(principal: &str, role: &str) -> String {
    let digest = super::digest_fields("idmint-anomaly-approval-v1", &[principal, role]);
    let mut id = idmint_core::ids::hex(digest.as_ref());
    id.truncate(ID_LEN);
    id
}

/// Whether `id` has the shape of an approval id (safe in a blob name).
pub fn is_valid_id(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn name(id: &str) -> String {
    format!("{APPROVAL_PREFIX}{id}")
}

fn decode(id: &str, bytes: &[u8]) -> Result<AnomalyApproval, ApprovalError> {
    serde_json::from_slice(bytes).map_err(|e| ApprovalError::Corrupt {
        id: id.to_string(),
        message: e.to_string(),
    })
}

fn encode(a: &AnomalyApproval) -> Result<Vec<u8>, ApprovalError> {
    serde_json::to_vec(a).map_err(|e| ApprovalError::Corrupt {
        id: a.id.clone(),
        message: e.to_string(),
    })
}

pub async fn load(store: &dyn Store, id: &str) -> Result<Option<AnomalyApproval>, ApprovalError> {
    if !is_valid_id(id) {
        return Ok(None);
    }
    match store.get_blob(&name(id)).await? {
        Some(bytes) => Ok(Some(decode(id, &bytes)?)),
        None => Ok(None),
    }
}

/// Consumes an approved, unexpired approval for `principal` and `role`;
/// `Some` for exactly one caller.
pub async fn take_approved(
    store: &dyn Store,
    principal: &str,
    role: &str,
    now: UnixTime,
) -> Result<Option<AnomalyApproval>, ApprovalError> {
    let id = id_for(principal, role);
    let Some(a) = load(store, &id).await? else {
        return Ok(None);
    };
    if a.state != ApprovalState::Approved || a.expires_at <= now.secs() || a.principal != principal
    {
        return Ok(None);
    }
    if store.delete_blob(&name(&id)).await? {
        Ok(Some(a))
    } else {
        Ok(None)
    }
}

/// Records a pending approval for this request unless one is already
/// pending; returns it and whether it is new.
pub async fn request(
    store: &dyn Store,
    identity: &Identity,
    role: &str,
    signals: Vec<String>,
    request_id: &str,
    now: UnixTime,
    ttl_secs: u64,
) -> Result<(AnomalyApproval, bool), ApprovalError> {
    let principal = identity.principal_key();
    let id = id_for(&principal, role);
    let fresh = AnomalyApproval {
        id: id.clone(),
        state: ApprovalState::Pending,
        principal: principal.clone(),
        subject: identity.subject.clone(),
        auth: identity.auth.clone(),
        role: role.to_string(),
        signals,
        request_id: request_id.to_string(),
        created_at: now.secs(),
        expires_at: now.secs().saturating_add(ttl_secs as i64),
        approved_by: None,
        approved_at: None,
    };
    let bytes = encode(&fresh)?;
    let stored = store.put_blob_if_absent(&name(&id), &bytes).await?;
    if stored == bytes {
        return Ok((fresh, true));
    }
    let existing = decode(&id, &stored)?;
    if existing.expires_at > now.secs() && existing.principal == principal {
        return Ok((existing, false));
    }
    // Lapsed (or an id collision, which 64 bits make theoretical): start over.
    store.put_blob(&name(&id), &bytes).await?;
    Ok((fresh, true))
}

/// Approves `id` on behalf of `approver`, who must not be the requester.
pub async fn approve(
    store: &dyn Store,
    id: &str,
    approver: &Identity,
    now: UnixTime,
    ttl_secs: u64,
) -> Result<AnomalyApproval, ApprovalError> {
    let not_found = || ApprovalError::NotFound(id.chars().take(32).collect());
    let mut a = load(store, id).await?.ok_or_else(not_found)?;
    if a.expires_at <= now.secs() {
        return Err(not_found());
    }
    if a.principal == approver.principal_key() {
        return Err(ApprovalError::SelfApproval(a.id));
    }
    if a.state == ApprovalState::Approved {
        return Err(ApprovalError::AlreadyApproved(a.id));
    }
    a.state = ApprovalState::Approved;
    a.approved_by = Some(approver.principal_key());
    a.approved_at = Some(now.secs());
    a.expires_at = now.secs().saturating_add(ttl_secs as i64);
    store.put_blob(&name(&a.id), &encode(&a)?).await?;
    Ok(a)
}

/// Every live approval, newest first; lapsed ones are deleted on the way.
pub async fn list(store: &dyn Store, now: UnixTime) -> Result<Vec<AnomalyApproval>, ApprovalError> {
    let mut out = Vec::new();
    for (blob, bytes) in store.list_blobs(APPROVAL_PREFIX).await? {
        let id = blob
            .strip_prefix(APPROVAL_PREFIX)
            .unwrap_or(&blob)
            .to_string();
        let a = decode(&id, &bytes)?;
        if a.expires_at <= now.secs() {
            store.delete_blob(&blob).await?;
            continue;
        }
        out.push(a);
    }
    out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_per_identity_and_role() {
        let a = id_for("iss|alice", "db");
        assert_eq!(a, id_for("iss|alice", "db"));
        assert_ne!(a, id_for("iss|alice", "db2"));
        assert_ne!(a, id_for("iss|alic", "edb"));
        assert!(is_valid_id(&a));
        assert!(!is_valid_id("../../etc/passwd"));
    }
}
