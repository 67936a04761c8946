//! `idmint proxy`: the egress proxy and its local CA.

use clap::{Args, Subcommand};
use std::path::PathBuf;

pub const PROXY_AFTER_HELP: &str = "\
Examples:
  idmint proxy init-ca --cert proxy-ca.pem --key proxy-ca-key.pem
  idmint proxy --config proxy.toml --check-config
  idmint proxy --config proxy.toml
  HTTPS_PROXY=http://127.0.0.1:8720 curl --cacert proxy-ca.pem https://api.example.com/

See docs/proxy.md for the configuration reference.";

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ProxyArgs {
    #[command(subcommand)]
    pub command: Option<ProxyCommand>,

    /// Proxy configuration (proxy.toml).
    #[arg(long, value_name = "FILE", required = false)]
    pub config: Option<PathBuf>,

    /// Validate the configuration, secrets and CA files, then exit.
    #[arg(long)]
    pub check_config: bool,
}

#[derive(Debug, Subcommand)]
pub enum ProxyCommand {
    /// Create the local CA that intercepted TLS connections are signed with
    /// (workloads must trust the certificate; the key stays private).
    InitCa {
        /// Where to write the CA certificate (PEM, 0644).
        #[arg(long, value_name = "FILE", default_value = "proxy-ca.pem")]
        cert: PathBuf,
        /// Where to write the CA private key (PEM, 0600).
        #[arg(long, value_name = "FILE", default_value = "proxy-ca-key.pem")]
        key: PathBuf,
    },
}
