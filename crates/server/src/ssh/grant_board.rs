//! [`GrantBoard`]: the desired state of one host, which its agent pulls.
//!
//! The board is the only place a just-in-time grant lives in memory: a
//! session request publishes a grant and waits for the agent's
//! `AccountReady`; revocation withdraws it and waits for `AccountRemoved`.
//! Both waits are `watch` channels (no polling sleeps): every change bumps
//! a revision and wakes whoever waits on it. The board is rebuilt from the
//! store's live leases at start, so a restart loses nothing the agent needs.

use idmint_proto::ssh::HostGrant;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long after its last poll an agent still counts as connected: its
/// long poll is at most 30 s, so a live agent is back well within this.
const CONNECTED_GRACE_SECS: i64 = 45;

/// Most finished grants remembered (for revocation to see that the agent
/// confirmed removal); older ones are forgotten first. The store keeps the
/// lease state; this only saves a round of waiting.
const MAX_FINISHED: usize = 100_000;

/// Where a grant is in its life, as far as the agent has told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantStatus {
    /// On the board; the agent has not reported yet.
    Published,
    /// The agent created the account.
    Ready,
    /// Withdrawn from the board; waiting for the agent to remove it.
    Withdrawn,
    /// The agent reported the account removed, or that creating it failed
    /// (so nothing of it exists).
    Removed { failure: Option<String> },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BoardError {
    #[error(
        "account {0} is already granted on this host (lease id hash collision); retry the request"
    )]
    DuplicateAccount(String),
}

/// What waiting for the agent ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyOutcome {
    Ready,
    Failed(String),
    TimedOut,
}

#[derive(Default)]
struct BoardState {
    revision: u64,
    /// Live grants by account name (unique per host).
    grants: BTreeMap<String, HostGrant>,
    status: HashMap<String, GrantStatus>,
    /// Accounts whose grant a poll response has carried to the agent.
    delivered: HashMap<String, ()>,
    /// Finished accounts in the order they finished, for bounded memory.
    finished: std::collections::VecDeque<String>,
}

/// The grants of one host.
pub struct GrantBoard {
    state: Mutex<BoardState>,
    grants_rev: watch::Sender<u64>,
    status_rev: watch::Sender<u64>,
    last_poll: AtomicI64,
    polling: AtomicUsize,
}

impl Default for GrantBoard {
    fn default() -> Self {
        Self::new()
    }
}

/// The first revision of a new board: microseconds since the epoch, so the
/// revisions of a restarted server are above every revision an agent saw
/// before (an agent's stale `since` never matches by accident).
fn initial_revision() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2))
        .unwrap_or(0)
}

impl GrantBoard {
    pub fn new() -> Self {
        let revision = initial_revision();
        Self {
            state: Mutex::new(BoardState {
                revision,
                ..Default::default()
            }),
            grants_rev: watch::Sender::new(revision),
            status_rev: watch::Sender::new(0),
            last_poll: AtomicI64::new(i64::MIN),
            polling: AtomicUsize::new(0),
        }
    }

