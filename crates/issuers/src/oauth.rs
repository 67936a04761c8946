//! The `oauth` issuer: JWT access tokens signed by idmint.
//!
//! A caller exchanges its identity (RFC 8693 token exchange, or the native
//! `creds` API) for a short-lived JWT restricted to one audience and a subset
//! of the role's scopes. Downstream APIs and clouds verify it against
//! idmint's JWKS ([`crate::keys::discovery_document`]).
//!
//! Revocation: a self-contained JWT cannot be recalled once handed out —
//! relying parties verify it offline. [`OauthIssuer::revoke`] therefore only
//! lets the lease be marked revoked; the token stays valid until `exp`.
//! This is why roles for this issuer should keep TTLs short (minutes), and
//! why `exp` is never later than the proof the caller logged in with.

use crate::keys::{KeyRing, SigningAlg, SigningKey};
use crate::PlanRequest;
use crate::{IssueError, IssueRequest, Issuer, Minted};
use idmint_core::{LeaseId, RevocationHandle, Secret, TokenId};
use idmint_proto::Credential;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// The revocation handle kind this issuer plans: the token's `jti`.
pub const TOKEN_ID_HANDLE: &str = "token_id";

/// `[[issuer.oauth]]` in `idmint.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OauthIssuerConfig {
    pub name: String,
    /// Signing algorithm; `ES256` when absent.
    #[serde(default)]
    pub algorithm: Option<SigningAlg>,
}

/// Mints JWTs signed with the ring's key for the configured algorithm.
pub struct OauthIssuer {
    name: String,
    issuer_url: String,
    alg: SigningAlg,
    keys: Arc<KeyRing>,
}

