//! The `LeaseReaper`: revokes leases at expiry, with retries and backoff.

use crate::revocation::{self, RevokeReason};
use crate::state::AppState;
use futures_util::StreamExt;
use idmint_core::{Lease, UnixTime};
use std::sync::Arc;
use std::time::Duration;

/// Leases claimed per store round trip. Leases whose revocation is local
/// (signed tokens, certificates, static secrets) are revoked a whole claim
/// at a time with one store write and one audit batch
/// ([`revocation::revoke_local_batch`]), so a bigger claim means fewer
/// fsyncs: with 256 and one revocation at a time per lease, 100k expired
/// tokens took 14 s; claims of 1024 revoked in bulk take a fraction of it.
/// Kept well under [`idmint_store::MAX_DUE_LIMIT`] and small enough that a
/// pass never holds a claim for long.
const BATCH: usize = 1024;

/// Revocations through a target (database users, cloud keys…) in flight at
/// once. Each waits on the target and on two durable writes (lease state,
/// audit event); concurrent ones share the store's and the audit log's
/// group commits. The bound keeps a slow target from being flooded: a
/// target's own admin pool queues the excess.
const CONCURRENCY: usize = 64;

pub struct LeaseReaper {
    pub interval: Duration,
    pub max_attempts: u32,
    /// Leases still `pending` this long after creation lost their request (a
    /// crash between write-ahead and activation): revoked like expired ones.
    pub pending_grace: Duration,
    /// How long one pass owns the leases it picked (see
    /// [`idmint_store::Store::claim_due_leases`]). The pass stops starting
    /// revocations once [`CLAIM_SAFETY`] of this is used up, so a claim
    /// never lapses while this server is still revoking under it.
    pub claim_for: Duration,
}

impl LeaseReaper {
    /// The leases of one claim whose revocation is local, all at once,
    /// unless the claim's time is already used up.
    async fn revoke_bulk(
        &self,
        state: &AppState,
        local: Vec<Lease>,
        claimed_at: std::time::Instant,
        budget: Duration,
    ) -> usize {
        if local.is_empty() || claimed_at.elapsed() > budget {
            return 0;
        }
        revocation::revoke_local_batch(
            state,
            &local,
            RevokeReason::Expired,
            Some("reaper"),
            self.max_attempts,
        )
        .await
    }
}

/// Fraction (in percent) of a claim a pass may use before it leaves the
/// rest of its batch to the next claim.
const CLAIM_SAFETY: u32 = 60;

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
            // Claimed, not just read: with several servers on one store,
            // each lease is revoked by exactly one of them.
            let claimed_at = std::time::Instant::now();
            let due = match state
                .store
                .claim_due_leases(
                    now,
                    self.pending_grace.as_secs() as i64,
                    BATCH,
                    now.plus(self.claim_for),
                )
                .await
            {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "reaper cannot read due leases; retrying next tick");
                    return done;
                }
            };
            let n = due.len();
            let budget = self.claim_for * CLAIM_SAFETY / 100;
            let (local, external): (Vec<Lease>, Vec<Lease>) = due
                .into_iter()
                .partition(|lease| revocation::revokes_locally(state, lease));
            let bulk = self.revoke_bulk(state, local, claimed_at, budget);
            let one_by_one = futures_util::stream::iter(external)
                .map(|lease| async move {
                    if claimed_at.elapsed() > budget {
                        // Leave it: the claim lapses soon and another pass
                        // (here or on another server) takes it over.
                        return false;
                    }
                    match revocation::revoke(
                        state,
                        &lease,
                        RevokeReason::Expired,
                        None,
                        Some("reaper"),
                    )
                    .await
                    {
                        Ok(_) => true,
                        Err(e) => {
                            revocation::record_failure(
                                state,
                                &lease,
                                &e.to_string(),
                                self.max_attempts,
                            )
                            .await;
                            false
                        }
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect::<Vec<bool>>();
            let (bulk_done, results) = tokio::join!(bulk, one_by_one);
            done += bulk_done;
            done += results.iter().filter(|ok| **ok).count();
            if claimed_at.elapsed() > budget {
                tracing::warn!(
                    "reaper pass ran out of its claim time; the remaining due leases are retried in the next pass"
                );
                return done;
            }
            if n < BATCH {
                let _ = state.store.purge_expired_denials(now).await;
                return done;
            }
        }
    }
}
