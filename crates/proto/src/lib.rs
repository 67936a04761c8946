//! Wire types of idmint's native API (`/api/v1/`) and its OAuth endpoint.
//!
//! Shared by the server and every client so that a field rename is a compile
//! error on both sides rather than a silent mismatch.

pub mod anomaly;
pub mod approle;
pub mod aws_iam;
pub mod governance;
pub mod secrets;
pub mod ssh;
pub mod sso;
pub mod unix;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Prefix of every idmint session token.
pub const SESSION_TOKEN_PREFIX: &str = "idm_";

/// RFC 8693 token type URIs.
pub mod token_types {
    pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
    pub const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
    pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
    pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
}

/// Every native API error: `{"error": {"code", "message", "request_id"}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_token`, `policy_denied`.
    pub code: String,
    /// What failed and what to do about it.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `POST /api/v1/login`
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Authn method; only `oidc` for now.
    pub method: String,
    /// The proof: for `oidc`, the JWT.
    pub token: String,
    /// Name of the auth config to use; by default chosen by the token's `iss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// For a person's SSO login: the IdP access token issued with the ID
    /// token. Used only to read groups from the IdP's userinfo endpoint
    /// when the ID token carries none; never stored or logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IdentitySummary {
    pub kind: String,
    pub subject: String,
    pub issuer: String,
    pub method: String,
    pub auth: String,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginResponse {
    /// `idm_…` session token: send as `Authorization: Bearer`.
    pub token: String,
    pub token_id: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub renewable: bool,
    pub identity: IdentitySummary,
}

/// `POST /api/v1/creds/{role}`
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CredsRequest {
    /// Requested lifetime (`"5m"`); capped by role and policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Requested scopes; must be a subset of the role's template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// For `x509` roles: a PKCS#10 certificate signing request, PEM. Only
    /// its public key is used (after its self-signature is verified); the
    /// certificate's names and extensions come from the role, never from
    /// the CSR, and no private key is returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
}

/// The credential itself, tagged by kind so that later issuers (ssh, aws,
/// database) add variants without breaking existing clients.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Credential {
    /// A JWT signed by idmint for a downstream API.
    OauthToken {
        access_token: String,
        token_type: String,
        audience: Option<String>,
        scopes: Vec<String>,
        /// `jti` of the token.
        token_id: String,
    },
    /// A user that exists only for the lease: PostgreSQL, MySQL/MariaDB,
    /// Redis or RabbitMQ.
    DatabaseUser {
        /// `postgres`, `mysql`, `redis` or `rabbitmq`.
        engine: String,
        username: String,
        password: String,
        /// Ready-to-use connection URI with the credentials embedded
        /// (percent-encoded), e.g. `postgres://u:p@host:5432/db`.
        uri: String,
        host: String,
        port: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        database: Option<String>,
    },
    /// AWS keys: an STS session (`assumed_role`, with a session token) or
    /// an IAM user's access key (`iam_user`, no session token).
    Aws {
        access_key_id: String,
        secret_access_key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_token: Option<String>,
        /// RFC 3339 UTC (`2026-11-23T18:05:00Z`): the lease's end. An STS
        /// session may stay usable at AWS a little longer (AWS's minimum
        /// session is 15 minutes); treat this as the end.
        expiration: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
        /// `assumed_role` or `iam_user`.
        mode: String,
        /// The role assumed (`assumed_role`) or the user's ARN (`iam_user`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        arn: Option<String>,
    },
    /// An idmint-signed JWT (`aud = sts.amazonaws.com`) for the caller's own
    /// `AssumeRoleWithWebIdentity` call (`federated` AWS roles).
    AwsWebIdentity {
        token: String,
        role_arn: String,
        role_session_name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
        /// `jti` of the token.
        token_id: String,
    },
    /// A client secret of a Microsoft Entra ID application (`azure` roles,
    /// mode `client_secret`), removed from the application at revocation.
    AzureClientSecret {
        tenant_id: String,
        client_id: String,
        client_secret: String,
        /// Graph's `keyId` of the secret.
        key_id: String,
        /// RFC 3339 UTC: the lease's end (also the secret's `endDateTime`).
        expiration: String,
    },
    /// An idmint-signed JWT for `client_assertion` (`azure` roles, mode
    /// `federated`): the caller redeems it at Entra ID's token endpoint.
    AzureClientAssertion {
        tenant_id: String,
        client_id: String,
        assertion: String,
        /// `jti` of the token.
        token_id: String,
    },
    /// An X.509-SVID from an `x509` issuer: a short-lived leaf whose only
    /// URI SAN is `spiffe_id`, usable as a TLS client or server certificate.
    X509Svid {
        /// The leaf, PEM.
        certificate_pem: String,
        /// Intermediates between the leaf and the bundle, PEM (empty: the
        /// leaf is signed by the root in `bundle_pem`).
        chain_pem: String,
        /// The trust bundle (CA certificates) of the trust domain, PEM; also
        /// at `GET /api/v1/x509/bundle`.
        bundle_pem: String,
        spiffe_id: String,
        /// Serial number of the leaf, lowercase hex.
        serial: String,
        /// The leaf's PKCS#8 private key, PEM, when the server generated the
        /// key pair; returned once, never stored. Absent when the request
        /// carried a `csr` (the key never left the client).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        private_key_pem: Option<String>,
    },
    /// A static secret stored sealed in idmint (`static` roles), e.g. an
    /// upstream API key. Delivered only to `idmint proxy` (a `unix`
    /// identity attested by a host) unless the role sets
    /// `deliver_to = "any"`: the proxy injects it into requests so no
    /// workload ever sees it. The API never returns it anywhere else.
    StaticSecret {
        /// The secret's name (`PUT /api/v1/secrets/{name}`).
        name: String,
        /// The secret value itself.
        value: String,
    },
}

