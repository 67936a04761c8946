//! The audit record: one [`AuditEvent`] per line of the log.
//!
//! The struct's field order *is* the line format: serde serializes fields in
//! declaration order, and the hash chain is computed over that serialization
//! (see [`crate::chain`]). Reordering, renaming or inserting fields anywhere
//! but before `prev` changes the format of new lines; old lines still verify
//! because verification hashes the bytes as written, but readers of older
//! versions would mis-parse new fields. `prev`, `hash` and `sig` must stay the
//! last three fields, in that order.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The line format version written by this build (see `docs/audit.md`).
pub const SCHEMA_VERSION: u32 = 1;

/// One audit event. Fields are optional where they do not apply.
///
/// Callers fill everything between `request_id` and `detail`; the log fills
/// `seq`, `time`, `prev`, `hash` and (on checkpoints) `sig`, overwriting
/// whatever the caller put there. Nothing secret may ever be put into an
/// event: credentials are referred to by their [`crate::Fingerprinter`]
/// fingerprint.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AuditEvent {
    /// Position in the chain, starting at 1, contiguous.
    pub seq: u64,
    /// When the event was written: RFC 3339, UTC, millisecond precision.
    pub time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// What happened; see [`kinds`] for the values idmint uses.
    pub event: String,
    /// `success`, `denied` or `error`; see [`outcomes`].
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<AuditIdentity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<AuditDecision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Keyed HMAC of the credential (`fp_…`), never the credential itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    /// `jti` of a minted token, or the id of the session token on `login`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<AuditErrorInfo>,
    /// Extra structured data (never secrets). Issuance events carry the
    /// session they were made with in `detail.session_token_id`
    /// ([`detail_keys::SESSION_TOKEN_ID`]), which is how `trace` links a
    /// credential back to its login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
    /// Version of this line format ([`SCHEMA_VERSION`]), set by the log.
    /// Absent on lines written before it existed, which are version 1.
    /// Bumped only for changes a reader must know about; new optional
    /// fields are additive and keep the version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<u32>,
    /// `hash` of the previous line; 64 zeros on the first line.
    pub prev: String,
    /// Hex SHA-256 of this line's canonical form (see [`crate::chain`]).
    pub hash: String,
    /// Checkpoints only: base64url Ed25519 signature over `hash` (the hex
    /// string's bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
}

impl AuditEvent {
    /// An event of kind `event` with outcome `outcome` and nothing else set.
    pub fn new(event: impl Into<String>, outcome: impl Into<String>) -> Self {
        Self {
            event: event.into(),
            outcome: outcome.into(),
            ..Self::default()
        }
    }

    /// `detail.session_token_id`, if this event records which session made it.
    pub fn session_token_id(&self) -> Option<&str> {
        self.detail
            .as_ref()?
            .get(detail_keys::SESSION_TOKEN_ID)?
            .as_str()
    }
}

/// Who the event is about, as verified by authn.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AuditIdentity {
    pub subject: String,
    pub issuer: String,
    /// Authn method (`oidc`, `idmint`, …).
    pub method: String,
    /// Name of the auth config that verified the proof.
    pub auth: String,
    /// `ci`, `workload`, `human`, `host` or `process`.
    pub kind: String,
    /// The verified claims policy evaluated, so a decision can be replayed.
    #[serde(default)]
    pub claims_used: Map<String, Value>,
    /// `jti` of the proof, or a hash of it when it has none.
    pub proof_id: String,
}

impl From<&idmint_core::Identity> for AuditIdentity {
    fn from(i: &idmint_core::Identity) -> Self {
        Self {
            subject: i.subject.clone(),
            issuer: i.issuer.clone(),
            method: i.method.clone(),
            auth: i.auth.clone(),
            kind: i.kind.as_str().to_string(),
            claims_used: i.attributes.clone(),
            proof_id: i.proof_id.clone(),
        }
    }
}

/// The policy decision, with enough to find the exact policies that made it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AuditDecision {
    pub allowed: bool,
    #[serde(default)]
    pub policy_ids: Vec<String>,
    pub bundle_version: u64,
    #[serde(default)]
    pub errors: Vec<String>,
}

impl From<&idmint_core::Decision> for AuditDecision {
    fn from(d: &idmint_core::Decision) -> Self {
        Self {
            allowed: d.allowed,
            policy_ids: d.policy_ids.clone(),
            bundle_version: d.bundle_version,
            errors: d.errors.clone(),
        }
    }
}

/// A failure recorded in an event (the same `code`/`message` the API returned).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AuditErrorInfo {
    pub code: String,
    pub message: String,
}

/// What a durable append returns: the event's place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt {
    pub seq: u64,
    pub hash: String,
}

/// The `event` values idmint writes. The field is a free string so that new
/// kinds need no format change; these constants keep spelling consistent.
pub mod kinds {
    pub const LOGIN: &str = "login";
    pub const LOGIN_FAILED: &str = "login_failed";
    pub const DECISION: &str = "decision";
    pub const CREDENTIAL_ISSUED: &str = "credential_issued";
    pub const ISSUE_FAILED: &str = "issue_failed";
    pub const LEASE_REVOKED: &str = "lease_revoked";
    pub const LEASE_EXPIRED: &str = "lease_expired";
    pub const REVOKE_FAILED: &str = "revoke_failed";
    pub const SESSION_REVOKED: &str = "session_revoked";
    pub const TOKEN_EXCHANGE: &str = "token_exchange";
    pub const SERVER_START: &str = "server_start";
    pub const POLICY_ACTIVATED: &str = "policy_activated";
    /// Written only by the log itself; `append` rejects it.
    pub const CHECKPOINT: &str = "checkpoint";
    pub const ADMIN: &str = "admin";
}

/// The `outcome` values.
pub mod outcomes {
    pub const SUCCESS: &str = "success";
    pub const DENIED: &str = "denied";
    pub const ERROR: &str = "error";
}

/// Well-known keys inside `detail`.
pub mod detail_keys {
    /// On issuance events: the id of the session token the caller used.
    pub const SESSION_TOKEN_ID: &str = "session_token_id";
    /// On checkpoints: base64url of the raw Ed25519 public key that signed it.
    pub const PUBLIC_KEY: &str = "public_key";
    /// On checkpoints: the seq of the last event before the checkpoint.
    pub const COVERS_SEQ: &str = "covers_seq";
}
