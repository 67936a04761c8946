//! The idmint server: HTTP API, policy, issuers, leases, audit.
//!
//! Request path: proof → [`idmint_authn`] → `Identity` → Cedar policy
//! ([`idmint_core::PolicyBundle`]) → issuer ([`idmint_issuers`]) → lease
//! ([`idmint_store`]) → audit ([`idmint_audit`]) → response. See
//! `issuance.rs` for the invariants that hold along it.

mod anomaly;
mod app;
mod approle;
mod audit_events;
mod aws_iam;
pub mod config;
mod demo_idp;
mod dev;
mod error;
mod governance;
mod issuance;
mod limits;
mod metrics;
pub mod policy_source;
mod reaper;
mod revocation;
mod routes;
mod session_auth;
mod ssh;
mod startup;
mod state;
mod static_secrets;
mod store_sync;
mod targets;
mod tls;
mod unix_socket;
mod vault;

pub use dev::{SAMPLE_POLICY, SAMPLE_ROLES};

use std::net::SocketAddr;
use std::path::PathBuf;

/// How `idmint server` was invoked.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// `idmint.toml`; required unless `dev`.
    pub config: Option<PathBuf>,
    /// Development mode: SQLite + generated keys in `data_dir` (a temp dir
    /// when None), the built-in demo OIDC issuer, the sample policy, plain
    /// HTTP on loopback only.
    pub dev: bool,
    pub data_dir: Option<PathBuf>,
    /// Overrides `[server] listen`.
    pub listen: Option<SocketAddr>,
    /// Overrides `[storage]`: `sqlite://PATH` or `postgres://…`.
    pub store: Option<String>,
}

/// Sent once the listener is bound, so callers (tests, `idmint demo`) learn
/// the port without racing.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub addr: SocketAddr,
    /// `http(s)://addr`
    pub base_url: String,
    /// Where the dev server keeps its files (db, keys, audit log).
    pub data_dir: PathBuf,
    pub audit_file: Option<PathBuf>,
    /// Issuer URL of the built-in demo IdP (`{base_url}/demo-idp`), dev only.
    pub demo_issuer: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Startup(String),
}

