//! OpenSSH certificates (`ssh-ed25519-cert-v01@openssh.com`), encoded by
//! hand per OpenSSH's PROTOCOL.certkeys:
//!
//! ```text
//! string  "ssh-ed25519-cert-v01@openssh.com"
//! string  nonce                 (32 random bytes)
//! string  pk                    (the certified Ed25519 key)
//! uint64  serial
//! uint32  type                  (1 user, 2 host)
//! string  key id
//! string  valid principals      (packed strings)
//! uint64  valid after
//! uint64  valid before
//! string  critical options      (packed name/data pairs, sorted by name)
//! string  extensions            (packed name/data pairs, sorted by name)
//! string  reserved              (empty)
//! string  signature key         (the CA's public key blob)
//! string  signature             (over everything above)
//! ```
//!
//! Option and extension values are themselves wire strings inside the data
//! string; the flag-like extensions carry empty data.

use super::ca::SshCaKey;
use super::public_key::{Ed25519PublicKey, ED25519};
use super::wire::SshWriter;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::collections::BTreeMap;

/// The certificate key type idmint signs.
pub const CERT_TYPE_ED25519: &str = "ssh-ed25519-cert-v01@openssh.com";

/// Extensions a role may grant; anything else is refused at config time.
pub const ALLOWED_EXTENSIONS: &[&str] = &[
    "permit-X11-forwarding",
    "permit-agent-forwarding",
    "permit-port-forwarding",
    "permit-pty",
    "permit-user-rc",
];

/// User or host certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKind {
    User,
    Host,
}

impl CertKind {
    fn wire(self) -> u32 {
        match self {
            CertKind::User => 1,
            CertKind::Host => 2,
        }
    }
}

/// Everything that goes into one certificate.
#[derive(Debug, Clone)]
pub struct CertificateSpec<'a> {
    pub kind: CertKind,
    pub key: &'a Ed25519PublicKey,
    pub serial: u64,
    pub key_id: &'a str,
    pub principals: &'a [String],
    /// Unix seconds.
    pub valid_after: u64,
    /// Unix seconds.
    pub valid_before: u64,
    /// `force-command`, `source-address` (user certificates only).
    pub critical_options: BTreeMap<&'static str, String>,
    /// Names from [`ALLOWED_EXTENSIONS`] (user certificates only).
    pub extensions: &'a [String],
    /// 32 random bytes; makes every certificate unique (hash-collision
    /// defence in the signed data, per PROTOCOL.certkeys).
    pub nonce: [u8; 32],
}

/// A certificate that cannot be built from its spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("a certificate needs at least one principal")]
    NoPrincipals,
    #[error("principal {0:?} is empty or contains whitespace, a comma or a control character")]
    BadPrincipal(String),
    #[error("the key id contains a control character")]
    BadKeyId,
    #[error("validity is empty: valid_after {after} is not before valid_before {before}")]
    EmptyValidity { after: u64, before: u64 },
    #[error("extension {0:?} is not allowed; allowed: {allowed}", allowed = ALLOWED_EXTENSIONS.join(", "))]
    UnknownExtension(String),
    #[error("critical option {0:?} has an empty or control-character value")]
    BadOption(&'static str),
    #[error("host certificates carry no critical options or extensions")]
    HostOptions,
}

/// A signed certificate.
#[derive(Debug, Clone)]
pub struct SignedCertificate {
    /// The wire blob.
    pub blob: Vec<u8>,
    /// `ssh-ed25519-cert-v01@openssh.com AAAA…` (what `-cert.pub` files hold).
    pub line: String,
}

