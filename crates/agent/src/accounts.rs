//! Creating and removing just-in-time accounts on the host.
//!
//! Creation: validate everything that came from the server, take a fresh
//! uid (persisted first, see [`UidAllocator`]), `useradd`, then install the
//! sudoers drop-in safely. Removal follows the order that leaves no window
//! for the user: drop-in gone, account locked, every process of the uid
//! killed, cron and at jobs gone, `userdel -r`, then the residue sweep
//! ([`crate::residue`]) whose report is what the server is told.

use crate::account_name::AccountName;
use crate::error::{AgentError, Result};
use crate::host::HostSystem;
use crate::passwd::{self, PasswdEntry};
use crate::processes;
use crate::residue::{self, AT_JOBS_DIR, CRONTAB_DIR};
use crate::state::{create_new, rename_durably, temp_path_for};
use crate::sudo_rules::SudoRules;
use crate::uid_allocator::UidAllocator;
use idmint_proto::ssh::{HostGrant, ResidueReport};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const USERADD: &str = "/usr/sbin/useradd";
const USERMOD: &str = "/usr/sbin/usermod";
const USERDEL: &str = "/usr/sbin/userdel";
const VISUDO: &str = "/usr/sbin/visudo";
const CRONTAB: &str = "/usr/bin/crontab";
const SUDOERS_DIR: &str = "/etc/sudoers.d";

/// Longest login shell path accepted.
const MAX_SHELL_LEN: usize = 256;

/// A validated request for one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSpec {
    pub name: AccountName,
    /// Absolute path of the login shell (checked to exist on creation).
    pub shell: String,
    pub sudo: SudoRules,
}

impl AccountSpec {
    /// Validate a grant from the server: name, shell syntax, sudo rules.
    pub fn from_grant(grant: &HostGrant) -> Result<Self> {
        let name = AccountName::parse(&grant.account)?;
        check_shell_syntax(&grant.shell)?;
        let sudo = SudoRules::parse(&grant.sudo)?;
        Ok(Self {
            name,
            shell: grant.shell.clone(),
            sudo,
        })
    }
}

/// What [`HostAccounts::create`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedAccount {
    pub name: AccountName,
    pub uid: u32,
    pub home: PathBuf,
    pub sudo_rules: usize,
}

/// The host's just-in-time accounts.
#[derive(Debug)]
pub struct HostAccounts {
    host: HostSystem,
    uids: UidAllocator,
}

impl HostAccounts {
    pub fn new(host: HostSystem, uids: UidAllocator) -> Self {
        Self { host, uids }
    }

    pub fn host(&self) -> &HostSystem {
        &self.host
    }

    pub fn uids(&self) -> &UidAllocator {
        &self.uids
    }

    /// Every `wl_` account in `/etc/passwd` whose name is valid (the agent
    /// never touches anything else).
    pub fn list(&self) -> Result<Vec<(AccountName, PasswdEntry)>> {
        Ok(passwd::read_passwd(&self.host)?
            .into_iter()
            .filter_map(|e| AccountName::parse(&e.name).ok().map(|n| (n, e)))
            .collect())
    }

    /// The passwd entry of `name`, if it exists.
    pub fn lookup(&self, name: &AccountName) -> Result<Option<PasswdEntry>> {
        Ok(passwd::read_passwd(&self.host)?
            .into_iter()
            .find(|e| e.name == name.as_str()))
    }

    /// Create the account and its sudoers drop-in. On failure nothing of
    /// the account is left (it is removed again).
    pub fn create(&self, spec: &AccountSpec) -> Result<CreatedAccount> {
        self.check_shell_exists(&spec.shell)?;
        if self.lookup(&spec.name)?.is_some() {
            return Err(AgentError::Config(format!(
                "account {} already exists; it is removed by the next reconciliation if no grant wants it",
                spec.name
            )));
        }
        let uid = self.uids.allocate(&passwd::ids_in_use(&self.host)?)?;
        let home = residue::home_of(&spec.name);
        let uid_text = uid.to_string();
        let gid_min = format!("GID_MIN={uid}");
        let gid_max = format!("GID_MAX={uid}");
        let home_text = home.to_string_lossy().into_owned();
        let created = self.host.run_checked(
            USERADD,
            &[
                // Home from /etc/skel, mode 0700.
                "-m",
                "-K",
                "HOME_MODE=0700",
                // No lastlog/faillog entries.
                "-l",
                // No password, but not locked: sshd (UsePAM no) refuses
                // accounts whose hash starts with `!`, useradd's default.
                "-p",
                "*",
                // No subordinate uid/gid ranges: nothing to clean up later.
                "-K",
                "SUB_UID_COUNT=0",
                "-K",
                "SUB_GID_COUNT=0",
                "-s",
                &spec.shell,
                "-u",
                &uid_text,
                // The user's own group, with the same (never reused) id:
                // the allocator checked it is free in /etc/group too.
                "-U",
                "-K",
                &gid_min,
                "-K",
                &gid_max,
                "-d",
                &home_text,
                "-c",
                "idmint just-in-time account",
                "--",
                spec.name.as_str(),
            ],
        );
        if let Err(e) = created {
            // useradd may have got half-way (e.g. home created).
            let _ = self.remove(&spec.name, Some(uid));
            return Err(e);
        }
        if let Err(e) = self.install_sudoers(&spec.name, &spec.sudo) {
            let _ = self.remove(&spec.name, Some(uid));
            return Err(e);
        }
        Ok(CreatedAccount {
            name: spec.name.clone(),
            uid,
            home,
            sudo_rules: spec.sudo.count(),
        })
    }

