//! The `aws` issuer: AWS credentials in three modes, chosen per role
//! (`[role.aws] mode = …`, see [`idmint_core::role::AwsTemplate`]):
//!
//! - `assumed_role`: idmint calls STS `AssumeRole` on one of the role's
//!   `role_arns` with a session policy (the policies the request picked),
//!   session tags from the caller's claims, `SourceIdentity` = the caller's
//!   subject and the configured `ExternalId`. Nothing persistent is created
//!   at AWS and an STS session cannot be revoked: revoking the lease only
//!   marks it, the keys work until they expire. AWS's shortest session is
//!   900 s, so idmint asks for at least that but reports (and leases) the
//!   granted expiry; keep TTLs short and see `docs/aws.md`.
//! - `iam_user`: a user per lease under `user_path` (default `/idmint/`)
//!   with an inline policy and/or managed policies and one access key.
//!   Written ahead as a lease naming the user, so a crash after
//!   `CreateAccessKey` leaves a pending lease that the reaper revokes.
//!   Revocation deletes the keys (they stop working at once), the policies
//!   and the user; `NoSuchEntity` counts as done.
//! - `federated`: idmint is the OIDC provider. The caller gets an
//!   idmint-signed JWT (`aud = sts.amazonaws.com`, minted by the same code
//!   as the `oauth` issuer) and calls `AssumeRoleWithWebIdentity` itself.
//!
//! idmint's own AWS credentials come from the standard chain
//! ([`credentials`]); every call goes through one pooled client
//! ([`api::QueryClient`]) signed by [`sigv4`].
//!
//! ```toml
//! [[issuer.aws]]
//! name = "aws"
//! region = "us-east-1"                 # default us-east-1
//! # endpoint = "http://127.0.0.1:5000" # one URL for STS and IAM (moto, VPC endpoints)
//! # profile = "idmint"                 # use this shared-config profile only
//! # external_id = "…"                  # sent with every AssumeRole
//! # user_path = "/idmint/"             # iam_user: path of the users idmint creates
//! # timeout = "10s"                    # each AWS call; default 10s
//! # jwt_algorithm = "RS256"            # federated: signing algorithm, default RS256
//! ```

pub mod api;
pub mod credentials;
pub mod iam;
pub mod profile;
pub mod sigv4;
pub mod sts;
pub mod template;
pub mod xml;

use crate::keys::{KeyRing, SigningAlg};
use crate::oauth::{OauthIssuer, OauthIssuerConfig, TOKEN_ID_HANDLE};
use crate::{naming, IssueError, IssueRequest, Issuer, Minted, PlanRequest};
use api::{CallError, Endpoint, QueryClient};
use credentials::{AwsCredentials, CredentialChain};
use idmint_core::role::{AwsMode, AwsTemplate};
use idmint_core::{LeaseId, RevocationHandle, Role, Secret, Ttl, UnixTime};
use idmint_proto::Credential;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Revocation handle kinds this issuer plans (federated roles plan the
/// oauth issuer's `token_id`).
pub const STS_SESSION_HANDLE: &str = "aws_sts_session";
pub const IAM_USER_HANDLE: &str = "aws_iam_user";

/// IAM user names are at most 64 characters.
pub const IAM_MAX_NAME: usize = 64;
/// AWS's shortest and longest `AssumeRole` session.
pub const MIN_SESSION: u64 = 900;
pub const MAX_SESSION: u64 = 43_200;

const DEFAULT_REGION: &str = "us-east-1";
const DEFAULT_USER_PATH: &str = "/idmint/";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const POOL_SIZE: usize = 8;

fn default_region() -> String {
    DEFAULT_REGION.to_string()
}

/// `[[issuer.aws]]` in `idmint.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AwsIssuerConfig {
    pub name: String,
    /// Region STS is called in and that credentials report.
    #[serde(default = "default_region")]
    pub region: String,
    /// One endpoint for STS and IAM instead of AWS's (moto, LocalStack,
    /// VPC endpoints), e.g. `http://127.0.0.1:5000`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Take idmint's credentials from this profile of the shared files
    /// only; default: the standard chain (see [`credentials`]).
    #[serde(default)]
    pub profile: Option<String>,
    /// `ExternalId` sent with every `AssumeRole`.
    #[serde(default)]
    pub external_id: Option<String>,
    /// `iam_user`: IAM path of created users; revocation only deletes
    /// users under it. Default `/idmint/`.
    #[serde(default)]
    pub user_path: Option<String>,
    /// Bounds connect and each AWS call attempt (default 10s).
    #[serde(default)]
    pub timeout: Option<Ttl>,
    /// `federated`: JWT signing algorithm (default RS256, which every AWS
    /// partition accepts).
    #[serde(default)]
    pub jwt_algorithm: Option<SigningAlg>,
}

