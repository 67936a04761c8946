//! The proxy's audit file: one JSON object per line per request or
//! tunnel, metadata only. Bodies, header values and secrets are never
//! written; an injected credential appears as its name and a keyed
//! fingerprint (HMAC-SHA-256 under a key the proxy holds), which lets an
//! operator tell credentials apart and correlate rotations without the log
//! becoming a dictionary for guessing them.

use ring::hmac;
use serde::Serialize;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open proxy audit file {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One audited event.
#[derive(Debug, Default, Serialize)]
pub struct AuditRecord {
    /// Unix time in milliseconds.
    pub ts_ms: u128,
    /// `prx_` + 32 hex digits, also sent to the workload in the
    /// `x-idmint-proxy-request-id` response header: the handle for
    /// `idmint audit trace prx_… --proxy-audit FILE`. Set for requests the
    /// proxy saw (plain HTTP and intercepted TLS), not for opaque tunnels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// `forward` (plain HTTP), `intercept` (TLS terminated), `tunnel`, `connect`.
    pub mode: &'static str,
    pub decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub identity: Option<String>,
    pub pid: Option<u32>,
    pub uid: Option<u32>,
    pub exe: Option<String>,
    pub client: String,
    pub host: String,
    pub port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Path without the query (the query may carry an injected secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Where the credential came from: `file`, `env`, `idmint`, `vault_kv`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_source: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_fingerprint: Option<String>,
    /// The idmint lease of a minted credential (`credential_source =
    /// "idmint"`), which the server's audit log traces to its login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    pub status: Option<u16>,
    /// Bytes sent upstream (tunnels: exact; requests: Content-Length if given).
    pub bytes_up: Option<u64>,
    /// Bytes received from upstream (same rule).
    pub bytes_down: Option<u64>,
    pub latency_ms: u128,
}

/// Append-only JSON-lines writer.
pub struct AuditLog {
    file: Mutex<std::fs::File>,
    fingerprint_key: hmac::Key,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Open (or create, mode 0600) the audit file for appending.
    pub fn open(path: &Path, fingerprint_key: &[u8]) -> Result<Self, AuditError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| AuditError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            file: Mutex::new(file),
            fingerprint_key: hmac::Key::new(hmac::HMAC_SHA256, fingerprint_key),
        })
    }

    /// Keyed fingerprint of a credential: the first 16 bytes of
    /// HMAC-SHA-256, hex.
    pub fn fingerprint(&self, secret: &str) -> String {
        let tag = hmac::sign(&self.fingerprint_key, secret.as_bytes());
        idmint_core::ids::hex(tag.as_ref().get(..16).unwrap_or_default())
    }

    /// Write one record. Failures are logged, not propagated: a request is
    /// not failed after the fact because the log disk is full.
    pub fn write(&self, mut record: AuditRecord) {
        record.ts_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let Ok(mut line) = serde_json::to_vec(&record) else {
            return;
        };
        line.push(b'\n');
        match self.file.lock() {
            Ok(mut f) => {
                if let Err(e) = f.write_all(&line) {
                    tracing::error!(error = %e, "cannot write proxy audit record");
                }
            }
            Err(_) => tracing::error!("proxy audit file lock poisoned"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_keyed_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = AuditLog::open(&dir.path().join("a"), b"key-one").unwrap();
        let b = AuditLog::open(&dir.path().join("b"), b"key-two").unwrap();
        assert_eq!(a.fingerprint("s"), a.fingerprint("s"));
        assert_ne!(a.fingerprint("s"), b.fingerprint("s"));
        assert_eq!(a.fingerprint("s").len(), 32);
        a.write(AuditRecord {
            mode: "forward",
            decision: "allow",
            ..Default::default()
        });
        let text = std::fs::read_to_string(dir.path().join("a")).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["decision"], "allow");
    }
}
