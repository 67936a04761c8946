//! Static secrets sealed in the store (`idmint secret put`), read by the
//! `static` issuer.
//!
//! Each secret is one blob `static-secret:<name>`, sealed with the
//! envelope (the blob name is the sealing purpose, so a blob copied under
//! another name does not open). The sealed record holds the value and its
//! metadata together, so a listing can never pair a value with another
//! version's fingerprint. Listing opens every record (admin only, a few
//! entries) and drops the values at once; they are zeroized on drop.
//!
//! Replacing a secret is last-writer-wins: two admins putting the same name
//! at the same moment may both get version n+1; the fingerprints tell the
//! values apart.

use idmint_audit::Fingerprinter;
use idmint_core::{Secret, UnixTime};
use idmint_issuers::static_secret::{SecretSource, StoredSecret};
use idmint_proto::secrets::SecretInfo;
use idmint_store::{Envelope, Store};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use zeroize::{Zeroize, Zeroizing};

/// Prefix of every static secret's blob name.
pub const BLOB_PREFIX: &str = "static-secret:";

fn blob_name(name: &str) -> String {
    format!("{BLOB_PREFIX}{name}")
}

/// Why a secret could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SecretStoreError {
    #[error("the idmint store failed: {0}")]
    Store(String),
    /// Wrong root key, or the blob was tampered with or copied.
    #[error("static secret {0:?} cannot be opened with this server's root key (another root key, or a damaged or copied record); store it again with `idmint secret put`")]
    Unseal(String),
    #[error(
        "static secret {name:?} is stored in a format this server does not understand: {reason}"
    )]
    Corrupt { name: String, reason: String },
    #[error("sealing static secret {name:?} failed: {reason}")]
    Seal { name: String, reason: String },
}

/// The sealed record. `value` is wiped when the record is dropped.
#[derive(Serialize, Deserialize)]
struct Record {
    value: String,
    version: u64,
    fingerprint: String,
    updated_at: i64,
    updated_by: String,
}

impl Drop for Record {
    fn drop(&mut self) {
        self.value.zeroize();
    }
}

impl Record {
    fn info(&self, name: &str) -> SecretInfo {
        SecretInfo {
            name: name.to_string(),
            fingerprint: self.fingerprint.clone(),
            version: self.version,
            size: self.value.len() as u64,
            updated_at: self.updated_at,
            updated_by: self.updated_by.clone(),
        }
    }
}

fn open(env: &Envelope, name: &str, sealed: &[u8]) -> Result<Record, SecretStoreError> {
    let blob = blob_name(name);
    let plain = env
        .open(&blob, sealed)
        .map_err(|_| SecretStoreError::Unseal(name.to_string()))?;
    serde_json::from_slice::<Record>(&plain).map_err(|e| SecretStoreError::Corrupt {
        name: name.to_string(),
        reason: e.to_string(),
    })
}

async fn load(
    store: &dyn Store,
    env: &Envelope,
    name: &str,
) -> Result<Option<(Vec<u8>, Record)>, SecretStoreError> {
    let Some(sealed) = store
        .get_blob(&blob_name(name))
        .await
        .map_err(|e| SecretStoreError::Store(e.to_string()))?
    else {
        return Ok(None);
    };
    let record = open(env, name, &sealed)?;
    Ok(Some((sealed, record)))
}

/// What a `put` or `delete` replaced, so that the caller can undo it when
/// the change cannot be audited (no unaudited change survives).
pub struct Previous {
    name: String,
    sealed: Option<Vec<u8>>,
}

impl Previous {
    /// Puts the blob back as it was before the change.
    pub async fn restore(self, store: &dyn Store) -> Result<(), SecretStoreError> {
        let blob = blob_name(&self.name);
        let r = match self.sealed {
            Some(sealed) => store.put_blob(&blob, &sealed).await,
            None => store.delete_blob(&blob).await.map(|_| ()),
        };
        r.map_err(|e| SecretStoreError::Store(e.to_string()))
    }
}

/// The outcome of [`put`].
pub struct PutOutcome {
    pub info: SecretInfo,
    /// Fingerprint of the value this one replaced, if any.
    pub replaced: Option<String>,
    pub previous: Previous,
}