/// The checked parts of a config.
struct Checked {
    sts: Endpoint,
    iam: Endpoint,
    user_path: String,
}

impl AwsIssuerConfig {
    /// Config-time checks (no I/O).
    pub fn validate(&self) -> Result<(), String> {
        self.checked().map(|_| ())
    }

    fn checked(&self) -> Result<Checked, String> {
        let entry = format!("[[issuer.aws]] {:?}", self.name);
        crate::target::config::check_name("[[issuer.aws]]", &self.name)?;
        let region_ok = !self.region.is_empty()
            && self.region.len() <= 32
            && self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err(format!(
                "{entry}: `region` {:?} is not an AWS region (e.g. us-east-1)",
                self.region
            ));
        }
        let (sts_url, iam_url, iam_region) = match &self.endpoint {
            Some(e) => (e.clone(), e.clone(), self.region.clone()),
            None => {
                let partition_suffix = if self.region.starts_with("cn-") {
                    "amazonaws.com.cn"
                } else {
                    "amazonaws.com"
                };
                // IAM is global: one endpoint, signed for us-east-1 in the
                // commercial partition.
                let iam_region = if self.region.starts_with("cn-") {
                    "cn-north-1"
                } else if self.region.starts_with("us-gov-") {
                    "us-gov-west-1"
                } else {
                    DEFAULT_REGION
                };
                (
                    format!("https://sts.{}.{partition_suffix}", self.region),
                    format!("https://iam.{partition_suffix}"),
                    iam_region.to_string(),
                )
            }
        };
        let sts = Endpoint::new(&sts_url, &self.region, "sts", sts::STS_VERSION)
            .map_err(|e| format!("{entry}: `endpoint` {e}"))?;
        let iam = Endpoint::new(&iam_url, &iam_region, "iam", iam::IAM_VERSION)
            .map_err(|e| format!("{entry}: `endpoint` {e}"))?;
        let user_path = self
            .user_path
            .clone()
            .unwrap_or_else(|| DEFAULT_USER_PATH.into());
        let path_ok = user_path.starts_with('/')
            && user_path.ends_with('/')
            && user_path.len() <= 512
            && user_path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_+=,.@-".contains(c));
        if !path_ok || user_path == "/" {
            return Err(format!(
                "{entry}: `user_path` {user_path:?} must be an IAM path like /idmint/ (not /: revocation only \
                 deletes users under it)"
            ));
        }
        if let Some(x) = &self.external_id {
            let ok = (2..=1224).contains(&x.len())
                && x.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@:/-_".contains(c));
            if !ok {
                return Err(format!(
                    "{entry}: `external_id` must be 2-1224 characters of [A-Za-z0-9+=,.@:/-_]"
                ));
            }
        }
        Ok(Checked {
            sts,
            iam,
            user_path,
        })
    }
}

/// Mints AWS credentials; see the module docs.
pub struct AwsIssuer {
    name: String,
    region: String,
    external_id: Option<String>,
    user_path: String,
    client: QueryClient,
    sts: Endpoint,
    iam: Endpoint,
    chain: CredentialChain,
    /// Signs the web-identity tokens of `federated` roles.
    federation: OauthIssuer,
}

impl std::fmt::Debug for AwsIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsIssuer")
            .field("name", &self.name)
            .field("region", &self.region)
            .field("sts", &self.sts.url)
            .field("credentials", &self.chain.describe())
            .finish_non_exhaustive()
    }
}

fn lease_suffix(lease_id: &LeaseId) -> String {
    lease_id.random_suffix(12).to_string()
}

