//! `GET /api/v1/auth/sso`: the human (SSO) login methods a server accepts,
//! so `idmint login --sso` needs no client-side configuration.

use serde::{Deserialize, Serialize};

/// One `[[auth.oidc]]` config for people.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SsoMethod {
    /// The auth config name (`idmint login --sso NAME`).
    pub name: String,
    /// The IdP's issuer; its discovery document gives the endpoints.
    pub issuer: String,
    /// The public OAuth client the CLI uses (PKCE, loopback redirect).
    pub client_id: String,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct SsoMethods {
    pub methods: Vec<SsoMethod>,
}