/// Stores `value` as the next version of `name`. `name` must already be
/// validated ([`idmint_issuers::static_secret::validate_name`]).
pub async fn put(
    store: &dyn Store,
    env: &Envelope,
    fingerprints: &Fingerprinter,
    name: &str,
    value: Secret<String>,
    updated_by: &str,
) -> Result<PutOutcome, SecretStoreError> {
    // A record that no longer opens (root key changed) is replaced, not an
    // obstacle: putting the value again is exactly how an admin fixes it.
    let (prev_sealed, prev_version, replaced) = match store
        .get_blob(&blob_name(name))
        .await
        .map_err(|e| SecretStoreError::Store(e.to_string()))?
    {
        Some(sealed) => match open(env, name, &sealed) {
            Ok(r) => (Some(sealed), r.version, Some(r.fingerprint.clone())),
            Err(_) => (Some(sealed), 0, None),
        },
        None => (None, 0, None),
    };
    let record = Record {
        value: value.expose().clone(),
        version: prev_version + 1,
        fingerprint: fingerprints.fingerprint(value.expose().as_bytes()),
        updated_at: UnixTime::now().secs(),
        updated_by: updated_by.to_string(),
    };
    drop(value);
    let plain =
        Zeroizing::new(
            serde_json::to_vec(&record).map_err(|e| SecretStoreError::Seal {
                name: name.to_string(),
                reason: e.to_string(),
            })?,
        );
    let blob = blob_name(name);
    let sealed = env
        .seal(&blob, &plain)
        .map_err(|e| SecretStoreError::Seal {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
    drop(plain);
    store
        .put_blob(&blob, &sealed)
        .await
        .map_err(|e| SecretStoreError::Store(e.to_string()))?;
    Ok(PutOutcome {
        info: record.info(name),
        replaced,
        previous: Previous {
            name: name.to_string(),
            sealed: prev_sealed,
        },
    })
}

/// Every stored secret's metadata, ordered by name. A record that does not
/// open is listed with an empty fingerprint and version 0 rather than
/// hiding the others, so the admin sees what to store again.
pub async fn list(store: &dyn Store, env: &Envelope) -> Result<Vec<SecretInfo>, SecretStoreError> {
    let blobs = store
        .list_blobs(BLOB_PREFIX)
        .await
        .map_err(|e| SecretStoreError::Store(e.to_string()))?;
    let mut out = Vec::with_capacity(blobs.len());
    for (blob, sealed) in blobs {
        let Some(name) = blob.strip_prefix(BLOB_PREFIX) else {
            continue;
        };
        match open(env, name, &sealed) {
            Ok(r) => out.push(r.info(name)),
            Err(e) => {
                tracing::warn!(secret = name, error = %e, "a static secret cannot be opened");
                out.push(SecretInfo {
                    name: name.to_string(),
                    fingerprint: String::new(),
                    version: 0,
                    size: 0,
                    updated_at: 0,
                    updated_by: String::new(),
                });
            }
        }
    }
    Ok(out)
}

/// Removes `name`; `None` when it did not exist. The metadata of what was
/// removed (a record that no longer opens has an empty fingerprint) and the
/// means to put it back come with it.
pub async fn delete(
    store: &dyn Store,
    env: &Envelope,
    name: &str,
) -> Result<Option<(SecretInfo, Previous)>, SecretStoreError> {
    let blob = blob_name(name);
    let Some(sealed) = store
        .get_blob(&blob)
        .await
        .map_err(|e| SecretStoreError::Store(e.to_string()))?
    else {
        return Ok(None);
    };
    let info = match open(env, name, &sealed) {
        Ok(r) => r.info(name),
        Err(_) => SecretInfo {
            name: name.to_string(),
            fingerprint: String::new(),
            version: 0,
            size: 0,
            updated_at: 0,
            updated_by: String::new(),
        },
    };
    let existed = store
        .delete_blob(&blob)
        .await
        .map_err(|e| SecretStoreError::Store(e.to_string()))?;
    if !existed {
        return Ok(None);
    }
    Ok(Some((
        info,
        Previous {
            name: name.to_string(),
            sealed: Some(sealed),
        },
    )))
}

/// The `static` issuer's view of the store. Holds its own envelope (same
/// root key as the server's) because issuers are built before the shared
/// state exists.
pub struct StoreSecretSource {
    store: Arc<dyn Store>,
    envelope: Envelope,
}

impl StoreSecretSource {
    pub fn new(store: Arc<dyn Store>, envelope: Envelope) -> Self {
        Self { store, envelope }
    }
}

#[async_trait::async_trait]
impl SecretSource for StoreSecretSource {
    async fn read(&self, name: &str) -> Result<Option<StoredSecret>, String> {
        let Some((_, mut record)) = load(self.store.as_ref(), &self.envelope, name)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        Ok(Some(StoredSecret {
            value: Secret::new(std::mem::take(&mut record.value)),
            version: record.version,
        }))
    }
}

/// For `--check-config`: roles are validated, nothing is ever read.
pub struct NoSecrets;

#[async_trait::async_trait]
impl SecretSource for NoSecrets {
    async fn read(&self, _name: &str) -> Result<Option<StoredSecret>, String> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idmint_core::SealKey;

    fn setup() -> (
        tempfile::TempDir,
        idmint_store::SqliteStore,
        Envelope,
        Fingerprinter,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = idmint_store::SqliteStore::open(&dir.path().join("db")).unwrap();
        let env = Envelope::new(SealKey::generate().unwrap());
        (dir, store, env, Fingerprinter::new(&[7u8; 32]))
    }

    #[tokio::test]
    async fn put_list_read_delete_round_trip_without_plaintext_at_rest() {
        let (dir, store, env, fp) = setup();
        let value = "sk-round-trip-0123456789";
        let first = put(
            &store,
            &env,
            &fp,
            "openai",
            Secret::new(value.into()),
            "a|admin",
        )
        .await
        .unwrap();
        assert_eq!(first.info.version, 1);
        assert_eq!(first.info.fingerprint, fp.fingerprint(value.as_bytes()));
        assert!(first.replaced.is_none());
        let second = put(
            &store,
            &env,
            &fp,
            "openai",
            Secret::new("sk-two".into()),
            "a|b",
        )
        .await
        .unwrap();
        assert_eq!(second.info.version, 2);
        assert_eq!(
            second.replaced.as_deref(),
            Some(first.info.fingerprint.as_str())
        );

        let listed = list(&store, &env).await.unwrap();
        assert_eq!(listed, vec![second.info.clone()]);

        let source = StoreSecretSource::new(Arc::new(store), env);
        let read = source.read("openai").await.unwrap().unwrap();
        assert_eq!((read.value.expose().as_str(), read.version), ("sk-two", 2));
        assert!(source.read("other").await.unwrap().is_none());

        // The database and its WAL/journal files: sealed, so no plaintext.
        let mut scanned = 0;
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let raw = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(!raw.windows(value.len()).any(|w| w == value.as_bytes()));
            scanned += raw.len();
        }
        assert!(scanned > 0);
    }

    #[tokio::test]
    async fn a_failed_audit_can_undo_put_and_delete() {
        let (_dir, store, env, fp) = setup();
        let first = put(&store, &env, &fp, "k", Secret::new("one".into()), "x")
            .await
            .unwrap();
        first.previous.restore(&store).await.unwrap();
        assert!(
            list(&store, &env).await.unwrap().is_empty(),
            "undo of a first put removes it"
        );

        put(&store, &env, &fp, "k", Secret::new("one".into()), "x")
            .await
            .unwrap();
        let again = put(&store, &env, &fp, "k", Secret::new("two".into()), "x")
            .await
            .unwrap();
        again.previous.restore(&store).await.unwrap();
        let l = list(&store, &env).await.unwrap();
        assert_eq!(
            (l[0].version, l[0].fingerprint.clone()),
            (1, fp.fingerprint(b"one"))
        );

        let (info, prev) = delete(&store, &env, "k").await.unwrap().unwrap();
        assert_eq!(info.version, 1);
        assert!(delete(&store, &env, "k").await.unwrap().is_none());
        prev.restore(&store).await.unwrap();
        assert_eq!(list(&store, &env).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn records_do_not_open_under_another_name_or_root_key() {
        let (_dir, store, env, fp) = setup();
        put(&store, &env, &fp, "a", Secret::new("va".into()), "x")
            .await
            .unwrap();
        let sealed = store.get_blob("static-secret:a").await.unwrap().unwrap();
        store.put_blob("static-secret:b", &sealed).await.unwrap();
        let source = StoreSecretSource::new(
            Arc::new(idmint_store::SqliteStore::open(&_dir.path().join("db")).unwrap()),
            Envelope::new(SealKey::generate().unwrap()),
        );
        assert!(source.read("a").await.unwrap_err().contains("root key"));
        let l = list(&store, &env).await.unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].name, "b");
        assert!(l[1].fingerprint.is_empty(), "a copied record must not open");
        // Putting it again is the fix.
        let fixed = put(&store, &env, &fp, "b", Secret::new("vb".into()), "x")
            .await
            .unwrap();
        assert_eq!(fixed.info.version, 1);
    }
}
