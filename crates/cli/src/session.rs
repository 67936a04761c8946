//! The login cache: one session per server, in a 0600 file.
//!
//! File format (JSON): `{"sessions": [{"server", "token", "expires_at",
//! "subject"}, …]}`, keyed by the normalized server URL, so logging in to a
//! second server does not log you out of the first.
//!
//! Writes are atomic: the new content goes to a temporary file created with
//! mode 0600 in the same directory, is fsynced, then renamed over the old
//! file, so a crash never leaves a torn file and the token is never readable
//! by others, not even for a moment. Two logins racing each other can lose
//! one of the two entries (last writer wins); the lost one just needs
//! another `idmint login`.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Largest session file read: thousands of sessions; anything bigger is
/// not ours.
const MAX_FILE_BYTES: u64 = 4 << 20;

/// One cached login.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEntry {
    /// Normalized server URL (see `idmint_client::normalize_base_url`).
    pub server: String,
    /// The `idm_…` session token.
    pub token: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub subject: String,
}

impl fmt::Debug for SessionEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionEntry")
            .field("server", &self.server)
            .field("token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .field("subject", &self.subject)
            .finish()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SessionFile {
    #[serde(default)]
    sessions: Vec<SessionEntry>,
}

/// The session cache file at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCache {
    path: PathBuf,
}

impl SessionCache {
    pub fn at(path: PathBuf) -> Self {
        Self { path }
    }

    /// Where the cache lives: `$IDMINT_TOKEN_FILE`, else
    /// `$XDG_CACHE_HOME/idmint/session.json`, else
    /// `$HOME/.cache/idmint/session.json`. `var` is the environment (injected
    /// for tests).
    pub fn locate(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let set = |name: &str| var(name).filter(|v| !v.is_empty());
        if let Some(p) = set("IDMINT_TOKEN_FILE") {
            return Ok(Self::at(PathBuf::from(p)));
        }
        // The XDG spec says relative values are invalid and must be ignored.
        if let Some(dir) = set("XDG_CACHE_HOME").filter(|d| Path::new(d).is_absolute()) {
            return Ok(Self::at(
                Path::new(&dir).join("idmint").join("session.json"),
            ));
        }
        if let Some(home) = set("HOME") {
            return Ok(Self::at(
                Path::new(&home)
                    .join(".cache")
                    .join("idmint")
                    .join("session.json"),
            ));
        }
        bail!("cannot find a place for the session cache: set IDMINT_TOKEN_FILE (or HOME)")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cached session for `server` (normalized URL), expired or not.
    pub fn get(&self, server: &str) -> Result<Option<SessionEntry>> {
        Ok(self
            .load()?
            .sessions
            .into_iter()
            .find(|s| s.server == server))
    }

    /// Cache `entry`, replacing any session for the same server and dropping
    /// sessions that expired before `now`.
    pub fn store(&self, entry: SessionEntry, now: i64) -> Result<()> {
        let mut file = self.load()?;
        file.sessions
            .retain(|s| s.server != entry.server && s.expires_at > now);
        file.sessions.push(entry);
        self.write(&file)
    }

    /// Forget the session for `server`; true when there was one.
    pub fn remove(&self, server: &str) -> Result<bool> {
        let mut file = self.load()?;
        let before = file.sessions.len();
        file.sessions.retain(|s| s.server != server);
        if file.sessions.len() == before {
            return Ok(false);
        }
        self.write(&file)?;
        Ok(true)
    }

    fn load(&self) -> Result<SessionFile> {
        let meta = match fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SessionFile::default()),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("reading session cache {}", self.path.display()))
            }
        };
        check_private(&self.path, &meta)?;
        if meta.len() > MAX_FILE_BYTES {
            bail!(
                "session cache {} is {} bytes, too large to be a session cache; delete it and log in again",
                self.path.display(),
                meta.len()
            );
        }
        let text = fs::read_to_string(&self.path)
            .with_context(|| format!("reading session cache {}", self.path.display()))?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "session cache {} is not valid; delete it and log in again",
                self.path.display()
            )
        })
    }

    fn write(&self, file: &SessionFile) -> Result<()> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        create_private_dir(&dir)?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "session.json".into());
        let suffix = idmint_core::ids::random_hex(8)
            .map_err(|e| anyhow::anyhow!("cannot generate a temporary file name: {e}"))?;
        let tmp = dir.join(format!(".{name}.{suffix}.tmp"));
        let json = serde_json::to_vec_pretty(file).context("encoding the session cache")?;
        let result = write_new_private(&tmp, &json).and_then(|()| {
            fs::rename(&tmp, &self.path)
                .with_context(|| format!("replacing session cache {}", self.path.display()))
        });
        if result.is_err() {
            // Best effort: do not leave a stray copy of the tokens behind.
            let _ = fs::remove_file(&tmp);
        }
        result?;
        // Make the rename itself durable.
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// Create `path` exclusively with mode 0600, write `data`, fsync.
pub(crate) fn write_new_private(path: &Path, data: &[u8]) -> Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .with_context(|| format!("creating directory {}", dir.display()))
}

