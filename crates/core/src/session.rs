//! idmint session tokens: what `login` returns.
//!
//! A session token is self-contained and sealed:
//!
//! ```text
//! idm_v1.<base64url-nopad( key_id (1 byte) || SealKey::seal(aad, json(SessionClaims)) )>
//! ```
//!
//! * **Self-contained**: verifying one needs no storage read, so every API
//!   call authenticates in memory. Revocation is a small denylist of token
//!   ids kept by the server, checked after [`SessionSealer::open`].
//! * **Sealed** (AES-256-GCM), not just signed: the identity's subject and
//!   claims are not readable by whoever holds the token, and any change to it
//!   fails authentication.
//! * **Key id** in clear, so a rotated-out key gives a precise error and
//!   previous keys keep opening tokens issued before the rotation.
//! * **Bound to its purpose** by the associated data
//!   [`SESSION_AAD`]: a blob sealed for something else under the same key
//!   does not open as a session.
//!
//! A session never outlives the proof it was created from
//! (`Identity::expires_at`).

use crate::identity::Identity;
use crate::ids::TokenId;
use crate::seal::SealKey;
use crate::secret::Secret;
use crate::time::UnixTime;
use crate::Ttl;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Every session token starts with this: the product prefix `idm_` (what
/// secret scanners match on) followed by the format version.
pub const SESSION_TOKEN_PREFIX_V1: &str = "idm_v1.";

/// Associated data binding a sealed blob to "idmint session token, v1".
pub const SESSION_AAD: &[u8] = b"idmint-session-v1";

/// Longest token accepted by [`SessionSealer::open`]. Real tokens are well
/// under 4 KiB; the cap bounds the work an attacker can make us do.
pub const MAX_SESSION_TOKEN_LEN: usize = 16 * 1024;

/// What a session token asserts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// Unique id of this token: the key of the revocation denylist.
    pub token_id: TokenId,
    pub identity: Identity,
    pub issued_at: UnixTime,
    /// Never later than `identity.expires_at`.
    pub expires_at: UnixTime,
    /// Whether the session may be renewed (policy decides at login).
    pub renewable: bool,
}

/// Why a session token could not be issued or opened.
///
/// Messages never contain the token: it is a bearer credential, and errors
/// end up in logs and HTTP responses.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    #[error(
        "the session token is malformed: expected an `idm_v1.` token as printed by \
         `idmint login` (check that it was copied whole)"
    )]
    Malformed,
    #[error(
        "the session token was sealed with a key this server does not have (rotated out, \
         or issued by another deployment): run `idmint login` again"
    )]
    UnknownKey,
    #[error(
        "the session token failed verification (altered, truncated or not issued by this \
         server): run `idmint login` again"
    )]
    Invalid,
    #[error("the session token expired at {expired_at}: run `idmint login` again")]
    Expired { expired_at: String },
    #[error("sealing the session token failed: {0}")]
    Seal(String),
}

/// Issues and opens session tokens.
///
/// Holds the current key (which seals new tokens) and previous keys (which
/// still open tokens sealed before a rotation). Key ids are one byte; if an
/// id appears twice, the current key wins, then the first previous one.
pub struct SessionSealer {
    current: (u8, SealKey),
    previous: Vec<(u8, SealKey)>,
}