    /// A poisoned lock only means a panic elsewhere mid-update; the maps
    /// are still consistent enough to serve (every update is one insert or
    /// remove), so recover instead of failing every later request.
    fn lock(&self) -> std::sync::MutexGuard<'_, BoardState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump_grants(&self, st: &mut BoardState) {
        st.revision += 1;
        self.grants_rev.send_replace(st.revision);
    }

    fn bump_status(&self) {
        self.status_rev.send_modify(|r| *r += 1);
    }

    /// Publish a grant; the agent sees it at its next poll (at once if it
    /// is long-polling).
    pub fn publish(&self, grant: HostGrant) -> Result<(), BoardError> {
        let mut st = self.lock();
        if st.grants.contains_key(&grant.account) {
            return Err(BoardError::DuplicateAccount(grant.account));
        }
        st.status
            .insert(grant.account.clone(), GrantStatus::Published);
        st.grants.insert(grant.account.clone(), grant);
        self.bump_grants(&mut st);
        Ok(())
    }

    /// Take a grant off the board (revocation, expiry, a failed session
    /// request). Returns whether it was there.
    pub fn withdraw(&self, account: &str) -> bool {
        let mut st = self.lock();
        let was = st.grants.remove(account).is_some();
        if was {
            if !matches!(st.status.get(account), Some(GrantStatus::Removed { .. })) {
                st.status
                    .insert(account.to_string(), GrantStatus::Withdrawn);
            }
            self.bump_grants(&mut st);
        }
        drop(st);
        if was {
            self.bump_status();
        }
        was
    }

    pub fn status(&self, account: &str) -> Option<GrantStatus> {
        self.lock().status.get(account).cloned()
    }

    /// Whether a poll response has carried this grant to the agent.
    pub fn was_delivered(&self, account: &str) -> bool {
        self.lock().delivered.contains_key(account)
    }

    /// The agent reported the account ready.
    pub fn mark_ready(&self, account: &str) {
        {
            let mut st = self.lock();
            if st.grants.contains_key(account) {
                st.status.insert(account.to_string(), GrantStatus::Ready);
            }
        }
        self.bump_status();
    }

    /// The agent reported the account gone (or never created): the grant
    /// leaves the board for good.
    pub fn mark_removed(&self, account: &str, failure: Option<String>) {
        {
            let mut st = self.lock();
            if st.grants.remove(account).is_some() {
                self.bump_grants(&mut st);
            }
            st.delivered.remove(account);
            st.status
                .insert(account.to_string(), GrantStatus::Removed { failure });
            st.finished.push_back(account.to_string());
            while st.finished.len() > MAX_FINISHED {
                if let Some(old) = st.finished.pop_front() {
                    st.status.remove(&old);
                }
            }
        }
        self.bump_status();
    }

    /// Wait until the agent reports the account ready or failed, or until
    /// `timeout`.
    pub async fn wait_ready(&self, account: &str, timeout: Duration) -> ReadyOutcome {
        let deadline = Instant::now() + timeout;
        let mut rx = self.status_rev.subscribe();
        loop {
            match self.status(account) {
                Some(GrantStatus::Ready) => return ReadyOutcome::Ready,
                Some(GrantStatus::Removed { failure }) => {
                    return ReadyOutcome::Failed(
                        failure.unwrap_or_else(|| "the agent removed the account".into()),
                    )
                }
                Some(GrantStatus::Withdrawn) | None => {
                    return ReadyOutcome::Failed("the grant was withdrawn".into())
                }
                Some(GrantStatus::Published) => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return ReadyOutcome::TimedOut;
            }
            match tokio::time::timeout(left, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return ReadyOutcome::TimedOut,
            }
        }
    }

    /// Wait until the agent confirms removal, up to `timeout`; returns
    /// whether it did.
    pub async fn wait_removed(&self, account: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut rx = self.status_rev.subscribe();
        loop {
            if matches!(self.status(account), Some(GrantStatus::Removed { .. })) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match tokio::time::timeout(left, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return false,
            }
        }
    }

    /// The current revision and every live grant; marks them delivered.
    pub fn snapshot(&self) -> (u64, Vec<HostGrant>) {
        let mut st = self.lock();
        let grants: Vec<HostGrant> = st.grants.values().cloned().collect();
        for g in &grants {
            st.delivered.insert(g.account.clone(), ());
        }
        (st.revision, grants)
    }

    /// Long poll: returns as soon as the revision moves past `since`, or
    /// after `wait` with the current state.
    pub async fn wait_for_change(
        &self,
        since: u64,
        wait: Duration,
        now: i64,
    ) -> (u64, Vec<HostGrant>) {
        self.polling.fetch_add(1, Ordering::SeqCst);
        self.last_poll.store(now, Ordering::SeqCst);
        let mut rx = self.grants_rev.subscribe();
        let _ = tokio::time::timeout(wait, rx.wait_for(|rev| *rev != since)).await;
        self.polling.fetch_sub(1, Ordering::SeqCst);
        self.last_poll
            .store(idmint_core::UnixTime::now().secs(), Ordering::SeqCst);
        self.snapshot()
    }

    /// Whether the host's agent is polling now or polled recently.
    pub fn agent_connected(&self, now: i64) -> bool {
        self.polling.load(Ordering::SeqCst) > 0
            || now.saturating_sub(self.last_poll.load(Ordering::SeqCst)) <= CONNECTED_GRACE_SECS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn grant(lease: &str, account: &str) -> HostGrant {
        HostGrant {
            lease_id: lease.into(),
            account: account.into(),
            shell: "/bin/bash".into(),
            sudo: vec![],
            created_at: 1,
            expires_at: 2,
            key_id: "k".into(),
        }
    }

    #[tokio::test]
    async fn publish_ready_withdraw_remove() {
        let board = Arc::new(GrantBoard::new());
        assert!(!board.agent_connected(100));
        let (start, _) = board.snapshot();
        assert!(
            start > 1_700_000_000_000_000,
            "revisions start at the clock (µs)"
        );
        board.publish(grant("l1", "wl_1")).unwrap();
        assert_eq!(
            board.publish(grant("l2", "wl_1")),
            Err(BoardError::DuplicateAccount("wl_1".into()))
        );
        // A long poll from an old revision returns at once.
        let (rev, grants) = board
            .wait_for_change(start, Duration::from_secs(5), 100)
            .await;
        assert_eq!((rev, grants.len()), (start + 1, 1));
        assert!(board.was_delivered("wl_1"));
        assert!(board.agent_connected(100));

        // A waiter is woken by the agent's report, not by a timer.
        let b = board.clone();
        let waiter =
            tokio::spawn(async move { b.wait_ready("wl_1", Duration::from_secs(30)).await });
        tokio::task::yield_now().await;
        board.mark_ready("wl_1");
        assert_eq!(waiter.await.unwrap(), ReadyOutcome::Ready);

        // A poller at the current revision is woken by a withdrawal.
        let b = board.clone();
        let poll =
            tokio::spawn(async move { b.wait_for_change(rev, Duration::from_secs(30), 100).await });
        tokio::task::yield_now().await;
        assert!(board.withdraw("wl_1"));
        let (rev, grants) = poll.await.unwrap();
        assert_eq!((rev, grants.len()), (start + 2, 0));
        assert_eq!(board.status("wl_1"), Some(GrantStatus::Withdrawn));
        assert!(!board.wait_removed("wl_1", Duration::from_millis(10)).await);
        board.mark_removed("wl_1", None);
        assert!(board.wait_removed("wl_1", Duration::from_millis(10)).await);
        assert!(!board.withdraw("wl_1"));
    }

    #[tokio::test]
    async fn wait_ready_times_out_or_reports_failure() {
        let board = GrantBoard::new();
        board.publish(grant("l1", "wl_1")).unwrap();
        assert_eq!(
            board.wait_ready("wl_1", Duration::from_millis(20)).await,
            ReadyOutcome::TimedOut
        );
        board.mark_removed("wl_1", Some("useradd failed".into()));
        assert_eq!(
            board.wait_ready("wl_1", Duration::from_secs(5)).await,
            ReadyOutcome::Failed("useradd failed".into())
        );
        // A long poll with nothing new returns after `wait` with the same revision.
        let (now, _) = board.snapshot();
        let (rev, _) = board
            .wait_for_change(now, Duration::from_millis(20), 1)
            .await;
        assert_eq!(rev, now);
    }
}
