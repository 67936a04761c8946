//! Issuers: the modules that mint (and revoke) credentials on targets.
//!
//! Every target (`oauth`, later `ssh`, `aws`, databases, …) implements
//! [`Issuer`]. The server drives each issuance the same way, so that a crash
//! at any point leaves a record the reaper can clean up:
//!
//! 1. [`Issuer::plan`] decides the revocation handle (a token id, a database
//!    user name) without touching the target;
//! 2. the server writes the lease with that handle to the store (write-ahead);
//! 3. [`Issuer::issue`] creates the credential on the target;
//! 4. at expiry or on request, [`Issuer::revoke`] removes it — idempotently,
//!    because the reaper may retry after a partial failure.

pub mod aws;
pub mod azure;
mod error;
pub mod keys;
pub mod mysql;
pub mod naming;
pub mod oauth;
pub mod postgres;
pub mod rabbitmq;
pub mod redis;
pub mod ssh;
pub mod static_secret;
mod target;
pub mod x509;

pub use error::IssueError;
pub use keys::{discovery_document, KeyRing, SigningAlg, SigningKey};
pub use oauth::{OauthIssuer, OauthIssuerConfig};

use idmint_core::{Grant, Identity, LeaseId, RequestId, RevocationHandle, Role, Secret, UnixTime};

/// What the server hands an issuer.
///
/// `lease_id` and `revocation` were already written to the store
/// (write-ahead) before [`Issuer::issue`] is called, so the issuer must mint
/// exactly the credential `revocation` names.
pub struct IssueRequest<'a> {
    pub lease_id: &'a LeaseId,
    pub request_id: &'a RequestId,
    /// The verified caller the credential is minted for.
    pub identity: &'a Identity,
    pub role: &'a Role,
    /// The request narrowed by role and policy: TTL, scopes, audience.
    pub grant: &'a Grant,
    /// Version of the policy bundle that permitted the request.
    pub policy_version: u64,
    pub now: UnixTime,
    /// RFC 8693 `act` claim (delegation), when the token exchange carried an
    /// `actor_token`.
    pub actor: Option<serde_json::Value>,
    /// The handle returned by [`Issuer::plan`] for this lease.
    pub revocation: &'a RevocationHandle,
    /// The public key of a verified PKCS#10 CSR, for `x509` roles whose
    /// caller keeps its private key (`CredsRequest::csr`).
    pub csr: Option<&'a idmint_authn::mtls::csr::CsrPublicKey>,
}

impl IssueRequest<'_> {
    /// When the credential stops working: the granted TTL from `now`, but
    /// never later than the caller's proof, because a credential must not
    /// outlive the proof it was derived from. Fails when the proof has
    /// already expired; `action` completes "before …", e.g. `"the token
    /// could be minted"`.
    pub(crate) fn credential_expiry(&self, action: &str) -> Result<UnixTime, IssueError> {
        let expires_at = self
            .now
            .plus(self.grant.ttl.as_duration())
            .min(self.identity.expires_at);
        if expires_at <= self.now {
            return Err(IssueError::Internal(format!(
                "the caller's proof expired at {} before {action}; the caller must log in again",
                self.identity.expires_at.rfc3339()
            )));
        }
        Ok(expires_at)
    }
}

/// A minted credential.
pub struct Minted {
    /// The wire form returned to the client.
    pub credential: idmint_proto::Credential,
    /// When the credential stops working; never later than the caller's proof.
    pub expires_at: UnixTime,
    /// The bytes the audit log fingerprints (keyed HMAC), e.g. the JWT.
    pub secret_material: Secret<Vec<u8>>,
}

/// A target idmint can mint credentials for.
#[async_trait::async_trait]
pub trait Issuer: Send + Sync {
    /// The config name, e.g. `"oauth"` from `[[issuer.oauth]] name = "oauth"`.
    fn name(&self) -> &str;
    /// The issuer type, e.g. `"oauth"`.
    fn kind(&self) -> &'static str;
    /// Decide the revocation handle BEFORE minting (write-ahead), e.g. the
    /// `jti` or the database user name. Must not contact the target.
    fn plan(&self, plan: &PlanRequest<'_>) -> Result<RevocationHandle, IssueError>;
    /// Whether minting creates something outside idmint (a database user, a
    /// cloud key). Such credentials need a write-ahead lease row before
    /// minting so that a crash never leaves an untracked credential. A
    /// self-contained signed token exists nowhere until it is returned, so
    /// its lease can be written once, after minting: one store write instead
    /// of two on the hot path.
    fn mints_externally(&self) -> bool {
        true
    }
    /// Config-time check of a role that names this issuer: its template is
    /// present, well-formed and not dangerous unless explicitly allowed.
    /// Called when a policy bundle is loaded, so a bad role never activates.
    fn validate_role(&self, _role: &Role) -> Result<(), String> {
        Ok(())
    }
    /// Mint the credential named by `req.revocation`.
    async fn issue(&self, req: &IssueRequest<'_>) -> Result<Minted, IssueError>;
    /// Revoke the credential. Idempotent: revoking something already gone is
    /// `Ok`.
    async fn revoke(&self, handle: &RevocationHandle) -> Result<(), IssueError>;
    /// Extend a live credential to `new_expires_at` (e.g. PostgreSQL
    /// `VALID UNTIL`). Issuers whose credentials cannot be extended (signed
    /// tokens) keep this default.
    async fn renew(
        &self,
        _handle: &RevocationHandle,
        _new_expires_at: UnixTime,
    ) -> Result<(), IssueError> {
        Err(IssueError::Config(format!(
            "credentials of issuer {:?} ({}) cannot be renewed; request a new one",
            self.name(),
            self.kind()
        )))
    }
    /// Change the target's admin password to `new` (so that after setup no
    /// human knows it) and use it from now on. The server seals `new` in the
    /// store *before* calling this, so a crash cannot lose it.
    async fn set_admin_password(&self, _new: &Secret<String>) -> Result<(), IssueError> {
        Err(IssueError::Config(format!(
            "issuer {:?} ({}) has no admin credential to rotate",
            self.name(),
            self.kind()
        )))
    }
}

/// What [`Issuer::plan`] may base the revocation handle on: the handle must
/// be decided before anything is created at the target.
pub struct PlanRequest<'a> {
    pub lease_id: &'a LeaseId,
    pub role: &'a Role,
    pub identity: &'a Identity,
}
