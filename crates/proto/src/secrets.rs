//! Static secrets (`/api/v1/secrets`, admin only): values an admin stores
//! sealed in idmint, such as an upstream API key, delivered by `static`
//! roles to `idmint proxy`. The API never returns a stored value: listings
//! carry a keyed fingerprint so an admin can tell which value is stored
//! without seeing it.

use serde::{Deserialize, Serialize};

/// `PUT /api/v1/secrets/{name}`: stores (or replaces) the value.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutSecretRequest {
    pub value: String,
}

/// The value never appears in `Debug` output (logs, panics, test failures).
impl std::fmt::Debug for PutSecretRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutSecretRequest")
            .field("value", &"[redacted]")
            .finish()
    }
}

/// What idmint says about a stored secret: everything but its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    pub name: String,
    /// Keyed fingerprint of the value (`fp_…`), the same one the audit log
    /// and the leases of `static` roles show.
    pub fingerprint: String,
    /// 1 for the first `put`, +1 for every replacement (back to 1 after a
    /// delete).
    pub version: u64,
    /// Length of the value in bytes.
    pub size: u64,
    /// Seconds since the Unix epoch of the last `put`.
    pub updated_at: i64,
    /// Principal (`issuer|subject`) of the admin who stored this version.
    pub updated_by: String,
}

/// `GET /api/v1/secrets`, ordered by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretList {
    pub secrets: Vec<SecretInfo>,
}
