//! The local CA that intercepted connections are terminated with, and the
//! per-host leaf certificates it signs (cached).
//!
//! Workloads trust the CA certificate (`ca_cert`); the key (`ca_key`, mode
//! 0600) never leaves this host. The CA's distinguished name is fixed, so
//! the issuer used for signing leaves is rebuilt from the key alone (no
//! certificate parser needed); at load the proxy checks that the CA
//! certificate on disk carries that key.

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

const CA_COMMON_NAME: &str = "idmint proxy local CA";
const CA_ORGANIZATION: &str = "idmint";
const CA_VALIDITY_DAYS: i64 = 3650;
const LEAF_VALIDITY_DAYS: i64 = 7;
/// Leaves are re-minted well before they expire.
const LEAF_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Bound on cached leaves; the cache is emptied when it is reached.
const LEAF_CACHE_LIMIT: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{path} already exists; refusing to overwrite a CA (delete it first to rotate)")]
    Exists { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CA key {path} is readable by group or others: run `chmod 600 {path}`")]
    KeyMode { path: PathBuf },
    #[error("{path} does not hold a usable key: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("CA certificate {cert} was not made with key {key} (or is not a PEM certificate); re-run `idmint proxy init-ca` into a fresh directory")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot mint a certificate for `{host}`: {reason}")]
    Leaf { host: String, reason: String },
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, CA_ORGANIZATION);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(CA_VALIDITY_DAYS);
    params
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                CaError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                CaError::Write {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|source| CaError::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// Create a new CA: certificate at `cert` (0644) and key at `key` (0600).
/// Never overwrites existing files.
pub fn init_ca(cert: &Path, key: &Path) -> Result<(), CaError> {
    for p in [cert, key] {
        if p.exists() {
            return Err(CaError::Exists {
                path: p.to_path_buf(),
            });
        }
    }
    let bad_key = |reason: String| CaError::BadKey {
        path: key.to_path_buf(),
        reason,
    };
    let key_pair = KeyPair::generate().map_err(|e| bad_key(e.to_string()))?;
    let ca = ca_params()
        .self_signed(&key_pair)
        .map_err(|e| bad_key(e.to_string()))?;
    let key_pem = zeroize::Zeroizing::new(key_pair.serialize_pem());
    write_new(key, key_pem.as_bytes(), 0o600)?;
    write_new(cert, ca.pem().as_bytes(), 0o644)
}

struct CachedLeaf {
    config: Arc<ServerConfig>,
    minted: Instant,
}

/// The loaded CA and its cache of per-host TLS server configurations.
pub struct LocalCa {
    key: KeyPair,
    issuer: Certificate,
    ca_der: CertificateDer<'static>,
    leaves: Mutex<HashMap<String, CachedLeaf>>,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa").finish_non_exhaustive()
    }
}

impl LocalCa {
    /// Load the CA written by [`init_ca`], checking the key's file mode and
    /// that the certificate belongs to the key.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, CaError> {
        let meta = std::fs::metadata(key).map_err(|source| CaError::Read {
            path: key.to_path_buf(),
            source,
        })?;
        if meta.mode() & 0o077 != 0 {
            return Err(CaError::KeyMode {
                path: key.to_path_buf(),
            });
        }
        let key_pem = zeroize::Zeroizing::new(std::fs::read_to_string(key).map_err(|source| {
            CaError::Read {
                path: key.to_path_buf(),
                source,
            }
        })?);
        let key_pair = KeyPair::from_pem(&key_pem).map_err(|e| CaError::BadKey {
            path: key.to_path_buf(),
            reason: e.to_string(),
        })?;
        let cert_pem = std::fs::read(cert).map_err(|source| CaError::Read {
            path: cert.to_path_buf(),
            source,
        })?;
        let mismatch = || CaError::Mismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        };
        let ca_der = rustls_pemfile::certs(&mut cert_pem.as_slice())
            .next()
            .and_then(Result::ok)
            .ok_or_else(mismatch)?;
        let public = key_pair.public_key_raw();
        if public.is_empty() || !ca_der.windows(public.len()).any(|w| w == public) {
            return Err(mismatch());
        }
        let issuer = ca_params()
            .self_signed(&key_pair)
            .map_err(|e| CaError::BadKey {
                path: key.to_path_buf(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            key: key_pair,
            issuer,
            ca_der,
            leaves: Mutex::new(HashMap::new()),
        })
    }

    /// A TLS server configuration presenting a certificate for `host` (a
    /// DNS name or IP literal), minted on first use and cached.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, CaError> {
        if let Ok(cache) = self.leaves.lock() {
            if let Some(leaf) = cache.get(host) {
                if leaf.minted.elapsed() < LEAF_MAX_AGE {
                    return Ok(leaf.config.clone());
                }
            }
        }
        let config = Arc::new(self.mint(host)?);
        if let Ok(mut cache) = self.leaves.lock() {
            if cache.len() >= LEAF_CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(
                host.to_string(),
                CachedLeaf {
                    config: config.clone(),
                    minted: Instant::now(),
                },
            );
        }
        Ok(config)
    }

    fn mint(&self, host: &str) -> Result<ServerConfig, CaError> {
        let fail = |reason: String| CaError::Leaf {
            host: host.to_string(),
            reason,
        };
        let leaf_key = KeyPair::generate().map_err(|e| fail(e.to_string()))?;
        let mut params =
            CertificateParams::new(vec![host.to_string()]).map_err(|e| fail(e.to_string()))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(LEAF_VALIDITY_DAYS);
        let leaf = params
            .signed_by(&leaf_key, &self.issuer, &self.key)
            .map_err(|e| fail(e.to_string()))?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| fail(e.to_string()))?
                .with_no_client_auth()
                .with_single_cert(vec![leaf.der().clone(), self.ca_der.clone()], key_der)
                .map_err(|e| fail(e.to_string()))?;
        // The proxy speaks HTTP/1.1 only; never let a client pick h2.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_load_and_mint() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("ca.pem"), dir.path().join("ca-key.pem"));
        init_ca(&cert, &key).unwrap();
        assert_eq!(std::fs::metadata(&key).unwrap().mode() & 0o777, 0o600);
        assert!(matches!(init_ca(&cert, &key), Err(CaError::Exists { .. })));
        let ca = LocalCa::load(&cert, &key).unwrap();
        let a = ca.server_config("upstream.test").unwrap();
        let b = ca.server_config("upstream.test").unwrap();
        assert!(Arc::ptr_eq(&a, &b), "leaf must be cached");
        ca.server_config("127.0.0.1").unwrap();

        // A certificate from another CA is refused.
        let other = tempfile::tempdir().unwrap();
        let (c2, k2) = (other.path().join("c.pem"), other.path().join("k.pem"));
        init_ca(&c2, &k2).unwrap();
        assert!(matches!(
            LocalCa::load(&c2, &key),
            Err(CaError::Mismatch { .. })
        ));
    }
}
