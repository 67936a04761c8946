//! AppRole wire types: `POST /api/v1/auth/approle/login` and
//! `POST /api/v1/approle/{name}/secret-id`.

use serde::{Deserialize, Serialize};

/// `POST /api/v1/auth/approle/login`; answered with a `LoginResponse`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRoleLoginRequest {
    pub role_id: String,
    pub secret_id: String,
}

/// `POST /api/v1/approle/{name}/secret-id` (admin): a new secret id, shown
/// once. idmint keeps only a keyed hash of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretIdResponse {
    pub approle: String,
    pub secret_id: String,
    /// Public handle of the secret id, as audited.
    pub secret_id_accessor: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub secret_id_ttl: u64,
    /// Logins allowed; 0 means unlimited until `expires_at`.
    pub secret_id_num_uses: u32,
    pub bound_cidrs: Vec<String>,
}
