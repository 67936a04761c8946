//! [`SshAuthority`]: the user and host CA of one `[[issuer.ssh]]`, and the
//! two kinds of certificate it signs.

use super::ca::SshCaKey;
use super::certificate::{CertKind, CertificateSpec, SignedCertificate};
use super::config::SshHostConfig;
use super::public_key::Ed25519PublicKey;
use crate::IssueError;
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::BTreeMap;

/// Clock skew allowance: certificates become valid this long before now,
/// so a host whose clock is a little behind still accepts them.
pub const CLOCK_SKEW_SECS: u64 = 30;

/// Host certificates last this long; the agent re-enrolls to renew.
pub const HOST_CERT_VALIDITY_SECS: u64 = 365 * 24 * 3600;

/// What a user certificate is for.
#[derive(Debug, Clone)]
pub struct UserCertRequest<'a> {
    pub key: &'a Ed25519PublicKey,
    pub key_id: &'a str,
    pub principals: &'a [String],
    /// Unix seconds; the certificate is valid from `now - 30s`.
    pub now: i64,
    /// Unix seconds (the lease expiry).
    pub expires_at: i64,
    pub force_command: Option<&'a str>,
    pub source_address: Option<String>,
    pub extensions: &'a [String],
}

/// A signed user certificate and the facts the audit log records.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    pub certificate: SignedCertificate,
    pub serial: u64,
    pub valid_after: u64,
    pub valid_before: u64,
}

/// The two CA keys of an ssh issuer.
#[derive(Debug)]
pub struct SshAuthority {
    issuer: String,
    user_ca: SshCaKey,
    host_ca: SshCaKey,
    rng: SystemRandom,
    user_ca_line: String,
    host_ca_line: String,
}

fn random<const N: usize>(rng: &SystemRandom) -> Result<[u8; N], IssueError> {
    let mut b = [0u8; N];
    rng.fill(&mut b).map_err(|_| {
        IssueError::Internal("the operating system random number generator failed".into())
    })?;
    Ok(b)
}

fn unix(secs: i64) -> u64 {
    u64::try_from(secs).unwrap_or(0)
}

impl SshAuthority {
    pub fn new(issuer: &str, user_ca: SshCaKey, host_ca: SshCaKey) -> Self {
        let user_ca_line = user_ca
            .public_key()
            .to_openssh(Some(&format!("idmint-user-ca:{issuer}")));
        let host_ca_line = host_ca
            .public_key()
            .to_openssh(Some(&format!("idmint-host-ca:{issuer}")));
        Self {
            issuer: issuer.to_string(),
            user_ca,
            host_ca,
            rng: SystemRandom::new(),
            user_ca_line,
            host_ca_line,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// For sshd's `TrustedUserCAKeys`.
    pub fn user_ca_line(&self) -> &str {
        &self.user_ca_line
    }

    /// The host CA key line (what `@cert-authority` trusts).
    pub fn host_ca_line(&self) -> &str {
        &self.host_ca_line
    }

    /// A `known_hosts` line trusting the host CA for `host` (by name and by
    /// address, with `[addr]:port` for non-22 ports as ssh looks it up).
    pub fn known_hosts_line(&self, host: &SshHostConfig) -> String {
        let pattern = |h: &str| {
            if host.port == 22 {
                h.to_string()
            } else {
                format!("[{h}]:{}", host.port)
            }
        };
        let mut names = vec![pattern(&host.address)];
        if host.name != host.address {
            names.push(pattern(&host.name));
        }
        format!("@cert-authority {} {}", names.join(","), self.host_ca_line)
    }

    /// Sign a one-time user certificate.
    pub fn sign_user(&self, req: &UserCertRequest<'_>) -> Result<IssuedCertificate, IssueError> {
        let serial = u64::from_be_bytes(random::<8>(&self.rng)?);
        let valid_after = unix(req.now).saturating_sub(CLOCK_SKEW_SECS);
        let valid_before = unix(req.expires_at);
        let mut critical_options = BTreeMap::new();
        if let Some(fc) = req.force_command {
            critical_options.insert("force-command", fc.to_string());
        }
        if let Some(sa) = &req.source_address {
            critical_options.insert("source-address", sa.clone());
        }
        let certificate = CertificateSpec {
            kind: CertKind::User,
            key: req.key,
            serial,
            key_id: req.key_id,
            principals: req.principals,
            valid_after,
            valid_before,
            critical_options,
            extensions: req.extensions,
            nonce: random::<32>(&self.rng)?,
        }
        .sign(&self.user_ca)
        .map_err(|e| IssueError::Config(format!("cannot sign the user certificate: {e}")))?;
        Ok(IssuedCertificate {
            certificate,
            serial,
            valid_after,
            valid_before,
        })
    }

    /// Sign sshd's host key for `host` (enrollment): principals are the
    /// host's name and address, so clients connecting by either verify it.
    pub fn sign_host(
        &self,
        host: &SshHostConfig,
        host_key: &Ed25519PublicKey,
        now: i64,
    ) -> Result<IssuedCertificate, IssueError> {
        let serial = u64::from_be_bytes(random::<8>(&self.rng)?);
        let mut principals = vec![host.name.clone()];
        if host.address != host.name {
            principals.push(host.address.clone());
        }
        let valid_after = unix(now).saturating_sub(CLOCK_SKEW_SECS);
        let valid_before = valid_after.saturating_add(HOST_CERT_VALIDITY_SECS);
        let key_id = format!("idmint host {} ({})", host.name, self.issuer);
        let certificate = CertificateSpec {
            kind: CertKind::Host,
            key: host_key,
            serial,
            key_id: &key_id,
            principals: &principals,
            valid_after,
            valid_before,
            critical_options: BTreeMap::new(),
            extensions: &[],
            nonce: random::<32>(&self.rng)?,
        }
        .sign(&self.host_ca)
        .map_err(|e| IssueError::Config(format!("cannot sign the host certificate: {e}")))?;
        Ok(IssuedCertificate {
            certificate,
            serial,
            valid_after,
            valid_before,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> SshCaKey {
        SshCaKey::from_pkcs8(&SshCaKey::generate_pkcs8().unwrap()).unwrap()
    }

    #[test]
    fn serials_are_random_and_validity_allows_skew() {
        let auth = SshAuthority::new("ssh", ca(), ca());
        let key = *ca().public_key();
        let principals = vec!["deploy".to_string()];
        let req = UserCertRequest {
            key: &key,
            key_id: "k",
            principals: &principals,
            now: 1_000_000,
            expires_at: 1_000_300,
            force_command: None,
            source_address: None,
            extensions: &[],
        };
        let a = auth.sign_user(&req).unwrap();
        let b = auth.sign_user(&req).unwrap();
        assert_ne!(a.serial, b.serial);
        assert_ne!(a.certificate.blob, b.certificate.blob, "nonce differs");
        assert_eq!(a.valid_after, 1_000_000 - CLOCK_SKEW_SECS);
        assert_eq!(a.valid_before, 1_000_300);
        assert_ne!(auth.user_ca_line(), auth.host_ca_line());
        assert!(auth.user_ca_line().ends_with(" idmint-user-ca:ssh"));

        let host = SshHostConfig {
            name: "web-1".into(),
            address: "127.0.0.1".into(),
            port: 2222,
            labels: Default::default(),
        };
        let kh = auth.known_hosts_line(&host);
        assert!(
            kh.starts_with("@cert-authority [127.0.0.1]:2222,[web-1]:2222 ssh-ed25519 "),
            "{kh}"
        );
    }
}