/// `GET /api/v1/x509/bundle`: the CA certificates of every `x509` issuer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct X509Bundles {
    pub bundles: Vec<X509Bundle>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct X509Bundle {
    pub issuer: String,
    pub trust_domain: String,
    pub bundle_pem: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CredsResponse {
    pub lease_id: String,
    pub role: String,
    pub issuer: String,
    pub expires_at: i64,
    pub ttl_seconds: u64,
    /// True when the requested TTL exceeded the cap and was shortened.
    pub ttl_clamped: bool,
    pub policy_version: u64,
    /// Keyed fingerprint of the credential, as it appears in the audit log.
    pub fingerprint: String,
    pub credential: Credential,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WhoAmI {
    pub identity: IdentitySummary,
    pub token_id: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeaseInfo {
    pub id: String,
    pub role: String,
    pub issuer: String,
    pub principal: String,
    pub state: String,
    pub policy_version: u64,
    pub created_at: i64,
    pub expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseList {
    pub leases: Vec<LeaseInfo>,
}

/// `POST /api/v1/leases/{id}/renew`
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// Requested extension from now (`"15m"`); capped by the role's
    /// `max_ttl` counted from the lease's creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

/// `POST /api/v1/leases/revoke-prefix` (admin): incident response.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokePrefixRequest {
    /// Role name prefix, e.g. `db/orders-readonly`. Must not be empty.
    pub prefix: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokePrefixResponse {
    pub revoked: Vec<String>,
    /// Leases whose revocation failed now; the reaper keeps retrying them.
    pub failed: Vec<LeaseInfo>,
}

/// `POST /api/v1/targets/{name}/rotate-admin` (admin).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotateAdminResponse {
    pub target: String,
    /// Version of the sealed admin credential now in use.
    pub version: u64,
}

/// `GET /api/v1/audit/trace/{ref}`: the audit events that explain a
/// credential, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TraceResponse {
    pub reference: String,
    pub events: Vec<Value>,
}

/// `POST /oauth/token` success (RFC 8693 §2.2.1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenExchangeResponse {
    pub access_token: String,
    pub issued_token_type: String,
    pub token_type: String,
    pub expires_in: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// `POST /oauth/token` failure (RFC 6749 §5.2).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OAuthError {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// `GET /healthz` and `/readyz`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_credentials_are_tagged_and_omit_absent_fields() {
        let aws = Credential::Aws {
            access_key_id: "AKIA1".into(),
            secret_access_key: "s".into(),
            session_token: None,
            expiration: "2026-11-23T18:00:00Z".into(),
            region: Some("us-east-1".into()),
            mode: "iam_user".into(),
            arn: None,
        };
        let v = serde_json::to_value(&aws).unwrap();
        assert_eq!(v["type"], "aws");
        assert!(v.get("session_token").is_none() && v.get("arn").is_none());
        assert_eq!(serde_json::from_value::<Credential>(v).unwrap(), aws);
        let web = serde_json::json!({"type": "aws_web_identity", "token": "t", "role_arn": "r",
                                     "role_session_name": "n", "token_id": "j"});
        assert!(matches!(
            serde_json::from_value::<Credential>(web).unwrap(),
            Credential::AwsWebIdentity { region: None, .. }
        ));
        let az = serde_json::json!({"type": "azure_client_secret", "tenant_id": "t", "client_id": "c",
                                    "client_secret": "s", "key_id": "k", "expiration": "e"});
        assert!(matches!(
            serde_json::from_value::<Credential>(az).unwrap(),
            Credential::AzureClientSecret { .. }
        ));
    }
}
