//! The agent's state directory (default `/var/lib/idmint-agent`, mode 0700).
//!
//! | file | what | why it is kept |
//! |---|---|---|
//! | `agent_key` | Ed25519 PKCS#8 (0600) | signs every request |
//! | `enrollment.json` | server URL, host name, host key path | `run` needs no flags |
//! | `host_cert.pub`, `user_ca.pub` | from enrollment | for `install` / sshd |
//! | `grants.json` (0600) | the last desired state | expiry is enforced across a restart while the server is down |
//! | `ledger.json` (0600) | accounts this agent made, sessions seen, leases used up | one-time grants stay one-time across restarts |
//! | `uid_next` | the uid allocator | uids are never reused |
//! | `outbox.json` (0600) | events not yet accepted by the server | events survive a restart ([`crate::outbox`]) |
//!
//! Every file is replaced atomically (temp file, fsync, rename, fsync of
//! the directory), so a crash leaves the old or the new version, never half
//! of one.

use crate::error::{AgentError, Result};
use idmint_proto::ssh::AgentGrants;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/idmint-agent";

const AGENT_KEY: &str = "agent_key";
const ENROLLMENT: &str = "enrollment.json";
const HOST_CERT: &str = "host_cert.pub";
const USER_CA: &str = "user_ca.pub";
const GRANTS: &str = "grants.json";
const LEDGER: &str = "ledger.json";
pub(crate) const UID_NEXT: &str = "uid_next";

/// What `idmint agent enroll` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    pub server: String,
    pub host: String,
    /// sshd's host public key that was certified.
    pub host_public_key_path: PathBuf,
    pub enrolled_at: i64,
}

/// The last desired state received, with the server's clock offset at the
/// time (`server now - agent now`), so that expiry is judged by the clock
/// that signed the certificates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedGrants {
    pub grants: AgentGrants,
    pub clock_offset_secs: i64,
    pub received_at: i64,
}

/// Accounts this agent created and what it knows about them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub accounts: BTreeMap<String, LedgerEntry>,
    /// Leases whose account was created and removed again (one-time): never
    /// create them again, even while the server still lists them. Entries
    /// go once the server stops listing the lease.
    pub consumed: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub lease_id: String,
    pub uid: u32,
    pub created_at: i64,
    pub expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_started_at: Option<i64>,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Open (and create, mode 0700) the state directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .map_err(|e| AgentError::io("creating the state directory", &dir, e))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| AgentError::io("restricting the state directory to root", &dir, e))?;
        Ok(Self { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn agent_key_path(&self) -> PathBuf {
        self.file(AGENT_KEY)
    }
    pub fn host_cert_path(&self) -> PathBuf {
        self.file(HOST_CERT)
    }
    pub fn user_ca_path(&self) -> PathBuf {
        self.file(USER_CA)
    }

    pub fn enrollment(&self) -> Result<Option<Enrollment>> {
        self.read_json(ENROLLMENT)
    }
    /// The enrollment, or [`AgentError::NotEnrolled`].
    pub fn require_enrollment(&self) -> Result<Enrollment> {
        self.enrollment()?.ok_or_else(|| AgentError::NotEnrolled {
            path: self.file(ENROLLMENT),
        })
    }
    pub fn save_enrollment(&self, e: &Enrollment) -> Result<()> {
        self.write_json(ENROLLMENT, e, 0o600)
    }

    pub fn cached_grants(&self) -> Result<Option<CachedGrants>> {
        self.read_json(GRANTS)
    }
    pub fn save_grants(&self, g: &CachedGrants) -> Result<()> {
        self.write_json(GRANTS, g, 0o600)
    }

    pub fn ledger(&self) -> Result<Ledger> {
        Ok(self.read_json(LEDGER)?.unwrap_or_default())
    }
    pub fn save_ledger(&self, l: &Ledger) -> Result<()> {
        self.write_json(LEDGER, l, 0o600)
    }

    /// Write `name` atomically with `mode`.
    pub fn write(&self, name: &str, bytes: &[u8], mode: u32) -> Result<()> {
        write_file_atomic(&self.file(name), bytes, mode)
    }

    /// Read `name`; `None` when it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.file(name);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(AgentError::io("reading a state file", path, e)),
        }
    }

    fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        match self.read(name)? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| AgentError::CorruptState {
                        path: self.file(name),
                        message: e.to_string(),
                    })
            }
        }
    }

    fn write_json<T: Serialize>(&self, name: &str, value: &T, mode: u32) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| AgentError::CorruptState {
            path: self.file(name),
            message: format!("cannot serialize: {e}"),
        })?;
        self.write(name, &bytes, mode)
    }
}

