//! Making the host match the server's desired state.
//!
//! Each call to [`GrantReconciler::reconcile`] compares three things — the
//! live grants, the `wl_` accounts in `/etc/passwd` and the agent's ledger
//! of accounts it made — plus one scan of the process table, and acts:
//!
//! * a grant without an account → create it (`AccountReady` or
//!   `AccountFailed`); a lease whose account was already used and removed
//!   is never created again (one-time grants);
//! * an account whose session ended (logout) → remove it at once;
//! * an account whose grant is gone (`revoked`) or past `expires_at`
//!   (`expired`, judged by the server's clock as last seen, also while the
//!   server is unreachable) → end its session and remove it;
//! * a `wl_` account the ledger does not know (a crash between `useradd`
//!   and the ledger write, or someone else's) → remove it; a fresh one is
//!   made if a grant still wants it.
//!
//! Reconciling converges: running it twice in a row does nothing the second
//! time, and running it after a crash or a lost message repairs the host.

use crate::account_name::AccountName;
use crate::accounts::{AccountSpec, HostAccounts};
use crate::error::Result;
use crate::processes;
use crate::sessions::{SessionChange, SessionWatcher};
use crate::state::{CachedGrants, Ledger, LedgerEntry, StateDir};
use idmint_proto::ssh::{AgentEvent, AgentEventKind, HostGrant, ResidueReport};
use std::collections::{BTreeMap, BTreeSet};

/// Why an account is removed, as reported in `SessionEnded.reason`.
pub const REASON_LOGOUT: &str = "logout";
pub const REASON_EXPIRED: &str = "expired";
pub const REASON_REVOKED: &str = "revoked";

/// The grants the host should have, and the server's clock offset to judge
/// their expiry by.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DesiredState {
    pub grants: Vec<HostGrant>,
    /// `server now - agent now` when the grants were received.
    pub clock_offset_secs: i64,
}

impl DesiredState {
    /// No grants at all: every `wl_` account goes.
    pub fn empty() -> Self {
        Self::default()
    }

    pub fn from_cache(cached: &CachedGrants) -> Self {
        Self {
            grants: cached.grants.grants.clone(),
            clock_offset_secs: cached.clock_offset_secs,
        }
    }
}

/// The reconciliation loop's memory.
#[derive(Debug)]
pub struct GrantReconciler {
    accounts: HostAccounts,
    state: StateDir,
    ledger: Ledger,
    watcher: SessionWatcher,
    /// Leases whose account could not be created: reported once, not
    /// retried every tick (retried after an agent restart).
    failed: BTreeSet<String>,
    /// Unknown `wl_` accounts whose removal failed (e.g. a uid outside the
    /// agent's range): logged once, then left to an operator.
    untouchable: BTreeSet<AccountName>,
}

