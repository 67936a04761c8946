//! `idmint agent run`: the three loops of a running agent.
//!
//! * **grants** (async): long-poll the server; every answer is cached in the
//!   state directory and handed to the reconciler. While the server is
//!   unreachable it retries with backoff and the reconciler keeps enforcing
//!   the cached grants (expiry included).
//! * **reconcile** (a dedicated thread, because `useradd` and friends
//!   block): reconcile on every new desired state and at least every
//!   `tick`, which is also the session-detection interval.
//! * **events** (async): send the [`EventOutbox`] in order, retrying with
//!   backoff while the server is unreachable; the outbox is on disk, so
//!   events survive an agent restart.
//!
//! Stopping the agent (SIGTERM, Ctrl-C) ends no session and removes no
//! account: the next start resumes from the state directory.

use crate::accounts::HostAccounts;
use crate::error::{AgentError, Result};
use crate::host::HostSystem;
use crate::outbox::EventOutbox;
use crate::reconcile::{DesiredState, GrantReconciler};
use crate::signing::AgentKey;
use crate::state::{CachedGrants, StateDir, DEFAULT_STATE_DIR};
use crate::transport::ServerLink;
use crate::uid_allocator::{UidAllocator, UidRange};
use idmint_core::UnixTime;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::Duration;

/// Retry backoff bounds for the server.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long a stopping agent still tries to deliver queued events.
const FLUSH_ON_STOP: Duration = Duration::from_secs(3);

/// How to run the agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub state_dir: PathBuf,
    /// Server URL instead of the one recorded at enrollment.
    pub server_override: Option<String>,
    /// Extra CA certificate (PEM) for the server's TLS certificate.
    pub ca_cert: Option<PathBuf>,
    /// Where accounts are made (the local machine in production).
    pub host: HostSystem,
    pub uid_range: UidRange,
    /// Reconciliation and session-scan interval.
    pub tick: Duration,
    /// How long one grants request may wait on the server.
    pub long_poll: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            server_override: None,
            ca_cert: None,
            host: HostSystem::local(),
            uid_range: UidRange::DEFAULT,
            tick: Duration::from_millis(500),
            long_poll: Duration::from_secs(25),
        }
    }
}

