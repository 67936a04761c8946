//! Shared harness of the agent's integration tests: a private mount
//! namespace (TESTBED §3) with the agent's library pointed at it, and
//! helpers to drive reconciliation and wait on observable state with a
//! deadline.
#![allow(dead_code)]

use idmint_agent::proto::{AgentEvent, AgentEventKind, HostGrant, ResidueReport};
use idmint_agent::{
    DesiredState, GrantReconciler, HostAccounts, HostSystem, StateDir, UidAllocator, UidRange,
};
use idmint_testkit::JitNamespace;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Host files and directories that must never change.
const HOST_FILES: [&str; 7] = [
    "/etc/passwd",
    "/etc/shadow",
    "/etc/group",
    "/etc/gshadow",
    "/etc/subuid",
    "/etc/subgid",
    "/etc/sudoers",
];
const HOST_DIRS: [&str; 2] = ["/etc/sudoers.d", "/home"];

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A fresh account name (`wl_` + 16 hex).
pub fn account() -> String {
    format!("wl_{}", idmint_core::ids::random_hex(8).unwrap())
}

/// A uid range no other test of this run uses, so that process scans and
/// the /tmp sweep of parallel tests never see each other's uids.
pub fn unique_uid_range() -> UidRange {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let start = 2_500_000 + (std::process::id() % 2000) * 400 + n * 20;
    UidRange::new(start, start + 20).unwrap()
}

pub fn grant(account: &str, sudo: &[&str], ttl_secs: i64) -> HostGrant {
    HostGrant {
        lease_id: format!("lease_{}", idmint_core::ids::random_hex(6).unwrap()),
        account: account.to_string(),
        shell: "/bin/bash".into(),
        sudo: sudo.iter().map(|s| s.to_string()).collect(),
        created_at: now(),
        expires_at: now() + ttl_secs,
        key_id: "test-request subject=test".into(),
    }
}

pub fn desired(grants: &[&HostGrant]) -> DesiredState {
    DesiredState {
        grants: grants.iter().map(|g| (*g).clone()).collect(),
        clock_offset_secs: 0,
    }
}

/// Poll `check` every 50 ms until it returns `Some` or `limit` passes.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// sha256 of the host's account files and listings of its sudoers.d and
/// /home, to show they never change.
pub fn host_fingerprint() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for f in HOST_FILES {
        let digest = std::fs::read(f)
            .map(|b| {
                idmint_core::ids::hex(ring::digest::digest(&ring::digest::SHA256, &b).as_ref())
            })
            .unwrap_or_else(|e| format!("unreadable: {e}"));
        m.insert(f.to_string(), digest);
    }
    for d in HOST_DIRS {
        let mut names: Vec<String> = std::fs::read_dir(d)
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        m.insert(d.to_string(), names.join(","));
    }
    m
}

/// An agent (library) working inside a private mount namespace.
pub struct Lab {
    pub ns: JitNamespace,
    pub host: HostSystem,
    pub state_dir: tempfile::TempDir,
    pub range: UidRange,
    pub reconciler: GrantReconciler,
    /// Every event so far.
    pub events: Vec<AgentEvent>,
    host_before: BTreeMap<String, String>,
}

impl Lab {
    pub fn start() -> Lab {
        let host_before = host_fingerprint();
        let ns = JitNamespace::start().expect("JIT namespace (needs root, see TESTBED.md §3)");
        let host = HostSystem::mount_namespace_of(ns.holder_pid());
        let state_dir = tempfile::tempdir().unwrap();
        let range = unique_uid_range();
        let reconciler = Self::reconciler_for(&host, state_dir.path(), range);
        Lab {
            ns,
            host,
            state_dir,
            range,
            reconciler,
            events: Vec::new(),
            host_before,
        }
    }

    fn reconciler_for(host: &HostSystem, state_dir: &Path, range: UidRange) -> GrantReconciler {
        let state = StateDir::open(state_dir).unwrap();
        let accounts = HostAccounts::new(host.clone(), UidAllocator::new(state.clone(), range));
        GrantReconciler::new(accounts, state).unwrap()
    }

    pub fn state(&self) -> StateDir {
        StateDir::open(self.state_dir.path()).unwrap()
    }

    /// Simulate `kill -9` of the agent and a restart: all in-memory state is
    /// dropped, the new reconciler starts from the state directory only.
    pub fn crash_and_restart(&mut self) {
        self.reconciler = Self::reconciler_for(&self.host, self.state_dir.path(), self.range);
    }

    /// One reconciliation; returns (and records) its events.
    pub fn reconcile(&mut self, desired: &DesiredState) -> Vec<AgentEvent> {
        let events = self.reconciler.reconcile(desired, now());
        self.events.extend(events.iter().cloned());
        events
    }

