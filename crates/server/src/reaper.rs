//! The `LeaseReaper`: revokes leases at expiry, with retries and backoff.

use crate::revocation::{self, RevokeReason};
use crate::state::AppState;
use idmint_core::UnixTime;
use std::sync::Arc;
use std::time::Duration;

const BATCH: usize = 256;

pub struct LeaseReaper {
    pub interval: Duration,
    pub max_attempts: u32,
    /// Leases still `pending` this long after creation lost their request (a
    /// crash between write-ahead and activation): revoked like expired ones.
    pub pending_grace: Duration,
}

impl LeaseReaper {
    pub fn spawn(self, state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                self.run_once(&state).await;
            }
        })
    }

    /// One pass: revoke everything due, in batches, until nothing is due.
    pub async fn run_once(&self, state: &AppState) -> usize {
        let mut done = 0;
        loop {
            let now = UnixTime::now();
            state.denylist.purge(now);
            let due = match state
                .store
                .due_leases(now, self.pending_grace.as_secs() as i64, BATCH)
                .await
            {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "reaper cannot read due leases; retrying next tick");
                    return done;
                }
            };
            let n = due.len();
            for lease in due {
                match revocation::revoke(state, &lease, RevokeReason::Expired, None, Some("reaper"))
                    .await
                {
                    Ok(_) => done += 1,
                    Err(e) => {
                        revocation::record_failure(state, &lease, &e.to_string(), self.max_attempts)
                            .await
                    }
                }
            }
            if n < BATCH {
                let _ = state.store.purge_expired_denials(now).await;
                return done;
            }
        }
    }
}