/// Refuse a cache others can read or write: its tokens may have leaked, and
/// trusting a file others can write lets them plant a session.
fn check_private(path: &Path, meta: &fs::Metadata) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "session cache {} has mode {mode:03o}, so other users can read or change it; \
                 delete it (the sessions in it may have leaked: log out of them) and log in again",
                path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, meta);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(server: &str, token: &str, expires_at: i64) -> SessionEntry {
        SessionEntry {
            server: server.into(),
            token: token.into(),
            expires_at,
            subject: "repo:acme/app:ref:refs/heads/main".into(),
        }
    }

    #[test]
    fn locate_follows_precedence() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let c = SessionCache::locate(env(&[("IDMINT_TOKEN_FILE", "/t/s.json"), ("HOME", "/h")]))
            .unwrap();
        assert_eq!(c.path(), Path::new("/t/s.json"));
        let c = SessionCache::locate(env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")])).unwrap();
        assert_eq!(c.path(), Path::new("/x/idmint/session.json"));
        let c = SessionCache::locate(env(&[("XDG_CACHE_HOME", "rel"), ("HOME", "/h")])).unwrap();
        assert_eq!(c.path(), Path::new("/h/.cache/idmint/session.json"));
        assert!(SessionCache::locate(env(&[])).is_err());
    }

    #[test]
    fn sessions_are_kept_per_server() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SessionCache::at(dir.path().join("nested").join("session.json"));
        assert_eq!(cache.get("http://a").unwrap(), None);
        cache
            .store(entry("http://a", "idm_a1", 2000), 1000)
            .unwrap();
        cache
            .store(entry("http://b", "idm_b1", 2000), 1000)
            .unwrap();
        cache
            .store(entry("http://a", "idm_a2", 3000), 1000)
            .unwrap();
        assert_eq!(
            cache.get("http://a").unwrap().map(|e| e.token),
            Some("idm_a2".into())
        );
        assert_eq!(
            cache.get("http://b").unwrap().map(|e| e.token),
            Some("idm_b1".into())
        );
        assert!(cache.remove("http://a").unwrap());
        assert!(!cache.remove("http://a").unwrap());
        assert_eq!(cache.get("http://a").unwrap(), None);
        assert!(cache.get("http://b").unwrap().is_some());
        // Expired sessions of other servers are pruned on the next store.
        cache.store(entry("http://c", "idm_c", 9000), 5000).unwrap();
        assert_eq!(cache.get("http://b").unwrap(), None);
    }

    #[cfg(unix)]
    #[test]
    fn file_is_private_and_written_atomically() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache").join("session.json");
        let cache = SessionCache::at(path.clone());
        cache.store(entry("http://a", "idm_a", 2000), 1000).unwrap();
        cache.store(entry("http://b", "idm_b", 2000), 1000).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        // No temporary files are left behind.
        let names: Vec<String> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["session.json".to_string()]);
        let json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(json["sessions"][0]["server"], "http://a");
        assert_eq!(json["sessions"][1]["token"], "idm_b");
        assert_eq!(json["sessions"][1]["expires_at"], 2000);
        assert!(json["sessions"][1]["subject"].is_string());

        // The rename replaced the file (new inode), never rewrote it in place:
        // a reader holding the old file sees the old, complete content.
        let old = fs::File::open(&path).unwrap();
        cache.store(entry("http://c", "idm_c", 2000), 1000).unwrap();
        let old_text = std::io::read_to_string(old).unwrap();
        assert!(!old_text.contains("idm_c") && old_text.contains("idm_b"));
    }

    #[cfg(unix)]
    #[test]
    fn readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session.json");
        fs::write(&path, r#"{"sessions": []}"#).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = SessionCache::at(path).get("http://a").unwrap_err();
        assert!(e.to_string().contains("mode 644"), "{e}");
    }

    #[test]
    fn corrupt_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session.json");
        write_new_private(&path, b"{not json").unwrap();
        let e = SessionCache::at(path).get("http://a").unwrap_err();
        assert!(e.to_string().contains("not valid"), "{e}");
    }

    #[test]
    fn debug_redacts_the_token() {
        assert!(!format!("{:?}", entry("http://a", "idm_secret", 1)).contains("idm_secret"));
    }
}
