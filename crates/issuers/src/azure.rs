//! The `azure` issuer: Microsoft Entra ID application credentials, in two
//! modes per role (`[role.azure] mode = …`):
//!
//! - `client_secret`: idmint adds a client secret to the role's application
//!   with Microsoft Graph `addPassword` (display name `idmint-<lease id>`,
//!   `endDateTime` = the lease's end) and removes it at revocation
//!   (`removePassword`). The write-ahead handle names the application and
//!   the display name (Graph only assigns the `keyId` when it answers), so
//!   a crash after `addPassword` leaves a pending lease whose revocation
//!   finds and removes the secret by its display name.
//! - `federated`: idmint signs a client assertion (`aud =
//!   api://AzureADTokenExchange`, `sub` = the caller's subject, the same
//!   signer as the `oauth` issuer); the caller redeems it at Entra ID's token
//!   endpoint for the application configured with a federated identity
//!   credential trusting idmint. Nothing to revoke: the JWT lives minutes.
//!
//! idmint authenticates to Graph as its own application: with a client
//! secret (`client_secret_env`/`client_secret_file`, read at start) or,
//! secretless, with its own signed assertion (`federated_credential = true`,
//! subject `idmint:<issuer name>`). It needs the Graph application
//! permission `Application.ReadWrite.OwnedBy` (and to own the applications)
//! or `Application.ReadWrite.All`.
//!
//! ```toml
//! [[issuer.azure]]
//! name = "azure"
//! tenant_id = "00000000-0000-0000-0000-000000000000"
//! client_id = "11111111-1111-1111-1111-111111111111"   # idmint's own application
//! client_secret_env = "IDMINT_AZURE_SECRET"             # or client_secret_file, or federated_credential = true
//! # authority = "https://login.microsoftonline.com"
//! # graph = "https://graph.microsoft.com"
//! # timeout = "10s"
//! # jwt_algorithm = "RS256"
//! ```

pub mod graph;

use crate::keys::{KeyRing, SigningAlg};
use crate::oauth::{OauthIssuer, OauthIssuerConfig, TOKEN_ID_HANDLE};
use crate::{IssueError, IssueRequest, Issuer, Minted, PlanRequest};
use graph::{ClientProof, Graph, GraphError};
use idmint_core::role::{AzureMode, AzureTemplate, AZURE_ASSERTION_AUDIENCE};
use idmint_core::{RevocationHandle, Role, Secret, TokenId, Ttl, UnixTime};
use idmint_proto::Credential;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Revocation handle kind of a client secret: `<application object
/// id>/<display name>`.
pub const PASSWORD_HANDLE: &str = "azure_password";

const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
const DEFAULT_GRAPH: &str = "https://graph.microsoft.com";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DISPLAY_PREFIX: &str = "idmint-";

fn default_authority() -> String {
    DEFAULT_AUTHORITY.to_string()
}
fn default_graph() -> String {
    DEFAULT_GRAPH.to_string()
}

/// `[[issuer.azure]]` in `idmint.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AzureIssuerConfig {
    pub name: String,
    /// Directory (tenant) id or verified domain.
    pub tenant_id: String,
    /// idmint's own application (client) id, used to call Graph.
    pub client_id: String,
    /// Environment variable with idmint's client secret (read at start).
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// File with idmint's client secret (read at start).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Call Graph with an idmint-signed client assertion instead of a
    /// secret (idmint's application trusts idmint as a federated issuer,
    /// subject `idmint:<name>`).
    #[serde(default)]
    pub federated_credential: bool,
    #[serde(default = "default_authority")]
    pub authority: String,
    #[serde(default = "default_graph")]
    pub graph: String,
    #[serde(default)]
    pub timeout: Option<Ttl>,
    /// Signing algorithm of assertions (default RS256).
    #[serde(default)]
    pub jwt_algorithm: Option<SigningAlg>,
}