/// Run until `shutdown` completes. Fails only when the agent cannot start
/// (not enrolled, unreadable state); everything after that is retried.
pub async fn run_agent(config: AgentConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    let state = StateDir::open(&config.state_dir)?;
    let enrollment = state.require_enrollment()?;
    let key = Arc::new(AgentKey::load(&state)?);
    let server = config
        .server_override
        .clone()
        .unwrap_or_else(|| enrollment.server.clone());
    let link = ServerLink::new(&server, config.ca_cert.as_deref())?;
    let cached = state.cached_grants()?;
    let initial = cached
        .as_ref()
        .map(DesiredState::from_cache)
        .unwrap_or_else(DesiredState::empty);
    let since = cached.as_ref().map(|c| c.grants.revision).unwrap_or(0);
    let accounts = HostAccounts::new(
        config.host.clone(),
        UidAllocator::new(state.clone(), config.uid_range),
    );
    let reconciler = GrantReconciler::new(accounts, state.clone())?;
    tracing::info!(host = %enrollment.host, server = %server, cached_grants = initial.grants.len(), "agent starting");

    let (desired_tx, desired_rx) = std_mpsc::channel::<DesiredState>();
    let outbox = Arc::new(EventOutbox::open(state.clone())?);
    if !outbox.is_empty() {
        tracing::info!(
            pending = outbox.len(),
            "delivering events left from the previous run"
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reconcile_thread = {
        let stop = stop.clone();
        let tick = config.tick;
        std::thread::Builder::new()
            .name("idmint-agent-reconcile".into())
            .spawn({
                let outbox = outbox.clone();
                move || reconcile_loop(reconciler, initial, desired_rx, &outbox, tick, &stop)
            })
            .map_err(|e| AgentError::Config(format!("cannot start the reconcile thread: {e}")))?
    };

    let host_name = enrollment.host.clone();
    let poll = poll_grants(
        &link,
        &key,
        &host_name,
        &state,
        desired_tx,
        since,
        config.long_poll,
    );
    let (flush_tx, flush_rx) = tokio::sync::watch::channel(false);
    let send = send_events(&link, &key, &host_name, &outbox, flush_rx);
    tokio::pin!(send);
    // `poll` only ends when the reconcile thread is gone (its channel
    // closed), `send` only when stopping: either is a failure, reported so
    // that the service manager restarts the agent.
    let requested = tokio::select! {
        () = shutdown => true,
        () = poll => false,
        () = &mut send => false,
    };
    tracing::info!("agent stopping; accounts and sessions stay as they are");
    stop.store(true, Ordering::SeqCst);
    // The poll future (and its sender) is gone, so the thread ends at its
    // next tick.
    let joined = tokio::task::spawn_blocking(move || reconcile_thread.join()).await;
    let _ = flush_tx.send(true);
    let _ = tokio::time::timeout(FLUSH_ON_STOP, send).await;
    let thread_ok = matches!(joined, Ok(Ok(())));
    if requested && thread_ok {
        Ok(())
    } else {
        Err(AgentError::Config(
            "the reconcile loop stopped unexpectedly (see the log above); restart the agent: it resumes from its state directory".into(),
        ))
    }
}

fn reconcile_loop(
    mut reconciler: GrantReconciler,
    mut desired: DesiredState,
    updates: std_mpsc::Receiver<DesiredState>,
    outbox: &EventOutbox,
    tick: Duration,
    stop: &AtomicBool,
) {
    loop {
        match updates.recv_timeout(tick) {
            Ok(update) => desired = update,
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                // The poller is gone but not stopping (cannot happen):
                // keep enforcing, on the tick.
                std::thread::sleep(tick);
            }
        }
        // Take the newest desired state if several queued up.
        while let Ok(update) = updates.try_recv() {
            desired = update;
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        outbox.push(reconciler.reconcile(&desired, UnixTime::now().secs()));
    }
}

async fn poll_grants(
    link: &ServerLink,
    key: &AgentKey,
    host: &str,
    state: &StateDir,
    desired: std_mpsc::Sender<DesiredState>,
    mut since: u64,
    wait: Duration,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        match link.grants(key, host, since, wait).await {
            Ok(grants) => {
                backoff = BACKOFF_MIN;
                let local = UnixTime::now().secs();
                let cached = CachedGrants {
                    clock_offset_secs: grants.now.saturating_sub(local),
                    received_at: local,
                    grants,
                };
                if cached.clock_offset_secs.abs() > idmint_proto::ssh::AGENT_CLOCK_SKEW_SECS {
                    tracing::warn!(offset_secs = cached.clock_offset_secs, "this host's clock differs from the server's; expiry follows the server's clock");
                }
                since = cached.grants.revision;
                if let Err(e) = state.save_grants(&cached) {
                    tracing::error!(error = %e, "cannot cache the grants; expiry after a restart without the server may be late");
                }
                if desired.send(DesiredState::from_cache(&cached)).is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot get grants from the server; enforcing the cached ones");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

async fn send_events(
    link: &ServerLink,
    key: &AgentKey,
    host: &str,
    outbox: &EventOutbox,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let Some(event) = outbox.front() else {
            if *stopping.borrow() {
                return;
            }
            tokio::select! {
                () = outbox.arrived() => {}
                _ = stopping.changed() => {}
            }
            continue;
        };
        match link.post_event(key, host, &event).await {
            Ok(_) => {
                backoff = BACKOFF_MIN;
                outbox.remove_delivered(&event);
            }
            Err(e) if e.is_retryable() => {
                if *stopping.borrow() {
                    return;
                }
                tracing::warn!(error = %e, queued = outbox.len(), "cannot deliver events; retrying");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stopping.changed() => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(e) => {
                tracing::error!(error = %e, lease_id = %event.lease_id, "the server refused an event; dropping it");
                outbox.remove_delivered(&event);
            }
        }
    }
}
