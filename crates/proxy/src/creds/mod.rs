//! Resolving an injection's secrets for one request.
//!
//! Static secrets (`file`, `env`) are in memory from startup. `idmint` and
//! `vault_kv` secrets are fetched when a request needs them and kept in a
//! [`cache::CredentialCache`] until shortly before they expire; see
//! [`idmint`] and [`vault_kv`] for each source. A secret that cannot be
//! obtained fails the request closed (`503` while the source is down and
//! nothing valid is cached, `403` when the server refuses or its subject
//! disagrees with the proxy's binding), with a message naming the cause.

pub mod cache;
pub mod idmint;
pub mod minted;
pub mod vault_kv;

use crate::config::{NamedSecret, ProxyConfig};
use crate::inject::Injection;
use crate::peer::ProcessInfo;
use crate::sources::SecretSource;
use cache::{CredentialCache, FetchError};
use idmint::{IdmintLink, IdmintSetupError};
use idmint_core::Secret;
pub use minted::AwsKeys;
use std::collections::BTreeMap;
use vault_kv::{KvReader, KvSetupError};

/// What an injection puts on a request.
#[derive(Debug, Clone)]
pub enum Material {
    /// A token, key or password.
    Text(Secret<String>),
    /// AWS keys minted by idmint (`aws_sigv4 = { credentials = … }`).
    Aws(AwsKeys),
}

/// The resolved secrets of one injection.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub main: Material,
    /// The session token of the static `aws_sigv4` form
    /// (`session_token_secret`).
    pub session_token: Option<Secret<String>>,
    /// `file`, `env`, `idmint` or `vault_kv` (for the audit log).
    pub source_kind: &'static str,
    /// The idmint lease behind the main secret (`idmint` sources only).
    pub lease_id: Option<String>,
}

impl Resolved {
    /// The secret part: what is fingerprinted in the audit log.
    pub fn secret_text(&self) -> &str {
        match &self.main {
            Material::Text(s) => s.expose(),
            Material::Aws(k) => k.secret_access_key.expose(),
        }
    }
}

/// Why the proxy cannot start with the configured sources.
#[derive(Debug, thiserror::Error)]
pub enum CredSetupError {
    #[error(transparent)]
    Idmint(#[from] IdmintSetupError),
    #[error(transparent)]
    Kv(#[from] KvSetupError),
}

/// Resolves secrets for requests; shared by every connection.
#[derive(Debug)]
pub struct CredentialResolver {
    idmint: Option<IdmintLink>,
    kv: BTreeMap<String, KvReader>,
    kv_cache: CredentialCache<String, Secret<String>>,
}

impl CredentialResolver {
    /// Load the agent key (only if some rule injects an `idmint` secret)
    /// and build a client per `vault_kv` secret.
    pub fn new(config: &ProxyConfig) -> Result<Self, CredSetupError> {
        let idmint = if config.uses_idmint() {
            Some(IdmintLink::new(&config.idmint)?)
        } else {
            None
        };
        let mut kv = BTreeMap::new();
        for (name, secret) in &config.secrets {
            if let SecretSource::VaultKv(src) = &secret.source {
                kv.insert(name.clone(), KvReader::new(name, src.clone())?);
            }
        }
        Ok(Self {
            idmint,
            kv,
            // KV outages: ask again at most every 5 s (each value's own
            // grace bounds how long a cached value is used).
            kv_cache: CredentialCache::new(std::time::Duration::from_secs(5)),
        })
    }

    /// The idmint link, when configured (tests read its counters).
    pub fn idmint(&self) -> Option<&IdmintLink> {
        self.idmint.as_ref()
    }

    /// Everything `inj` needs for a request of `identity` from `process`.
    pub async fn resolve(
        &self,
        inj: &Injection,
        identity: &str,
        process: Option<&ProcessInfo>,
    ) -> Result<Resolved, FetchError> {
        let secret = inj.secret();
        let (main, lease_id) = if inj.wants_aws_keys() {
            self.aws(secret, identity, process).await?
        } else {
            let (text, lease_id) = self.text(secret, identity, process).await?;
            (Material::Text(text), lease_id)
        };
        let session_token = match inj.session_token_secret() {
            Some(t) => Some(self.text(t, identity, process).await?.0),
            None => None,
        };
        Ok(Resolved {
            main,
            session_token,
            source_kind: secret.source.kind(),
            lease_id,
        })
    }

    fn link(&self, name: &str) -> Result<&IdmintLink, FetchError> {
        self.idmint.as_ref().ok_or_else(|| {
            FetchError::refused(
                502,
                format!("[secrets.{name}] is an idmint secret but the idmint link is not set up"),
            )
        })
    }

    fn process(process: Option<&ProcessInfo>) -> Result<&ProcessInfo, FetchError> {
        process.ok_or_else(|| {
            FetchError::refused(
                403,
                "the calling process is unknown, so no idmint credential can be obtained for it",
            )
        })
    }

    async fn text(
        &self,
        secret: &NamedSecret,
        identity: &str,
        process: Option<&ProcessInfo>,
    ) -> Result<(Secret<String>, Option<String>), FetchError> {
        let name = secret.name.as_str();
        match &secret.source {
            SecretSource::Static { value, .. } => Ok((value.clone(), None)),
            SecretSource::Idmint(src) => {
                let minted = self
                    .link(name)?
                    .credential(identity, Self::process(process)?, &src.role)
                    .await?;
                Ok((
                    minted.text(src.field, name, &src.role)?,
                    minted.lease_id.clone(),
                ))
            }
            SecretSource::VaultKv(_) => {
                let reader = self.kv.get(name).ok_or_else(|| {
                    FetchError::refused(502, format!("no KV reader for [secrets.{name}]"))
                })?;
                let value = self
                    .kv_cache
                    .get(&secret.name, name, || reader.fetch(name))
                    .await?;
                Ok((Secret::clone(&value), None))
            }
        }
    }

    async fn aws(
        &self,
        secret: &NamedSecret,
        identity: &str,
        process: Option<&ProcessInfo>,
    ) -> Result<(Material, Option<String>), FetchError> {
        let SecretSource::Idmint(src) = &secret.source else {
            return Err(FetchError::refused(
                502,
                format!("[secrets.{}] is not an idmint secret", secret.name),
            ));
        };
        let minted = self
            .link(&secret.name)?
            .credential(identity, Self::process(process)?, &src.role)
            .await?;
        Ok((
            Material::Aws(minted.aws(&src.role)?),
            minted.lease_id.clone(),
        ))
    }
}
