//! Credential targets with an admin account (databases, Redis, RabbitMQ):
//! building their issuers and keeping their admin secret sealed.
//!
//! The admin password is read from `admin_password_env`/`admin_password_file`
//! only on the first start; it is then sealed in the store as
//! `target-admin:<name>:1`. `idmint target rotate-admin NAME` seals a new
//! random password as the next version *before* changing it at the target,
//! so a crash never loses the working one; the highest version is current.

use crate::ServerError;
use idmint_core::Secret;
use idmint_issuers::mysql::{MysqlIssuer, MysqlIssuerConfig};
use idmint_issuers::postgres::{PostgresIssuer, PostgresIssuerConfig};
use idmint_issuers::rabbitmq::{RabbitmqIssuer, RabbitmqIssuerConfig};
use idmint_issuers::redis::{RedisIssuer, RedisIssuerConfig};
use idmint_issuers::{IssueError, Issuer};
use idmint_store::{Envelope, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One `[[issuer.<kind>]]` table of a target with an admin account.
pub trait TargetConfig {
    const KIND: &'static str;
    fn name(&self) -> &str;
    fn admin_password_env(&self) -> Option<&str>;
    fn admin_password_file_mut(&mut self) -> Option<&mut PathBuf>;
    fn admin_password_file(&self) -> Option<&Path>;
    fn build(&self, admin: Secret<String>) -> Result<Arc<dyn Issuer>, IssueError>;
}

macro_rules! target_config {
    ($cfg:ty, $issuer:ty, $kind:literal) => {
        impl TargetConfig for $cfg {
            const KIND: &'static str = $kind;
            fn name(&self) -> &str {
                &self.name
            }
            fn admin_password_env(&self) -> Option<&str> {
                self.admin_password_env.as_deref()
            }
            fn admin_password_file_mut(&mut self) -> Option<&mut PathBuf> {
                self.admin_password_file.as_mut()
            }
            fn admin_password_file(&self) -> Option<&Path> {
                self.admin_password_file.as_deref()
            }
            fn build(&self, admin: Secret<String>) -> Result<Arc<dyn Issuer>, IssueError> {
                Ok(Arc::new(<$issuer>::new(self, admin)?))
            }
        }
    };
}

target_config!(PostgresIssuerConfig, PostgresIssuer, "postgres");
target_config!(MysqlIssuerConfig, MysqlIssuer, "mysql");
target_config!(RedisIssuerConfig, RedisIssuer, "redis");
target_config!(RabbitmqIssuerConfig, RabbitmqIssuer, "rabbitmq");

fn blob_name(target: &str, version: u64) -> String {
    format!("target-admin:{target}:{version}")
}

/// The current (highest) sealed admin secret version of `target`, if any.
pub async fn current_version(store: &dyn Store, target: &str) -> Result<u64, ServerError> {
    let mut v = 0;
    while store
        .get_blob(&blob_name(target, v + 1))
        .await
        .map_err(|e| ServerError::Startup(e.to_string()))?
        .is_some()
    {
        v += 1;
    }
    Ok(v)
}

pub async fn read_current(
    store: &dyn Store,
    env: &Envelope,
    target: &str,
    version: u64,
) -> Result<Secret<String>, String> {
    read_version(store, env, target, version).await
}

async fn read_version(
    store: &dyn Store,
    env: &Envelope,
    target: &str,
    version: u64,
) -> Result<Secret<String>, String> {
    let name = blob_name(target, version);
    let sealed = store
        .get_blob(&name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("sealed admin secret {name} is missing"))?;
    let plain = env.open(&name, &sealed).map_err(|e| e.to_string())?;
    String::from_utf8(plain.to_vec())
        .map(Secret::new)
        .map_err(|_| format!("sealed admin secret {name} is not UTF-8"))
}

/// Seal `secret` as the given version; false if that version already exists
/// (a concurrent rotation won).
pub async fn seal_version(
    store: &dyn Store,
    env: &Envelope,
    target: &str,
    version: u64,
    secret: &Secret<String>,
) -> Result<bool, String> {
    let name = blob_name(target, version);
    let sealed = env
        .seal(&name, secret.expose().as_bytes())
        .map_err(|e| e.to_string())?;
    let stored = store
        .put_blob_if_absent(&name, &sealed)
        .await
        .map_err(|e| e.to_string())?;
    Ok(stored == sealed)
}

fn bootstrap_secret<C: TargetConfig>(cfg: &C) -> Result<Secret<String>, String> {
    let raw = if let Some(var) = cfg.admin_password_env() {
        std::env::var(var)
            .map_err(|_| format!("environment variable {var} (admin_password_env) is not set"))?
    } else if let Some(file) = cfg.admin_password_file() {
        std::fs::read_to_string(file)
            .map_err(|e| format!("admin_password_file {}: {e}", file.display()))?
    } else {
        return Err("no sealed admin password yet: set admin_password_env or admin_password_file for the first start".into());
    };
    let trimmed = raw.trim_end_matches(['\n', '\r']).to_string();
    if trimmed.is_empty() {
        return Err("the bootstrap admin password is empty".into());
    }
    Ok(Secret::new(trimmed))
}

/// Build the issuer for one target, sealing its bootstrap admin secret on
/// the first start.
pub async fn build<C: TargetConfig>(
    cfg: &C,
    store: &dyn Store,
    env: &Envelope,
) -> Result<Arc<dyn Issuer>, ServerError> {
    let what =
        |m: String| ServerError::Config(format!("[[issuer.{}]] {:?}: {m}", C::KIND, cfg.name()));
    let version = current_version(store, cfg.name()).await?;
    let secret = if version == 0 {
        let s = bootstrap_secret(cfg).map_err(what)?;
        seal_version(store, env, cfg.name(), 1, &s)
            .await
            .map_err(what)?;
        // Whoever won the race, read back what is stored.
        read_version(store, env, cfg.name(), 1)
            .await
            .map_err(what)?
    } else {
        read_version(store, env, cfg.name(), version)
            .await
            .map_err(what)?
    };
    cfg.build(secret).map_err(|e| what(e.to_string()))
}

/// For `--check-config`: build without touching the store (placeholder
/// secret), only to validate configs and roles.
pub fn build_offline<C: TargetConfig>(cfg: &C) -> Result<Arc<dyn Issuer>, ServerError> {
    cfg.build(Secret::new(String::new()))
        .map_err(|e| ServerError::Config(format!("[[issuer.{}]] {:?}: {e}", C::KIND, cfg.name())))
}
