//! Session start and end, as seen from the process table.
//!
//! A just-in-time account runs nothing until someone logs in, so "the uid
//! has a process" is the session and "it had processes and now has none"
//! is the logout. The watcher is fed one scan of `/proc` at a time (the
//! agent scans on a short interval); it holds no clock and does no IO, so
//! its decisions are easy to test.
//!
//! A session shorter than the scan interval can be missed entirely; the
//! account then lives until its grant expires, which the certificate's
//! lifetime bounds anyway.

use std::collections::{BTreeMap, BTreeSet};

/// What changed between two scans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionChange {
    Started { uid: u32, at: i64 },
    Ended { uid: u32, started_at: i64, at: i64 },
}

/// Which watched uids currently have a session, and since when.
#[derive(Debug, Default, Clone)]
pub struct SessionWatcher {
    active: BTreeMap<u32, i64>,
}

impl SessionWatcher {
    pub fn new() -> Self {
        Self::default()
    }

    /// Resume a session known from before an agent restart, so that its end
    /// is still noticed.
    pub fn adopt(&mut self, uid: u32, started_at: i64) {
        self.active.insert(uid, started_at);
    }

    /// Stop watching `uid` (its account was removed).
    pub fn forget(&mut self, uid: u32) -> Option<i64> {
        self.active.remove(&uid)
    }

    pub fn started_at(&self, uid: u32) -> Option<i64> {
        self.active.get(&uid).copied()
    }

    /// Compare a scan with the previous one. `watched` are the uids of the
    /// managed accounts, `with_processes` those that have a live process
    /// now, `now` the scan's time.
    pub fn observe(
        &mut self,
        watched: &BTreeSet<u32>,
        with_processes: &BTreeSet<u32>,
        now: i64,
    ) -> Vec<SessionChange> {
        let mut changes = Vec::new();
        for &uid in watched {
            let running = with_processes.contains(&uid);
            match (self.active.get(&uid).copied(), running) {
                (None, true) => {
                    self.active.insert(uid, now);
                    changes.push(SessionChange::Started { uid, at: now });
                }
                (Some(started_at), false) => {
                    self.active.remove(&uid);
                    changes.push(SessionChange::Ended {
                        uid,
                        started_at,
                        at: now,
                    });
                }
                _ => {}
            }
        }
        // Accounts that vanished are no longer watched.
        self.active.retain(|uid, _| watched.contains(uid));
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_then_end() {
        let mut w = SessionWatcher::new();
        let watched: BTreeSet<u32> = [10, 11].into();
        assert!(w.observe(&watched, &BTreeSet::new(), 1).is_empty());
        assert_eq!(
            w.observe(&watched, &[10].into(), 2),
            vec![SessionChange::Started { uid: 10, at: 2 }]
        );
        assert!(w.observe(&watched, &[10].into(), 3).is_empty());
        assert_eq!(
            w.observe(&watched, &BTreeSet::new(), 9),
            vec![SessionChange::Ended {
                uid: 10,
                started_at: 2,
                at: 9
            }]
        );
        // Unwatched uids (not ours) never produce sessions.
        assert!(w.observe(&watched, &[99].into(), 10).is_empty());
    }

    #[test]
    fn adopted_sessions_end_after_a_restart() {
        let mut w = SessionWatcher::new();
        w.adopt(7, 100);
        let changes = w.observe(&[7].into(), &BTreeSet::new(), 150);
        assert_eq!(
            changes,
            vec![SessionChange::Ended {
                uid: 7,
                started_at: 100,
                at: 150
            }]
        );
    }
}