impl AwsIssuer {
    /// Build the issuer with idmint's credentials from the process
    /// environment and shared files (no network). `issuer_url` and `keys`
    /// sign the tokens of `federated` roles, as for the `oauth` issuer.
    pub fn new(
        cfg: &AwsIssuerConfig,
        issuer_url: String,
        keys: Arc<KeyRing>,
    ) -> Result<Self, IssueError> {
        let env = |k: &str| std::env::var(k).ok();
        let chain = CredentialChain::resolve(cfg.profile.as_deref(), &env).map_err(|e| {
            IssueError::Config(format!(
                "[[issuer.aws]] {:?}: AWS credentials: {e}",
                cfg.name
            ))
        })?;
        Self::with_credentials(cfg, issuer_url, keys, chain)
    }

    /// Build the issuer with a given credential source.
    pub fn with_credentials(
        cfg: &AwsIssuerConfig,
        issuer_url: String,
        keys: Arc<KeyRing>,
        chain: CredentialChain,
    ) -> Result<Self, IssueError> {
        let checked = cfg.checked().map_err(IssueError::Config)?;
        let timeout = cfg.timeout.map(Ttl::as_duration).unwrap_or(DEFAULT_TIMEOUT);
        let client = QueryClient::new(timeout, POOL_SIZE)
            .map_err(|e| IssueError::Config(format!("[[issuer.aws]] {:?}: {e}", cfg.name)))?;
        let federation = OauthIssuer::new(
            &OauthIssuerConfig {
                name: cfg.name.clone(),
                algorithm: Some(cfg.jwt_algorithm.unwrap_or(SigningAlg::RS256)),
            },
            issuer_url,
            keys,
        )?;
        tracing::info!(issuer = %cfg.name, credentials = %chain.describe(), sts = %checked.sts.url, "aws issuer ready");
        Ok(Self {
            name: cfg.name.clone(),
            region: cfg.region.clone(),
            external_id: cfg.external_id.clone(),
            user_path: checked.user_path,
            client,
            sts: checked.sts,
            iam: checked.iam,
            chain,
            federation,
        })
    }

