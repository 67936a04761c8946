//! `idmint agent …` arguments (kept apart from `args.rs`, which many
//! commands share).

use clap::{Args, Subcommand};
use std::path::PathBuf;

/// Default state directory of the agent.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/idmint-agent";

pub const AGENT_AFTER_HELP: &str = "\
The agent runs as root on each SSH host. It pulls the host's grants from
the server (it never listens on a port), creates one just-in-time account
(wl_…) per grant with that grant's sudo rules, and removes the account and
everything it left when the session ends, the grant is revoked, or it
expires (enforced locally, also while the server is unreachable).

Setting up a host:
  idmint ssh host-token web-1                       # (admin, anywhere) prints a join token
  idmint agent enroll --server https://idmint.example:8443 --host web-1 --join-token -
  idmint agent install                              # review the sshd settings and checks
  idmint agent install --apply && systemctl reload ssh
  idmint agent run                                  # under systemd, as root
  idmint agent status";

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Enroll this host with the server using a single-use join token.
    #[command(after_help = ENROLL_AFTER_HELP)]
    Enroll(AgentEnrollArgs),

    /// Run the agent: follow the server's grants and manage the accounts.
    #[command(after_help = RUN_AFTER_HELP)]
    Run(AgentRunArgs),

    /// Show (or with --apply, write) the sshd configuration the agent needs.
    #[command(after_help = INSTALL_AFTER_HELP)]
    Install(AgentInstallArgs),

    /// Show the enrollment, the cached grants and the managed accounts.
    #[command(after_help = "Examples:\n  idmint agent status\n  idmint agent status -o json")]
    Status(AgentStateArgs),
}

const ENROLL_AFTER_HELP: &str = "\
Generates the agent's Ed25519 key (kept in the state directory, mode 0600;
only its public half is sent), sends it with the join token and sshd's host
public key, and stores the host certificate and the user CA the server
returns. The join token works once; get one with `idmint ssh host-token HOST`.
The server URL is --server (or IDMINT_ADDR).

Examples:
  idmint agent enroll --server https://idmint.example:8443 --host web-1 --join-token -  < token
  IDMINT_JOIN_TOKEN=idm_join_… idmint agent enroll --server … --host web-1";

#[derive(Debug, Args)]
pub struct AgentEnrollArgs {
    /// This host's name, as declared in the server's ssh issuer config.
    #[arg(long, value_name = "NAME")]
    pub host: String,

    /// The join token, or `-` to read it from stdin (keeps it out of `ps`
    /// and shell history).
    #[arg(
        long,
        env = "IDMINT_JOIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN|-"
    )]
    pub join_token: String,

    /// sshd's host public key to have certified.
    #[arg(
        long,
        default_value = "/etc/ssh/ssh_host_ed25519_key.pub",
        value_name = "FILE"
    )]
    pub host_key: PathBuf,

    #[command(flatten)]
    pub state: AgentStateArgs,
}

const RUN_AFTER_HELP: &str = "\
Runs in the foreground until SIGTERM or Ctrl-C; stopping it ends no session
and removes no account (the next start resumes). Uses the server recorded at
enrollment; a --server (or IDMINT_ADDR) other than the default overrides it.
Logs go to stderr; IDMINT_LOG=info shows every account change.

Examples:
  idmint agent run
  IDMINT_LOG=info idmint agent run --state-dir /var/lib/idmint-agent";

#[derive(Debug, Args)]
pub struct AgentRunArgs {
    #[command(flatten)]
    pub state: AgentStateArgs,

    /// Uids of just-in-time accounts, START..END (end exclusive). Uids are
    /// never reused; keep this range free of other users.
    #[arg(long, default_value = "2000000..2100000", value_name = "START..END")]
    pub uid_range: String,

    /// How often sessions and expiries are checked.
    #[arg(long, default_value = "500ms", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub scan_interval: std::time::Duration,
}

const INSTALL_AFTER_HELP: &str = "\
Without --apply, prints the sshd settings and checks the host (sudo reads
/etc/sudoers.d, sshd reads sshd_config.d, the account tools exist). With
--apply, writes /etc/ssh/idmint_user_ca.pub, the host certificate next to
the host key and /etc/ssh/sshd_config.d/idmint.conf, then runs `sshd -t`
(and takes the drop-in back if sshd rejects it). Reload sshd yourself.

Note: `AuthorizedKeysFile none` turns off authorized_keys logins for every
user on this host: only idmint certificates are accepted.

Examples:
  idmint agent install
  idmint agent install --apply -o json";

#[derive(Debug, Args)]
pub struct AgentInstallArgs {
    /// Write the files (default: only print what would be written).
    #[arg(long)]
    pub apply: bool,

    #[command(flatten)]
    pub state: AgentStateArgs,
}

#[derive(Debug, Args)]
pub struct AgentStateArgs {
    /// The agent's state directory (key, enrollment, cached grants).
    #[arg(long, env = "IDMINT_AGENT_STATE_DIR", default_value = DEFAULT_STATE_DIR, value_name = "DIR")]
    pub state_dir: PathBuf,
}

#[cfg(test)]
mod tests {
    use crate::args::{AgentCommand, Cli, Command, OutputFormat};
    use clap::{CommandFactory, Parser};

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("idmint").chain(args.iter().copied()))
    }

    fn agent(args: &[&str]) -> AgentCommand {
        let mut all = vec!["agent"];
        all.extend_from_slice(args);
        match parse(&all).unwrap().command {
            Command::Agent(a) => a,
            other => panic!("expected agent, got {other:?}"),
        }
    }

    #[test]
    fn enroll_run_install_status_parse() {
        let AgentCommand::Enroll(e) = agent(&["enroll", "--host", "web-1", "--join-token", "-"])
        else {
            panic!("expected enroll")
        };
        assert_eq!((e.host.as_str(), e.join_token.as_str()), ("web-1", "-"));
        assert_eq!(
            e.host_key.to_str(),
            Some("/etc/ssh/ssh_host_ed25519_key.pub")
        );
        assert_eq!(e.state.state_dir.to_str(), Some(super::DEFAULT_STATE_DIR));
        assert!(
            parse(&["agent", "enroll", "--join-token", "-"]).is_err(),
            "--host is required"
        );

        let AgentCommand::Run(r) = agent(&[
            "run",
            "--uid-range",
            "3000000..3000100",
            "--scan-interval",
            "250ms",
            "--state-dir",
            "/tmp/s",
        ]) else {
            panic!("expected run")
        };
        assert_eq!(r.uid_range, "3000000..3000100");
        assert_eq!(r.scan_interval, std::time::Duration::from_millis(250));
        assert!(parse(&["agent", "run", "--scan-interval", "soon"]).is_err());

        let cli = parse(&["agent", "install", "--apply", "-o", "json"]).unwrap();
        assert_eq!(cli.global.output, OutputFormat::Json);
        assert!(matches!(cli.command, Command::Agent(AgentCommand::Install(ref i)) if i.apply));
        assert!(matches!(agent(&["status"]), AgentCommand::Status(_)));
    }

    #[test]
    fn every_agent_command_has_examples() {
        let mut cmd = Cli::command();
        let agent = cmd.find_subcommand_mut("agent").unwrap();
        assert!(agent
            .render_long_help()
            .to_string()
            .contains("Setting up a host"));
        for name in ["enroll", "run", "install", "status"] {
            let help = agent
                .find_subcommand_mut(name)
                .unwrap()
                .render_long_help()
                .to_string();
            assert!(help.contains("Examples:"), "{name}: {help}");
        }
    }
}