impl std::fmt::Debug for OauthIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OauthIssuer")
            .field("name", &self.name)
            .field("issuer_url", &self.issuer_url)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl OauthIssuer {
    /// `issuer_url` becomes every token's `iss`; it must be the same string
    /// the discovery document publishes. Fails when the ring has no key for
    /// the configured algorithm, so a misconfiguration stops startup instead
    /// of failing every request.
    pub fn new(
        cfg: &OauthIssuerConfig,
        issuer_url: String,
        keys: Arc<KeyRing>,
    ) -> Result<Self, IssueError> {
        if cfg.name.trim().is_empty() {
            return Err(IssueError::Config(
                "[[issuer.oauth]] needs a non-empty `name`".into(),
            ));
        }
        if !(issuer_url.starts_with("https://") || issuer_url.starts_with("http://")) {
            return Err(IssueError::Config(format!(
                "issuer {:?}: the issuer URL {issuer_url:?} must be an absolute http(s) URL \
                 (it becomes the `iss` of every minted token)",
                cfg.name
            )));
        }
        let alg = cfg.algorithm.unwrap_or(SigningAlg::ES256);
        if keys.key_for(alg).is_none() {
            return Err(IssueError::Config(format!(
                "issuer {:?}: no {alg} signing key is loaded; generate one or set \
                 `algorithm` to one of: {}",
                cfg.name,
                keys.algs()
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(Self {
            name: cfg.name.clone(),
            issuer_url,
            alg,
            keys,
        })
    }

    fn signing_key(&self) -> Result<&SigningKey, IssueError> {
        self.keys.key_for(self.alg).ok_or_else(|| {
            IssueError::Internal(format!(
                "the {} signing key disappeared from the key ring",
                self.alg
            ))
        })
    }
}

/// The claims of a minted access token, serialized straight from borrows.
#[derive(Serialize)]
struct AccessTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    act: Option<&'a Value>,
    idmint: IdmintClaims<'a>,
}

/// Private claim tying the token back to its lease and proof for audit.
#[derive(Serialize)]
struct IdmintClaims<'a> {
    lease_id: &'a LeaseId,
    role: &'a str,
    policy_version: u64,
    auth: &'a str,
    method: &'a str,
    source_issuer: &'a str,
}

#[async_trait::async_trait]
impl Issuer for OauthIssuer {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "oauth"
    }

    /// A signed JWT exists only in the response: no write-ahead needed.
    fn mints_externally(&self) -> bool {
        false
    }

    fn plan(&self, _plan: &PlanRequest<'_>) -> Result<RevocationHandle, IssueError> {
        let jti = TokenId::generate().map_err(|e| IssueError::Internal(e.to_string()))?;
        Ok(RevocationHandle {
            kind: TOKEN_ID_HANDLE.to_string(),
            value: jti.as_str().to_string(),
        })
    }

    async fn issue(&self, req: &IssueRequest<'_>) -> Result<Minted, IssueError> {
        let jti = planned_token_id(req.revocation)?;
        let audience = req.grant.audience.as_deref().ok_or_else(|| {
            IssueError::Config(format!(
                "role {:?} has no audience: set `audiences` in roles.toml \
                 (an oauth token without an audience would be accepted by any API)",
                req.role.name
            ))
        })?;
        let expires_at = req.credential_expiry("the token could be minted")?;
        let scopes = &req.grant.scopes;
        let claims = AccessTokenClaims {
            iss: &self.issuer_url,
            sub: &req.identity.subject,
            aud: audience,
            iat: req.now.secs(),
            nbf: req.now.secs(),
            exp: expires_at.secs(),
            jti: jti.as_str(),
            scope: (!scopes.is_empty()).then(|| scopes.join(" ")),
            act: req.actor.as_ref(),
            idmint: IdmintClaims {
                lease_id: req.lease_id,
                role: &req.role.name,
                policy_version: req.policy_version,
                auth: &req.identity.auth,
                method: &req.identity.method,
                source_issuer: &req.identity.issuer,
            },
        };
        let key = self.signing_key()?;
        let jwt = key.sign_jwt(&claims)?;
        tracing::debug!(
            issuer = %self.name,
            lease_id = %req.lease_id,
            jti = %jti,
            kid = key.kid(),
            exp = expires_at.secs(),
            "minted oauth token"
        );
        let secret_material = Secret::new(jwt.as_bytes().to_vec());
        Ok(Minted {
            credential: Credential::OauthToken {
                access_token: jwt,
                token_type: "Bearer".to_string(),
                audience: Some(audience.to_string()),
                scopes: scopes.clone(),
                token_id: jti.as_str().to_string(),
            },
            expires_at,
            secret_material,
        })
    }

    /// A signed JWT cannot be recalled: relying parties verify it offline.
    /// Returning `Ok` lets the lease be marked revoked; the token itself
    /// stays valid until its (short) `exp`.
    async fn revoke(&self, handle: &RevocationHandle) -> Result<(), IssueError> {
        planned_token_id(handle)?;
        tracing::debug!(
            issuer = %self.name,
            jti = %handle.value,
            "oauth token lease revoked; the JWT stays valid until its exp"
        );
        Ok(())
    }
}

/// The `jti` planned for this lease. Anything else means the lease row was
/// written by another issuer type: a bug, so refuse rather than mint.
fn planned_token_id(handle: &RevocationHandle) -> Result<TokenId, IssueError> {
    if handle.kind != TOKEN_ID_HANDLE {
        return Err(IssueError::Internal(format!(
            "revocation handle of kind {:?} given to the oauth issuer, which plans {TOKEN_ID_HANDLE:?}",
            handle.kind
        )));
    }
    TokenId::parse(&handle.value).ok_or_else(|| {
        IssueError::Internal(format!(
            "revocation handle {:?} is not a token id",
            handle.value
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::signing::tests::{test_key, verify_with_jwk};
    use idmint_core::{Grant, Identity, IdentityKind, RequestId, Role, Ttl, UnixTime};
    use serde_json::json;

    const ISS: &str = "https://idmint.example";

    fn identity(expires_at: i64) -> Identity {
        Identity {
            kind: IdentityKind::Ci,
            subject: "repo:acme/app:ref:refs/heads/main".into(),
            issuer: "https://token.actions.githubusercontent.com".into(),
            method: "oidc".into(),
            auth: "github".into(),
            attributes: Default::default(),
            proof_id: "proof-1".into(),
            expires_at: UnixTime(expires_at),
        }
    }

    fn role() -> Role {
        Role::parse_file(
            "roles.toml",
            "[[role]]\nname='orders-api'\nissuer='oauth'\nmax_ttl='10m'\n\
             audiences=['https://orders.example']\nscopes=['orders:read','orders:write']\n",
        )
        .unwrap()
        .remove("orders-api")
        .unwrap()
    }

    fn grant(ttl: u64, audience: Option<&str>, scopes: &[&str]) -> Grant {
        Grant {
            ttl: Ttl::from_secs(ttl).unwrap(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            audience: audience.map(str::to_string),
            ttl_clamped: false,
        }
    }

    fn issuer(alg: Option<SigningAlg>) -> (OauthIssuer, Arc<KeyRing>) {
        let ring = Arc::new(KeyRing::new(vec![
            test_key(SigningAlg::ES256),
            test_key(SigningAlg::EdDSA),
            test_key(SigningAlg::RS256),
        ]));
        let cfg = OauthIssuerConfig {
            name: "oauth".into(),
            algorithm: alg,
        };
        (
            OauthIssuer::new(&cfg, ISS.into(), ring.clone()).unwrap(),
            ring,
        )
    }

    struct Call {
        identity: Identity,
        role: Role,
        grant: Grant,
        actor: Option<Value>,
        now: i64,
    }

    impl Call {
        fn new() -> Self {
            Call {
                identity: identity(10_000),
                role: role(),
                grant: grant(
                    300,
                    Some("https://orders.example"),
                    &["orders:read", "orders:write"],
                ),
                actor: None,
                now: 1_000,
            }
        }

        async fn run(
            &self,
            iss: &OauthIssuer,
        ) -> Result<(Minted, RevocationHandle, LeaseId), IssueError> {
            let lease_id = LeaseId::generate().unwrap();
            let request_id = RequestId::generate().unwrap();
            let handle = iss.plan(&crate::PlanRequest {
                lease_id: &lease_id,
                role: &role(),
                identity: &identity(i64::MAX),
            })?;
            let req = IssueRequest {
                lease_id: &lease_id,
                request_id: &request_id,
                identity: &self.identity,
                role: &self.role,
                grant: &self.grant,
                policy_version: 7,
                now: UnixTime(self.now),
                actor: self.actor.clone(),
                revocation: &handle,
                csr: None,
            };
            let minted = iss.issue(&req).await?;
            Ok((minted, handle, lease_id))
        }
    }

    fn access_token(m: &Minted) -> &str {
        match &m.credential {
            Credential::OauthToken { access_token, .. } => access_token,
            other => panic!("oauth issuer minted {other:?}"),
        }
    }

    #[tokio::test]
    async fn minted_token_verifies_against_jwks_for_every_alg() {
        for alg in [SigningAlg::ES256, SigningAlg::EdDSA, SigningAlg::RS256] {
            let (iss, ring) = issuer(Some(alg));
            let (minted, handle, lease_id) = Call::new().run(&iss).await.unwrap();
            let jwt = access_token(&minted);
            let key = ring.key_for(alg).unwrap();
            let (header, claims) = verify_with_jwk(jwt, &key.public_jwk()).unwrap();
            assert_eq!(header["alg"], alg.as_str());
            assert_eq!(header["kid"], key.kid());
            assert_eq!(
                claims,
                json!({
                    "iss": ISS,
                    "sub": "repo:acme/app:ref:refs/heads/main",
                    "aud": "https://orders.example",
                    "iat": 1000,
                    "nbf": 1000,
                    "exp": 1300,
                    "jti": handle.value,
                    "scope": "orders:read orders:write",
                    "idmint": {
                        "lease_id": lease_id.as_str(),
                        "role": "orders-api",
                        "policy_version": 7,
                        "auth": "github",
                        "method": "oidc",
                        "source_issuer": "https://token.actions.githubusercontent.com",
                    }
                })
            );
            assert_eq!(minted.expires_at, UnixTime(1300));
            assert_eq!(minted.secret_material.expose().as_slice(), jwt.as_bytes());
            assert_eq!(
                minted.credential,
                Credential::OauthToken {
                    access_token: jwt.to_string(),
                    token_type: "Bearer".into(),
                    audience: Some("https://orders.example".into()),
                    scopes: vec!["orders:read".into(), "orders:write".into()],
                    token_id: handle.value.clone(),
                }
            );
        }
    }

    #[tokio::test]
    async fn default_algorithm_is_es256() {
        let (iss, ring) = issuer(None);
        let (minted, ..) = Call::new().run(&iss).await.unwrap();
        let es = ring.key_for(SigningAlg::ES256).unwrap();
        let (header, _) = verify_with_jwk(access_token(&minted), &es.public_jwk()).unwrap();
        assert_eq!(header["alg"], "ES256");
    }

    #[tokio::test]
    async fn exp_is_capped_by_the_proof() {
        let (iss, _) = issuer(None);
        let mut call = Call::new();
        call.identity = identity(1_060);
        let (minted, ..) = call.run(&iss).await.unwrap();
        assert_eq!(minted.expires_at, UnixTime(1_060));
        let jwt = access_token(&minted);
        let payload = jwt.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["exp"], 1_060);

        call.identity = identity(1_000);
        let err = call.run(&iss).await.err().unwrap();
        assert!(err.to_string().contains("log in again"), "{err}");
    }

    #[tokio::test]
    async fn missing_audience_is_a_config_error() {
        let (iss, _) = issuer(None);
        let mut call = Call::new();
        call.grant = grant(300, None, &[]);
        let err = call.run(&iss).await.err().unwrap();
        assert!(
            matches!(err, IssueError::Config(ref m) if m.contains("orders-api") && m.contains("audiences")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn empty_scopes_omit_scope_and_actor_becomes_act() {
        let (iss, ring) = issuer(None);
        let mut call = Call::new();
        call.grant = grant(60, Some("https://orders.example"), &[]);
        call.actor = Some(json!({"sub": "svc-gateway"}));
        let (minted, ..) = call.run(&iss).await.unwrap();
        let es = ring.key_for(SigningAlg::ES256).unwrap();
        let (_, claims) = verify_with_jwk(access_token(&minted), &es.public_jwk()).unwrap();
        assert!(claims.get("scope").is_none(), "{claims}");
        assert!(claims.get("client_id").is_none(), "{claims}");
        assert_eq!(claims["act"], json!({"sub": "svc-gateway"}));
        assert_eq!(claims["exp"], 1_060);
    }

    #[tokio::test]
    async fn plan_gives_fresh_token_ids_and_revoke_is_idempotent() {
        let (iss, _) = issuer(None);
        let lease = LeaseId::generate().unwrap();
        let a = iss
            .plan(&crate::PlanRequest {
                lease_id: &lease,
                role: &role(),
                identity: &identity(i64::MAX),
            })
            .unwrap();
        let b = iss
            .plan(&crate::PlanRequest {
                lease_id: &lease,
                role: &role(),
                identity: &identity(i64::MAX),
            })
            .unwrap();
        assert_eq!(a.kind, TOKEN_ID_HANDLE);
        assert!(TokenId::parse(&a.value).is_some());
        assert_ne!(a.value, b.value);
        iss.revoke(&a).await.unwrap();
        iss.revoke(&a).await.unwrap();
        let foreign = RevocationHandle {
            kind: "db_user".into(),
            value: "wl_1".into(),
        };
        assert!(matches!(
            iss.revoke(&foreign).await,
            Err(IssueError::Internal(_))
        ));
        assert_eq!(iss.name(), "oauth");
        assert_eq!(iss.kind(), "oauth");
    }

    #[tokio::test]
    async fn issue_refuses_a_handle_it_did_not_plan() {
        let (iss, _) = issuer(None);
        let c = Call::new();
        let lease_id = LeaseId::generate().unwrap();
        let request_id = RequestId::generate().unwrap();
        let handle = RevocationHandle {
            kind: TOKEN_ID_HANDLE.into(),
            value: "not-a-token-id".into(),
        };
        let req = IssueRequest {
            lease_id: &lease_id,
            request_id: &request_id,
            identity: &c.identity,
            role: &c.role,
            grant: &c.grant,
            policy_version: 1,
            now: UnixTime(c.now),
            actor: None,
            revocation: &handle,
            csr: None,
        };
        assert!(matches!(
            iss.issue(&req).await,
            Err(IssueError::Internal(_))
        ));
    }

    #[test]
    fn new_validates_config() {
        let ring = Arc::new(KeyRing::new(vec![test_key(SigningAlg::EdDSA)]));
        let cfg = |alg| OauthIssuerConfig {
            name: "oauth".into(),
            algorithm: alg,
        };
        let err = OauthIssuer::new(&cfg(None), ISS.into(), ring.clone()).unwrap_err();
        assert!(
            matches!(err, IssueError::Config(ref m) if m.contains("ES256") && m.contains("EdDSA")),
            "{err}"
        );
        assert!(OauthIssuer::new(&cfg(Some(SigningAlg::EdDSA)), ISS.into(), ring.clone()).is_ok());
        assert!(
            OauthIssuer::new(&cfg(Some(SigningAlg::EdDSA)), "idmint".into(), ring.clone()).is_err()
        );
        let unnamed = OauthIssuerConfig {
            name: " ".into(),
            algorithm: Some(SigningAlg::EdDSA),
        };
        assert!(OauthIssuer::new(&unnamed, ISS.into(), ring).is_err());
    }

    #[test]
    fn config_parses_from_toml_shape() {
        let cfg: OauthIssuerConfig =
            serde_json::from_value(json!({"name": "oauth", "algorithm": "EdDSA"})).unwrap();
        assert_eq!(cfg.algorithm, Some(SigningAlg::EdDSA));
        let cfg: OauthIssuerConfig = serde_json::from_value(json!({"name": "oauth"})).unwrap();
        assert_eq!(cfg.algorithm, None);
        assert!(
            serde_json::from_value::<OauthIssuerConfig>(json!({"name": "o", "alg": "ES256"}))
                .is_err()
        );
    }
}
