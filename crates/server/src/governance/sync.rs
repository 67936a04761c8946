//! The background loop that reverts expired break-glass activations, and
//! [`pick_up_active`], which installs a bundle another server activated.
//!
//! Activations by other servers arrive through the store's change feed
//! (`crate::store_sync`: `LISTEN/NOTIFY` plus a periodic resync). SQLite has
//! one server per file, so nothing is activated behind its back. This loop
//! therefore does not poll the active bundle as well: that was a second
//! mechanism reading the whole bundle from the store every tick.

use super::activation::{install, revert_expired};
use crate::startup::check_bundle;
use crate::state::AppState;
use idmint_core::PolicyBundle;
use std::sync::Arc;

/// Starts the loop; it stops when the runtime shuts down.
pub fn spawn(state: Arc<AppState>) {
    let every = state.governance.config.sync_interval.as_duration();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = revert_expired(&state).await {
                tracing::error!(error = %e, "could not revert an expired break-glass policy activation; retrying");
            }
        }
    });
}

/// Installs the store's active bundle if it is newer than this server's.
pub async fn pick_up_active(state: &AppState) -> Result<(), String> {
    let Some(stored) = state
        .store
        .active_bundle()
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    if stored.version == state.bundle.load().version {
        return Ok(());
    }
    let bundle = PolicyBundle::from_sources(stored.version, stored.sources)
        .map_err(|e| format!("active policy v{}: {e}", stored.version))?;
    check_bundle(&bundle, &state.issuers)
        .map_err(|e| format!("active policy v{}: {e}", stored.version))?;
    tracing::info!(
        version = bundle.version,
        "installing policy bundle activated elsewhere"
    );
    install(state, bundle);
    Ok(())
}
