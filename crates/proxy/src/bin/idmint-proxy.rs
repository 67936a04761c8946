//! The egress proxy as a standalone binary: `idmint-proxy CONFIG`.
//!
//! The same proxy as `idmint proxy --config CONFIG`, without the rest of
//! the idmint CLI: for hosts (or network namespaces, containers) that only
//! need the proxy. Prints `READY <listen> <transparent_listen or ->` on
//! stdout once listening, so a supervisor or test can wait for it; logs go
//! to stderr (`RUST_LOG`, default `info`); stops on SIGINT/SIGTERM.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args_os().skip(1);
    let (Some(path), None) = (args.next(), args.next()) else {
        eprintln!("usage: idmint-proxy CONFIG (a proxy.toml, see docs/proxy.md)");
        return ExitCode::from(2);
    };
    match run(std::path::Path::new(&path)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idmint-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(path: &std::path::Path) -> Result<(), idmint_proxy::ProxyError> {
    let config = idmint_proxy::ProxyConfig::load(path)?;
    let bound = idmint_proxy::Proxy::new(config)?.bind().await?;
    let listen = bound.local_addr()?;
    let transparent = bound
        .transparent_addr()?
        .map_or_else(|| "-".to_string(), |a| a.to_string());
    println!("READY {listen} {transparent}");
    bound.serve_until(stopped()).await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn stopped() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