    /// Remove the account and everything it left; `known_uid` is used when
    /// the passwd entry is already gone (a crash half-way through an
    /// earlier removal). Never fails: what could not be removed is in the
    /// report's `remaining`.
    pub fn remove(&self, name: &AccountName, known_uid: Option<u32>) -> ResidueReport {
        let entry = match self.lookup(name) {
            Ok(entry) => entry,
            Err(e) => {
                return ResidueReport {
                    clean: false,
                    removed: Vec::new(),
                    remaining: vec![format!("could not read /etc/passwd: {e}")],
                }
            }
        };
        let Some(uid) = entry.as_ref().map(|e| e.uid).or(known_uid) else {
            // Nothing of the account is known to exist: check by name only.
            return self.sweep_by_name(name);
        };
        if !self.uids.range().contains(uid) {
            return ResidueReport {
                clean: false,
                removed: Vec::new(),
                remaining: vec![format!(
                    "{name} has uid {uid}, outside the agent's range {}..{}: not touched; remove it by hand",
                    self.uids.range().start,
                    self.uids.range().end
                )],
            };
        }
        let mut step_errors = Vec::new();
        let note = |errors: &mut Vec<String>, r: Result<()>| {
            if let Err(e) = r {
                tracing::warn!(account = %name, error = %e, "account removal step failed; the residue check follows");
                errors.push(e.to_string());
            }
        };
        // 1. No more sudo, 2. no more logins.
        note(
            &mut step_errors,
            remove_if_exists(&self.host.path(residue::sudoers_path_of(name))),
        );
        if entry.is_some() {
            note(
                &mut step_errors,
                self.host
                    .run_checked(USERMOD, &["-L", "-e", "1", "--", name.as_str()])
                    .map(drop),
            );
        }
        // 3. No more processes.
        let survivors = processes::kill_all_of_uid(self.host.proc_dir(), uid);
        if !survivors.is_empty() {
            step_errors.push(format!("processes survived SIGKILL: {survivors:?}"));
        }
        // 4. No more scheduled jobs.
        if self.host.has_program(CRONTAB) && entry.is_some() {
            // Fails harmlessly when the user has no crontab.
            let _ = self.host.run(CRONTAB, &["-r", "-u", name.as_str()]);
        }
        note(
            &mut step_errors,
            remove_if_exists(&self.host.path(Path::new(CRONTAB_DIR).join(name.as_str()))),
        );
        note(&mut step_errors, self.remove_at_jobs(uid));
        // 5. The account, its group and home.
        if entry.is_some() {
            let r = self.host.run(USERDEL, &["-r", "--", name.as_str()]);
            match r {
                // 12: home could not be removed (the sweep retries).
                Ok(r) if r.success || r.code == Some(12) => {}
                Ok(r) => {
                    step_errors.push(r.into_error(USERDEL, &["-r", name.as_str()]).to_string())
                }
                Err(e) => step_errors.push(e.to_string()),
            }
        }
        // 6. Whatever is still there.
        let mut report = residue::sweep(&self.host, name, uid);
        if !report.clean {
            report.remaining.extend(step_errors);
        }
        report
    }

    fn sweep_by_name(&self, name: &AccountName) -> ResidueReport {
        let mut report = ResidueReport::default();
        for path in [residue::sudoers_path_of(name), residue::home_of(name)] {
            let host_path = self.host.path(&path);
            if host_path.symlink_metadata().is_ok() {
                match remove_tree(&host_path) {
                    Ok(()) => report.removed.push(path.display().to_string()),
                    Err(e) => report.remaining.push(format!("{}: {e}", path.display())),
                }
            }
        }
        report.clean = report.remaining.is_empty();
        report
    }

