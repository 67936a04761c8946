//! Events waiting for delivery to the server, kept on disk.
//!
//! The server only marks a lease revoked when the agent reports the
//! account removed; an event lost in a crash would leave it waiting (and
//! its reaper retrying) forever. So every event is written to
//! `outbox.json` in the state directory before it is sent and taken out
//! only after the server accepted it: delivery is at least once (a crash
//! between the server's answer and the rewrite sends that event again,
//! which the server treats as a repeat).
//!
//! The outbox is bounded ([`MAX_EVENTS`]): when the server stays away
//! longer than that many events, the oldest are dropped with an error in
//! the log (the grant state still converges; only those audit details are
//! lost).

use crate::error::Result;
use crate::state::StateDir;
use idmint_proto::ssh::AgentEvent;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Notify;

/// Most events kept while the server is unreachable.
pub const MAX_EVENTS: usize = 10_000;
const OUTBOX: &str = "outbox.json";

/// The persistent event queue shared by the reconcile thread (producer)
/// and the sender task (consumer).
#[derive(Debug)]
pub struct EventOutbox {
    state: StateDir,
    queue: Mutex<VecDeque<AgentEvent>>,
    arrived: Notify,
}

impl EventOutbox {
    /// Load the events a previous run did not deliver.
    pub fn open(state: StateDir) -> Result<Self> {
        let queue: VecDeque<AgentEvent> = match state.read(OUTBOX)? {
            None => VecDeque::new(),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                crate::error::AgentError::CorruptState {
                    path: state.file(OUTBOX),
                    message: e.to_string(),
                }
            })?,
        };
        Ok(Self {
            state,
            queue: Mutex::new(queue),
            arrived: Notify::new(),
        })
    }

    /// Queue events (persisted before this returns) and wake the sender.
    pub fn push(&self, events: Vec<AgentEvent>) {
        if events.is_empty() {
            return;
        }
        let mut q = self.lock();
        q.extend(events);
        while q.len() > MAX_EVENTS {
            if let Some(dropped) = q.pop_front() {
                tracing::error!(lease_id = %dropped.lease_id, account = %dropped.account, "event outbox full; dropping the oldest event");
            }
        }
        self.persist(&q);
        drop(q);
        self.arrived.notify_one();
    }

    /// The oldest undelivered event.
    pub fn front(&self) -> Option<AgentEvent> {
        self.lock().front().cloned()
    }

    /// Remove `delivered` if it is still the oldest event.
    pub fn remove_delivered(&self, delivered: &AgentEvent) {
        let mut q = self.lock();
        if q.front() == Some(delivered) {
            q.pop_front();
            self.persist(&q);
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Wait until [`push`](Self::push) is called (returns at once if it was
    /// called since the last wait).
    pub async fn arrived(&self) {
        self.arrived.notified().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<AgentEvent>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, q: &VecDeque<AgentEvent>) {
        let written = serde_json::to_vec(q)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                self.state
                    .write(OUTBOX, &bytes, 0o600)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            tracing::error!(error = %e, "cannot persist the event outbox; undelivered events are lost if the agent stops now");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idmint_proto::ssh::AgentEventKind;

    fn event(n: i64) -> AgentEvent {
        AgentEvent {
            lease_id: format!("lease_{n}"),
            account: "wl_abc123".into(),
            at: n,
            kind: AgentEventKind::SessionStarted { source: None },
        }
    }

    #[tokio::test]
    async fn survives_a_restart_until_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let outbox = EventOutbox::open(state.clone()).unwrap();
        outbox.push(vec![event(1), event(2)]);
        // The push left a wake-up for the sender.
        tokio::time::timeout(std::time::Duration::from_secs(5), outbox.arrived())
            .await
            .unwrap();
        // Removing anything but the oldest does nothing.
        outbox.remove_delivered(&event(2));
        assert_eq!(outbox.len(), 2);
        outbox.remove_delivered(&event(1));
        drop(outbox);
        let reopened = EventOutbox::open(state).unwrap();
        assert_eq!(reopened.front(), Some(event(2)));
        reopened.remove_delivered(&event(2));
        assert!(reopened.is_empty());
    }
}
