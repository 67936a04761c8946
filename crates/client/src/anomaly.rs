//! Anomaly approvals (`/api/v1/anomaly/approvals`): issuances an anomaly
//! rule held for a second admin.

use crate::client::{check_segment, Auth, IdmintClient};
use crate::error::ClientError;
use idmint_proto::anomaly::{AnomalyApproval, ApprovalList};

impl IdmintClient {
    /// `GET /api/v1/anomaly/approvals`, newest first (admins only).
    pub async fn list_approvals(&self) -> Result<ApprovalList, ClientError> {
        self.get_json(&["api", "v1", "anomaly", "approvals"], &[], Auth::Session)
            .await
    }

    /// `POST /api/v1/anomaly/approvals/{id}/approve`: refused for the
    /// requester itself (`self_approval`).
    pub async fn approve_approval(&self, id: &str) -> Result<AnomalyApproval, ClientError> {
        let id = check_segment("approval id", id, id)?;
        self.post_json(
            &["api", "v1", "anomaly", "approvals", id, "approve"],
            &serde_json::json!({}),
        )
        .await
    }
}