/// `8-4-4-4-12` hexadecimal.
fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn http_url(entry: &str, field: &str, url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{entry}: `{field}` {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https")
        || parsed.host_str().is_none()
        || parsed.query().is_some()
    {
        return Err(format!(
            "{entry}: `{field}` must be an http(s) URL without query"
        ));
    }
    Ok(())
}

impl AzureIssuerConfig {
    /// Config-time checks (no I/O).
    pub fn validate(&self) -> Result<(), String> {
        let entry = format!("[[issuer.azure]] {:?}", self.name);
        crate::target::config::check_name("[[issuer.azure]]", &self.name)?;
        let tenant_ok = !self.tenant_id.is_empty()
            && self.tenant_id.len() <= 255
            && self
                .tenant_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !tenant_ok {
            return Err(format!(
                "{entry}: `tenant_id` must be a tenant GUID or domain"
            ));
        }
        if !is_guid(&self.client_id) {
            return Err(format!(
                "{entry}: `client_id` must be an application (client) id GUID"
            ));
        }
        let sources = usize::from(self.client_secret_env.is_some())
            + usize::from(self.client_secret_file.is_some())
            + usize::from(self.federated_credential);
        if sources != 1 {
            return Err(format!(
                "{entry}: set exactly one of client_secret_env, client_secret_file, federated_credential = true"
            ));
        }
        http_url(&entry, "authority", &self.authority)?;
        http_url(&entry, "graph", &self.graph)
    }

    /// idmint's client secret, when configured (reads env or file).
    fn read_secret(&self) -> Result<Option<Secret<String>>, String> {
        let entry = format!("[[issuer.azure]] {:?}", self.name);
        if let Some(var) = &self.client_secret_env {
            let v = std::env::var(var)
                .map_err(|_| format!("{entry}: environment variable {var} is not set"))?;
            return Ok(Some(Secret::new(v.trim().to_string())));
        }
        if let Some(path) = &self.client_secret_file {
            let v = std::fs::read_to_string(path)
                .map_err(|e| format!("{entry}: {}: {e}", path.display()))?;
            return Ok(Some(Secret::new(v.trim().to_string())));
        }
        Ok(None)
    }
}

/// Mints Entra ID application credentials; see the module docs.
pub struct AzureIssuer {
    name: String,
    tenant_id: String,
    client_id: String,
    secret: Option<Secret<String>>,
    issuer_url: String,
    alg: SigningAlg,
    keys: Arc<KeyRing>,
    graph: Graph,
    federation: OauthIssuer,
}

impl std::fmt::Debug for AzureIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureIssuer")
            .field("name", &self.name)
            .field("tenant_id", &self.tenant_id)
            .field("token_url", &self.graph.token_url())
            .finish_non_exhaustive()
    }
}

/// The claims of idmint's own client assertion for Graph.
#[derive(Serialize)]
struct OwnAssertion<'a> {
    iss: &'a str,
    sub: String,
    aud: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
}

impl AzureIssuer {
    /// Build the issuer (reads idmint's client secret; no network).
    pub fn new(
        cfg: &AzureIssuerConfig,
        issuer_url: String,
        keys: Arc<KeyRing>,
    ) -> Result<Self, IssueError> {
        cfg.validate().map_err(IssueError::Config)?;
        let secret = cfg.read_secret().map_err(IssueError::Config)?;
        Self::build(cfg, issuer_url, keys, secret)
    }

    /// For `--check-config`: no secret is read.
    pub fn offline(
        cfg: &AzureIssuerConfig,
        issuer_url: String,
        keys: Arc<KeyRing>,
    ) -> Result<Self, IssueError> {
        cfg.validate().map_err(IssueError::Config)?;
        Self::build(cfg, issuer_url, keys, None)
    }

    fn build(
        cfg: &AzureIssuerConfig,
        issuer_url: String,
        keys: Arc<KeyRing>,
        secret: Option<Secret<String>>,
    ) -> Result<Self, IssueError> {
        let timeout = cfg.timeout.map(Ttl::as_duration).unwrap_or(DEFAULT_TIMEOUT);
        let graph = Graph::new(&cfg.authority, &cfg.tenant_id, &cfg.graph, timeout)
            .map_err(|e| IssueError::Config(format!("[[issuer.azure]] {:?}: {e}", cfg.name)))?;
        let alg = cfg.jwt_algorithm.unwrap_or(SigningAlg::RS256);
        let federation = OauthIssuer::new(
            &OauthIssuerConfig {
                name: cfg.name.clone(),
                algorithm: Some(alg),
            },
            issuer_url.clone(),
            keys.clone(),
        )?;
        Ok(Self {
            name: cfg.name.clone(),
            tenant_id: cfg.tenant_id.clone(),
            client_id: cfg.client_id.clone(),
            secret,
            issuer_url,
            alg,
            keys,
            graph,
            federation,
        })
    }