fn is_clean(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

impl CertificateSpec<'_> {
    fn check(&self) -> Result<(), CertificateError> {
        if self.principals.is_empty() {
            return Err(CertificateError::NoPrincipals);
        }
        for p in self.principals {
            if p.is_empty()
                || p.contains(',')
                || p.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(CertificateError::BadPrincipal(p.chars().take(64).collect()));
            }
        }
        if !is_clean(self.key_id) {
            return Err(CertificateError::BadKeyId);
        }
        if self.valid_after >= self.valid_before {
            return Err(CertificateError::EmptyValidity {
                after: self.valid_after,
                before: self.valid_before,
            });
        }
        if self.kind == CertKind::Host
            && (!self.critical_options.is_empty() || !self.extensions.is_empty())
        {
            return Err(CertificateError::HostOptions);
        }
        for e in self.extensions {
            if !ALLOWED_EXTENSIONS.contains(&e.as_str()) {
                return Err(CertificateError::UnknownExtension(
                    e.chars().take(64).collect(),
                ));
            }
        }
        for (name, value) in &self.critical_options {
            if value.is_empty() || !is_clean(value) {
                return Err(CertificateError::BadOption(name));
            }
        }
        Ok(())
    }

    /// Encode and sign with `ca`.
    pub fn sign(&self, ca: &SshCaKey) -> Result<SignedCertificate, CertificateError> {
        self.check()?;
        let mut principals = SshWriter::with_capacity(64);
        for p in self.principals {
            principals.string(p.as_bytes());
        }
        // BTreeMap iterates sorted by name, as the format requires.
        let mut options = SshWriter::default();
        for (name, value) in &self.critical_options {
            let mut data = SshWriter::default();
            data.string(value.as_bytes());
            options.string(name.as_bytes()).string(data.as_slice());
        }
        let mut sorted: Vec<&str> = self.extensions.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut extensions = SshWriter::default();
        for name in sorted {
            extensions.string(name.as_bytes()).string(b"");
        }

        let mut w = SshWriter::with_capacity(512);
        w.string(CERT_TYPE_ED25519.as_bytes())
            .string(&self.nonce)
            .string(self.key.as_bytes())
            .u64(self.serial)
            .u32(self.kind.wire())
            .string(self.key_id.as_bytes())
            .string(principals.as_slice())
            .u64(self.valid_after)
            .u64(self.valid_before)
            .string(options.as_slice())
            .string(extensions.as_slice())
            .string(b"")
            .string(&ca.public_key().blob());
        let signature = ca.sign(w.as_slice());
        let mut sig = SshWriter::with_capacity(83);
        sig.string(ED25519.as_bytes()).string(&signature);
        w.string(sig.as_slice());
        let blob = w.into_vec();
        let line = format!("{CERT_TYPE_ED25519} {}", STANDARD.encode(&blob));
        Ok(SignedCertificate { blob, line })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn ca() -> SshCaKey {
        SshCaKey::from_pkcs8(&SshCaKey::generate_pkcs8().unwrap()).unwrap()
    }

    fn user_key() -> Ed25519PublicKey {
        let ca = ca();
        *ca.public_key()
    }

    fn ssh_keygen_l(line: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-cert.pub");
        std::fs::write(&path, format!("{line}\n")).unwrap();
        let out = Command::new("ssh-keygen")
            .arg("-L")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("ssh-keygen must be installed for these tests");
        assert!(
            out.status.success(),
            "ssh-keygen -L refused the certificate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn user_certificate_is_read_by_real_ssh_keygen() {
        let ca = ca();
        let key = user_key();
        let principals = vec!["wl_0123456789".to_string()];
        let extensions = vec![
            "permit-pty".to_string(),
            "permit-agent-forwarding".to_string(),
        ];
        let mut options = BTreeMap::new();
        options.insert("force-command", "/usr/bin/uptime".to_string());
        options.insert("source-address", "10.1.2.3/32".to_string());
        let cert = CertificateSpec {
            kind: CertKind::User,
            key: &key,
            serial: 0xdead_beef_1234,
            key_id: "req_abc repo:acme/app:ref:refs/heads/main",
            principals: &principals,
            valid_after: 1_800_000_000,
            valid_before: 1_800_000_600,
            critical_options: options,
            extensions: &extensions,
            nonce: [9; 32],
        }
        .sign(&ca)
        .unwrap();
        let text = ssh_keygen_l(&cert.line);
        assert!(
            text.contains("Type: ssh-ed25519-cert-v01@openssh.com user certificate"),
            "{text}"
        );
        assert!(
            text.contains(&format!("Public key: ED25519-CERT {}", key.fingerprint())),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "Signing CA: ED25519 {}",
                ca.public_key().fingerprint()
            )),
            "{text}"
        );
        assert!(
            text.contains("Key ID: \"req_abc repo:acme/app:ref:refs/heads/main\""),
            "{text}"
        );
        assert!(
            text.contains(&format!("Serial: {}", 0xdead_beef_1234u64)),
            "{text}"
        );
        assert!(
            text.contains("Principals: \n                wl_0123456789"),
            "{text}"
        );
        assert!(text.contains("force-command /usr/bin/uptime"), "{text}");
        assert!(text.contains("source-address 10.1.2.3/32"), "{text}");
        assert!(
            text.contains("permit-agent-forwarding") && text.contains("permit-pty"),
            "{text}"
        );
        assert!(!text.contains("permit-port-forwarding"), "{text}");
        assert!(!text.contains("permit-X11-forwarding"), "{text}");
        // ssh-keygen prints validity in local time; check both ends exist.
        assert!(text.contains("Valid: from "), "{text}");
    }

    #[test]
    fn host_certificate_and_no_options() {
        let ca = ca();
        let key = user_key();
        let principals = vec!["web-1".to_string(), "10.0.0.5".to_string()];
        let cert = CertificateSpec {
            kind: CertKind::Host,
            key: &key,
            serial: 7,
            key_id: "host web-1",
            principals: &principals,
            valid_after: 0,
            valid_before: u64::MAX,
            critical_options: BTreeMap::new(),
            extensions: &[],
            nonce: [1; 32],
        }
        .sign(&ca)
        .unwrap();
        let text = ssh_keygen_l(&cert.line);
        assert!(text.contains("host certificate"), "{text}");
        assert!(
            text.contains("web-1") && text.contains("10.0.0.5"),
            "{text}"
        );
        assert!(text.contains("Valid: forever"), "{text}");
        assert!(text.contains("Critical Options: (none)"), "{text}");
        assert!(text.contains("Extensions: (none)"), "{text}");
    }

    #[test]
    fn bad_specs_are_refused() {
        let ca = ca();
        let key = user_key();
        let ok = vec!["deploy".to_string()];
        let base = CertificateSpec {
            kind: CertKind::User,
            key: &key,
            serial: 1,
            key_id: "k",
            principals: &ok,
            valid_after: 10,
            valid_before: 20,
            critical_options: BTreeMap::new(),
            extensions: &[],
            nonce: [0; 32],
        };
        let bad_principals = [
            vec![],
            vec!["a,b".to_string()],
            vec!["a b".to_string()],
            vec![String::new()],
        ];
        for p in &bad_principals {
            let spec = CertificateSpec {
                principals: p,
                ..base.clone()
            };
            assert!(spec.sign(&ca).is_err(), "{p:?}");
        }
        let spec = CertificateSpec {
            valid_before: 10,
            ..base.clone()
        };
        assert!(matches!(
            spec.sign(&ca),
            Err(CertificateError::EmptyValidity { .. })
        ));
        let ext = vec!["permit-everything".to_string()];
        let spec = CertificateSpec {
            extensions: &ext,
            ..base.clone()
        };
        assert!(matches!(
            spec.sign(&ca),
            Err(CertificateError::UnknownExtension(_))
        ));
        let spec = CertificateSpec {
            key_id: "a\nb",
            ..base.clone()
        };
        assert_eq!(spec.sign(&ca).unwrap_err(), CertificateError::BadKeyId);
        let mut opts = BTreeMap::new();
        opts.insert("force-command", "x\n".to_string());
        let spec = CertificateSpec {
            critical_options: opts,
            ..base.clone()
        };
        assert!(matches!(
            spec.sign(&ca),
            Err(CertificateError::BadOption(_))
        ));
    }
}
