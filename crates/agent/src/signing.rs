//! The agent's Ed25519 key and the signature on every request.
//!
//! The key never leaves the host: enrollment sends its public half, and
//! every later request carries
//! `Authorization: IdmintAgent host="…",ts="…",nonce="…",sig="…"` over
//! [`agent_signing_input`] (method, path and query, host, time, nonce, body
//! hash), so a captured request can be neither replayed nor altered.

use crate::error::{AgentError, Result};
use crate::state::StateDir;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use idmint_core::Secret;
use idmint_proto::ssh::{agent_signing_input, AGENT_AUTH_SCHEME};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use std::fmt;

const KEY_FILE_MODE: u32 = 0o600;
const ED25519: &str = "ssh-ed25519";

/// The agent's request-signing key.
pub struct AgentKey {
    pair: Ed25519KeyPair,
}

impl fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentKey")
            .field("public", &self.openssh_public_key())
            .finish()
    }
}

impl AgentKey {
    /// A new key, written to the state directory (0600) before it is used.
    pub fn generate(state: &StateDir) -> Result<Self> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| AgentError::Key("the system random generator failed".into()))?;
        let pkcs8 = Secret::new(pkcs8.as_ref().to_vec());
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.expose())
            .map_err(|e| AgentError::Key(format!("generated key is unusable: {e}")))?;
        state.write(
            state
                .agent_key_path()
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("agent_key"),
            pkcs8.expose(),
            KEY_FILE_MODE,
        )?;
        Ok(Self { pair })
    }

    /// The key saved by enrollment.
    pub fn load(state: &StateDir) -> Result<Self> {
        let path = state.agent_key_path();
        let bytes = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                AgentError::NotEnrolled { path: path.clone() }
            } else {
                AgentError::io("reading the agent key", &path, e)
            }
        })?;
        let bytes = Secret::new(bytes);
        let pair = Ed25519KeyPair::from_pkcs8(bytes.expose()).map_err(|e| {
            AgentError::Key(format!(
                "{} is not an Ed25519 PKCS#8 key ({e}); enroll again",
                path.display()
            ))
        })?;
        Ok(Self { pair })
    }

    /// The public key in OpenSSH format: `ssh-ed25519 AAAA…`.
    pub fn openssh_public_key(&self) -> String {
        openssh_ed25519(self.pair.public_key().as_ref())
    }

    /// The raw 32-byte public key.
    pub fn public_key_bytes(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// The `Authorization` header value for one request.
    pub fn authorization(
        &self,
        host: &str,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        ts: i64,
    ) -> Result<String> {
        let nonce = idmint_core::ids::random_hex(16)
            .map_err(|_| AgentError::Key("the system random generator failed".into()))?;
        let body_hash =
            idmint_core::ids::hex(ring::digest::digest(&ring::digest::SHA256, body).as_ref());
        let input = agent_signing_input(method, path_and_query, host, ts, &nonce, &body_hash);
        let sig = self.pair.sign(input.as_bytes());
        Ok(format!(
            "{AGENT_AUTH_SCHEME} host=\"{host}\",ts=\"{ts}\",nonce=\"{nonce}\",sig=\"{}\"",
            URL_SAFE_NO_PAD.encode(sig.as_ref())
        ))
    }
}

/// `ssh-ed25519 <base64 of the SSH wire encoding>`.
pub fn openssh_ed25519(public: &[u8]) -> String {
    let mut blob = Vec::with_capacity(4 + ED25519.len() + 4 + public.len());
    for part in [ED25519.as_bytes(), public] {
        blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
        blob.extend_from_slice(part);
    }
    format!("{ED25519} {}", STANDARD.encode(blob))
}

/// Host names go into the header between quotes: plain characters only.
pub fn check_host_name(host: &str) -> Result<()> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(AgentError::InvalidHostName {
            host: host.chars().take(80).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ED25519 as VERIFY_ED25519};

    #[test]
    fn signatures_verify_over_the_documented_input() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let key = AgentKey::generate(&state).unwrap();
        let header = key
            .authorization(
                "web-1",
                "POST",
                "/api/v1/agent/events",
                b"{}",
                1_700_000_000,
            )
            .unwrap();
        let rest = header.strip_prefix("IdmintAgent ").unwrap();
        let field = |name: &str| {
            rest.split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .and_then(|v| v.strip_suffix('"'))
                .unwrap()
                .to_string()
        };
        assert_eq!(field("host"), "web-1");
        assert_eq!(field("nonce").len(), 32);
        let body_hash =
            idmint_core::ids::hex(ring::digest::digest(&ring::digest::SHA256, b"{}").as_ref());
        let input = agent_signing_input(
            "POST",
            "/api/v1/agent/events",
            "web-1",
            1_700_000_000,
            &field("nonce"),
            &body_hash,
        );
        let sig = URL_SAFE_NO_PAD.decode(field("sig")).unwrap();
        // The reloaded key is the same key.
        let reloaded = AgentKey::load(&state).unwrap();
        UnparsedPublicKey::new(&VERIFY_ED25519, reloaded.public_key_bytes())
            .verify(input.as_bytes(), &sig)
            .unwrap();
        assert!(
            UnparsedPublicKey::new(&VERIFY_ED25519, reloaded.public_key_bytes())
                .verify(b"other", &sig)
                .is_err()
        );
        assert!(key
            .openssh_public_key()
            .starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"));
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }

    #[test]
    fn host_names_are_plain() {
        assert!(check_host_name("web-1.example_x").is_ok());
        for bad in ["", "a\"b", "a,b", "a b", "a\nb"] {
            assert!(check_host_name(bad).is_err(), "{bad:?}");
        }
    }
}
