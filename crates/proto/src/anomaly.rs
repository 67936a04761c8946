//! Wire types of anomaly approvals (`/api/v1/anomaly/approvals`): an
//! issuance that raised an anomaly signal with `action = "require_approval"`
//! waits for a second admin here.

use serde::{Deserialize, Serialize};

/// Where an approval is in its life.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// Waiting for an admin other than the requester.
    Pending,
    /// Approved: the requester's next issuance of the role (before
    /// `expires_at`) goes through once, and consumes it.
    Approved,
}

/// One approval request: one per identity and role at a time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AnomalyApproval {
    /// Stable for an identity and role (a retry finds the same one).
    pub id: String,
    pub state: ApprovalState,
    /// The requester's principal key (`issuer|subject`).
    pub principal: String,
    pub subject: String,
    /// The auth method the requester logged in with.
    pub auth: String,
    pub role: String,
    /// The signals that asked for approval (`first_role_use`,
    /// `new_network`, `burst`).
    pub signals: Vec<String>,
    /// The request that was refused.
    pub request_id: String,
    pub created_at: i64,
    /// Pending: when the request lapses. Approved: until when the retry
    /// is accepted.
    pub expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<i64>,
}

/// `GET /api/v1/anomaly/approvals`, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ApprovalList {
    pub approvals: Vec<AnomalyApproval>,
}
