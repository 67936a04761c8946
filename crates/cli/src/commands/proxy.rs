//! `idmint proxy`: run the egress proxy, or create its local CA.

use super::Exit;
use crate::args::{ProxyArgs, ProxyCommand};
use anyhow::{bail, Context, Result};

pub async fn run(args: ProxyArgs) -> Result<Exit> {
    if let Some(ProxyCommand::InitCa { cert, key }) = args.command {
        idmint_proxy::init_ca(&cert, &key)?;
        println!(
            "wrote CA certificate {} and key {} (trust the certificate in workloads; keep the \
             key private)",
            cert.display(),
            key.display()
        );
        return Ok(Exit::Success);
    }
    let Some(path) = args.config else {
        bail!("`idmint proxy` needs --config proxy.toml (or `idmint proxy init-ca`)");
    };
    let config = idmint_proxy::ProxyConfig::load(&path)?;
    let proxy = idmint_proxy::Proxy::new(config)?;
    if args.check_config {
        println!("proxy configuration {} is valid", path.display());
        return Ok(Exit::Success);
    }
    let bound = proxy.bind().await?;
    let addr = bound.local_addr()?;
    eprintln!("idmint proxy listening on {addr}");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    bound
        .serve_until(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        })
        .await;
    Ok(Exit::Success)
}