/// Run until SIGINT/SIGTERM.
pub async fn serve(
    opts: ServeOptions,
    ready: Option<tokio::sync::oneshot::Sender<ServerInfo>>,
) -> Result<(), ServerError> {
    let (listener, mut cfg, data_dir, demo) = if opts.dev {
        let listen = opts
            .listen
            .unwrap_or_else(|| SocketAddr::from(dev::DEFAULT_DEV_LISTEN));
        if !listen.ip().is_loopback() {
            return Err(ServerError::Config(format!(
                "--dev serves plain HTTP and a demo IdP that mints tokens for anyone: it only listens on loopback, not {listen}"
            )));
        }
        let data_dir = opts.data_dir.clone().unwrap_or_else(dev::default_data_dir);
        let listener = bind(listen).await?;
        let addr = listener
            .local_addr()
            .map_err(|e| ServerError::Startup(e.to_string()))?;
        let cfg_path = dev::prepare(&data_dir, addr).map_err(ServerError::Startup)?;
        let (mut cfg, _) = config::IdmintConfig::load(&cfg_path)
            .map_err(|e| ServerError::Config(e.to_string()))?;
        cfg.resolve_paths(&data_dir);
        let demo = demo_idp::DemoIdp::new(&format!("http://{addr}"))
            .map_err(|e| ServerError::Startup(e.to_string()))?;
        (listener, cfg, data_dir, Some(demo))
    } else {
        let (cfg, base) = load_config(&opts)?;
        let listener = bind(cfg.server.listen).await?;
        (listener, cfg, base, None)
    };
    if let Some(l) = opts.listen {
        if !opts.dev {
            cfg.server.listen = l;
        }
    }
    if let Some(url) = &opts.store {
        cfg.storage.store_override = Some(
            idmint_store::StoreLocation::parse(url)
                .map_err(|e| ServerError::Config(format!("--store: {e}")))?,
        );
    }
    let addr = listener
        .local_addr()
        .map_err(|e| ServerError::Startup(e.to_string()))?;
    let built = startup::build(&cfg, opts.dev, demo).await?;
    let state = built.state;
    let client_auth = state
        .mtls
        .listener_verifier()
        .map_err(|e| ServerError::Config(e.to_string()))?;
    let tls = match &cfg.server.tls {
        Some(t) => {
            Some(tls::server_config(&t.cert, &t.key, client_auth).map_err(ServerError::Config)?)
        }
        None => None,
    };
    // Finish admin rotations a crash left half-done (in the background: a
    // target that is down must not delay start-up).
    for (name, issuer) in &state.issuers {
        let (state, name, issuer) = (state.clone(), name.clone(), issuer.clone());
        tokio::spawn(async move {
            targets::resume_pending_rotation(
                state.store.as_ref(),
                &state.envelope,
                issuer.as_ref(),
                &name,
            )
            .await;
        });
    }
    for v in &built.verifiers {
        v.spawn_refresh();
        let v = v.clone();
        // Keys load in the background: a slow IdP must not block start-up
        // (the demo IdP is this very server, not serving yet).
        tokio::spawn(async move {
            if let Err(e) = v.prefetch().await {
                tracing::warn!(auth = v.name(), error = %e, "could not load the issuer's signing keys yet; will retry");
            }
        });
    }
    reaper::LeaseReaper {
        interval: cfg.reaper.interval.as_duration(),
        max_attempts: cfg.reaper.max_attempts,
        pending_grace: cfg.reaper.pending_grace.as_duration(),
        claim_for: cfg.reaper.claim_for.as_duration(),
    }
    .spawn(state.clone());
    store_sync::spawn(state.clone());
    governance::sync::spawn(state.clone());
    // Bound before `ready`: a caller told the server is up can use it.
    let unix_listener = match &cfg.server.unix_socket {
        Some(path) => {
            Some(unix_socket::bind(path, cfg.server.unix_socket_mode, state.procfs.clone()).await?)
        }
        None => None,
    };

    let scheme = if tls.is_some() { "https" } else { "http" };
    let info = ServerInfo {
        addr,
        base_url: format!("{scheme}://{addr}"),
        data_dir,
        audit_file: state.audit_file.clone(),
        demo_issuer: state.demo_idp.as_ref().map(|d| d.issuer.clone()),
    };
    tracing::info!(
        address = %info.base_url,
        policy_version = state.bundle.load().version,
        data_dir = %info.data_dir.display(),
        "idmint listening"
    );
    if let Some(tx) = ready {
        let _ = tx.send(info);
    }
    let router = app::router(
        state.clone(),
        cfg.server.max_body_bytes,
        cfg.server.request_timeout.as_duration(),
    );
    let shutdown = async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return std::future::pending::<()>().await,
                };
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
    };
    // The Unix socket (if any) stops with the TCP listener.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_tx = std::sync::Arc::new(stop_tx);
    let stop_on_signal = stop_tx.clone();
    let shutdown = async move {
        shutdown.await;
        let _ = stop_on_signal.send(true);
    };
    let unix_task = unix_listener.map(|l| {
        tracing::info!(socket = %unix_socket_path(&cfg), "idmint listening on the Unix socket");
        unix_socket::spawn(l, router.clone(), stop_rx)
    });
    let result = match tls {
        Some(tls_cfg) => {
            let l = tls::TlsListener::new(listener, tls_cfg)
                .map_err(|e| ServerError::Startup(e.to_string()))?;
            axum::serve(
                l,
                router
                    .layer(axum::middleware::from_fn(routes::connection_layer))
                    .into_make_service_with_connect_info::<routes::Connection>(),
            )
            .with_graceful_shutdown(shutdown)
            .await
        }
        None => {
            axum::serve(
                listener,
                router
                    .layer(axum::middleware::from_fn(routes::connection_layer))
                    .into_make_service_with_connect_info::<routes::Connection>(),
            )
            .with_graceful_shutdown(shutdown)
            .await
        }
    };
    let _ = stop_tx.send(true);
    if let Some(task) = unix_task {
        let _ = task.await;
    }
    if let Err(e) = state.audit.close().await {
        tracing::error!(error = %e, "closing the audit log failed");
    }
    result.map_err(|e| ServerError::Startup(format!("server error: {e}")))
}

