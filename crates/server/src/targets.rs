//! Credential targets with an admin account (databases, Redis, RabbitMQ):
//! building their issuers and keeping their admin secret sealed.
//!
//! The admin password is read from `admin_password_env`/`admin_password_file`
//! only on the first start; it is then sealed in the store as
//! `target-admin:<name>:1`; the highest sealed version is current.
//!
//! Rotation is two-phase so that no crash or lost reply can leave idmint
//! without the password the target holds: the new random password is first
//! sealed as `target-admin:<name>:pending:<n+1>`, then set at the target,
//! and only then sealed as version `n+1`. A pending version without its
//! final one (a crash, or a failure whose effect is unknown) is resumed on
//! the next rotation and at every start: setting it again either completes
//! the change or, when the target already took it, is adopted by the issuer
//! (the old password is refused, the new one works).

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

fn pending_name(target: &str, version: u64) -> String {
    format!("target-admin:{target}:pending:{version}")
}

async fn open_blob(
    store: &dyn Store,
    env: &Envelope,
    name: &str,
) -> Result<Option<Secret<String>>, String> {
    let Some(sealed) = store.get_blob(name).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let plain = env.open(name, &sealed).map_err(|e| e.to_string())?;
    String::from_utf8(plain.to_vec())
        .map(|s| Some(Secret::new(s)))
        .map_err(|_| format!("sealed admin secret {name} is not UTF-8"))
}

/// Rotate `target`'s admin password from version `current` (see the module
/// docs). Returns the new version.
pub async fn rotate(
    store: &dyn Store,
    env: &Envelope,
    issuer: &dyn Issuer,
    target: &str,
    current: u64,
) -> Result<u64, String> {
    let next = current + 1;
    let pending = pending_name(target, next);
    let secret = match open_blob(store, env, &pending).await? {
        // An earlier rotation did not finish: finish it with its password.
        Some(s) => s,
        None => {
            let fresh = idmint_issuers::naming::password(Some(40)).map_err(|e| e.to_string())?;
            let sealed = env
                .seal(&pending, fresh.expose().as_bytes())
                .map_err(|e| e.to_string())?;
            store
                .put_blob_if_absent(&pending, &sealed)
                .await
                .map_err(|e| e.to_string())?;
            // Whoever won a concurrent race, use what is stored.
            open_blob(store, env, &pending)
                .await?
                .ok_or_else(|| format!("{pending} vanished"))?
        }
    };
    issuer.set_admin_password(&secret).await.map_err(|e| {
        format!("{e}; the rotation stays pending and is resumed at the next rotation or start")
    })?;
    seal_version(store, env, target, next, &secret).await?;
    Ok(next)
}

/// At start: finish a rotation that a crash or an unknown outcome left
/// pending. Failures are logged; issuance keeps using the current version.
pub async fn resume_pending_rotation(
    store: &dyn Store,
    env: &Envelope,
    issuer: &dyn Issuer,
    target: &str,
) {
    let Ok(current) = current_version(store, target).await else {
        return;
    };
    if current == 0 {
        return;
    }
    match open_blob(store, env, &pending_name(target, current + 1)).await {
        Ok(Some(_)) => match rotate(store, env, issuer, target, current).await {
            Ok(v) => tracing::info!(
                target,
                version = v,
                "finished a pending admin password rotation"
            ),
            Err(e) => {
                tracing::warn!(target, error = %e, "a pending admin password rotation could not be finished yet")
            }
        },
        Ok(None) => {}
        Err(e) => tracing::warn!(target, error = %e, "cannot read the pending admin rotation"),
    }
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

#[cfg(test)]
mod tests {
    //! The rotation protocol against the real SQLite store; the target is a
    //! stand-in whose `set_admin_password` can be made to fail (the real
    //! targets' rotation runs in crates/cli/tests/db_*.rs).
    use super::*;
    use idmint_core::{RevocationHandle, SealKey};
    use idmint_issuers::{IssueRequest, Minted, PlanRequest};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    #[derive(Default)]
    struct FlakyTarget {
        fail: AtomicBool,
        received: Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl Issuer for FlakyTarget {
        fn name(&self) -> &str {
            "t"
        }
        fn kind(&self) -> &'static str {
            "postgres"
        }
        fn plan(&self, _: &PlanRequest<'_>) -> Result<RevocationHandle, IssueError> {
            Err(IssueError::Internal("unused".into()))
        }
        async fn issue(&self, _: &IssueRequest<'_>) -> Result<Minted, IssueError> {
            Err(IssueError::Internal("unused".into()))
        }
        async fn revoke(&self, _: &RevocationHandle) -> Result<(), IssueError> {
            Ok(())
        }
        async fn set_admin_password(&self, new: &Secret<String>) -> Result<(), IssueError> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(IssueError::Target {
                    target: "t".into(),
                    message: "down".into(),
                    retryable: true,
                });
            }
            self.received.lock().unwrap().push(new.expose().clone());
            Ok(())
        }
    }

    #[tokio::test]
    async fn an_interrupted_rotation_is_resumed_with_the_same_password() {
        let dir = tempfile::tempdir().unwrap();
        let store = idmint_store::SqliteStore::open(&dir.path().join("db")).unwrap();
        let env = Envelope::new(SealKey::generate().unwrap());
        assert!(
            seal_version(&store, &env, "t", 1, &Secret::new("boot".into()))
                .await
                .unwrap()
        );
        let target = FlakyTarget::default();

        target.fail.store(true, Ordering::SeqCst);
        let err = rotate(&store, &env, &target, "t", 1).await.unwrap_err();
        assert!(err.contains("stays pending"), "{err}");
        assert_eq!(
            current_version(&store, "t").await.unwrap(),
            1,
            "a failed rotation must not become current"
        );
        let pending = open_blob(&store, &env, &pending_name("t", 2))
            .await
            .unwrap()
            .unwrap();

        target.fail.store(false, Ordering::SeqCst);
        resume_pending_rotation(&store, &env, &target, "t").await;
        assert_eq!(current_version(&store, "t").await.unwrap(), 2);
        assert_eq!(
            target.received.lock().unwrap().as_slice(),
            [pending.expose().clone()]
        );
        let current = read_version(&store, &env, "t", 2).await.unwrap();
        assert_eq!(current.expose(), pending.expose());

        assert_eq!(rotate(&store, &env, &target, "t", 2).await.unwrap(), 3);
        let third = read_version(&store, &env, "t", 3).await.unwrap();
        assert_ne!(third.expose(), pending.expose());
        assert_eq!(third.expose().len(), 40);
    }
}
