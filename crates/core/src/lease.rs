//! Leases: the record of every minted credential.

use crate::ids::{LeaseId, RequestId};
use crate::time::UnixTime;
use serde::{Deserialize, Serialize};

/// Lifecycle of a lease. A lease row is written in `Pending` *before* the
/// external credential is created (write-ahead), so a crash between the two
/// leaves a row the reaper will clean up instead of an untracked credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    /// Written ahead of minting; the credential may or may not exist yet.
    Pending,
    /// The credential exists and was handed out.
    Active,
    /// Revoked on request or at expiry; the target confirmed it.
    Revoked,
    /// Revocation failed past the retry budget: an operator must look.
    Irrevocable,
}

impl LeaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Pending => "pending",
            LeaseState::Active => "active",
            LeaseState::Revoked => "revoked",
            LeaseState::Irrevocable => "irrevocable",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => LeaseState::Pending,
            "active" => LeaseState::Active,
            "revoked" => LeaseState::Revoked,
            "irrevocable" => LeaseState::Irrevocable,
            _ => return None,
        })
    }
    /// Live leases are the ones the reaper still owes a revocation.
    pub fn is_live(self) -> bool {
        matches!(self, LeaseState::Pending | LeaseState::Active)
    }
}

/// What the issuer needs to revoke the credential: a token id, an access key
/// id, a database role name, an SSH certificate serial…
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationHandle {
    pub kind: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub id: LeaseId,
    pub request_id: RequestId,
    pub role: String,
    /// Issuer name from the config (`oauth`, `ssh`, …).
    pub issuer: String,
    /// `Identity::principal_key()` of the caller it was minted for.
    pub principal: String,
    pub policy_version: u64,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub state: LeaseState,
    pub revocation: RevocationHandle,
    /// Keyed HMAC fingerprint of the credential (never the credential).
    pub fingerprint: Option<String>,
    /// Revocation attempts made so far, for backoff.
    pub attempts: u32,
    pub next_attempt_at: UnixTime,
    pub last_error: Option<String>,
}
