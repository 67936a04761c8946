//! Policy governance calls (`/api/v1/policy/…`): drafts, approvals,
//! history and rollback; and the SSO method listing that starts a
//! person's login.

use crate::client::{check_segment, Auth, IdmintClient};
use crate::error::ClientError;
use idmint_proto::governance::{
    ApproveRequest, ApproveResponse, DraftCreateRequest, DraftDiff, DraftInfo, DraftList,
    PolicyHistory, RejectRequest, RollbackRequest,
};

impl IdmintClient {
    /// `POST /api/v1/policy/drafts`: the server validates the draft in full
    /// and refuses an invalid one (`invalid_policy`, naming file and line).
    pub async fn create_draft(&self, req: &DraftCreateRequest) -> Result<DraftInfo, ClientError> {
        self.post_json(&["api", "v1", "policy", "drafts"], req)
            .await
    }

    /// `GET /api/v1/policy/drafts`, newest first.
    pub async fn list_drafts(&self) -> Result<DraftList, ClientError> {
        self.get_json(&["api", "v1", "policy", "drafts"], &[], Auth::Session)
            .await
    }

    /// `GET /api/v1/policy/drafts/{id}`
    pub async fn draft(&self, id: &str) -> Result<DraftInfo, ClientError> {
        let id = check_segment("draft id", id, id)?;
        self.get_json(&["api", "v1", "policy", "drafts", id], &[], Auth::Session)
            .await
    }

    /// `GET /api/v1/policy/drafts/{id}/diff`: against the active bundle.
    pub async fn draft_diff(&self, id: &str) -> Result<DraftDiff, ClientError> {
        let id = check_segment("draft id", id, id)?;
        self.get_json(
            &["api", "v1", "policy", "drafts", id, "diff"],
            &[],
            Auth::Session,
        )
        .await
    }

    /// `POST /api/v1/policy/drafts/{id}/approve`
    pub async fn approve_draft(
        &self,
        id: &str,
        req: &ApproveRequest,
    ) -> Result<ApproveResponse, ClientError> {
        let id = check_segment("draft id", id, id)?;
        self.post_json(&["api", "v1", "policy", "drafts", id, "approve"], req)
            .await
    }

    /// `POST /api/v1/policy/drafts/{id}/reject`
    pub async fn reject_draft(&self, id: &str, reason: &str) -> Result<DraftInfo, ClientError> {
        let id = check_segment("draft id", id, id)?;
        let req = RejectRequest {
            reason: reason.to_string(),
        };
        self.post_json(&["api", "v1", "policy", "drafts", id, "reject"], &req)
            .await
    }

    /// `POST /api/v1/policy/rollback`: a draft with an old version's
    /// sources (it needs approval like any other draft).
    pub async fn rollback_policy(&self, req: &RollbackRequest) -> Result<DraftInfo, ClientError> {
        self.post_json(&["api", "v1", "policy", "rollback"], req)
            .await
    }

    /// `GET /api/v1/policy/history`
    pub async fn policy_history(&self) -> Result<PolicyHistory, ClientError> {
        self.get_json(&["api", "v1", "policy", "history"], &[], Auth::Session)
            .await
    }
}

impl IdmintClient {
    /// `GET /api/v1/auth/sso`: the server's human (SSO) login methods.
    /// Needs no session: it is how `idmint login --sso` starts.
    pub async fn sso_methods(&self) -> Result<idmint_proto::sso::SsoMethods, ClientError> {
        self.get_json(&["api", "v1", "auth", "sso"], &[], Auth::None)
            .await
    }
}
