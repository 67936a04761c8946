//! Verifying `Authorization: IdmintAgent …` requests (see
//! `idmint_proto::ssh`): an Ed25519 signature by the host's registered
//! agent key over method, path, host, time, nonce and body hash.
//!
//! There is no bearer secret: the server holds only public keys, so a
//! database leak lets nobody act as an agent. A captured request cannot be
//! replayed (nonce seen once within the clock window, older timestamps
//! refused) nor altered (the body hash is signed).

use idmint_issuers::ssh::Ed25519PublicKey;
use idmint_proto::ssh::{agent_signing_input, AGENT_AUTH_SCHEME, AGENT_CLOCK_SKEW_SECS};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Most nonces remembered at once. At the protocol's request rate (one
/// long poll per 25 s per host, plus events) this covers tens of thousands
/// of hosts; beyond it requests are refused (fail closed) rather than the
/// cache forgetting nonces still inside the window.
const MAX_NONCES: usize = 200_000;

/// The parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentAuthHeader {
    pub host: String,
    pub ts: i64,
    pub nonce: String,
    pub sig: Vec<u8>,
}

/// Why an agent request was refused; the message goes back to the agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentAuthError {
    #[error("missing or malformed Authorization header; expected `{AGENT_AUTH_SCHEME} host=\"…\",ts=\"…\",nonce=\"<32 hex>\",sig=\"<base64url>\"`: {0}")]
    Malformed(&'static str),
    #[error("host {0:?} is not enrolled; run `idmint agent enroll` with a join token")]
    NotEnrolled(String),
    #[error("request time {ts} is more than {AGENT_CLOCK_SKEW_SECS}s away from the server's {now}; fix the host's clock (NTP)")]
    Stale { ts: i64, now: i64 },
    #[error("this nonce was already used: replayed request refused")]
    Replayed,
    #[error("the signature does not verify with the host's enrolled agent key")]
    BadSignature,
    #[error("too many agent requests in flight; retry shortly")]
    Overloaded,
}

/// Parse `IdmintAgent host="h",ts="1",nonce="…",sig="…"`.
pub fn parse_header(value: &str) -> Result<AgentAuthHeader, AgentAuthError> {
    let rest = value
        .strip_prefix(AGENT_AUTH_SCHEME)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or(AgentAuthError::Malformed("wrong scheme"))?;
    if rest.len() > 1024 {
        return Err(AgentAuthError::Malformed("header too long"));
    }
    let mut fields: HashMap<&str, &str> = HashMap::new();
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or(AgentAuthError::Malformed("a field is not key=\"value\""))?;
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or(AgentAuthError::Malformed("values must be quoted"))?;
        if fields.insert(k, v).is_some() {
            return Err(AgentAuthError::Malformed("a field is repeated"));
        }
    }
    let get = |k: &'static str| fields.get(k).copied().ok_or(AgentAuthError::Malformed(k));
    let host = get("host")?;
    if !idmint_issuers::ssh::valid_host_name(host) {
        return Err(AgentAuthError::Malformed("host"));
    }
    let ts = get("ts")?
        .parse::<i64>()
        .map_err(|_| AgentAuthError::Malformed("ts must be Unix seconds"))?;
    let nonce = get("nonce")?;
    if nonce.len() != 32
        || !nonce
            .bytes()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(AgentAuthError::Malformed(
            "nonce must be 32 lowercase hex digits",
        ));
    }
    use base64::Engine;
    let sig_text = get("sig")?;
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig_text.trim_end_matches('='))
        .map_err(|_| AgentAuthError::Malformed("sig must be base64url"))?;
    if sig.len() != 64 {
        return Err(AgentAuthError::Malformed(
            "sig must be a 64-byte Ed25519 signature",
        ));
    }
    if fields.len() != 4 {
        return Err(AgentAuthError::Malformed("unknown field"));
    }
    Ok(AgentAuthHeader {
        host: host.to_string(),
        ts,
        nonce: nonce.to_string(),
        sig,
    })
}

/// Check time and signature (not the nonce: see [`NonceCache`]).
pub fn verify_signature(
    header: &AgentAuthHeader,
    key: &Ed25519PublicKey,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now: i64,
) -> Result<(), AgentAuthError> {
    if (header.ts - now).abs() > AGENT_CLOCK_SKEW_SECS {
        return Err(AgentAuthError::Stale { ts: header.ts, now });
    }
    let body_hash =
        idmint_core::ids::hex(ring::digest::digest(&ring::digest::SHA256, body).as_ref());
    let input = agent_signing_input(
        method,
        path_and_query,
        &header.host,
        header.ts,
        &header.nonce,
        &body_hash,
    );
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key.as_bytes())
        .verify(input.as_bytes(), &header.sig)
        .map_err(|_| AgentAuthError::BadSignature)
}

