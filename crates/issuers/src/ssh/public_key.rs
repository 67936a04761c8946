//! OpenSSH Ed25519 public keys: parsing the client's key line and printing
//! the CA keys.
//!
//! Only `ssh-ed25519` is accepted: idmint's clients generate Ed25519 keys,
//! and one key type keeps the hostile-input surface to a fixed 51-byte blob.

use super::wire::{SshReader, SshWriter, WireError};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;

/// The OpenSSH name of the only accepted key type.
pub const ED25519: &str = "ssh-ed25519";

/// Longest public key line accepted; an Ed25519 line is ~100 characters
/// plus a comment.
pub const MAX_PUBLIC_KEY_LINE: usize = 4096;

/// Why a public key was refused. Messages say what to send instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublicKeyError {
    #[error("the public key is empty; send an OpenSSH line `ssh-ed25519 AAAA…`")]
    Empty,
    #[error("the public key line is longer than {MAX_PUBLIC_KEY_LINE} bytes")]
    TooLong,
    #[error("the public key line has no base64 key after the type; expected `ssh-ed25519 AAAA… [comment]`")]
    MissingKey,
    #[error("public key type {0:?} is not supported: only ssh-ed25519 keys are accepted (ssh-keygen -t ed25519)")]
    UnsupportedType(String),
    #[error("the public key is not valid base64")]
    Base64,
    #[error("the public key blob says {inner:?} but the line says {outer:?}")]
    TypeMismatch { outer: String, inner: String },
    #[error("the public key blob is malformed: {0}")]
    Malformed(String),
}

impl From<WireError> for PublicKeyError {
    fn from(e: WireError) -> Self {
        PublicKeyError::Malformed(e.to_string())
    }
}

/// An Ed25519 public key (the 32 raw bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Ed25519PublicKey([u8; 32]);

impl std::fmt::Debug for Ed25519PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ed25519PublicKey({})", self.fingerprint())
    }
}