    fn template<'r>(&self, role: &'r Role) -> Result<&'r AzureTemplate, String> {
        role.azure.as_ref().ok_or_else(|| {
            format!(
                "role {:?} uses the azure issuer {:?} but has no [role.azure] template (mode, client_id)",
                role.name, self.name
            )
        })
    }

    fn target_error(&self, action: &str, e: GraphError) -> IssueError {
        let retryable = e.is_retryable();
        let hint = match &e {
            GraphError::Service { status: 401 | 403, .. } => {
                "; idmint's application lacks the Graph permission (Application.ReadWrite.OwnedBy and ownership, \
                 or Application.ReadWrite.All) or its credential was rejected"
            }
            _ => "",
        };
        IssueError::Target {
            target: self.name.clone(),
            message: format!(
                "{}Microsoft Entra ID / Graph failed to {action}: {e}{hint}",
                if retryable {
                    "Azure is unavailable: "
                } else {
                    ""
                }
            ),
            retryable,
        }
    }

    /// idmint's own proof for Graph: its secret, or a fresh assertion.
    fn own_proof(&self) -> Result<ClientProof, String> {
        if let Some(s) = &self.secret {
            return Ok(ClientProof::Secret(s.clone()));
        }
        let key = self
            .keys
            .key_for(self.alg)
            .ok_or_else(|| format!("no {} key to sign idmint's client assertion", self.alg))?;
        let now = UnixTime::now().secs();
        let jti = TokenId::generate().map_err(|e| e.to_string())?;
        let jwt = key
            .sign_jwt(&OwnAssertion {
                iss: &self.issuer_url,
                sub: format!("idmint:{}", self.name),
                aud: AZURE_ASSERTION_AUDIENCE,
                iat: now,
                nbf: now,
                exp: now + 300,
                jti: jti.as_str().to_string(),
            })
            .map_err(|e| e.to_string())?;
        Ok(ClientProof::Assertion(Secret::new(jwt)))
    }

    async fn admin_token(&self) -> Result<Secret<String>, IssueError> {
        self.graph
            .admin_token(&self.client_id, || self.own_proof())
            .await
            .map_err(|e| self.target_error("issue idmint's own Graph token", e))
    }

    /// `(application object id, display name)` of a planned secret,
    /// refusing anything idmint could not have planned.
    fn planned_secret<'h>(
        &self,
        handle: &'h RevocationHandle,
    ) -> Result<(&'h str, &'h str), IssueError> {
        let parsed = handle.value.split_once('/').filter(|(app, display)| {
            handle.kind == PASSWORD_HANDLE
                && is_guid(app)
                && display.strip_prefix(DISPLAY_PREFIX).is_some_and(|rest| {
                    !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                })
        });
        parsed.ok_or_else(|| {
            IssueError::Internal(format!(
                "revocation handle {:?}/{:?} is not a client secret the azure issuer {:?} plans; refusing to touch it",
                handle.kind, handle.value, self.name
            ))
        })
    }
}

