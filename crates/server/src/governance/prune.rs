//! Pruning of finished drafts after `[governance] draft_retention`.
//!
//! A draft is finished when it was rejected, activated, or reverted after
//! break-glass, or when it is pending but *superseded*: made against a
//! version that is no longer active, so it can never be approved
//! (`stale_draft`). Drafts in force through break-glass are never pruned.
//!
//! `idmint policy history` shows, per version, the approvers and any
//! break-glass details, which live in the activated draft. Before such a
//! draft is deleted, those facts are copied into a small per-version
//! record (`policy/version/<version>`: no sources, no impact), which the
//! history reads when the draft is gone. Version sources themselves live in
//! the bundle table and are never pruned.

use super::draft::{self, DraftError};
use idmint_proto::governance::{BreakGlassInfo, DraftInfo, DraftState};
use idmint_store::Store;
use serde::{Deserialize, Serialize};

/// Blob-name prefix of per-version records: `policy/version/<version>`.
pub const VERSION_PREFIX: &str = "policy/version/";

/// What `policy history` needs of the draft that made a version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VersionRecord {
    pub version: u64,
    pub draft_id: String,
    pub approvers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlassInfo>,
}

impl VersionRecord {
    fn of(d: &DraftInfo) -> Option<Self> {
        Some(Self {
            version: d.activated_version?,
            draft_id: d.id.clone(),
            approvers: d.approvals.iter().map(|a| a.principal.clone()).collect(),
            break_glass: d.break_glass.clone(),
        })
    }
}

/// Whether `d` may be deleted at `now` (Unix seconds).
pub fn prunable(d: &DraftInfo, active: Option<u64>, now: i64, retention_secs: u64) -> bool {
    let old = now.saturating_sub(d.created_at) >= i64::try_from(retention_secs).unwrap_or(i64::MAX);
    let finished = match d.state {
        DraftState::Rejected | DraftState::Activated | DraftState::Reverted => true,
        DraftState::Pending => d.base_version != active,
        DraftState::BreakGlass => false,
    };
    old && finished
}

/// Deletes every prunable draft, keeping a [`VersionRecord`] for each
/// activated one first. Returns how many were deleted.
pub async fn prune(store: &dyn Store, now: i64, retention_secs: u64) -> Result<usize, DraftError> {
    let active = store.active_bundle().await?.map(|b| b.version);
    let mut deleted = 0;
    for d in draft::list(store).await? {
        if !prunable(&d, active, now, retention_secs) {
            continue;
        }
        if let Some(record) = VersionRecord::of(&d) {
            let bytes = serde_json::to_vec(&record).map_err(|e| DraftError::Corrupt {
                id: d.id.clone(),
                message: e.to_string(),
            })?;
            store
                .put_blob(&format!("{VERSION_PREFIX}{}", record.version), &bytes)
                .await?;
        }
        draft::delete(store, &d.id).await?;
        deleted += 1;
    }
    Ok(deleted)
}

/// Every per-version record (for history), skipping unreadable ones.
pub async fn version_records(store: &dyn Store) -> Result<Vec<VersionRecord>, DraftError> {
    Ok(store
        .list_blobs(VERSION_PREFIX)
        .await?
        .into_iter()
        .filter_map(|(_, bytes)| serde_json::from_slice(&bytes).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use idmint_proto::governance::{DraftImpact, RoleChanges};

    fn d(state: DraftState, created_at: i64, base: Option<u64>) -> DraftInfo {
        DraftInfo {
            id: "0123456789ab".into(),
            state,
            author: "a".into(),
            comment: String::new(),
            created_at,
            base_version: base,
            rollback_of: None,
            required_approvals: 1,
            approvals: vec![],
            rejected_by: None,
            reject_reason: None,
            activated_version: None,
            break_glass: None,
            roles: RoleChanges::default(),
            impact: DraftImpact::default(),
            sources: vec![],
        }
    }

    #[test]
    fn only_old_finished_drafts_are_pruned() {
        let (now, keep) = (1_000_000, 100);
        let old = now - 200;
        let young = now - 50;
        assert!(prunable(
            &d(DraftState::Rejected, old, Some(1)),
            Some(2),
            now,
            keep
        ));
        assert!(prunable(
            &d(DraftState::Activated, old, Some(1)),
            Some(2),
            now,
            keep
        ));
        assert!(prunable(
            &d(DraftState::Reverted, old, Some(1)),
            Some(2),
            now,
            keep
        ));
        assert!(!prunable(
            &d(DraftState::Rejected, young, Some(1)),
            Some(2),
            now,
            keep
        ));
        // Pending on the active version: still approvable, kept.
        assert!(!prunable(
            &d(DraftState::Pending, old, Some(2)),
            Some(2),
            now,
            keep
        ));
        // Pending on an older version: superseded.
        assert!(prunable(
            &d(DraftState::Pending, old, Some(1)),
            Some(2),
            now,
            keep
        ));
        assert!(!prunable(
            &d(DraftState::BreakGlass, old, Some(1)),
            Some(2),
            now,
            keep
        ));
    }
}
