//! `idmint agent install`: what sshd and sudo need to work with the agent.
//!
//! Without `--apply` the plan is only printed: the sshd settings, and
//! checks of the host (sudo reads `/etc/sudoers.d`, sshd reads
//! `sshd_config.d`, the account tools exist). With `--apply` the user CA,
//! the host certificate and `/etc/ssh/sshd_config.d/idmint.conf` are
//! written atomically and `sshd -t` must accept the result; otherwise the
//! drop-in is removed again so a broken config never waits for sshd's next
//! restart.

use crate::error::{AgentError, Result};
use crate::host::HostSystem;
use crate::state::{write_file_atomic, StateDir};
use serde::Serialize;
use std::path::{Path, PathBuf};

pub const USER_CA_TARGET: &str = "/etc/ssh/idmint_user_ca.pub";
pub const SSHD_DROPIN: &str = "/etc/ssh/sshd_config.d/idmint.conf";
const SSHD: &str = "/usr/sbin/sshd";

/// One check of the host, with what to do when it fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstallCheck {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

/// Files to install and the checks' results.
#[derive(Debug, Clone, Serialize)]
pub struct InstallPlan {
    /// Where the user CA goes (`TrustedUserCAKeys`).
    pub user_ca_target: PathBuf,
    /// Where the host certificate goes (`HostCertificate`), next to the
    /// host key it certifies.
    pub host_cert_target: PathBuf,
    pub sshd_dropin: PathBuf,
    /// The drop-in's contents.
    pub sshd_config: String,
    pub checks: Vec<InstallCheck>,
    #[serde(skip)]
    user_ca: String,
    #[serde(skip)]
    host_cert: String,
}

impl InstallPlan {
    /// Read the enrollment and check the host.
    pub fn prepare(host: &HostSystem, state: &StateDir) -> Result<Self> {
        let enrollment = state.require_enrollment()?;
        let read = |p: PathBuf| {
            std::fs::read_to_string(&p)
                .map_err(|e| AgentError::io("reading an enrollment file", p, e))
        };
        let user_ca = read(state.user_ca_path())?;
        let host_cert = read(state.host_cert_path())?;
        let key_pub = enrollment
            .host_public_key_path
            .to_string_lossy()
            .into_owned();
        let key = key_pub.strip_suffix(".pub").unwrap_or(&key_pub);
        let host_cert_target = PathBuf::from(format!("{key}-cert.pub"));
        let sshd_config = format!(
            "# Written by `idmint agent install`: logins with idmint certificates only.\n\
             TrustedUserCAKeys {USER_CA_TARGET}\n\
             HostCertificate {}\n\
             AuthorizedKeysFile none\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PermitRootLogin no\n",
            host_cert_target.display()
        );
        let checks =
            vec![
            check_contains_line(
                host,
                "/etc/sudoers",
                &["@includedir /etc/sudoers.d", "#includedir /etc/sudoers.d"],
                "sudo reads /etc/sudoers.d",
                "add `@includedir /etc/sudoers.d` to /etc/sudoers with visudo",
            ),
            check_contains_line(
                host,
                "/etc/ssh/sshd_config",
                &["Include /etc/ssh/sshd_config.d/*.conf"],
                "sshd reads /etc/ssh/sshd_config.d",
                "add `Include /etc/ssh/sshd_config.d/*.conf` at the top of /etc/ssh/sshd_config",
            ),
            check_exists(host, "/etc/sudoers.d", "the sudoers drop-in directory exists"),
            check_exists(host, &key_pub, "the certified host key exists"),
            check_exists(host, "/usr/sbin/useradd", "useradd is installed (package passwd)"),
            check_exists(host, "/usr/sbin/userdel", "userdel is installed (package passwd)"),
            check_exists(host, "/usr/sbin/visudo", "visudo is installed (package sudo)"),
            check_exists(host, SSHD, "sshd is installed (package openssh-server)"),
        ];
        Ok(Self {
            user_ca_target: PathBuf::from(USER_CA_TARGET),
            host_cert_target,
            sshd_dropin: PathBuf::from(SSHD_DROPIN),
            sshd_config,
            checks,
            user_ca,
            host_cert,
        })
    }