impl std::fmt::Debug for SessionSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSealer")
            .field("current_key_id", &self.current.0)
            .field(
                "previous_key_ids",
                &self.previous.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl SessionSealer {
    pub fn new(current: (u8, SealKey), previous: Vec<(u8, SealKey)>) -> Self {
        Self { current, previous }
    }

    /// Issue a token for `identity`, valid for `ttl` from `now` but never past
    /// `identity.expires_at`. Returns the token and the claims it carries.
    pub fn issue(
        &self,
        identity: Identity,
        ttl: Ttl,
        now: UnixTime,
        renewable: bool,
    ) -> Result<(Secret<String>, SessionClaims), SessionError> {
        let expires_at = now.plus(ttl.as_duration()).min(identity.expires_at);
        if expires_at <= now {
            // The proof itself has run out: nothing may be derived from it.
            return Err(SessionError::Expired {
                expired_at: identity.expires_at.rfc3339(),
            });
        }
        let token_id = TokenId::generate()
            .map_err(|e| SessionError::Seal(format!("cannot generate a token id: {e}")))?;
        let claims = SessionClaims {
            token_id,
            identity,
            issued_at: now,
            expires_at,
            renewable,
        };
        let payload = Zeroizing::new(serde_json::to_vec(&claims).map_err(|e| {
            SessionError::Seal(format!("cannot serialize the session claims: {e}"))
        })?);
        let (key_id, key) = &self.current;
        let mut blob = key
            .seal(SESSION_AAD, &payload)
            .map_err(|e| SessionError::Seal(e.to_string()))?;
        // Shifting the ciphertext by one byte is cheaper than a second buffer.
        blob.insert(0, *key_id);

        let mut token =
            String::with_capacity(SESSION_TOKEN_PREFIX_V1.len() + blob.len().div_ceil(3) * 4);
        token.push_str(SESSION_TOKEN_PREFIX_V1);
        URL_SAFE_NO_PAD.encode_string(&blob, &mut token);
        Ok((Secret::new(token), claims))
    }

    /// Open and check a token: prefix, size, encoding, key id, AEAD tag and
    /// expiry. There is no leeway: idmint issued the token with its own clock.
    pub fn open(&self, token: &str, now: UnixTime) -> Result<SessionClaims, SessionError> {
        if token.len() > MAX_SESSION_TOKEN_LEN {
            return Err(SessionError::Malformed);
        }
        let body = token
            .strip_prefix(SESSION_TOKEN_PREFIX_V1)
            .ok_or(SessionError::Malformed)?;
        let blob = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(body)
                .map_err(|_| SessionError::Malformed)?,
        );
        let (key_id, sealed) = blob.split_first().ok_or(SessionError::Malformed)?;
        let key = self.key(*key_id).ok_or(SessionError::UnknownKey)?;
        let payload = key
            .open(SESSION_AAD, sealed)
            .map_err(|_| SessionError::Invalid)?;
        // Authenticated by AEAD, so a parse failure means a format change,
        // not an attack; still refuse it.
        let claims: SessionClaims =
            serde_json::from_slice(&payload).map_err(|_| SessionError::Invalid)?;
        if now >= claims.expires_at {
            return Err(SessionError::Expired {
                expired_at: claims.expires_at.rfc3339(),
            });
        }
        Ok(claims)
    }

    fn key(&self, id: u8) -> Option<&SealKey> {
        std::iter::once(&self.current)
            .chain(self.previous.iter())
            .find(|(kid, _)| *kid == id)
            .map(|(_, key)| key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityKind;
    use serde_json::json;

    const SUBJECT: &str = "repo:acme/app:ref:refs/heads/main";

    fn identity(expires_at: i64) -> Identity {
        let mut attributes = serde_json::Map::new();
        attributes.insert("repository".into(), json!("acme/app"));
        Identity {
            kind: IdentityKind::Ci,
            subject: SUBJECT.into(),
            issuer: "https://token.actions.githubusercontent.com".into(),
            method: "oidc".into(),
            auth: "github".into(),
            attributes,
            proof_id: "jti-1".into(),
            expires_at: UnixTime(expires_at),
        }
    }

    fn sealer(id: u8) -> SessionSealer {
        SessionSealer::new((id, SealKey::generate().unwrap()), Vec::new())
    }

    fn ttl(secs: u64) -> Ttl {
        Ttl::from_secs(secs).unwrap()
    }

    fn issue(s: &SessionSealer) -> (String, SessionClaims) {
        let (token, claims) = s
            .issue(identity(100_000), ttl(300), UnixTime(1_000), false)
            .unwrap();
        (token.expose().clone(), claims)
    }

    #[test]
    fn roundtrip() {
        let s = sealer(1);
        let (token, claims) = issue(&s);
        assert!(token.starts_with("idm_v1."));
        assert_eq!(claims.issued_at, UnixTime(1_000));
        assert_eq!(claims.expires_at, UnixTime(1_300));
        assert!(!claims.renewable);
        assert_eq!(claims.identity, identity(100_000));
        assert_eq!(s.open(&token, UnixTime(1_001)).unwrap(), claims);

        let (t2, c2) = issue(&s);
        assert_ne!(t2, token, "each token is unique");
        assert_ne!(c2.token_id, claims.token_id);
    }

    #[test]
    fn expiry_has_no_leeway() {
        let s = sealer(1);
        let (token, _) = issue(&s);
        assert!(s.open(&token, UnixTime(1_299)).is_ok());
        let err = s.open(&token, UnixTime(1_300)).unwrap_err();
        assert_eq!(
            err,
            SessionError::Expired {
                expired_at: UnixTime(1_300).rfc3339()
            }
        );
        assert!(err.to_string().contains("1970-01-01T00:21:40Z"), "{err}");
        assert!(err.to_string().contains("idmint login"), "{err}");
    }

    #[test]
    fn ttl_is_capped_by_the_proof() {
        let s = sealer(1);
        let (token, claims) = s
            .issue(identity(1_060), ttl(3_600), UnixTime(1_000), true)
            .unwrap();
        assert_eq!(claims.expires_at, UnixTime(1_060));
        assert!(claims.renewable);
        let opened = s.open(token.expose(), UnixTime(1_059)).unwrap();
        assert_eq!(opened.expires_at, UnixTime(1_060));
        assert!(matches!(
            s.open(token.expose(), UnixTime(1_060)),
            Err(SessionError::Expired { .. })
        ));

        // A proof that has already run out yields no session at all.
        let err = s
            .issue(identity(1_000), ttl(60), UnixTime(1_000), false)
            .unwrap_err();
        assert!(matches!(err, SessionError::Expired { .. }), "{err}");
    }

    #[test]
    fn tampering_any_byte_fails() {
        let s = sealer(1);
        let (token, _) = issue(&s);
        let body = token.strip_prefix(SESSION_TOKEN_PREFIX_V1).unwrap();
        let blob = URL_SAFE_NO_PAD.decode(body).unwrap();
        for i in 0..blob.len() {
            let mut t = blob.clone();
            t[i] ^= 0x01;
            let forged = format!("{SESSION_TOKEN_PREFIX_V1}{}", URL_SAFE_NO_PAD.encode(&t));
            let err = s.open(&forged, UnixTime(1_001)).unwrap_err();
            let expected = if i == 0 {
                SessionError::UnknownKey
            } else {
                SessionError::Invalid
            };
            assert_eq!(err, expected, "byte {i}");
        }
        // Changing any character of the text form fails too (including the
        // last one, whose low bits are not part of the data).
        for (i, c) in token.char_indices() {
            let replacement = if c == 'A' { 'B' } else { 'A' };
            let mut forged = token.clone();
            forged.replace_range(i..i + 1, &replacement.to_string());
            assert!(s.open(&forged, UnixTime(1_001)).is_err(), "char {i}");
        }
        // Truncation and extension fail.
        assert!(s.open(&token[..token.len() - 1], UnixTime(1_001)).is_err());
        assert!(s.open(&format!("{token}A"), UnixTime(1_001)).is_err());
    }

    #[test]
    fn wrong_key_fails() {
        let (token, _) = issue(&sealer(1));
        assert_eq!(
            sealer(1).open(&token, UnixTime(1_001)).unwrap_err(),
            SessionError::Invalid,
            "same key id, different key"
        );
        assert_eq!(
            sealer(2).open(&token, UnixTime(1_001)).unwrap_err(),
            SessionError::UnknownKey
        );
    }

    #[test]
    fn blob_sealed_for_another_purpose_does_not_open() {
        let key = SealKey::generate().unwrap();
        let raw = *key.raw_bytes();
        let s = SessionSealer::new((1, SealKey::from_bytes(&raw).unwrap()), Vec::new());
        let (_, claims) = issue(&s);
        let mut blob = key
            .seal(b"signing-key:x", &serde_json::to_vec(&claims).unwrap())
            .unwrap();
        blob.insert(0, 1);
        let forged = format!("{SESSION_TOKEN_PREFIX_V1}{}", URL_SAFE_NO_PAD.encode(&blob));
        assert_eq!(
            s.open(&forged, UnixTime(1_001)).unwrap_err(),
            SessionError::Invalid
        );
    }

    #[test]
    fn previous_key_still_opens_after_rotation() {
        let old = SealKey::generate().unwrap();
        let old_raw = *old.raw_bytes();
        let before = SessionSealer::new((1, old), Vec::new());
        let (old_token, old_claims) = issue(&before);

        let rotated = SessionSealer::new(
            (2, SealKey::generate().unwrap()),
            vec![(1, SealKey::from_bytes(&old_raw).unwrap())],
        );
        assert_eq!(
            rotated.open(&old_token, UnixTime(1_001)).unwrap(),
            old_claims
        );
        let (new_token, _) = issue(&rotated);
        let body = new_token.strip_prefix(SESSION_TOKEN_PREFIX_V1).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap()[0], 2, "new key seals");
        assert!(rotated.open(&new_token, UnixTime(1_001)).is_ok());
        // The pre-rotation sealer does not know the new key.
        assert_eq!(
            before.open(&new_token, UnixTime(1_001)).unwrap_err(),
            SessionError::UnknownKey
        );
    }

    #[test]
    fn identity_is_not_readable_from_the_token() {
        let s = sealer(1);
        let (token, _) = issue(&s);
        assert!(!token.contains(SUBJECT));
        assert!(!token.contains("acme"));
        let raw = URL_SAFE_NO_PAD
            .decode(token.strip_prefix(SESSION_TOKEN_PREFIX_V1).unwrap())
            .unwrap();
        for needle in [SUBJECT.as_bytes(), b"acme/app", b"token_id"] {
            assert!(!raw.windows(needle.len()).any(|w| w == needle));
        }
    }

    #[test]
    fn hostile_inputs_give_errors_not_panics() {
        let s = sealer(1);
        let huge = format!(
            "{SESSION_TOKEN_PREFIX_V1}{}",
            "A".repeat(MAX_SESSION_TOKEN_LEN)
        );
        let cases: Vec<(&str, SessionError)> = vec![
            ("", SessionError::Malformed),
            ("idm_", SessionError::Malformed),
            ("idm_v1.", SessionError::Malformed),
            ("idm_v2.AQID", SessionError::Malformed),
            ("Bearer idm_v1.AQID", SessionError::Malformed),
            ("idm_v1.!!!!", SessionError::Malformed),
            ("idm_v1.AQ==", SessionError::Malformed),
            ("idm_v1.é", SessionError::Malformed),
            ("idm_v1.AQ", SessionError::Invalid),
            ("idm_v1.AQIDBA", SessionError::Invalid),
            ("idm_v1.Bw", SessionError::UnknownKey),
            (&huge, SessionError::Malformed),
        ];
        for (input, expected) in cases {
            let err = s.open(input, UnixTime(1_001)).unwrap_err();
            assert_eq!(err, expected, "input {:?}", &input[..input.len().min(20)]);
            let msg = err.to_string();
            if input.len() > 7 {
                assert!(!msg.contains(input), "error echoes the token: {msg}");
            }
        }
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let s = SessionSealer::new(
            (3, SealKey::generate().unwrap()),
            vec![(2, SealKey::generate().unwrap())],
        );
        assert_eq!(
            format!("{s:?}"),
            "SessionSealer { current_key_id: 3, previous_key_ids: [2] }"
        );
        let (secret, _) = s
            .issue(identity(100_000), ttl(60), UnixTime(1_000), false)
            .unwrap();
        assert_eq!(format!("{secret:?}"), "[redacted]");
    }
}
