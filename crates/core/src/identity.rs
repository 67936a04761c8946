//! The verified identity of a caller.

use crate::time::UnixTime;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What sort of caller this is. Policy can branch on it (`principal.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityKind {
    Ci,
    Workload,
    Human,
    Host,
    Process,
    /// A legacy application that logged in with an AppRole role id and
    /// secret id (`[[auth.approle]]`); the subject is the AppRole's name.
    Approle,
    /// An AWS principal that proved itself with a signed
    /// `sts:GetCallerIdentity` request (`[[auth.aws_iam]]`); the subject is
    /// its (normalised) ARN.
    #[serde(rename = "aws_iam")]
    AwsIam,
    /// A workload that presented a client certificate on the TLS handshake
    /// (`[[auth.mtls]]`); the subject is its SPIFFE ID or common name.
    Mtls,
}

impl IdentityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Ci => "ci",
            IdentityKind::Workload => "workload",
            IdentityKind::Human => "human",
            IdentityKind::Host => "host",
            IdentityKind::Process => "process",
            IdentityKind::Approle => "approle",
            IdentityKind::AwsIam => "aws_iam",
            IdentityKind::Mtls => "mtls",
        }
    }
}

/// Who the caller is, built only from verified facts.
///
/// An `Identity` is produced by an authn method after the proof checked out
/// (signature, issuer, audience, lifetime, required claims). Nothing
/// unverified is ever put into `attributes`, because policy trusts them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub kind: IdentityKind,
    /// Stable subject, e.g. `repo:acme/app:ref:refs/heads/main`.
    pub subject: String,
    /// The proof's issuer, e.g. `https://token.actions.githubusercontent.com`.
    pub issuer: String,
    /// Authn method: `oidc`, `idmint` (a session token), later `mtls`, …
    pub method: String,
    /// Name of the auth config that verified the proof (`[[auth.oidc]] name`).
    pub auth: String,
    /// Verified claims, as policy attributes.
    pub attributes: Map<String, Value>,
    /// `jti` of the proof, or a hash of it when it has none.
    pub proof_id: String,
    /// When the proof itself expires: nothing derived from it may outlive it.
    pub expires_at: UnixTime,
}

impl Identity {
    /// `issuer|subject`, the key used to match an identity with its leases.
    pub fn principal_key(&self) -> String {
        format!("{}|{}", self.issuer, self.subject)
    }
}