    /// Whether every check passed.
    pub fn ready(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// Write the files and validate sshd's whole configuration.
    pub fn apply(&self, host: &HostSystem) -> Result<()> {
        write_file_atomic(
            &host.path(&self.user_ca_target),
            self.user_ca.as_bytes(),
            0o644,
        )?;
        write_file_atomic(
            &host.path(&self.host_cert_target),
            self.host_cert.as_bytes(),
            0o644,
        )?;
        let dropin = host.path(&self.sshd_dropin);
        if let Some(dir) = dropin.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| AgentError::io("creating sshd_config.d", dir, e))?;
        }
        write_file_atomic(&dropin, self.sshd_config.as_bytes(), 0o644)?;
        if host.has_program(SSHD) {
            let check = host.run(SSHD, &["-t"])?;
            if !check.success {
                let _ = std::fs::remove_file(&dropin);
                return Err(AgentError::Config(format!(
                    "sshd -t rejected the configuration, so {} was removed again: {}",
                    self.sshd_dropin.display(),
                    check.stderr.trim()
                )));
            }
        }
        Ok(())
    }
}

fn check_contains_line(
    host: &HostSystem,
    file: &str,
    any_of: &[&str],
    what: &str,
    fix: &str,
) -> InstallCheck {
    let text = std::fs::read_to_string(host.path(file)).unwrap_or_default();
    let ok = text.lines().map(str::trim).any(|l| any_of.contains(&l));
    InstallCheck {
        what: what.to_string(),
        ok,
        detail: if ok {
            format!("{file}: found")
        } else {
            format!("{file}: not found; {fix}")
        },
    }
}

fn check_exists(host: &HostSystem, path: &str, what: &str) -> InstallCheck {
    let ok = host.path(Path::new(path)).exists();
    InstallCheck {
        what: what.to_string(),
        ok,
        detail: if ok {
            path.to_string()
        } else {
            format!("{path} is missing")
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Enrollment;

    #[test]
    fn plans_and_applies_into_a_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("etc/ssh/sshd_config.d")).unwrap();
        std::fs::create_dir_all(r.join("etc/sudoers.d")).unwrap();
        std::fs::write(
            r.join("etc/sudoers"),
            "root ALL=(ALL) ALL\n@includedir /etc/sudoers.d\n",
        )
        .unwrap();
        std::fs::write(r.join("etc/ssh/sshd_config"), "Port 22\n").unwrap();
        std::fs::write(
            r.join("etc/ssh/ssh_host_ed25519_key.pub"),
            "ssh-ed25519 AAAA host\n",
        )
        .unwrap();
        let state_dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(state_dir.path()).unwrap();
        assert!(InstallPlan::prepare(&HostSystem::with_root(r, vec![]), &state).is_err());
        state
            .save_enrollment(&Enrollment {
                server: "http://x".into(),
                host: "web-1".into(),
                host_public_key_path: "/etc/ssh/ssh_host_ed25519_key.pub".into(),
                enrolled_at: 1,
            })
            .unwrap();
        std::fs::write(state.user_ca_path(), "ssh-ed25519 AAAA ca\n").unwrap();
        std::fs::write(
            state.host_cert_path(),
            "ssh-ed25519-cert-v01@openssh.com AAAA\n",
        )
        .unwrap();
        let host = HostSystem::with_root(r, vec![]);
        let plan = InstallPlan::prepare(&host, &state).unwrap();
        assert!(plan
            .sshd_config
            .contains("TrustedUserCAKeys /etc/ssh/idmint_user_ca.pub"));
        assert!(plan
            .sshd_config
            .contains("HostCertificate /etc/ssh/ssh_host_ed25519_key-cert.pub"));
        let sudo = plan
            .checks
            .iter()
            .find(|c| c.what.contains("sudo reads"))
            .unwrap();
        assert!(sudo.ok);
        let include = plan
            .checks
            .iter()
            .find(|c| c.what.contains("sshd reads"))
            .unwrap();
        assert!(!include.ok && include.detail.contains("Include"));
        assert!(!plan.ready());
        plan.apply(&host).unwrap();
        assert_eq!(
            std::fs::read_to_string(r.join("etc/ssh/idmint_user_ca.pub")).unwrap(),
            "ssh-ed25519 AAAA ca\n"
        );
        assert!(
            std::fs::read_to_string(r.join("etc/ssh/sshd_config.d/idmint.conf"))
                .unwrap()
                .contains("AuthorizedKeysFile none")
        );
    }
}
