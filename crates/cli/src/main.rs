//! `idmint`: the command-line client and the server binary.
//!
//! Thin by design: parsing (`args`), talking to the server
//! (`idmint-client`), formatting (`output`). Decisions live in the server.

mod args;
mod aws_iam_login;
mod aws_process;
mod child_process;
mod commands;
mod confirm;
mod connection;
mod credential_env;
mod input;
mod jwt;
mod output;
mod session;
mod ssh_args;
mod sso;

use clap::Parser;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// Every `idmint` process (server, agent, proxy, client) allocates through
/// mimalloc: the server's request paths make many small, short-lived
/// allocations on several threads, where glibc's malloc/free cost ~14 % of
/// the CPU of an SSH certificate (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    init_logging(&cli.command);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(exit) => exit.code(),
        Err(e) => {
            // `{:#}` prints the whole context chain on one line.
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Logs go to stderr, filtered by `IDMINT_LOG`. The server logs at info by
/// default; client commands only warn, so their stdout/stderr stay readable.
fn init_logging(command: &args::Command) {
    let default = match command {
        // Long-running daemons log their lifecycle; one-shot commands stay quiet.
        args::Command::Server(_) | args::Command::Agent(_) => "info",
        _ => "warn",
    };
    let filter = EnvFilter::try_from_env("IDMINT_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
