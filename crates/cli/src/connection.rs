//! Building the client from the global flags, and finding the session token.

use crate::args::GlobalArgs;
use crate::session::SessionCache;
use anyhow::{bail, Context, Result};
use idmint_client::{ClientOptions, IdmintClient};

/// Where the session token of a call came from; `logout` forgets a cached
/// one but leaves `IDMINT_TOKEN` alone.
#[derive(Debug, Clone)]
pub enum TokenSource {
    Env,
    Cache(SessionCache),
}

const PEM_CERT_MARKER: &[u8] = b"-----BEGIN CERTIFICATE-----";

/// A client without a session (login, token exchange, health, dev token).
pub fn anonymous(global: &GlobalArgs) -> Result<IdmintClient> {
    let ca_cert_pem = match &global.ca_cert {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading --ca-cert {}", path.display()))?;
            // Checked here too so that the error names the file.
            if !pem
                .windows(PEM_CERT_MARKER.len())
                .any(|w| w == PEM_CERT_MARKER)
            {
                bail!(
                    "--ca-cert {} holds no PEM certificate (expected a {} block)",
                    path.display(),
                    String::from_utf8_lossy(PEM_CERT_MARKER)
                );
            }
            Some(pem)
        }
        None => None,
    };
    IdmintClient::new(
        &global.server,
        ClientOptions {
            ca_cert_pem,
            token: None,
        },
    )
    .map_err(anyhow::Error::from)
}

/// A client with the session token: `IDMINT_TOKEN` if set, else the cached
/// login for this server.
pub fn authenticated(global: &GlobalArgs) -> Result<(IdmintClient, TokenSource)> {
    let client = anonymous(global)?;
    if let Some(token) = env_token() {
        return Ok((client.with_token(token), TokenSource::Env));
    }
    let cache = session_cache()?;
    let token = cached_token(
        &cache,
        &client.base_url(),
        idmint_core::UnixTime::now().secs(),
    )?;
    Ok((client.with_token(token), TokenSource::Cache(cache)))
}

/// `IDMINT_TOKEN`, when set and not blank.
pub fn env_token() -> Option<String> {
    std::env::var("IDMINT_TOKEN")
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// The session cache of this user (see [`SessionCache::locate`]).
pub fn session_cache() -> Result<SessionCache> {
    SessionCache::locate(|k| std::env::var(k).ok())
}

/// The cached token for `server`, or an error saying how to log in.
pub fn cached_token(cache: &SessionCache, server: &str, now: i64) -> Result<String> {
    match cache.get(server)? {
        None => bail!(
            "not logged in to {server}: run `idmint login` (or set IDMINT_TOKEN); sessions are cached in {}",
            cache.path().display()
        ),
        Some(s) if s.expires_at <= now => bail!(
            "your session on {server} as {} expired at {}: run `idmint login` again",
            s.subject,
            idmint_core::UnixTime(s.expires_at).rfc3339()
        ),
        Some(s) => Ok(s.token),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SessionEntry;

    #[test]
    fn cached_token_explains_missing_and_expired() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SessionCache::at(dir.path().join("s.json"));
        let e = cached_token(&cache, "http://a", 100).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("not logged in to http://a: run `idmint login`"),
            "{e}"
        );
        cache
            .store(
                SessionEntry {
                    server: "http://a".into(),
                    token: "idm_x".into(),
                    expires_at: 200,
                    subject: "me".into(),
                },
                100,
            )
            .unwrap();
        assert_eq!(cached_token(&cache, "http://a", 150).unwrap(), "idm_x");
        let e = cached_token(&cache, "http://a", 200).unwrap_err();
        assert!(
            e.to_string()
                .contains("as me expired at 1970-01-01T00:03:20Z"),
            "{e}"
        );
    }
}
