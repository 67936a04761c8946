//! The `ssh` issuer as the rest of the server sees it ([`Issuer`]): role
//! validation, and revocation through the host agent.
//!
//! Minting does not go through the generic `creds` path: a session needs
//! the caller's public key and a host, so it has its own endpoints
//! ([`super::session`], [`super::sign`]).

use super::SshService;
use idmint_core::role::SshMode;
use idmint_core::{RevocationHandle, Role};
use idmint_issuers::ssh::{check_template, is_jit_account, SSH_ACCOUNT_HANDLE, SSH_CERT_HANDLE};
use idmint_issuers::{IssueError, IssueRequest, Issuer, Minted, PlanRequest};
use std::sync::Arc;
use std::time::Duration;

/// How long a revocation waits for a connected agent to confirm removal
/// before it reports failure (the reaper then retries with backoff). Short:
/// the reaper revokes one lease after another, and the lease becomes
/// revoked anyway the moment the agent's report arrives.
const REVOKE_WAIT: Duration = Duration::from_secs(3);

pub struct SshIssuer {
    service: Arc<SshService>,
}

impl SshIssuer {
    pub fn new(service: Arc<SshService>) -> Self {
        Self { service }
    }
}

fn use_ssh_endpoints(role: &str) -> IssueError {
    IssueError::Config(format!(
        "role {role:?} is an ssh role: use `idmint ssh [ROLE@]HOST` (POST /api/v1/ssh/sessions) or, for certificate-mode roles, `idmint ssh sign ROLE` (POST /api/v1/ssh/sign/{{role}})"
    ))
}

#[async_trait::async_trait]
impl Issuer for SshIssuer {
    fn name(&self) -> &str {
        self.service.name()
    }

    fn kind(&self) -> &'static str {
        "ssh"
    }

    fn plan(&self, plan: &PlanRequest<'_>) -> Result<RevocationHandle, IssueError> {
        Err(use_ssh_endpoints(&plan.role.name))
    }

    fn validate_role(&self, role: &Role) -> Result<(), String> {
        let t = check_template(role)?;
        if t.mode == SshMode::Certificate && !t.hosts.is_empty() {
            return Err("hosts has no effect in mode = \"certificate\" (the certificate is valid wherever sshd trusts the CA and the principal exists); remove it".into());
        }
        Ok(())
    }

    async fn issue(&self, req: &IssueRequest<'_>) -> Result<Minted, IssueError> {
        Err(use_ssh_endpoints(&req.role.name))
    }

    /// Certificate-mode leases: a signed certificate cannot be recalled;
    /// it stops working at `valid_before` (minutes), so `Ok`.
    ///
    /// Just-in-time leases: withdraw the grant, then `Ok` only once the
    /// agent confirmed the account is gone (or never received the grant).
    /// Otherwise an error, so the reaper retries with backoff and, past its
    /// budget, flags the lease irrevocable: never forgotten.
    async fn revoke(&self, handle: &RevocationHandle) -> Result<(), IssueError> {
        match handle.kind.as_str() {
            SSH_CERT_HANDLE => Ok(()),
            SSH_ACCOUNT_HANDLE => {
                let (host, account) = handle
                    .value
                    .split_once('/')
                    .filter(|(_, a)| is_jit_account(a))
                    .ok_or_else(|| {
                        IssueError::Internal(format!(
                            "ssh revocation handle {:?} is not <host>/wl_<id>",
                            handle.value
                        ))
                    })?;
                let entry = self.service.hosts.get(host).ok_or_else(|| IssueError::Target {
                    target: host.to_string(),
                    message: format!(
                        "host {host:?} is no longer configured in issuer {:?}; remove account {account} by hand",
                        self.service.name()
                    ),
                    retryable: false,
                })?;
                let was_on_board = entry.board.withdraw(account);
                if was_on_board && !entry.board.was_delivered(account) {
                    // The agent never received it: nothing exists on the host.
                    entry.board.mark_removed(account, None);
                    return Ok(());
                }
                let connected = entry
                    .board
                    .agent_connected(idmint_core::UnixTime::now().secs());
                if connected && entry.board.wait_removed(account, REVOKE_WAIT).await
                    || matches!(
                        entry.board.status(account),
                        Some(super::grant_board::GrantStatus::Removed { .. })
                    )
                {
                    Ok(())
                } else {
                    Err(IssueError::Target {
                        target: host.to_string(),
                        message: format!(
                            "the agent on {host} has not confirmed that account {account} is removed yet{}",
                            if connected { "" } else { " (the agent is not connected)" }
                        ),
                        retryable: true,
                    })
                }
            }
            other => Err(IssueError::Internal(format!(
                "revocation handle of kind {other:?} given to the ssh issuer"
            ))),
        }
    }
}
