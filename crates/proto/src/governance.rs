//! Wire types of policy governance (`/api/v1/policy/…`): drafts, approvals,
//! history, rollback and break-glass.

use serde::{Deserialize, Serialize};

/// One policy source file (`*.cedar` or `roles.toml`), verbatim.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicySource {
    pub name: String,
    pub text: String,
}

/// `POST /api/v1/policy/drafts`
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DraftCreateRequest {
    pub sources: Vec<PolicySource>,
    #[serde(default)]
    pub comment: String,
}

/// `POST /api/v1/policy/rollback`
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The stored bundle version whose sources the new draft gets.
    pub version: u64,
    #[serde(default)]
    pub comment: String,
}

/// `POST /api/v1/policy/drafts/{id}/approve`
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// Emergency path: activate now, for a bounded window, with one person.
    #[serde(default)]
    pub break_glass: bool,
    /// Why; required with `break_glass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /api/v1/policy/drafts/{id}/reject`
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RejectRequest {
    pub reason: String,
}

/// Where a draft is in its life.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DraftState {
    /// Waiting for approvals.
    Pending,
    /// Active through break-glass; reverts at `expires_at` unless approved.
    BreakGlass,
    /// Approved and activated (`activated_version`).
    Activated,
    Rejected,
    /// A break-glass activation that expired and was reverted.
    Reverted,
}

impl DraftState {
    pub fn as_str(self) -> &'static str {
        match self {
            DraftState::Pending => "pending",
            DraftState::BreakGlass => "break_glass",
            DraftState::Activated => "activated",
            DraftState::Rejected => "rejected",
            DraftState::Reverted => "reverted",
        }
    }
}

/// One approval (or the break-glass activation) of a draft.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Approval {
    /// Principal key (`issuer|subject`) of the approver.
    pub principal: String,
    /// Unix seconds.
    pub at: i64,
}

/// A break-glass activation of a draft.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BreakGlassInfo {
    pub principal: String,
    pub reason: String,
    pub at: i64,
    /// When the activation reverts unless confirmed by approvals.
    pub expires_at: i64,
    /// The version that was active before, restored at expiry.
    pub previous_version: u64,
    /// The version break-glass activated.
    pub activated_version: u64,
    /// Set when enough other approvers confirmed it in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_at: Option<i64>,
    /// Set when it expired; the version restored (none when the active
    /// bundle had moved on meanwhile and nothing was reverted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverted_to: Option<u64>,
}

/// Role-level summary of what a draft changes against its base.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct RoleChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

/// What the draft would decide differently on recorded real requests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct DraftImpact {
    /// Decision events from the audit log that were replayed.
    pub requests_evaluated: u64,
    /// Distinct identities (principal keys) with at least one request the
    /// draft denies but the active bundle allows.
    pub newly_denied: Vec<String>,
    /// Distinct identities with at least one request the draft allows but
    /// the active bundle denies.
    pub newly_allowed: Vec<String>,
    /// Requests whose role the draft no longer has (counted as denied).
    pub unknown_roles: u64,
}

/// A draft as stored and returned.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DraftInfo {
    pub id: String,
    pub state: DraftState,
    pub author: String,
    pub comment: String,
    pub created_at: i64,
    /// The active version the draft was made against; approving it after
    /// the active bundle changed is refused (stale draft).
    pub base_version: Option<u64>,
    /// Set for drafts made by `policy rollback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<u64>,
    pub required_approvals: u32,
    pub approvals: Vec<Approval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_by: Option<Approval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlassInfo>,
    pub roles: RoleChanges,
    pub impact: DraftImpact,
    pub sources: Vec<PolicySource>,
}

/// `GET /api/v1/policy/drafts`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DraftList {
    pub drafts: Vec<DraftInfo>,
}

/// One file's change in `GET /api/v1/policy/drafts/{id}/diff`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileDiff {
    pub name: String,
    /// Unified diff text (`--- active/NAME`, `+++ draft/NAME`, hunks).
    pub unified: String,
}

/// `GET /api/v1/policy/drafts/{id}/diff`: against the *current* active
/// bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DraftDiff {
    pub id: String,
    pub active_version: Option<u64>,
    pub files: Vec<FileDiff>,
    pub roles: RoleChanges,
}

/// The result of an approval.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApproveResponse {
    pub draft: DraftInfo,
    /// The version activated by this approval, if it activated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_version: Option<u64>,
}

/// One version in `GET /api/v1/policy/history`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HistoryEntry {
    pub version: u64,
    pub created_at: i64,
    pub author: String,
    pub comment: String,
    pub active: bool,
    /// Approvers recorded on the draft that produced this version.
    pub approvers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft_id: Option<String>,
    /// Set when this version was activated through break-glass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlassInfo>,
}

/// `GET /api/v1/policy/history`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicyHistory {
    pub active_version: Option<u64>,
    pub versions: Vec<HistoryEntry>,
    /// Loud warnings, e.g. an unconfirmed break-glass activation in force.
    pub warnings: Vec<String>,
}