fn unix_socket_path(cfg: &config::IdmintConfig) -> String {
    cfg.server
        .unix_socket
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, ServerError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        ServerError::Startup(format!(
            "cannot listen on {addr}: {e} (is another idmint running? pick another address with --listen)"
        ))
    })
}

fn load_config(opts: &ServeOptions) -> Result<(config::IdmintConfig, PathBuf), ServerError> {
    let path = opts.config.as_ref().ok_or_else(|| {
        ServerError::Config("no configuration: pass --config idmint.toml, or --dev to try idmint with generated defaults".into())
    })?;
    let (mut cfg, _) =
        config::IdmintConfig::load(path).map_err(|e| ServerError::Config(e.to_string()))?;
    let base = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                p.to_path_buf()
            }
        })
        .unwrap_or_else(|| PathBuf::from("."));
    cfg.resolve_paths(&base);
    Ok((cfg, base))
}

/// `idmint server --check-config`: parse and validate everything (config,
/// policy dir, TLS files, key files) without binding or writing anything.
/// Returns a human summary.
pub fn check_config(opts: &ServeOptions) -> Result<String, ServerError> {
    let (mut cfg, _) = load_config(opts)?;
    if let Some(url) = &opts.store {
        cfg.storage.store_override = Some(
            idmint_store::StoreLocation::parse(url)
                .map_err(|e| ServerError::Config(format!("--store: {e}")))?,
        );
    }
    let issuers = startup::offline_issuers(&cfg)?;
    let (_, bundle) = startup::load_policy(&cfg, &issuers)?;
    if let Some(t) = &cfg.server.tls {
        // Throwaway CAs stand in for [[issuer.x509]] ones (not created yet).
        let throwaway = |name: &str| {
            let c = cfg.issuer.x509.iter().find(|e| e.get_ref().name == name)?;
            let key = idmint_issuers::x509::generate_ca_key().ok()?;
            idmint_issuers::x509::create_ca_certificate(c.get_ref(), &key).ok()
        };
        let mtls = idmint_authn::MtlsMethods::load(
            cfg.auth.mtls.iter().map(|e| e.get_ref().clone()).collect(),
            &throwaway,
        )
        .map_err(|e| ServerError::Config(e.to_string()))?;
        let client_auth = mtls
            .listener_verifier()
            .map_err(|e| ServerError::Config(e.to_string()))?;
        tls::server_config(&t.cert, &t.key, client_auth).map_err(ServerError::Config)?;
    }
    if let Some(k) = &cfg.seal.key_file {
        idmint_store::Envelope::load_root_key_file(k)
            .map_err(|e| ServerError::Config(format!("[seal] key_file: {e}")))?;
    }
    if let Some(var) = &cfg.seal.key_env {
        let v = std::env::var(var).map_err(|_| {
            ServerError::Config(format!(
                "[seal] key_env: environment variable {var} is not set"
            ))
        })?;
        idmint_store::Envelope::root_key_from_env(&v)
            .map_err(|e| ServerError::Config(format!("[seal] key_env {var}: {e}")))?;
    }
    let mut out = String::new();
    use std::fmt::Write;
    let _ = writeln!(out, "configuration OK");
    let _ = writeln!(
        out,
        "  listen:       {} ({})",
        cfg.server.listen,
        if cfg.server.tls.is_some() {
            "TLS"
        } else {
            "plain HTTP, loopback"
        }
    );
    let _ = writeln!(
        out,
        "  auth.oidc:    {}",
        cfg.auth
            .oidc
            .iter()
            .map(|o| o.get_ref().name.clone())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(location) = cfg.storage.location() {
        let _ = writeln!(out, "  storage:      {}", location.describe());
    }
    let _ = writeln!(
        out,
        "  issuers:      {}",
        startup::issuer_names(&cfg).join(", ")
    );
    let _ = writeln!(
        out,
        "  policy:       {} roles, {} Cedar policies from {}",
        bundle.roles.len(),
        bundle.policy_count(),
        cfg.policy_dir.display()
    );
    Ok(out)
}