/// `(host, nonce)` pairs seen within the clock window. Checked *after* the
/// signature, so nobody can fill it without an agent key.
#[derive(Default)]
pub struct NonceCache {
    inner: Mutex<NonceState>,
}

#[derive(Default)]
struct NonceState {
    seen: HashMap<(String, String), i64>,
    order: VecDeque<(i64, String, String)>,
}

impl NonceCache {
    /// Record the nonce; fails if it was seen within the window.
    pub fn check_and_insert(
        &self,
        host: &str,
        nonce: &str,
        now: i64,
    ) -> Result<(), AgentAuthError> {
        let mut st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // A nonce older than twice the skew cannot come back: its ts would
        // be refused as stale.
        let horizon = now - 2 * AGENT_CLOCK_SKEW_SECS;
        while st.order.front().is_some_and(|(t, _, _)| *t < horizon) {
            if let Some((_, h, n)) = st.order.pop_front() {
                st.seen.remove(&(h, n));
            }
        }
        let key = (host.to_string(), nonce.to_string());
        if st.seen.contains_key(&key) {
            return Err(AgentAuthError::Replayed);
        }
        if st.seen.len() >= MAX_NONCES {
            return Err(AgentAuthError::Overloaded);
        }
        st.seen.insert(key, now);
        st.order
            .push_back((now, host.to_string(), nonce.to_string()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn key() -> (Ed25519KeyPair, Ed25519PublicKey) {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).unwrap();
        let pk: [u8; 32] = pair.public_key().as_ref().try_into().unwrap();
        (pair, Ed25519PublicKey::from_bytes(pk))
    }

    fn header(pair: &Ed25519KeyPair, path: &str, ts: i64, nonce: &str, body: &[u8]) -> String {
        let h = idmint_core::ids::hex(ring::digest::digest(&ring::digest::SHA256, body).as_ref());
        let sig = pair.sign(agent_signing_input("POST", path, "web-1", ts, nonce, &h).as_bytes());
        format!(
            "IdmintAgent host=\"web-1\",ts=\"{ts}\",nonce=\"{nonce}\",sig=\"{}\"",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig.as_ref())
        )
    }

    const NONCE: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn signature_time_and_body_are_checked() {
        let (pair, pk) = key();
        let h = parse_header(&header(&pair, "/p", 1000, NONCE, b"{}")).unwrap();
        verify_signature(&h, &pk, "POST", "/p", b"{}", 1010).unwrap();
        assert_eq!(
            verify_signature(&h, &pk, "POST", "/p", b"{ }", 1010),
            Err(AgentAuthError::BadSignature)
        );
        assert_eq!(
            verify_signature(&h, &pk, "GET", "/p", b"{}", 1010),
            Err(AgentAuthError::BadSignature)
        );
        assert_eq!(
            verify_signature(&h, &pk, "POST", "/p?x=1", b"{}", 1010),
            Err(AgentAuthError::BadSignature)
        );
        assert!(matches!(
            verify_signature(&h, &pk, "POST", "/p", b"{}", 1100),
            Err(AgentAuthError::Stale { .. })
        ));
        let other = Ed25519KeyPair::from_seed_unchecked(&[8u8; 32]).unwrap();
        let pk2 = Ed25519PublicKey::from_bytes(other.public_key().as_ref().try_into().unwrap());
        assert_eq!(
            verify_signature(&h, &pk2, "POST", "/p", b"{}", 1000),
            Err(AgentAuthError::BadSignature)
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        for bad in [
            "",
            "Bearer x",
            "IdmintAgent",
            "IdmintAgent host=web-1",
            "IdmintAgent host=\"web 1\",ts=\"1\",nonce=\"0123456789abcdef0123456789abcdef\",sig=\"AA\"",
            "IdmintAgent host=\"w\",ts=\"x\",nonce=\"0123456789abcdef0123456789abcdef\",sig=\"AA\"",
            "IdmintAgent host=\"w\",ts=\"1\",nonce=\"short\",sig=\"AA\"",
            "IdmintAgent host=\"w\",ts=\"1\",nonce=\"0123456789abcdef0123456789abcdef\",sig=\"AA\"",
            "IdmintAgent host=\"w\",host=\"v\",ts=\"1\",nonce=\"0123456789abcdef0123456789abcdef\",sig=\"AA\"",
        ] {
            assert!(parse_header(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nonces_are_single_use_within_the_window() {
        let cache = NonceCache::default();
        cache.check_and_insert("web-1", NONCE, 1000).unwrap();
        assert_eq!(
            cache.check_and_insert("web-1", NONCE, 1001),
            Err(AgentAuthError::Replayed)
        );
        // Another host may use the same nonce.
        cache.check_and_insert("web-2", NONCE, 1001).unwrap();
        // Long after the window the entry is pruned (its ts would be stale).
        cache
            .check_and_insert("web-1", NONCE, 1000 + 3 * AGENT_CLOCK_SKEW_SECS)
            .unwrap();
    }
}