    fn template<'r>(&self, role: &'r Role) -> Result<&'r AwsTemplate, String> {
        role.aws.as_ref().ok_or_else(|| {
            format!(
                "role {:?} uses the aws issuer {:?} but has no [role.aws] template (mode, role_arns, policies)",
                role.name, self.name
            )
        })
    }

    async fn credentials(&self) -> Result<AwsCredentials, IssueError> {
        self.chain
            .current(&self.client, &self.sts)
            .await
            .map_err(|e| IssueError::Target {
                target: self.name.clone(),
                message: format!("AWS: {e}"),
                retryable: true,
            })
    }

    /// An AWS failure, worded for the operator and naming AWS.
    fn aws_error(&self, endpoint: &Endpoint, action: &str, e: CallError) -> IssueError {
        let service = endpoint.service.to_uppercase();
        let hint = match e.code() {
            Some("AccessDenied" | "AccessDeniedException") => {
                "; AWS denied it: idmint's AWS principal lacks the permission, or the role's trust \
                 policy does not allow idmint (and its ExternalId/tags)"
            }
            Some("InvalidClientTokenId" | "SignatureDoesNotMatch" | "ExpiredToken") => {
                "; idmint's own AWS credentials were rejected: fix them"
            }
            Some("MalformedPolicyDocument" | "PackedPolicyTooLarge" | "ValidationError") => {
                "; fix the role's aws template"
            }
            _ => "",
        };
        let retryable = e.is_retryable();
        let prefix = if retryable {
            "AWS is unavailable: "
        } else {
            ""
        };
        IssueError::Target {
            target: self.name.clone(),
            message: format!(
                "{prefix}AWS {service} at {} failed to {action}: {e}{hint}",
                endpoint.url
            ),
            retryable,
        }
    }

    fn planned_iam_user<'h>(&self, handle: &'h RevocationHandle) -> Result<&'h str, IssueError> {
        let user = handle.value.as_str();
        if handle.kind != IAM_USER_HANDLE || !naming::is_derived_username(user, IAM_MAX_NAME) {
            return Err(IssueError::Internal(format!(
                "revocation handle {:?}/{user:?} is not an IAM user the aws issuer {:?} plans; refusing to touch it",
                handle.kind, self.name
            )));
        }
        Ok(user)
    }

    async fn issue_assumed_role(
        &self,
        req: &IssueRequest<'_>,
        t: &AwsTemplate,
        expires_at: UnixTime,
    ) -> Result<Minted, IssueError> {
        let session_name = req.revocation.value.as_str();
        let role_arn = match req.grant.audience.as_deref() {
            Some(a) => a,
            None => t.role_arns.first().map(String::as_str).unwrap_or_default(),
        };
        if !t.role_arns.iter().any(|r| r == role_arn) {
            return Err(IssueError::Config(format!(
                "role ARN {role_arn:?} is not in role {:?}'s role_arns",
                req.role.name
            )));
        }
        let policy = template::policy_document(t, &req.grant.scopes).map_err(IssueError::Config)?;
        if let Some(p) = &policy {
            if p.len() > template::MAX_SESSION_POLICY {
                return Err(IssueError::Config(format!(
                    "the session policy of role {:?} is {} characters; STS accepts at most {}: split or shorten the policies",
                    req.role.name,
                    p.len(),
                    template::MAX_SESSION_POLICY
                )));
            }
        }
        let tags = template::session_tags(t, req.identity).map_err(IssueError::Config)?;
        let source_identity = template::source_identity(req.identity);
        // AWS cannot issue less than 15 minutes; the lease (and what the
        // caller is told) ends at the granted expiry.
        let granted = u64::try_from(expires_at.secs() - req.now.secs()).unwrap_or(0);
        let duration = granted.clamp(MIN_SESSION, MAX_SESSION);
        let creds = self.credentials().await?;
        let session = sts::assume_role(
            &self.client,
            &self.sts,
            &creds,
            &sts::AssumeRoleInput {
                role_arn,
                session_name,
                duration_seconds: duration,
                policy: policy.as_deref(),
                tags: &tags,
                source_identity: Some(&source_identity),
                external_id: self.external_id.as_deref(),
            },
        )
        .await
        .map_err(|e| self.aws_error(&self.sts, &format!("AssumeRole {role_arn}"), e))?;
        tracing::debug!(issuer = %self.name, lease_id = %req.lease_id, role_arn, session_name, "assumed aws role");
        let c = session.credentials;
        Ok(Minted {
            secret_material: Secret::new(c.secret_access_key().as_bytes().to_vec()),
            credential: Credential::Aws {
                access_key_id: c.access_key_id().to_string(),
                secret_access_key: c.secret_access_key().to_string(),
                session_token: c.session_token().map(str::to_string),
                expiration: expires_at.rfc3339(),
                region: Some(self.region.clone()),
                mode: AwsMode::AssumedRole.as_str().to_string(),
                arn: session.assumed_role_arn,
            },
            expires_at,
        })
    }

    async fn issue_iam_user(
        &self,
        req: &IssueRequest<'_>,
        t: &AwsTemplate,
        expires_at: UnixTime,
    ) -> Result<Minted, IssueError> {
        let user = self.planned_iam_user(req.revocation)?;
        let policy = template::policy_document(t, &req.grant.scopes).map_err(IssueError::Config)?;
        let creds = self.credentials().await?;
        let iam = iam::Iam {
            client: &self.client,
            endpoint: &self.iam,
            creds: &creds,
        };
        let arn = iam
            .create_user(user, &self.user_path, req.lease_id.as_str())
            .await
            .map_err(|e| self.aws_error(&self.iam, &format!("CreateUser {user}"), e))?;
        let rest = async {
            if let Some(doc) = &policy {
                iam.put_user_policy(user, "idmint", doc)
                    .await
                    .map_err(|e| {
                        self.aws_error(&self.iam, &format!("PutUserPolicy on {user}"), e)
                    })?;
            }
            for managed in &t.managed_policy_arns {
                iam.attach_user_policy(user, managed).await.map_err(|e| {
                    self.aws_error(
                        &self.iam,
                        &format!("AttachUserPolicy {managed} to {user}"),
                        e,
                    )
                })?;
            }
            iam.create_access_key(user)
                .await
                .map_err(|e| self.aws_error(&self.iam, &format!("CreateAccessKey for {user}"), e))
        };
        let key = match rest.await {
            Ok(k) => k,
            Err(e) => {
                // No user without its intended policy: take it back. If even
                // that fails, the write-ahead lease still names it.
                if let Err(cleanup) = iam.delete_user_completely(user).await {
                    tracing::warn!(issuer = %self.name, user, error = %cleanup, "could not delete a half-created IAM user");
                }
                return Err(e);
            }
        };
        tracing::debug!(issuer = %self.name, lease_id = %req.lease_id, user, "created aws iam user");
        Ok(Minted {
            secret_material: Secret::new(key.secret_access_key.as_bytes().to_vec()),
            credential: Credential::Aws {
                access_key_id: key.access_key_id,
                secret_access_key: key.secret_access_key,
                session_token: None,
                expiration: expires_at.rfc3339(),
                region: Some(self.region.clone()),
                mode: AwsMode::IamUser.as_str().to_string(),
                arn: (!arn.is_empty()).then_some(arn),
            },
            expires_at,
        })
    }

    async fn issue_federated(
        &self,
        req: &IssueRequest<'_>,
        t: &AwsTemplate,
    ) -> Result<Minted, IssueError> {
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
        let role_arn = t.role_arns.first().cloned().unwrap_or_default();
        Ok(Minted {
            credential: Credential::AwsWebIdentity {
                token: access_token,
                role_arn,
                role_session_name: template::session_name(
                    req.identity,
                    &lease_suffix(req.lease_id),
                ),
                region: Some(self.region.clone()),
                token_id,
            },
            expires_at: minted.expires_at,
            secret_material: minted.secret_material,
        })
    }
}

