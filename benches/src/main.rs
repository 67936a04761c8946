//! `idmint-bench`: load benchmark for idmint's login and token exchange.
//!
//! It starts an OIDC issuer it controls and the real `idmint server` (a
//! child process, persistent SQLite store, audit file on), pre-mints
//! distinct CI tokens, and drives N keep-alive HTTP/1.1 connections with a
//! closed-loop generator whose own cost is measured and reported. It builds
//! nothing: `cargo build --release -p idmint -p idmint-bench` first.
//!
//! Modules: `cli` (arguments), `fixture` (issuer + server + preflight),
//! `tokens`/`supply` (minting and pools), `http` (one connection),
//! `scenario` (what each scenario sends), `loadgen` (the generator),
//! `procstat` (CPU and RSS from /proc), `report` (table and JSON), `suite`
//! and `memory` (the two commands).

mod chart;
mod cli;
mod compare;
mod error;
mod fixture;
mod http;
mod jit;
mod loadgen;
mod memory;
mod openbao;
mod procstat;
mod progress;
mod proxy;
mod quiet;
mod report;
mod scale;
mod scenario;
mod suite;
mod supply;
mod tokens;
mod workload;

use clap::Parser;

/// As in the `idmint` binary: the proxy scenario runs `idmint-proxy` in this
/// process, and should allocate the way `idmint proxy` does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use cli::{Cli, Command, CommonArgs, OutputFormat};
use error::{BenchError, Result};
use report::{Machine, ResultsDocument};
use std::path::PathBuf;
use std::process::ExitCode;

/// What every command needs besides its own arguments.
pub struct RunEnv {
    pub idmint_bin: PathBuf,
    pub clock_ticks: u64,
    pub mint_threads: usize,
    pub quiet: bool,
    /// `--wait-quiet` and `--quiet-threshold`.
    pub wait_quiet: Option<(std::time::Duration, f64)>,
}

impl RunEnv {
    fn new(common: &CommonArgs) -> Result<Self> {
        let idmint_bin = match &common.idmint_bin {
            Some(p) => p.clone(),
            None => default_server_binary()?,
        };
        if !idmint_bin.is_file() {
            return Err(BenchError::ServerBinaryMissing { path: idmint_bin });
        }
        let cores = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1);
        Ok(Self {
            idmint_bin,
            clock_ticks: procstat::clock_ticks(),
            mint_threads: common.mint_threads.unwrap_or(cores).max(1),
            quiet: common.quiet,
            wait_quiet: common.wait_quiet.map(|d| (d, common.quiet_threshold)),
        })
    }

    /// Waits for a quiet machine when `--wait-quiet` was given.
    pub async fn settle(&self, server_pid: Option<u32>) {
        if let Some((max_wait, threshold)) = self.wait_quiet {
            quiet::wait(max_wait, threshold, server_pid, self.clock_ticks, |line| {
                self.note(line)
            })
            .await;
        }
    }

    /// A progress note on stderr (stdout carries only the results).
    pub fn note(&self, line: &str) {
        eprintln!("{line}");
    }
}

/// Writes `doc` to `--json-path`, or to `<name>.json` next to the default
/// results file; returns where it went.
fn write_named_results(common: &CommonArgs, name: &str, doc: serde_json::Value) -> Result<PathBuf> {
    let path = common.json_path.clone().unwrap_or_else(|| {
        report::default_json_path()
            .parent()
            .map(|d| d.join(format!("{name}.json")))
            .unwrap_or_default()
    });
    report::write_value(&path, &doc)?;
    Ok(path)
}

