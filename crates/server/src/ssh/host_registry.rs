//! Enrolled agents and single-use join tokens, persisted as sealed blobs.
//!
//! * `ssh-agent/<host>`: the agent's public key (sealed so that someone
//!   with write access to the database alone cannot swap in their own key:
//!   the seal authenticates it under the root key).
//! * `ssh-join/<sha256 of token>`: host and expiry of a join token. Only the
//!   hash is stored; [`idmint_store::Store::delete_blob`] makes redemption
//!   single-use even with several servers.

use idmint_issuers::ssh::Ed25519PublicKey;
use idmint_store::{Envelope, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::RwLock;

const AGENT_PREFIX: &str = "ssh-agent/";
const JOIN_PREFIX: &str = "ssh-join/";
/// Prefix of join tokens, so they are recognisable in a leak scan.
pub const JOIN_TOKEN_PREFIX: &str = "idm_join_";

#[derive(Serialize, Deserialize)]
struct AgentRecord {
    host: String,
    agent_public_key: String,
    enrolled_at: i64,
}

#[derive(Serialize, Deserialize)]
struct JoinRecord {
    host: String,
    expires_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    #[error("the join token is unknown, already used or expired; create a new one with `idmint ssh host-token HOST`")]
    BadJoinToken,
    #[error("the stored record is corrupt: {0}")]
    Corrupt(String),
}

/// The enrolled agent keys, in memory for every request, in the store for
/// restarts.
#[derive(Default)]
pub struct HostRegistry {
    keys: RwLock<HashMap<String, Ed25519PublicKey>>,
}

fn join_blob(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    format!("{JOIN_PREFIX}{}", idmint_core::ids::hex(digest.as_ref()))
}

impl HostRegistry {
    /// Load every enrolled agent key. A record that does not open (wrong
    /// root key, tampering) is skipped with an error log: that host must
    /// re-enroll, and no other host is affected.
    pub async fn load(store: &dyn Store, envelope: &Envelope) -> Result<Self, StoreError> {
        let mut keys = HashMap::new();
        for (name, sealed) in store.list_blobs(AGENT_PREFIX).await? {
            let record = envelope
                .open(&name, &sealed)
                .ok()
                .and_then(|plain| serde_json::from_slice::<AgentRecord>(&plain).ok())
                .and_then(|r| {
                    Ed25519PublicKey::parse_openssh(&r.agent_public_key)
                        .ok()
                        .map(|k| (r.host, k))
                });
            match record {
                Some((host, key)) if name == format!("{AGENT_PREFIX}{host}") => {
                    keys.insert(host, key);
                }
                _ => {
                    tracing::error!(blob = %name, "enrolled agent record does not open or is corrupt; the host must enroll again")
                }
            }
        }
        Ok(Self {
            keys: RwLock::new(keys),
        })
    }

    pub fn key_of(&self, host: &str) -> Option<Ed25519PublicKey> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(host)
            .copied()
    }

    /// Store (replacing a previous enrollment) and use `key` for `host`.
    pub async fn register(
        &self,
        store: &dyn Store,
        envelope: &Envelope,
        host: &str,
        key: &Ed25519PublicKey,
        now: i64,
    ) -> Result<(), RegistryError> {
        let name = format!("{AGENT_PREFIX}{host}");
        let record = AgentRecord {
            host: host.to_string(),
            agent_public_key: key.to_openssh(None),
            enrolled_at: now,
        };
        let plain =
            serde_json::to_vec(&record).map_err(|e| RegistryError::Corrupt(e.to_string()))?;
        let sealed = envelope.seal(&name, &plain)?;
        store.put_blob(&name, &sealed).await?;
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(host.to_string(), *key);
        Ok(())
    }

    /// Create a join token for `host`; returns the token (shown once).
    pub async fn create_join_token(
        store: &dyn Store,
        envelope: &Envelope,
        host: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<String, RegistryError> {
        // Drop expired tokens first, so unused ones never pile up.
        for (name, sealed) in store.list_blobs(JOIN_PREFIX).await? {
            let expired = envelope
                .open(&name, &sealed)
                .ok()
                .and_then(|p| serde_json::from_slice::<JoinRecord>(&p).ok())
                .is_none_or(|r| r.expires_at <= now);
            if expired {
                store.delete_blob(&name).await?;
            }
        }
        let token = format!(
            "{JOIN_TOKEN_PREFIX}{}",
            idmint_core::ids::random_hex(32).map_err(|e| RegistryError::Corrupt(e.to_string()))?
        );
        let name = join_blob(&token);
        let plain = serde_json::to_vec(&JoinRecord {
            host: host.to_string(),
            expires_at,
        })
        .map_err(|e| RegistryError::Corrupt(e.to_string()))?;
        store
            .put_blob(&name, &envelope.seal(&name, &plain)?)
            .await?;
        Ok(token)
    }

    /// Redeem a join token for `host`: valid, unexpired, for this host, and
    /// not redeemed before (exactly one concurrent caller wins).
    pub async fn redeem_join_token(
        store: &dyn Store,
        envelope: &Envelope,
        host: &str,
        token: &str,
        now: i64,
    ) -> Result<(), RegistryError> {
        if !token.starts_with(JOIN_TOKEN_PREFIX) || token.len() > 128 {
            return Err(RegistryError::BadJoinToken);
        }
        let name = join_blob(token);
        let sealed = store
            .get_blob(&name)
            .await?
            .ok_or(RegistryError::BadJoinToken)?;
        let record: JoinRecord = envelope
            .open(&name, &sealed)
            .ok()
            .and_then(|p| serde_json::from_slice(&p).ok())
            .ok_or(RegistryError::BadJoinToken)?;
        let host_matches = idmint_core::secret::ct_eq(record.host.as_bytes(), host.as_bytes());
        if !host_matches {
            // A token for another host stays usable for that host.
            return Err(RegistryError::BadJoinToken);
        }
        // Single use: whoever deletes it owns it, expired or not.
        if !store.delete_blob(&name).await? || record.expires_at <= now {
            return Err(RegistryError::BadJoinToken);
        }
        Ok(())
    }
}