/// Replace `path` with `bytes` atomically: a temp file in the same
/// directory whose name starts with `.` and contains `.tmp` (sudo ignores
/// files with a `.` in their name, so a half-written sudoers drop-in is
/// never read), created with `mode`, fsynced, renamed over `path`, and the
/// directory fsynced so the rename survives a crash.
pub fn write_file_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = temp_path_for(path)?;
    let result = (|| {
        let mut f = create_new(&tmp, mode)?;
        f.write_all(bytes)
            .map_err(|e| AgentError::io("writing a temporary file", &tmp, e))?;
        f.sync_all()
            .map_err(|e| AgentError::io("flushing a temporary file", &tmp, e))?;
        Ok(())
    })()
    .and_then(|()| rename_durably(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A fresh temp name next to `path`: `.NAME.tmp-<random hex>`.
pub(crate) fn temp_path_for(path: &Path) -> Result<PathBuf> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| AgentError::Config(format!("{} has no file name", path.display())))?;
    let suffix = idmint_core::ids::random_hex(8)
        .map_err(|_| AgentError::Key("the system random generator failed".into()))?;
    Ok(path.with_file_name(format!(".{name}.tmp-{suffix}")))
}

/// Create `path` exclusively with `mode` (never follows or reuses an
/// existing file, so a planted symlink cannot redirect the write).
pub(crate) fn create_new(path: &Path, mode: u32) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| AgentError::io("creating a file", path, e))
        .and_then(|f| {
            // The umask may have removed bits; set them exactly.
            f.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(|e| AgentError::io("setting a file's mode", path, e))?;
            Ok(f)
        })
}

/// `rename(from, to)`, then fsync the directory.
pub(crate) fn rename_durably(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| AgentError::io("renaming into place", to, e))?;
    if let Some(dir) = to.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| AgentError::io("flushing a directory", dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn files_are_replaced_atomically_with_their_mode() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path().join("s")).unwrap();
        assert_eq!(
            std::fs::metadata(state.path()).unwrap().mode() & 0o777,
            0o700
        );
        state.write("x", b"one", 0o600).unwrap();
        state.write("x", b"two", 0o600).unwrap();
        assert_eq!(state.read("x").unwrap().unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(state.file("x")).unwrap().mode() & 0o777,
            0o600
        );
        // No temp files left behind.
        let names: Vec<_> = std::fs::read_dir(state.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn ledger_and_grants_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        assert_eq!(state.ledger().unwrap(), Ledger::default());
        assert!(state.cached_grants().unwrap().is_none());
        assert!(state.require_enrollment().is_err());
        let mut l = Ledger::default();
        l.accounts.insert(
            "wl_abc123".into(),
            LedgerEntry {
                lease_id: "l1".into(),
                uid: 2_000_000,
                created_at: 1,
                expires_at: 2,
                session_started_at: None,
            },
        );
        state.save_ledger(&l).unwrap();
        assert_eq!(state.ledger().unwrap(), l);
        std::fs::write(state.file(LEDGER), b"{not json").unwrap();
        let err = state.ledger().unwrap_err().to_string();
        assert!(err.contains("ledger.json"), "{err}");
    }
}
