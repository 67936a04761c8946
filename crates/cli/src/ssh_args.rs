//! `idmint ssh …` arguments (kept apart from `args.rs`, which many commands
//! share).

use clap::{Args, Subcommand};
use std::path::PathBuf;

pub const SSH_AFTER_HELP: &str = "\
How it works: idmint generates a fresh Ed25519 key in memory, the server
checks policy for this host and signs a one-time certificate for a
just-in-time account (wl_…) that the host's idmint agent creates for this
session only; then the real `ssh` runs with that key, the certificate and a
known_hosts file trusting idmint's host CA (no trust on first use). Key,
certificate and known_hosts live in a private temporary directory that is
removed (the key overwritten first) when ssh exits. The account is removed
when the session ends or the certificate expires.

Examples:
  idmint ssh web-1                                 # interactive shell
  idmint ssh deploy@web-1 -- ./release.sh --now    # role `deploy`, run a command
  idmint ssh web-1 --ttl 5m --ssh-option ServerAliveInterval=15
  idmint ssh web-1 --print                         # show the ssh command, keep the files
  idmint ssh known-hosts >> ~/.ssh/known_hosts     # trust idmint's host CA
  idmint ssh sign ci-deploy --public-key id_ed25519.pub > id_ed25519-cert.pub
  idmint ssh host-token web-1                      # (admin) token for `idmint agent enroll`

Exit code: ssh's own (255 for ssh errors); 2 when policy denies.";

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SshArgs {
    #[command(subcommand)]
    pub command: Option<SshCommand>,

    /// The host as named in the server's config, optionally with the role
    /// to use (`deploy@web-1`); without a role the server picks the only
    /// ssh role policy permits you on that host.
    #[arg(value_name = "[ROLE@]HOST", required = true)]
    pub target: Option<String>,

    /// Requested lifetime of the certificate and account (e.g. 10m);
    /// capped by the role and policy.
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,

    /// Extra `ssh -o` option (repeatable), e.g. `--ssh-option ServerAliveInterval=15`.
    #[arg(long = "ssh-option", value_name = "OPTION")]
    pub ssh_options: Vec<String>,

    /// Print the ssh command line and the paths of the key, certificate and
    /// known_hosts instead of running ssh (the files are kept for debugging:
    /// delete the directory yourself).
    #[arg(long)]
    pub print: bool,

    /// The command to run on the host (after `--`); an interactive shell
    /// when absent.
    #[arg(last = true, value_name = "COMMAND")]
    pub remote_command: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum SshCommand {
    /// Print `@cert-authority` lines trusting idmint's SSH host CA(s), for
    /// ~/.ssh/known_hosts.
    KnownHosts(KnownHostsArgs),
    /// Sign a public key for a certificate-mode role (static principals, no
    /// agent): prints the certificate line.
    Sign(SshSignArgs),
    /// Create a single-use join token for a host's agent (admin).
    HostToken(HostTokenArgs),
}

#[derive(Debug, Args)]
pub struct KnownHostsArgs {
    /// Host pattern the CA is trusted for (known_hosts syntax).
    #[arg(long, default_value = "*", value_name = "PATTERN")]
    pub hosts: String,
}

#[derive(Debug, Args)]
pub struct SshSignArgs {
    /// A role with `ssh = { mode = "certificate", principals = [...] }`.
    pub role: String,
    /// The OpenSSH public key file to certify (`-` for stdin); only
    /// ssh-ed25519 keys are accepted.
    #[arg(long, value_name = "FILE")]
    pub public_key: PathBuf,
    /// Requested lifetime (e.g. 5m); capped by the role and policy.
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
}

#[derive(Debug, Args)]
pub struct HostTokenArgs {
    /// The host, as named in the server's `[[issuer.ssh]]` config.
    pub host: String,
}