#[async_trait::async_trait]
impl Issuer for AzureIssuer {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "azure"
    }

    fn plan(&self, plan: &PlanRequest<'_>) -> Result<RevocationHandle, IssueError> {
        let t = self.template(plan.role).map_err(IssueError::Config)?;
        match t.mode {
            AzureMode::ClientSecret => {
                let app = t.application_object_id.as_deref().unwrap_or_default();
                Ok(RevocationHandle {
                    kind: PASSWORD_HANDLE.to_string(),
                    value: format!("{app}/{DISPLAY_PREFIX}{}", plan.lease_id.as_str()),
                })
            }
            AzureMode::Federated => self.federation.plan(plan),
        }
    }

    fn validate_role(&self, role: &Role) -> Result<(), String> {
        let t = self.template(role)?;
        if !is_guid(&t.client_id) {
            return Err(format!(
                "client_id {:?} is not an application (client) id GUID",
                t.client_id
            ));
        }
        match t.mode {
            AzureMode::ClientSecret => {
                if !t.application_object_id.as_deref().is_some_and(is_guid) {
                    return Err("mode client_secret needs `application_object_id` (the application's object id GUID)".into());
                }
            }
            AzureMode::Federated => {
                if role.audiences != [AZURE_ASSERTION_AUDIENCE] {
                    return Err(format!("mode federated: leave `audiences` unset (it is {AZURE_ASSERTION_AUDIENCE})"));
                }
            }
        }
        Ok(())
    }

    async fn issue(&self, req: &IssueRequest<'_>) -> Result<Minted, IssueError> {
        let t = self.template(req.role).map_err(IssueError::Config)?;
        match t.mode {
            AzureMode::ClientSecret => {
                let (app, display) = self.planned_secret(req.revocation)?;
                let expires_at = req.credential_expiry("the client secret could be added")?;
                let token = self.admin_token().await?;
                let added = self
                    .graph
                    .add_password(&token, app, display, expires_at)
                    .await
                    .map_err(|e| {
                        self.target_error(&format!("addPassword on application {app}"), e)
                    })?;
                tracing::debug!(issuer = %self.name, lease_id = %req.lease_id, app, key_id = %added.key_id, "added azure client secret");
                Ok(Minted {
                    secret_material: Secret::new(added.secret_text.expose().as_bytes().to_vec()),
                    credential: Credential::AzureClientSecret {
                        tenant_id: self.tenant_id.clone(),
                        client_id: t.client_id.clone(),
                        client_secret: added.secret_text.expose().clone(),
                        key_id: added.key_id,
                        expiration: expires_at.rfc3339(),
                    },
                    expires_at,
                })
            }
            AzureMode::Federated => {
                let minted = self.federation.issue(req).await?;
                let Credential::OauthToken {
                    access_token,
                    token_id,
                    ..
                } = minted.credential
                else {
                    return Err(IssueError::Internal(
                        "the token signer returned something other than a token".into(),
                    ));
                };
                Ok(Minted {
                    credential: Credential::AzureClientAssertion {
                        tenant_id: self.tenant_id.clone(),
                        client_id: t.client_id.clone(),
                        assertion: access_token,
                        token_id,
                    },
                    expires_at: minted.expires_at,
                    secret_material: minted.secret_material,
                })
            }
        }
    }

    /// Remove every secret of the application with the planned display
    /// name; none left (or no application) is success.
    async fn revoke(&self, handle: &RevocationHandle) -> Result<(), IssueError> {
        if handle.kind == TOKEN_ID_HANDLE {
            return self.federation.revoke(handle).await;
        }
        let (app, display) = self.planned_secret(handle)?;
        let token = self.admin_token().await?;
        let Some(secrets) =
            self.graph.passwords(&token, app).await.map_err(|e| {
                self.target_error(&format!("list the secrets of application {app}"), e)
            })?
        else {
            return Ok(());
        };
        for s in secrets
            .iter()
            .filter(|s| s.display_name.as_deref() == Some(display))
        {
            self.graph
                .remove_password(&token, app, &s.key_id)
                .await
                .map_err(|e| {
                    self.target_error(
                        &format!("removePassword {} on application {app}", s.key_id),
                        e,
                    )
                })?;
            tracing::debug!(issuer = %self.name, app, key_id = %s.key_id, "removed azure client secret");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::signing::tests::test_key;
    use serde_json::json;

    fn config(extra: serde_json::Value) -> AzureIssuerConfig {
        let mut base = json!({
            "name": "azure",
            "tenant_id": "contoso.onmicrosoft.com",
            "client_id": "11111111-1111-1111-1111-111111111111",
            "federated_credential": true
        });
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn config_and_handles_are_checked() {
        config(json!({})).validate().unwrap();
        for (bad, needle) in [
            (json!({"client_id": "nope"}), "client_id"),
            (json!({"tenant_id": "a/b"}), "tenant_id"),
            (json!({"client_secret_env": "X"}), "exactly one"),
            (json!({"federated_credential": false}), "exactly one"),
            (json!({"graph": "ftp://x"}), "graph"),
        ] {
            let e = config(bad.clone()).validate().unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
        let ring = Arc::new(KeyRing::new(vec![test_key(SigningAlg::RS256)]));
        let i =
            AzureIssuer::new(&config(json!({})), "https://idmint.example".into(), ring).unwrap();
        let h = |kind: &str, value: &str| RevocationHandle {
            kind: kind.into(),
            value: value.into(),
        };
        let app = "22222222-2222-2222-2222-222222222222";
        assert!(i
            .planned_secret(&h(PASSWORD_HANDLE, &format!("{app}/idmint-lse_0123abcd")))
            .is_ok());
        for (kind, value) in [
            (PASSWORD_HANDLE, format!("{app}/other-secret")),
            (PASSWORD_HANDLE, format!("{app}/idmint-")),
            (PASSWORD_HANDLE, "not-a-guid/idmint-lse_1".to_string()),
            ("aws_iam_user", format!("{app}/idmint-lse_1")),
        ] {
            assert!(
                matches!(
                    i.planned_secret(&h(kind, &value)),
                    Err(IssueError::Internal(_))
                ),
                "{value}"
            );
        }
        // The own assertion is signed by the ring for Graph's audience.
        match i.own_proof().unwrap() {
            ClientProof::Assertion(a) => assert_eq!(a.expose().split('.').count(), 3),
            ClientProof::Secret(_) => panic!("expected an assertion"),
        }
    }
}