impl Ed25519PublicKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parse an OpenSSH public key line (`ssh-ed25519 AAAA… [comment]`).
    pub fn parse_openssh(line: &str) -> Result<Self, PublicKeyError> {
        if line.len() > MAX_PUBLIC_KEY_LINE {
            return Err(PublicKeyError::TooLong);
        }
        let mut parts = line.split_ascii_whitespace();
        let kind = parts.next().ok_or(PublicKeyError::Empty)?;
        if kind != ED25519 {
            return Err(PublicKeyError::UnsupportedType(
                kind.chars().take(64).collect(),
            ));
        }
        let b64 = parts.next().ok_or(PublicKeyError::MissingKey)?;
        let blob = STANDARD
            .decode(b64)
            .or_else(|_| STANDARD_NO_PAD.decode(b64))
            .map_err(|_| PublicKeyError::Base64)?;
        Self::from_blob(&blob)
    }

    /// Parse the wire blob: `string "ssh-ed25519"`, `string key(32)`,
    /// nothing after.
    pub fn from_blob(blob: &[u8]) -> Result<Self, PublicKeyError> {
        let mut r = SshReader::new(blob);
        let inner = r.string()?;
        if inner != ED25519.as_bytes() {
            return Err(PublicKeyError::TypeMismatch {
                outer: ED25519.into(),
                inner: String::from_utf8_lossy(inner).chars().take(64).collect(),
            });
        }
        let key = r.string()?;
        let key: [u8; 32] = key.try_into().map_err(|_| {
            PublicKeyError::Malformed(format!(
                "an Ed25519 key is 32 bytes, this one has {}",
                key.len()
            ))
        })?;
        r.finish()?;
        Ok(Self(key))
    }

    /// The wire blob (what certificates embed and fingerprints hash).
    pub fn blob(&self) -> Vec<u8> {
        let mut w = SshWriter::with_capacity(51);
        w.string(ED25519.as_bytes()).string(&self.0);
        w.into_vec()
    }

    /// `ssh-ed25519 AAAA… [comment]`.
    pub fn to_openssh(&self, comment: Option<&str>) -> String {
        let mut s = format!("{ED25519} {}", STANDARD.encode(self.blob()));
        if let Some(c) = comment {
            s.push(' ');
            s.push_str(c);
        }
        s
    }

    /// OpenSSH's fingerprint: `SHA256:` + unpadded base64 of SHA-256(blob),
    /// the form `ssh-keygen -l` and sshd's logs print.
    pub fn fingerprint(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.blob());
        format!("SHA256:{}", STANDARD_NO_PAD.encode(digest.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made with `ssh-keygen -t ed25519`; fingerprint from `ssh-keygen -l`.
    const LINE: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILUYzqOXzgOnoD1OhQscuAA11mvDCUBOgmzexNhBGT40 test@example";
    const FINGERPRINT: &str = "SHA256:jEPjm6ek7h+7az8O2i2iXIibFUTSZqa3G3Tt6E1pRGQ";

    #[test]
    fn parses_and_prints_openssh_lines() {
        let k = Ed25519PublicKey::parse_openssh(LINE).unwrap();
        assert_eq!(
            k.to_openssh(Some("test@example")),
            LINE,
            "re-encoding is byte-identical"
        );
        assert_eq!(k.fingerprint(), FINGERPRINT);
        assert_eq!(Ed25519PublicKey::from_blob(&k.blob()).unwrap(), k);
    }

    /// Hostile inputs: every one is an error with a reason, none panics.
    #[test]
    fn hostile_corpus_is_refused() {
        let good = Ed25519PublicKey::parse_openssh(LINE).unwrap().blob();
        let b64 = |b: &[u8]| STANDARD.encode(b);
        let mut cases: Vec<(String, &str)> = vec![
            (String::new(), "empty"),
            ("   \n\t".into(), "empty"),
            ("ssh-ed25519".into(), "no base64"),
            (
                "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ==".into(),
                "not supported",
            ),
            ("ecdsa-sha2-nistp256 AAAA".into(), "not supported"),
            (
                "ssh-ed25519-cert-v01@openssh.com AAAA".into(),
                "not supported",
            ),
            ("ssh-ed25519 !!!notbase64!!!".into(), "base64"),
            (
                format!("ssh-ed25519 {}", "A".repeat(MAX_PUBLIC_KEY_LINE)),
                "longer than",
            ),
        ];
        // Truncated at every length.
        for n in 0..good.len() {
            cases.push((format!("ssh-ed25519 {}", b64(&good[..n])), "malformed"));
        }
        // Trailing garbage inside the blob.
        let mut trailing = good.clone();
        trailing.push(0);
        cases.push((format!("ssh-ed25519 {}", b64(&trailing)), "trailing"));
        // Huge declared lengths.
        let mut huge = good.clone();
        huge[0..4].copy_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        cases.push((format!("ssh-ed25519 {}", b64(&huge)), "truncated"));
        let mut huge_key = good.clone();
        huge_key[15..19].copy_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
        cases.push((format!("ssh-ed25519 {}", b64(&huge_key)), "truncated"));
        // Wrong key length (31 and 33 bytes).
        for len in [31usize, 33] {
            let mut w = SshWriter::default();
            w.string(ED25519.as_bytes()).string(&vec![7u8; len]);
            cases.push((format!("ssh-ed25519 {}", b64(w.as_slice())), "32 bytes"));
        }
        // Blob of another type under an ssh-ed25519 label.
        let mut w = SshWriter::default();
        w.string(b"ssh-rsa").string(&[1; 32]);
        cases.push((format!("ssh-ed25519 {}", b64(w.as_slice())), "says"));

        for (input, why) in cases {
            let err = Ed25519PublicKey::parse_openssh(&input)
                .expect_err(&format!("accepted hostile key {input:?}"));
            let msg = err.to_string();
            assert!(
                msg.to_lowercase().contains(why) || why == "malformed" && !msg.is_empty(),
                "{input:?}: {msg} (expected {why})"
            );
        }
    }
}
