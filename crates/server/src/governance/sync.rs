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

/// Longest pause between two prunes of finished drafts.
const MAX_PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Starts the loop; it stops when the runtime shuts down.
///
/// Every tick reads only the break-glass index. Pruning (which reads every
/// draft) runs at the first tick and then every hour, or every tenth of
/// `draft_retention` when that is shorter, so a draft outlives its
/// retention by at most a tenth.
pub fn spawn(state: Arc<AppState>) {
    let every = state.governance.config.sync_interval.as_duration();
    let retention = state.governance.config.draft_retention;
    let prune_every = (retention / 10).min(MAX_PRUNE_EVERY);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut indexed = false;
        let mut last_prune: Option<std::time::Instant> = None;
        loop {
            tick.tick().await;
            if !indexed {
                match super::draft::rebuild_break_glass_index(state.store.as_ref()).await {
                    Ok(()) => indexed = true,
                    Err(e) => {
                        tracing::error!(error = %e, "could not index break-glass drafts; retrying")
                    }
                }
            }
            if let Err(e) = revert_expired(&state).await {
                tracing::error!(error = %e, "could not revert an expired break-glass policy activation; retrying");
            }
            if last_prune.is_none_or(|t| t.elapsed() >= prune_every) {
                last_prune = Some(std::time::Instant::now());
                let now = idmint_core::UnixTime::now().secs();
                match super::prune::prune(state.store.as_ref(), now, retention.as_secs()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        drafts = n,
                        "pruned finished policy drafts past [governance] draft_retention"
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "could not prune old policy drafts; retrying later")
                    }
                }
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