    /// Reconcile repeatedly until an event for `account` matches `pred`.
    pub fn reconcile_until(
        &mut self,
        desired: &DesiredState,
        account: &str,
        what: &str,
        limit: Duration,
        pred: impl Fn(&AgentEventKind) -> bool,
    ) -> AgentEvent {
        if let Some(e) = self
            .events
            .iter()
            .find(|e| e.account == account && pred(&e.kind))
        {
            return e.clone();
        }
        wait_for(&format!("{what} for {account}"), limit, || {
            self.reconcile(desired)
                .into_iter()
                .find(|e| e.account == account && pred(&e.kind))
        })
    }

    pub fn ready(&mut self, desired: &DesiredState, account: &str) -> u32 {
        let e = self.reconcile_until(
            desired,
            account,
            "AccountReady",
            Duration::from_secs(20),
            |k| {
                matches!(
                    k,
                    AgentEventKind::AccountReady { .. } | AgentEventKind::AccountFailed { .. }
                )
            },
        );
        match e.kind {
            AgentEventKind::AccountReady { uid, .. } => uid,
            other => panic!("expected AccountReady for {account}, got {other:?}"),
        }
    }

    pub fn removed(
        &mut self,
        desired: &DesiredState,
        account: &str,
        limit: Duration,
    ) -> ResidueReport {
        let e = self.reconcile_until(desired, account, "AccountRemoved", limit, |k| {
            matches!(k, AgentEventKind::AccountRemoved { .. })
        });
        match e.kind {
            AgentEventKind::AccountRemoved { residue } => residue,
            _ => unreachable!(),
        }
    }

    /// The line of `file` (in the namespace) for `name`, if any.
    pub fn entry(&self, file: &str, name: &str) -> Option<String> {
        std::fs::read_to_string(self.ns.host_path(file))
            .unwrap_or_default()
            .lines()
            .find(|l| l.split(':').next() == Some(name))
            .map(str::to_string)
    }

    pub fn exists(&self, inside: &str) -> bool {
        self.ns.host_path(inside).symlink_metadata().is_ok()
    }

    /// Assert, item by item, that nothing of `name`/`uid` is left in the
    /// namespace (as seen from the host).
    pub fn assert_no_residue(&self, name: &str, uid: u32) {
        for file in [
            "/etc/passwd",
            "/etc/shadow",
            "/etc/group",
            "/etc/gshadow",
            "/etc/subuid",
            "/etc/subgid",
        ] {
            assert_eq!(self.entry(file, name), None, "{file} still has {name}");
        }
        assert!(
            !self.exists(&format!("/home/{name}")),
            "home of {name} left"
        );
        assert!(
            !self.exists(&format!("/etc/sudoers.d/{name}")),
            "sudoers drop-in of {name} left"
        );
        let leftovers: Vec<_> = std::fs::read_dir(self.ns.host_path("/etc/sudoers.d"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(name))
            .collect();
        assert!(leftovers.is_empty(), "temp drop-ins left: {leftovers:?}");
        assert!(
            !self.exists(&format!("/var/spool/cron/crontabs/{name}")),
            "crontab of {name} left"
        );
        assert!(
            processes_of(uid).is_empty(),
            "processes of uid {uid} left: {:?}",
            processes_of(uid)
        );
        for dir in ["/tmp", "/var/tmp", "/dev/shm", "/var/spool/cron/atjobs"] {
            let owned: Vec<_> = std::fs::read_dir(self.ns.host_path(dir))
                .map(|r| {
                    r.flatten()
                        .filter(|e| {
                            e.path()
                                .symlink_metadata()
                                .map(|m| m.uid() == uid)
                                .unwrap_or(false)
                        })
                        .map(|e| e.path())
                        .collect()
                })
                .unwrap_or_default();
            assert!(
                owned.is_empty(),
                "files of uid {uid} left in {dir}: {owned:?}"
            );
        }
        let getent = self.ns.run("/usr/bin/getent", &["passwd", name]).unwrap();
        assert!(!getent.status.success(), "getent still finds {name}");
    }

    /// The host's account files and directories are what they were.
    pub fn assert_host_untouched(&self) {
        assert_eq!(
            host_fingerprint(),
            self.host_before,
            "the host's real /etc or /home changed"
        );
    }
}

/// Live processes of `uid` (any namespace: the pid namespace is shared).
pub fn processes_of(uid: u32) -> Vec<u32> {
    idmint_agent::processes::pids_of_uid(Path::new("/proc"), uid)
        .into_iter()
        .collect()
}
