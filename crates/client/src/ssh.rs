//! SSH calls (`/api/v1/ssh/…`): one-time session certificates,
//! certificate-mode signing, the CA keys and host join tokens.

use crate::client::{check_segment, Auth, IdmintClient};
use crate::error::ClientError;
use idmint_proto::ssh::{
    JoinTokenResponse, SshCaKeys, SshSessionRequest, SshSessionResponse, SshSignRequest,
    SshSignResponse,
};

impl IdmintClient {
    /// `POST /api/v1/ssh/sessions`: a one-time certificate for `req.public_key`
    /// and a just-in-time account on `req.host`. Returns once the host's
    /// agent has created the account (or fails with 503 naming the host).
    pub async fn ssh_session(
        &self,
        req: &SshSessionRequest,
    ) -> Result<SshSessionResponse, ClientError> {
        self.post_json(&["api", "v1", "ssh", "sessions"], req).await
    }

    /// `POST /api/v1/ssh/sign/{role}`: a certificate for a certificate-mode
    /// role's static principals (no agent, no account).
    pub async fn ssh_sign(
        &self,
        role: &str,
        req: &SshSignRequest,
    ) -> Result<SshSignResponse, ClientError> {
        let mut segments = vec!["api", "v1", "ssh", "sign"];
        for segment in role.split('/') {
            segments.push(check_segment("role name", role, segment)?);
        }
        self.post_json(&segments, req).await
    }

    /// `GET /api/v1/ssh/ca` (no session needed): the user and host CA keys.
    pub async fn ssh_ca(&self) -> Result<SshCaKeys, ClientError> {
        self.get_json(&["api", "v1", "ssh", "ca"], &[], Auth::None)
            .await
    }

    /// `POST /api/v1/ssh/hosts/{host}/join-token` (admin): a single-use
    /// token for `idmint agent enroll` on that host.
    pub async fn ssh_join_token(&self, host: &str) -> Result<JoinTokenResponse, ClientError> {
        let host = check_segment("host name", host, host)?;
        self.post_json(
            &["api", "v1", "ssh", "hosts", host, "join-token"],
            &serde_json::json!({}),
        )
        .await
    }
}
