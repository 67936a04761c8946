//! AWS `credential_process` output and its local cache.
//!
//! The output is exactly the JSON the AWS CLI, the SDKs and Terraform
//! read: `{"Version":1,"AccessKeyId","SecretAccessKey","SessionToken",
//! "Expiration"}` (`SessionToken` omitted for an IAM user's key).
//!
//! The cache: one file per (server, role, request, session) under
//! `$XDG_CACHE_HOME/idmint/aws/` (else `~/.cache/idmint/aws/`), mode 0600
//! in a 0700 directory, written to a temporary file and renamed. It holds
//! the secret key in clear, protected by its permissions (as the AWS CLI's
//! own `~/.aws/cli/cache` does); a file others could read or write is
//! refused rather than used. The file name is a hash, so it reveals
//! neither the role nor the session.

use anyhow::{bail, Context, Result};
use idmint_core::UnixTime;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// The `credential_process` JSON.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessCredentials {
    pub version: u32,
    pub access_key_id: String,
    pub secret_access_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
    /// RFC 3339 UTC.
    pub expiration: String,
}

impl std::fmt::Debug for ProcessCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

impl ProcessCredentials {
    /// Compact JSON and a newline, as printed.
    pub fn to_output(&self) -> Result<String> {
        let mut s = serde_json::to_string(self).context("encoding the credentials")?;
        s.push('\n');
        Ok(s)
    }

    /// Seconds left at `now`; negative once expired, `None` if the
    /// expiration cannot be read.
    pub fn remaining(&self, now: UnixTime) -> Option<i64> {
        idmint_issuers::aws::credentials::parse_rfc3339(&self.expiration)
            .ok()
            .map(|exp| exp.secs() - now.secs())
    }
}

/// One cache file: the credentials and when they were fetched, so that a
/// credential shorter-lived than `--refresh-before` is still reused for
/// the first half of its life instead of being fetched on every call.
#[derive(Serialize, Deserialize)]
struct CacheEntry {
    fetched_at: i64,
    credentials: ProcessCredentials,
}

/// The cache directory: `$XDG_CACHE_HOME/idmint/aws` (absolute values
/// only, per the XDG spec), else `$HOME/.cache/idmint/aws`.
pub fn cache_dir(var: impl Fn(&str) -> Option<String>) -> Result<PathBuf> {
    let set = |k: &str| var(k).filter(|v| !v.is_empty());
    if let Some(dir) = set("XDG_CACHE_HOME").filter(|d| Path::new(d).is_absolute()) {
        return Ok(PathBuf::from(dir).join("idmint").join("aws"));
    }
    if let Some(home) = set("HOME") {
        return Ok(PathBuf::from(home)
            .join(".cache")
            .join("idmint")
            .join("aws"));
    }
    bail!("cannot find a place for the AWS credential cache: set XDG_CACHE_HOME or HOME, or pass --no-cache")
}

/// The cache file for these inputs: a SHA-256 of all of them, so a
/// different server, role, request or session never shares an entry.
pub fn cache_file(dir: &Path, parts: &[&str]) -> PathBuf {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        // Length-prefixed: ("ab","c") and ("a","bc") differ.
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p.as_bytes());
    }
    let hex = idmint_core::ids::hex(ctx.finish().as_ref());
    dir.join(format!("{}.json", hex.get(..40).unwrap_or(&hex)))
}

/// The cached credentials if present, private and valid for more than
/// `refresh_before` seconds — or, for credentials whose whole life is
/// shorter than twice that, for more than half their life.
pub fn read_cached(
    path: &Path,
    now: UnixTime,
    refresh_before: u64,
) -> Result<Option<ProcessCredentials>> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let mode = meta.permissions().mode() & 0o777;
        // std has no effective uid: the owner must be the owner of the
        // cache directory (0700, created by this user).
        let dir_uid = path
            .parent()
            .and_then(|d| fs::metadata(d).ok())
            .map(|m| m.uid());
        if !meta.is_file() || mode & 0o077 != 0 || dir_uid != Some(meta.uid()) {
            bail!(
                "AWS credential cache {} is not a private file (mode {mode:03o}); delete it (its keys may have \
                 leaked: revoke the lease) or pass --no-cache",
                path.display()
            );
        }
    }
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let Ok(entry) = serde_json::from_str::<CacheEntry>(&text) else {
        // A damaged entry is replaced, not fatal.
        return Ok(None);
    };
    let creds = entry.credentials;
    let Some(left) = creds.remaining(now) else {
        return Ok(None);
    };
    let lifetime = left + now.secs().saturating_sub(entry.fetched_at);
    let threshold = i64::try_from(refresh_before)
        .unwrap_or(i64::MAX)
        .min(lifetime / 2);
    Ok((left > threshold).then_some(creds))
}