#[async_trait::async_trait]
impl Issuer for AwsIssuer {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "aws"
    }

    fn plan(&self, plan: &PlanRequest<'_>) -> Result<RevocationHandle, IssueError> {
        let t = self.template(plan.role).map_err(IssueError::Config)?;
        Ok(match t.mode {
            AwsMode::AssumedRole => RevocationHandle {
                kind: STS_SESSION_HANDLE.to_string(),
                value: template::session_name(plan.identity, &lease_suffix(plan.lease_id)),
            },
            AwsMode::IamUser => RevocationHandle {
                kind: IAM_USER_HANDLE.to_string(),
                value: naming::username(
                    t.username_prefix.as_deref(),
                    plan.role,
                    plan.identity,
                    plan.lease_id,
                    IAM_MAX_NAME,
                ),
            },
            AwsMode::Federated => self.federation.plan(plan)?,
        })
    }

    fn validate_role(&self, role: &Role) -> Result<(), String> {
        let t = self.template(role)?;
        template::validate(role, t)?;
        if t.mode == AwsMode::AssumedRole && role.max_ttl.as_secs() > MAX_SESSION {
            return Err(format!(
                "max_ttl {} exceeds AWS's longest session (12h)",
                role.max_ttl
            ));
        }
        if t.mode == AwsMode::Federated {
            self.federation.validate_role(role)?;
        }
        Ok(())
    }

    async fn issue(&self, req: &IssueRequest<'_>) -> Result<Minted, IssueError> {
        let t = self.template(req.role).map_err(IssueError::Config)?;
        let expires_at = req.credential_expiry("the AWS credential could be minted")?;
        match t.mode {
            AwsMode::AssumedRole => {
                if req.revocation.kind != STS_SESSION_HANDLE {
                    return Err(IssueError::Internal(format!(
                        "revocation handle of kind {:?} for an assumed_role lease",
                        req.revocation.kind
                    )));
                }
                self.issue_assumed_role(req, t, expires_at).await
            }
            AwsMode::IamUser => self.issue_iam_user(req, t, expires_at).await,
            AwsMode::Federated => self.issue_federated(req, t).await,
        }
    }

    /// `iam_user`: delete keys, policies and the user (only under
    /// `user_path`). STS sessions and web-identity tokens cannot be
    /// recalled: the lease is marked revoked, the credential lasts until
    /// its expiry.
    async fn revoke(&self, handle: &RevocationHandle) -> Result<(), IssueError> {
        match handle.kind.as_str() {
            STS_SESSION_HANDLE => {
                tracing::debug!(issuer = %self.name, session = %handle.value, "aws sts session lease revoked; the session lasts until it expires");
                Ok(())
            }
            TOKEN_ID_HANDLE => self.federation.revoke(handle).await,
            _ => {
                let user = self.planned_iam_user(handle)?;
                let creds = self.credentials().await?;
                let iam = iam::Iam {
                    client: &self.client,
                    endpoint: &self.iam,
                    creds: &creds,
                };
                let path = iam
                    .user_path(user)
                    .await
                    .map_err(|e| self.aws_error(&self.iam, &format!("GetUser {user}"), e))?;
                match path {
                    None => Ok(()),
                    Some(p) if p != self.user_path => Err(IssueError::Internal(format!(
                        "IAM user {user:?} has path {p:?}, not idmint's {:?}; refusing to delete it",
                        self.user_path
                    ))),
                    Some(_) => {
                        iam.delete_user_completely(user).await.map_err(|e| {
                            self.aws_error(&self.iam, &format!("delete IAM user {user}"), e)
                        })?;
                        tracing::debug!(issuer = %self.name, user, "revoked aws iam user");
                        Ok(())
                    }
                }
            }
        }
    }

    /// An IAM user has no expiry of its own: the reaper deletes it at the
    /// lease's new end. STS sessions and tokens cannot be extended.
    async fn renew(
        &self,
        handle: &RevocationHandle,
        _new_expires_at: UnixTime,
    ) -> Result<(), IssueError> {
        if handle.kind == IAM_USER_HANDLE {
            return self.planned_iam_user(handle).map(|_| ());
        }
        Err(IssueError::Config(format!(
            "AWS STS sessions and web-identity tokens of issuer {:?} cannot be renewed; request a new one",
            self.name
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::signing::tests::test_key;
    use serde_json::json;

    fn config(extra: serde_json::Value) -> AwsIssuerConfig {
        let mut base = json!({"name": "aws"});
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        serde_json::from_value(base).unwrap()
    }

    fn issuer(cfg: &AwsIssuerConfig) -> Result<AwsIssuer, IssueError> {
        let ring = Arc::new(KeyRing::new(vec![test_key(SigningAlg::RS256)]));
        AwsIssuer::with_credentials(
            cfg,
            "https://idmint.example".into(),
            ring,
            CredentialChain::fixed(AwsCredentials::new("AKIATEST", "s", None, None)),
        )
    }

    #[test]
    fn endpoints_follow_the_region_or_the_override() {
        let i = issuer(&config(json!({"region": "eu-west-1"}))).unwrap();
        assert_eq!(i.sts.url, "https://sts.eu-west-1.amazonaws.com");
        assert_eq!(
            (i.iam.url.as_str(), i.iam.region.as_str()),
            ("https://iam.amazonaws.com", "us-east-1")
        );
        assert_eq!(i.user_path, "/idmint/");
        let m = issuer(&config(json!({"endpoint": "http://127.0.0.1:5000"}))).unwrap();
        assert_eq!(
            (m.sts.url.as_str(), m.iam.url.as_str()),
            ("http://127.0.0.1:5000", "http://127.0.0.1:5000")
        );
        assert!(!format!("{m:?}").contains("\"s\""));
        for (bad, needle) in [
            (json!({"region": "US East"}), "region"),
            (json!({"endpoint": "http://h/x"}), "endpoint"),
            (json!({"user_path": "/"}), "user_path"),
            (json!({"user_path": "idmint"}), "user_path"),
            (json!({"external_id": "a b"}), "external_id"),
            (json!({"name": " "}), "name"),
        ] {
            let e = config(bad.clone()).validate().unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
        assert!(serde_json::from_value::<AwsIssuerConfig>(
            json!({"name": "a", "secret_access_key": "x"})
        )
        .is_err());
        // No RS256 key: federated roles could not be signed.
        let ring = Arc::new(KeyRing::new(vec![test_key(SigningAlg::ES256)]));
        let e = AwsIssuer::with_credentials(
            &config(json!({})),
            "https://idmint.example".into(),
            ring,
            CredentialChain::fixed(AwsCredentials::new("A", "s", None, None)),
        )
        .unwrap_err();
        assert!(e.to_string().contains("RS256"), "{e}");
    }

    #[test]
    fn only_planned_iam_users_are_touched() {
        let i = issuer(&config(json!({}))).unwrap();
        let h = |kind: &str, value: &str| RevocationHandle {
            kind: kind.into(),
            value: value.into(),
        };
        assert!(i
            .planned_iam_user(&h(IAM_USER_HANDLE, "idm_aws_x_0123456789ab"))
            .is_ok());
        for (kind, value) in [
            (IAM_USER_HANDLE, "admin"),
            (IAM_USER_HANDLE, "Admin_x"),
            (IAM_USER_HANDLE, "idm_x/../y"),
            ("db_user", "idm_aws_x_0123456789ab"),
        ] {
            assert!(
                matches!(
                    i.planned_iam_user(&h(kind, value)),
                    Err(IssueError::Internal(_))
                ),
                "{kind} {value}"
            );
        }
    }
}
