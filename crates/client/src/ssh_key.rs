//! A fresh Ed25519 key for one SSH session, in OpenSSH formats.
//!
//! `idmint ssh` generates the key in memory, has the server certify its
//! public half, and writes the private half only into a private temporary
//! directory for the `ssh` child process. The seed is wiped on drop.

use crate::error::ClientError;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};
use zeroize::Zeroizing;

const KEY_TYPE: &[u8] = b"ssh-ed25519";

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// An Ed25519 key pair whose private seed never leaves this process except
/// through [`SshKeyPair::private_key_pem`].
pub struct SshKeyPair {
    seed: Zeroizing<[u8; 32]>,
    public: [u8; 32],
}

impl std::fmt::Debug for SshKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshKeyPair")
            .field("public", &self.public_key_openssh(None))
            .finish_non_exhaustive()
    }
}

impl SshKeyPair {
    pub fn generate() -> Result<Self, ClientError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        SystemRandom::new().fill(seed.as_mut()).map_err(|_| {
            ClientError::Config("the operating system random number generator failed".into())
        })?;
        let pair = Ed25519KeyPair::from_seed_unchecked(seed.as_ref()).map_err(|_| {
            ClientError::Config("could not derive an Ed25519 key from the random seed".into())
        })?;
        let public: [u8; 32] = pair.public_key().as_ref().try_into().map_err(|_| {
            ClientError::Config("ring returned an Ed25519 public key that is not 32 bytes".into())
        })?;
        Ok(Self { seed, public })
    }

    fn public_blob(&self) -> Vec<u8> {
        let mut blob = Vec::with_capacity(51);
        put_string(&mut blob, KEY_TYPE);
        put_string(&mut blob, &self.public);
        blob
    }

    /// `ssh-ed25519 AAAA… [comment]`.
    pub fn public_key_openssh(&self, comment: Option<&str>) -> String {
        let mut line = format!("ssh-ed25519 {}", STANDARD.encode(self.public_blob()));
        if let Some(c) = comment {
            line.push(' ');
            line.push_str(c);
        }
        line
    }

    /// The private key as an unencrypted `openssh-key-v1` PEM file (what
    /// `ssh -i` reads). The returned text is wiped on drop.
    pub fn private_key_pem(&self, comment: &str) -> Result<Zeroizing<String>, ClientError> {
        let mut check = [0u8; 4];
        SystemRandom::new().fill(&mut check).map_err(|_| {
            ClientError::Config("the operating system random number generator failed".into())
        })?;
        let mut private = Zeroizing::new(Vec::with_capacity(160));
        private.extend_from_slice(&check);
        private.extend_from_slice(&check);
        put_string(&mut private, KEY_TYPE);
        put_string(&mut private, &self.public);
        let mut secret = Zeroizing::new(Vec::with_capacity(64));
        secret.extend_from_slice(self.seed.as_ref());
        secret.extend_from_slice(&self.public);
        put_string(&mut private, &secret);
        put_string(&mut private, comment.as_bytes());
        let mut pad = 1u8;
        while private.len() % 8 != 0 {
            private.push(pad);
            pad = pad.wrapping_add(1);
        }
        let mut body = Zeroizing::new(Vec::with_capacity(300));
        body.extend_from_slice(b"openssh-key-v1\0");
        put_string(&mut body, b"none");
        put_string(&mut body, b"none");
        put_string(&mut body, b"");
        body.extend_from_slice(&1u32.to_be_bytes());
        put_string(&mut body, &self.public_blob());
        put_string(&mut body, &private);
        let b64 = Zeroizing::new(STANDARD.encode(body.as_slice()));
        let mut pem = Zeroizing::new(String::with_capacity(b64.len() + 100));
        pem.push_str("-----BEGIN OPENSSH PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(70) {
            pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END OPENSSH PRIVATE KEY-----\n");
        Ok(pem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The real `ssh-keygen` reads the private key file and derives the same
    /// public key.
    #[test]
    fn private_key_file_is_read_by_ssh_keygen() {
        let key = SshKeyPair::generate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        std::fs::write(
            &path,
            key.private_key_pem("idmint-test").unwrap().as_bytes(),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out = std::process::Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("ssh-keygen must be installed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let derived = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            derived
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" "),
            key.public_key_openssh(None)
        );
        let other = SshKeyPair::generate().unwrap();
        assert_ne!(other.public_key_openssh(None), key.public_key_openssh(None));
        assert!(!format!("{key:?}").contains("seed"));
    }
}