    fn remove_at_jobs(&self, uid: u32) -> Result<()> {
        let dir = self.host.path(AT_JOBS_DIR);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            use std::os::unix::fs::MetadataExt;
            if entry.metadata().map(|m| m.uid() == uid).unwrap_or(false) {
                remove_if_exists(&entry.path())?;
            }
        }
        Ok(())
    }

    /// Write `/etc/sudoers.d/<name>`: temp file (a name with a `.`, which
    /// sudo ignores), root:root 0440, `visudo -cf`, fsync, atomic rename.
    fn install_sudoers(&self, name: &AccountName, rules: &SudoRules) -> Result<()> {
        let Some(contents) = rules.render(name) else {
            return Ok(());
        };
        if !self.host.path(SUDOERS_DIR).is_dir() {
            return Err(AgentError::Config(format!(
                "{SUDOERS_DIR} does not exist; create it (mode 0750) and check with `idmint agent install`"
            )));
        }
        let inside_final = residue::sudoers_path_of(name);
        let inside_tmp = temp_path_for(&inside_final)?;
        let host_tmp = self.host.path(&inside_tmp);
        let result = (|| {
            let mut f = create_new(&host_tmp, 0o600)?;
            f.write_all(contents.as_bytes())
                .map_err(|e| AgentError::io("writing the sudoers drop-in", &host_tmp, e))?;
            f.sync_all()
                .map_err(|e| AgentError::io("flushing the sudoers drop-in", &host_tmp, e))?;
            std::os::unix::fs::chown(&host_tmp, Some(0), Some(0))
                .map_err(|e| AgentError::io("making the sudoers drop-in root's", &host_tmp, e))?;
            std::fs::set_permissions(&host_tmp, std::fs::Permissions::from_mode(0o440))
                .map_err(|e| AgentError::io("setting the sudoers drop-in to 0440", &host_tmp, e))?;
            let inside_tmp_text = inside_tmp.to_string_lossy();
            let check = self
                .host
                .run(VISUDO, &["-c", "-q", "-f", &inside_tmp_text])?;
            if !check.success {
                return Err(AgentError::SudoersRejected {
                    account: name.to_string(),
                    stderr: format!("{}{}", check.stdout.trim(), check.stderr.trim()),
                });
            }
            rename_durably(&host_tmp, &self.host.path(&inside_final))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&host_tmp);
        }
        result
    }

    fn check_shell_exists(&self, shell: &str) -> Result<()> {
        let meta =
            std::fs::metadata(self.host.path(shell)).map_err(|e| AgentError::InvalidShell {
                shell: shell.to_string(),
                why: format!("not found on this host ({e})"),
            })?;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            return Err(AgentError::InvalidShell {
                shell: shell.to_string(),
                why: "not an executable file".into(),
            });
        }
        Ok(())
    }
}

/// Shells are absolute paths of plain characters (no `..`, no options).
fn check_shell_syntax(shell: &str) -> Result<()> {
    let refuse = |why: &str| AgentError::InvalidShell {
        shell: shell.chars().take(80).collect(),
        why: why.to_string(),
    };
    if !shell.starts_with('/') || shell.len() > MAX_SHELL_LEN {
        return Err(refuse("must be an absolute path of at most 256 characters"));
    }
    if !shell
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+'))
    {
        return Err(refuse("only letters, digits and `/ . _ - +` are allowed"));
    }
    if shell.split('/').any(|p| p == "..") {
        return Err(refuse("`..` is not allowed"));
    }
    Ok(())
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(AgentError::io("removing a file", path, e)),
    }
}

fn remove_tree(path: &Path) -> std::io::Result<()> {
    if path.symlink_metadata()?.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(account: &str, shell: &str, sudo: &[&str]) -> HostGrant {
        HostGrant {
            lease_id: "l".into(),
            account: account.into(),
            shell: shell.into(),
            sudo: sudo.iter().map(|s| s.to_string()).collect(),
            created_at: 0,
            expires_at: 10,
            key_id: "k".into(),
        }
    }

    #[test]
    fn grants_are_validated_before_anything_runs() {
        assert!(
            AccountSpec::from_grant(&grant("wl_abc123", "/bin/bash", &["/usr/bin/true"])).is_ok()
        );
        assert!(AccountSpec::from_grant(&grant("root", "/bin/bash", &[])).is_err());
        assert!(AccountSpec::from_grant(&grant("wl_abc123", "bash", &[])).is_err());
        assert!(AccountSpec::from_grant(&grant("wl_abc123", "/bin/sh -c id", &[])).is_err());
        assert!(AccountSpec::from_grant(&grant("wl_abc123", "/../bin/sh", &[])).is_err());
        assert!(AccountSpec::from_grant(&grant("wl_abc123", "/bin/bash", &["ALL, /x"])).is_err());
    }
}