/// `idmint` next to this executable: `cargo build --release -p idmint -p
/// idmint-bench` puts both in `target/release/`.
fn default_server_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| BenchError::io("locating this executable", e))?;
    let dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    Ok(dir.join(format!("idmint{}", std::env::consts::EXE_SUFFIX)))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let common = match &cli.command {
        Command::LoginExchange(a) => &a.common,
        Command::Memory(a) => &a.common,
        Command::All(a) => &a.common,
        Command::Scale(a) => &a.common,
        Command::Proxy(a) => &a.common,
        Command::Jit(a) => &a.common,
    };
    let runtime = if common.client_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(common.client_threads)
            .enable_all()
            .build()
    };
    let result = match runtime {
        Ok(rt) => rt.block_on(run_until_interrupted(&cli)),
        Err(e) => Err(BenchError::io("starting the load generator's runtime", e)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idmint-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the command; on Ctrl-C or SIGTERM the command's future is dropped,
/// which stops the server child process (its handle kills it on drop)
/// instead of leaving it running.
async fn run_until_interrupted(cli: &Cli) -> Result<()> {
    tokio::select! {
        result = run(cli) => result,
        signal = interrupted() => Err(BenchError::Interrupted(signal)),
    }
}

/// Resolves with the signal's name on SIGINT or SIGTERM.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        // Without a SIGTERM handler, Ctrl-C still works.
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

async fn run(cli: &Cli) -> Result<()> {
    let machine = Machine::detect();
    let date = report::now_rfc3339();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    match &cli.command {
        Command::LoginExchange(args) => {
            let env = RunEnv::new(&args.common)?;
            env.note(&format!(
                "{date}: {}; server binary {}",
                machine.describe(),
                env.idmint_bin.display()
            ));
            let records = suite::run(args, &env).await?;
            println!("idmint login/exchange benchmark, {date}");
            println!("{}", machine.describe());
            println!(
                "{} s measured after {} s warm-up per run; generator: {} runtime thread(s), closed loop, one request in flight per connection",
                args.duration.as_secs_f64(),
                args.warmup.as_secs_f64(),
                args.common.client_threads.max(1)
            );
            println!();
            print!("{}", report::runs_table(&records));
            println!("req/s counts 2xx answers; CPU-s/1k is server CPU per 1000 of them; srv/gen cores: average cores busy in the server / the generator.");
            if records.iter().any(|r| r.tokens_ran_out) {
                println!("* the token pool ran out before the end of the run: raise --tokens");
            }
            if args.common.output == OutputFormat::Json {
                let settings = serde_json::json!({
                    "duration_s": args.duration.as_secs_f64(),
                    "warmup_s": args.warmup.as_secs_f64(),
                    "client_threads": args.common.client_threads.max(1),
                    "replay_protection": args.common.replay_protection,
                    "token_lifetime_s": args.common.token_lifetime.as_secs(),
                    "tokens": args.tokens,
                    "wait_quiet_s": args.common.wait_quiet.map(|d| d.as_secs()),
                    "quiet_threshold_cores": args.common.quiet_threshold,
                });
                write_results(
                    &args.common,
                    &machine,
                    date,
                    command,
                    settings,
                    &records,
                    None,
                )?;
            }
        }
        Command::Memory(args) => {
            let env = RunEnv::new(&args.common)?;
            env.note(&format!(
                "{date}: {}; server binary {}",
                machine.describe(),
                env.idmint_bin.display()
            ));
            let memory = memory::run(args, &env).await?;
            println!(
                "idmint memory benchmark: {} logins, {} per batch, {} connections, {date}",
                args.logins, args.batch, args.concurrency
            );
            println!("{}", machine.describe());
            println!();
            print!("{}", memory.table());
            if args.common.output == OutputFormat::Json {
                let settings = serde_json::json!({
                    "logins": args.logins,
                    "batch": args.batch,
                    "concurrency": args.concurrency,
                    "alg": args.alg.as_str(),
                    "client_threads": args.common.client_threads.max(1),
                    "replay_protection": args.common.replay_protection,
                    "token_lifetime_s": args.common.token_lifetime.as_secs(),
                });
                write_results(
                    &args.common,
                    &machine,
                    date,
                    command,
                    settings,
                    &[],
                    Some(&memory),
                )?;
            }
        }
        Command::All(args) => {
            let env = RunEnv::new(&args.common)?;
            env.note(&format!(
                "{date}: {}; server binary {}",
                machine.describe(),
                env.idmint_bin.display()
            ));
            let rows = compare::run(args, &env).await?;
            let title = match args.peer {
                Some(_) => "idmint vs OpenBao 2.7.2",
                None => "idmint",
            };
            println!("{title} comparison, {date}");
            println!("{}", machine.describe());
            println!(
                "{} s measured after {} s warm-up per run (lease-revoke: no warm-up); closed loop, one operation in flight per connection; pg-creds and lease-revoke at {} connections",
                args.duration.as_secs_f64(),
                args.warmup.as_secs_f64(),
                args.pg_concurrency
            );
            println!();
            println!("{}", compare::rows::table(&rows));
            println!("req/s counts successful operations (login-exchange on OpenBao is a login plus an identity-token read); CPU-s/1k req is server CPU per 1000 of them; other cores: CPU used meanwhile by everything else (PostgreSQL for pg-creds/lease-revoke, other processes); * = input ran out before the end of the window.");
            let dir = args
                .common
                .json_path
                .as_ref()
                .and_then(|p| p.parent().map(std::path::Path::to_path_buf))
                .unwrap_or_else(|| {
                    report::default_json_path()
                        .parent()
                        .map(std::path::Path::to_path_buf)
                        .unwrap_or_default()
                });
            let json_path = args
                .common
                .json_path
                .clone()
                .unwrap_or_else(|| dir.join("comparison.json"));
            let settings = serde_json::json!({
                "peer": args.peer.map(|_| "openbao"),
                "bao_user_claim": args.bao_user_claim,
                "duration_s": args.duration.as_secs_f64(),
                "warmup_s": args.warmup.as_secs_f64(),
                "concurrency": args.concurrency,
                "pg_concurrency": args.pg_concurrency,
                "idmint_servers": args.idmint_servers,
                "idmint_postgres": args.idmint_postgres || args.idmint_servers > 1,
                "client_threads": args.common.client_threads.max(1),
                "tokens": args.tokens,
            });
            let doc = serde_json::json!({
                "date": date,
                "machine": machine,
                "command": command,
                "settings": settings,
                "rows": rows,
            });
            report::write_value(&json_path, &doc)?;
            let svg_path = dir.join("comparison.svg");
            report::write_text(&svg_path, &chart::svg(&rows, &format!("{title}, {date}")))?;
            eprintln!(
                "results written to {} and {}",
                json_path.display(),
                svg_path.display()
            );
        }
        Command::Jit(args) => {
            let env = RunEnv::new(&args.common)?;
            let settings = jit::JitBenchArgs {
                grants: args.grants,
                concurrency: args.concurrency.clone(),
            };
            let rows = jit::run(&settings, &env).await?;
            println!("idmint just-in-time SSH accounts: grant -> account ready, {date}");
            println!("{}", machine.describe());
            println!();
            print!("{}", jit::table(&rows));
            println!("latency: POST /api/v1/ssh/sessions until it answers (the agent created the account and its sudoers drop-in and reported ready); each lease is revoked right after; cleanup: from the last answer until no wl_ account or home is left on the host.");
            let path = write_named_results(
                &args.common,
                "jit",
                serde_json::json!({
                    "date": date,
                    "machine": machine,
                    "command": command,
                    "jit": rows,
                }),
            )?;
            eprintln!("results written to {}", path.display());
        }
        Command::Proxy(args) => {
            let settings = proxy::ProxyBenchArgs {
                duration: args.duration,
                warmup: args.warmup,
                concurrency: args.concurrency.clone(),
                nginx: (!args.no_nginx).then(|| args.nginx.clone()),
            };
            let rows = proxy::run(&settings).await?;
            println!("idmint proxy vs direct (and nginx), {date}");
            println!("{}", machine.describe());
            println!();
            print!("{}", proxy::table(&rows));
            let path = write_named_results(
                &args.common,
                "proxy",
                serde_json::json!({
                    "date": date,
                    "machine": machine,
                    "command": command,
                    "proxy": rows,
                }),
            )?;
            eprintln!("results written to {}", path.display());
        }
        Command::Scale(args) => {
            let env = RunEnv::new(&args.common)?;
            let report = scale::run(args, &env).await?;
            println!("idmint at scale, {date}");
            println!("{}", machine.describe());
            println!();
            print!("{}", report.table());
            let path = args.common.json_path.clone().unwrap_or_else(|| {
                report::default_json_path()
                    .parent()
                    .map(|d| d.join("scale.json"))
                    .unwrap_or_default()
            });
            let doc = serde_json::json!({
                "date": date,
                "machine": machine,
                "command": command,
                "scale": report,
            });
            report::write_value(&path, &doc)?;
            eprintln!("results written to {}", path.display());
        }
    }
    Ok(())
}

fn write_results(
    common: &CommonArgs,
    machine: &Machine,
    date: String,
    command: String,
    settings: serde_json::Value,
    runs: &[report::RunRecord],
    memory: Option<&report::MemoryReport>,
) -> Result<()> {
    let path = common
        .json_path
        .clone()
        .unwrap_or_else(report::default_json_path);
    let doc = ResultsDocument {
        date,
        machine,
        command,
        settings,
        runs,
        memory,
    };
    report::write_json(&path, &doc)?;
    eprintln!("results written to {}", path.display());
    Ok(())
}
