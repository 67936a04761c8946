//! One module per command group. Each command parses nothing (clap did)
//! and decides nothing (the server did): it calls the client, formats the
//! answer and picks the exit code.

mod agent;
mod approle;
mod approvals;
mod audit;
mod aws;
mod creds;
mod demo;
mod dev;
mod exec;
mod leases;
mod login;
mod policy;
mod policy_drafts;
mod proxy;
mod secret;
mod server;
mod ssh;
mod status;
mod store;
mod target;
mod token_exchange;

use crate::args::{Cli, Command, OutputFormat};
use crate::connection::TokenSource;
use anyhow::{bail, Result};
use idmint_client::ClientError;
use std::process::ExitCode;

/// How a command ended, beyond errors (which are exit code 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success,
    /// Ran fine and found problems (e.g. `audit verify`).
    Problems,
    /// Policy refused the request.
    Denied,
    /// The exit code of the command `idmint exec` ran.
    Code(u8),
}

impl Exit {
    pub fn code(self) -> ExitCode {
        match self {
            Exit::Success => ExitCode::SUCCESS,
            Exit::Problems => ExitCode::from(1),
            Exit::Denied => ExitCode::from(2),
            Exit::Code(code) => ExitCode::from(code),
        }
    }
}

/// Output formats other than `env`, for commands where `env` has no meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

fn text_or_json(output: OutputFormat, command: &str) -> Result<Format> {
    match output {
        OutputFormat::Text => Ok(Format::Text),
        OutputFormat::Json => Ok(Format::Json),
        OutputFormat::Env => {
            bail!(
                "`--output env` is only supported by `creds` and `token-exchange`, not `{command}`"
            )
        }
        OutputFormat::Uri => {
            bail!(
                "`--output uri` is only supported by `creds` (for database roles), not `{command}`"
            )
        }
    }
}

/// Policy refused the request: say why on stderr, exit with 2.
fn denied(e: &ClientError) -> Exit {
    eprintln!("denied: {e}");
    Exit::Denied
}

/// Add what to do about an error from a call made with a session token.
fn session_error(e: ClientError, source: &TokenSource) -> anyhow::Error {
    if e.is_unauthenticated() {
        let fix = match source {
            TokenSource::Env => {
                "the token in IDMINT_TOKEN was refused: unset it or set a fresh one"
            }
            TokenSource::Cache(_) => "run `idmint login` again",
        };
        anyhow::Error::new(e).context(fix)
    } else {
        e.into()
    }
}

pub async fn run(cli: Cli) -> Result<Exit> {
    let global = &cli.global;
    match cli.command {
        Command::Server(args) => server::run(args).await,
        Command::Login(args) => {
            login::login(global, text_or_json(global.output, "login")?, args).await
        }
        Command::Logout => login::logout(global, text_or_json(global.output, "logout")?).await,
        Command::Whoami => login::whoami(global, text_or_json(global.output, "whoami")?).await,
        Command::Approle(cmd) => {
            approle::run(global, text_or_json(global.output, "approle")?, cmd).await
        }
        Command::Creds(args) => creds::run(global, args).await,
        Command::Exec(args) => exec::run(global, args).await,
        Command::TokenExchange(args) => token_exchange::run(global, args).await,
        Command::Leases(cmd) => {
            leases::run(global, text_or_json(global.output, "leases")?, cmd).await
        }
        Command::Target(cmd) => {
            target::run(global, text_or_json(global.output, "target")?, cmd).await
        }
        Command::Secret(cmd) => {
            secret::run(global, text_or_json(global.output, "secret")?, cmd).await
        }
        Command::Audit(cmd) => audit::run(global, text_or_json(global.output, "audit")?, cmd).await,
        Command::Store(cmd) => store::run(text_or_json(global.output, "store")?, cmd).await,
        Command::Approvals(cmd) => {
            approvals::run(global, text_or_json(global.output, "approvals")?, cmd).await
        }
        Command::Policy(cmd) => {
            policy::run(global, text_or_json(global.output, "policy")?, cmd).await
        }
        Command::Dev(cmd) => dev::run(global, text_or_json(global.output, "dev")?, cmd).await,
        Command::Status => status::run(global, text_or_json(global.output, "status")?).await,
        Command::Ssh(args) => ssh::run(global, args).await,
        Command::Demo(args) => demo::run(text_or_json(global.output, "demo")?, args).await,
        Command::Aws(cmd) => aws::run(global, cmd).await,
        Command::Agent(cmd) => agent::run(global, text_or_json(global.output, "agent")?, cmd).await,
        Command::Proxy(args) => proxy::run(args).await,
    }
}
