//! Keeps this server in step with the others sharing its store.
//!
//! With PostgreSQL several servers are active at once. What one of them
//! changes and the others must enforce immediately (a revoked session token,
//! a newly activated policy bundle) is announced by the store's change feed
//! ([`idmint_store::Store::subscribe`], `LISTEN/NOTIFY`) and applied here
//! within a round trip. The feed is best effort, so a periodic resync
//! reloads the same state from the store as a backstop, and so does every
//! [`StoreEvent::Resync`] (the feed reconnected after a database outage and
//! may have missed events). SQLite has no feed: one server owns the file,
//! and nothing changes behind its back.

use crate::governance::sync::pick_up_active;
use crate::state::AppState;
use idmint_core::UnixTime;
use idmint_store::StoreEvent;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// Backstop: how often the denylist and the active bundle are reloaded even
/// when no change was announced.
const RESYNC_EVERY: Duration = Duration::from_secs(30);

/// Starts following the store's change feed, if it has one.
pub fn spawn(state: Arc<AppState>) {
    let Some(mut feed) = state.store.subscribe() else {
        return;
    };
    tokio::spawn(async move {
        let mut resync = tokio::time::interval(RESYNC_EVERY);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = feed.recv() => match event {
                    Ok(event) => apply(&state, event).await,
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "fell behind the store's change feed; reloading");
                        resync_all(&state).await;
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = resync.tick() => resync_all(&state).await,
            }
        }
    });
}

async fn apply(state: &AppState, event: StoreEvent) {
    match event {
        StoreEvent::TokenDenied {
            token_id,
            expires_at,
        } => state.denylist.insert(&token_id, expires_at),
        StoreEvent::BundleActivated { version } => {
            if let Err(e) = pick_up_active(state).await {
                tracing::warn!(version, error = %e, "could not install a policy bundle activated by another server; retrying at the next resync");
            }
        }
        StoreEvent::BlobChanged { name } => {
            // Blobs are read from the store when used (target admin
            // secrets, enrolments); signing keys are loaded at start.
            tracing::debug!(blob = %name, "a stored blob changed on another server");
        }
        StoreEvent::Resync => resync_all(state).await,
    }
}

/// Reloads everything the feed carries from the store itself.
async fn resync_all(state: &AppState) {
    match state.store.denied_tokens(UnixTime::now()).await {
        Ok(denied) => {
            for (token_id, expires_at) in denied {
                state.denylist.insert(&token_id, expires_at);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not reload the token denylist from the store; retrying")
        }
    }
    if let Err(e) = pick_up_active(state).await {
        tracing::warn!(error = %e, "could not check the store for a newer policy bundle; retrying");
    }
}