/// Write `creds`, fetched at `now`, to `path` atomically, 0600 in a 0700
/// directory.
pub fn write_cached(path: &Path, creds: &ProcessCredentials, now: UnixTime) -> Result<()> {
    let dir = path.parent().context("the cache file has no directory")?;
    crate::session::create_private_dir(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        idmint_core::ids::random_hex(8).map_err(|e| anyhow::anyhow!("random: {e}"))?
    ));
    let entry = CacheEntry {
        fetched_at: now.secs(),
        credentials: creds.clone(),
    };
    let json = serde_json::to_vec(&entry).context("encoding the cache entry")?;
    let result = crate::session::write_new_private(&tmp, &json).and_then(|()| {
        fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(expiration: &str, token: Option<&str>) -> ProcessCredentials {
        ProcessCredentials {
            version: 1,
            access_key_id: "ASIAX".into(),
            secret_access_key: "secret".into(),
            session_token: token.map(str::to_string),
            expiration: expiration.into(),
        }
    }

    #[test]
    fn output_is_the_aws_format() {
        assert_eq!(
            creds("2026-11-23T18:00:00Z", Some("t")).to_output().unwrap(),
            "{\"Version\":1,\"AccessKeyId\":\"ASIAX\",\"SecretAccessKey\":\"secret\",\"SessionToken\":\"t\",\"Expiration\":\"2026-11-23T18:00:00Z\"}\n"
        );
        assert!(!creds("x", None)
            .to_output()
            .unwrap()
            .contains("SessionToken"));
        assert!(!format!("{:?}", creds("x", Some("tok"))).contains("secret"));
    }

    #[test]
    fn cache_is_private_keyed_and_refreshed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("aws");
        let a = cache_file(&cache, &["http://s", "aws/x", "tok"]);
        assert_ne!(a, cache_file(&cache, &["http://s", "aws/x", "tok2"]));
        assert_ne!(
            cache_file(&cache, &["ab", "c"]),
            cache_file(&cache, &["a", "bc"])
        );
        let now = UnixTime(1_000_000_000);
        assert!(read_cached(&a, now, 300).unwrap().is_none());
        let c = creds(&UnixTime(now.secs() + 600).rfc3339(), Some("t"));
        write_cached(&a, &c, now).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&a).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(&cache).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(read_cached(&a, now, 300).unwrap(), Some(c.clone()));
        // Less than refresh_before left: fetch again.
        assert!(read_cached(&a, UnixTime(now.secs() + 250), 300)
            .unwrap()
            .is_some());
        assert!(read_cached(&a, UnixTime(now.secs() + 350), 300)
            .unwrap()
            .is_none());
        // A 10-minute credential with a 15-minute refresh_before is reused
        // for its first half, then fetched again.
        assert!(read_cached(&a, now, 900).unwrap().is_some());
        assert!(read_cached(&a, UnixTime(now.secs() + 301), 900)
            .unwrap()
            .is_none());
        fs::set_permissions(&a, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_cached(&a, now, 300)
            .unwrap_err()
            .to_string()
            .contains("not a private file"));
        fs::write(&a, "garbage").unwrap();
        fs::set_permissions(&a, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read_cached(&a, now, 300).unwrap().is_none());

        let env = |k: &str| match k {
            "XDG_CACHE_HOME" => Some("relative".to_string()),
            "HOME" => Some("/home/u".to_string()),
            _ => None,
        };
        assert_eq!(
            cache_dir(env).unwrap(),
            PathBuf::from("/home/u/.cache/idmint/aws")
        );
        assert!(cache_dir(|_| None).is_err());
    }
}