impl GrantReconciler {
    /// Load the ledger and resume watching the sessions it recorded.
    pub fn new(accounts: HostAccounts, state: StateDir) -> Result<Self> {
        let ledger = state.ledger()?;
        let mut watcher = SessionWatcher::new();
        for entry in ledger.accounts.values() {
            if let Some(started) = entry.session_started_at {
                watcher.adopt(entry.uid, started);
            }
        }
        Ok(Self {
            accounts,
            state,
            ledger,
            watcher,
            failed: BTreeSet::new(),
            untouchable: BTreeSet::new(),
        })
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn accounts(&self) -> &HostAccounts {
        &self.accounts
    }

    /// One reconciliation at agent time `local_now` (Unix seconds). Returns
    /// the events to report, in the order they happened.
    pub fn reconcile(&mut self, desired: &DesiredState, local_now: i64) -> Vec<AgentEvent> {
        let mut run = Run {
            events: Vec::new(),
            at: local_now,
            ledger_changed: false,
        };
        let now = local_now.saturating_add(desired.clock_offset_secs);
        let current = match self.accounts.list() {
            Ok(list) => list,
            Err(e) => {
                tracing::error!(error = %e, "cannot list accounts; skipping this reconciliation");
                return run.events;
            }
        };
        let listed: BTreeMap<&str, &HostGrant> = desired
            .grants
            .iter()
            .map(|g| (g.account.as_str(), g))
            .collect();

        // Sessions of the accounts we made.
        let ours: BTreeMap<u32, AccountName> = current
            .iter()
            .filter(|(name, _)| self.ledger.accounts.contains_key(name.as_str()))
            .map(|(name, e)| (e.uid, name.clone()))
            .collect();
        let range = self.accounts.uids().range();
        let running: BTreeSet<u32> = processes::scan(self.accounts.host().proc_dir(), |u| {
            range.contains(u) && ours.contains_key(&u)
        })
        .into_keys()
        .collect();
        let watched: BTreeSet<u32> = ours.keys().copied().collect();
        let mut removed: BTreeSet<AccountName> = BTreeSet::new();
        for change in self.watcher.observe(&watched, &running, local_now) {
            match change {
                SessionChange::Started { uid, at } => {
                    let Some(name) = ours.get(&uid) else { continue };
                    if let Some(entry) = self.ledger.accounts.get_mut(name.as_str()) {
                        entry.session_started_at = Some(at);
                        run.ledger_changed = true;
                        run.push(
                            &entry.lease_id,
                            name,
                            AgentEventKind::SessionStarted { source: None },
                        );
                    }
                }
                SessionChange::Ended {
                    uid,
                    started_at,
                    at,
                } => {
                    let Some(name) = ours.get(&uid) else { continue };
                    self.end_and_remove(&mut run, name, Some((started_at, at)), REASON_LOGOUT);
                    removed.insert(name.clone());
                }
            }
        }

        // Accounts no live grant wants (or that we never finished making).
        for (name, _) in &current {
            if removed.contains(name) {
                continue;
            }
            let entry = self.ledger.accounts.get(name.as_str());
            let grant = listed.get(name.as_str());
            let live = grant.is_some_and(|g| g.expires_at > now);
            let same_lease = match (entry, grant) {
                (Some(e), Some(g)) => e.lease_id == g.lease_id,
                _ => false,
            };
            if entry.is_none() {
                if self.untouchable.contains(name) {
                    continue;
                }
                tracing::warn!(account = %name, "removing a wl_ account the agent has no record of");
                let report = self.accounts.remove(name, None);
                log_residue(name, &report);
                if report.clean {
                    removed.insert(name.clone());
                } else {
                    // E.g. a uid outside the agent's range: reported once,
                    // not retried every tick.
                    self.untouchable.insert(name.clone());
                }
                continue;
            }
            if live && same_lease {
                continue;
            }
            let expired = grant.is_some_and(|g| g.expires_at <= now)
                || entry.is_some_and(|e| e.expires_at <= now);
            let reason = if expired {
                REASON_EXPIRED
            } else {
                REASON_REVOKED
            };
            let session = self.watcher.started_at(self.uid_of(name).unwrap_or(0));
            self.end_and_remove(&mut run, name, session.map(|s| (s, local_now)), reason);
            removed.insert(name.clone());
        }

        // Ledger entries whose account vanished without us (a crash during
        // removal, or an admin): finish the removal and report it.
        let present: BTreeSet<&str> = current.iter().map(|(n, _)| n.as_str()).collect();
        let vanished: Vec<String> = self
            .ledger
            .accounts
            .keys()
            .filter(|n| !present.contains(n.as_str()))
            .cloned()
            .collect();
        for account in vanished {
            if let Ok(name) = AccountName::parse(&account) {
                self.end_and_remove(&mut run, &name, None, REASON_REVOKED);
                removed.insert(name);
            } else {
                self.ledger.accounts.remove(&account);
                run.ledger_changed = true;
            }
        }

        // Grants without an account.
        for grant in &desired.grants {
            let wanted = grant.expires_at > now
                && !self.ledger.consumed.contains_key(&grant.lease_id)
                && !self.failed.contains(&grant.lease_id)
                && !self.ledger.accounts.contains_key(&grant.account)
                && (!present.contains(grant.account.as_str())
                    || removed.iter().any(|n| n.as_str() == grant.account));
            if wanted {
                self.create(&mut run, grant, now);
            }
        }

        // Forget used-up and failed leases the server no longer lists.
        let listed_leases: BTreeSet<&str> =
            desired.grants.iter().map(|g| g.lease_id.as_str()).collect();
        let before = self.ledger.consumed.len();
        self.ledger
            .consumed
            .retain(|lease, _| listed_leases.contains(lease.as_str()));
        run.ledger_changed |= before != self.ledger.consumed.len();
        self.failed
            .retain(|lease| listed_leases.contains(lease.as_str()));

        if run.ledger_changed {
            if let Err(e) = self.state.save_ledger(&self.ledger) {
                tracing::error!(error = %e, "cannot save the ledger; one-time grants may be re-created after a restart");
            }
        }
        run.events
    }

    fn uid_of(&self, name: &AccountName) -> Option<u32> {
        self.ledger.accounts.get(name.as_str()).map(|e| e.uid)
    }

    fn create(&mut self, run: &mut Run, grant: &HostGrant, now: i64) {
        let result = AccountSpec::from_grant(grant).and_then(|spec| {
            let created = self.accounts.create(&spec)?;
            Ok((spec, created))
        });
        match result {
            Ok((spec, created)) => {
                self.ledger.accounts.insert(
                    spec.name.to_string(),
                    LedgerEntry {
                        lease_id: grant.lease_id.clone(),
                        uid: created.uid,
                        created_at: now,
                        expires_at: grant.expires_at,
                        session_started_at: None,
                    },
                );
                run.ledger_changed = true;
                tracing::info!(account = %spec.name, uid = created.uid, key_id = %grant.key_id, "account ready");
                run.push_raw(
                    &grant.lease_id,
                    &grant.account,
                    AgentEventKind::AccountReady {
                        uid: created.uid,
                        sudo_rules: created.sudo_rules,
                    },
                );
            }
            Err(e) => {
                tracing::warn!(account = %grant.account.chars().take(40).collect::<String>(), error = %e, "account creation failed");
                self.failed.insert(grant.lease_id.clone());
                run.push_raw(
                    &grant.lease_id,
                    &grant.account,
                    AgentEventKind::AccountFailed {
                        reason: e.to_string(),
                    },
                );
            }
        }
    }

    /// Report the end of the session (when one ran), remove the account and
    /// report the residue; the lease is used up.
    fn end_and_remove(
        &mut self,
        run: &mut Run,
        name: &AccountName,
        session: Option<(i64, i64)>,
        reason: &str,
    ) {
        let entry = self.ledger.accounts.get(name.as_str()).cloned();
        let lease = entry
            .as_ref()
            .map(|e| e.lease_id.clone())
            .unwrap_or_default();
        if let Some((started, ended)) = session {
            run.push(
                &lease,
                name,
                AgentEventKind::SessionEnded {
                    duration_secs: u64::try_from(ended.saturating_sub(started)).unwrap_or(0),
                    reason: reason.to_string(),
                },
            );
        }
        let report = self.accounts.remove(name, entry.as_ref().map(|e| e.uid));
        log_residue(name, &report);
        tracing::info!(account = %name, reason, clean = report.clean, "account removed");
        run.push(
            &lease,
            name,
            AgentEventKind::AccountRemoved { residue: report },
        );
        if let Some(e) = &entry {
            self.watcher.forget(e.uid);
            self.ledger.consumed.insert(e.lease_id.clone(), run.at);
        }
        self.ledger.accounts.remove(name.as_str());
        run.ledger_changed = true;
    }
}

struct Run {
    events: Vec<AgentEvent>,
    at: i64,
    ledger_changed: bool,
}

impl Run {
    fn push(&mut self, lease: &str, name: &AccountName, kind: AgentEventKind) {
        self.push_raw(lease, name.as_str(), kind);
    }

    fn push_raw(&mut self, lease: &str, account: &str, kind: AgentEventKind) {
        self.events.push(AgentEvent {
            lease_id: lease.to_string(),
            account: account.to_string(),
            at: self.at,
            kind,
        });
    }
}

fn log_residue(name: &AccountName, report: &ResidueReport) {
    if !report.removed.is_empty() {
        tracing::info!(account = %name, removed = ?report.removed, "residue found after removal and removed");
    }
    if !report.clean {
        tracing::error!(account = %name, remaining = ?report.remaining, "residue left after removal");
    }
}
