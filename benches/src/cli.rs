//! Command-line arguments.

use crate::fixture::{IncomingAlg, SignAlg};
use crate::scenario::Scenario;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "idmint-bench",
    about = "Load benchmark for idmint: login, RFC 8693 token exchange, credentials, memory",
    after_help = "Build first (the bench never builds the server):\n  \
                  cargo build --release -p idmint -p idmint-bench\n\n\
                  Examples:\n  \
                  target/release/idmint-bench login-exchange --duration 10s --concurrency 16,64\n  \
                  target/release/idmint-bench login-exchange --alg rs256,es256 --sign-alg es256,rs256 --output json\n  \
                  target/release/idmint-bench memory --logins 1000000\n  \
                  target/release/idmint-bench all --peer openbao --duration 10s --concurrency 16,64\n  \
                  target/release/idmint-bench all --scenarios aws-creds --aws-concurrency 32\n  \
                  target/release/idmint-bench scale --leases 1000000"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The throughput/latency suite: healthz (generator ceiling), login,
    /// exchange and creds at each concurrency.
    LoginExchange(SuiteArgs),
    /// A million logins, sampling the server's RSS every batch.
    Memory(MemoryArgs),
    /// Every comparison scenario against idmint and (`--peer openbao`) a
    /// real OpenBao configured the same way; one table, JSON and an SVG
    /// chart in target/bench/.
    All(AllArgs),
    /// idmint alone at scale: a million active leases, startup, reaper
    /// under load, audit verification of millions of events.
    Scale(ScaleArgs),
    /// The egress proxy's added latency and throughput against direct
    /// requests to a local upstream, plain HTTP and HTTPS with header
    /// injection, with nginx side by side.
    Proxy(ProxyArgs),
    /// Just-in-time SSH accounts: grant → account ready on the host, with
    /// the real agent in a private mount namespace (needs root).
    Jit(JitArgs),
}

#[derive(Debug, Args)]
pub struct JitArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Session grants per concurrency level (each makes and removes one
    /// account on the host).
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub grants: usize,
    /// Grants in flight at once.
    #[arg(
        long,
        value_name = "N,..",
        value_delimiter = ',',
        default_value = "1,4"
    )]
    pub concurrency: Vec<usize>,
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Measured time per run (after the warm-up).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured time at the start of each run.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Kept-alive client connections, one request in flight each.
    #[arg(
        long,
        value_name = "N,..",
        value_delimiter = ',',
        default_value = "1,64"
    )]
    pub concurrency: Vec<usize>,
    /// The nginx binary for the reference rows.
    #[arg(long, value_name = "PATH", default_value = "/usr/sbin/nginx")]
    pub nginx: PathBuf,
    /// Skip the nginx rows.
    #[arg(long)]
    pub no_nginx: bool,
}

/// The system to compare idmint with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PeerKind {
    /// OpenBao 2.7.2 (install with scripts/install-openbao.sh).
    Openbao,
}

/// A comparison scenario. The order here is the order they run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compared {
    /// The load generator's ceiling: idmint /healthz, OpenBao /v1/sys/health.
    Ceiling,
    /// A fresh CI JWT per request: idmint POST /api/v1/login, OpenBao
    /// auth/jwt/login (batch and service tokens).
    JwtLogin,
    /// A fresh CI JWT for a signed access token: idmint's RFC 8693
    /// exchange (one request); OpenBao login + identity/oidc/token (two).
    LoginExchange,
    /// idmint GET /api/v1/whoami, OpenBao auth/token/lookup-self.
    TokenLookup,
    /// PostgreSQL dynamic credentials on the same PostgreSQL.
    PgCreds,
    /// Revoking the credentials pg-creds issued (drops the users).
    LeaseRevoke,
    /// Signing an SSH user certificate (ed25519 CA).
    SshSign,
    /// AWS STS sessions (`assumed_role`) from a moto with authentication
    /// enforced, at `--aws-concurrency`. idmint alone: OpenBao 2.7.2 has no
    /// AWS secrets engine. Not in the default list (it needs moto from
    /// testbed/install-testbed.sh).
    AwsCreds,
}

impl Compared {
    pub fn as_str(self) -> &'static str {
        match self {
            Compared::Ceiling => "ceiling",
            Compared::JwtLogin => "jwt-login",
            Compared::LoginExchange => "login-exchange",
            Compared::TokenLookup => "token-lookup",
            Compared::PgCreds => "pg-creds",
            Compared::LeaseRevoke => "lease-revoke",
            Compared::SshSign => "ssh-sign",
            Compared::AwsCreds => "aws-creds",
        }
    }

    /// Why OpenBao has no row for this scenario, shown in its place.
    pub fn peer_missing(self) -> Option<&'static str> {
        match self {
            Compared::AwsCreds => Some("OpenBao: no AWS engine in 2.7.2"),
            _ => None,
        }
    }

    /// Runs at `--pg-concurrency` instead of `--concurrency`.
    pub fn uses_postgres(self) -> bool {
        matches!(self, Compared::PgCreds | Compared::LeaseRevoke)
    }

    /// OpenBao's token type changes what is measured: run both.
    pub fn token_type_matters(self) -> bool {
        matches!(
            self,
            Compared::JwtLogin | Compared::LoginExchange | Compared::TokenLookup
        )
    }
}

#[derive(Debug, Args)]
pub struct AllArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Also run every scenario against this system, alternating run by run.
    #[arg(long, value_enum)]
    pub peer: Option<PeerKind>,
    /// OpenBao's `bao` binary; default: $IDMINT_BENCH_BAO, else where
    /// scripts/install-openbao.sh puts it (.cache/openbao).
    #[arg(long, value_name = "PATH")]
    pub bao_bin: Option<PathBuf>,
    /// The CI-token claim OpenBao's JWT roles use as `user_claim` (the
    /// entity alias). `repository` repeats across jobs like a real
    /// GitHub `sub` does; `sub` is unique per bench token, so OpenBao then
    /// creates and stores a new identity entity on every login.
    #[arg(long, value_name = "CLAIM", default_value = "repository")]
    pub bao_user_claim: String,
    /// Measured time per run (after the warm-up).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured time at the start of each run (none for lease-revoke,
    /// whose every request consumes a lease).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Concurrent connections for every scenario but pg-creds and
    /// lease-revoke.
    #[arg(
        long,
        value_name = "N,..",
        value_delimiter = ',',
        default_value = "16,64"
    )]
    pub concurrency: Vec<usize>,
    /// Concurrent connections for pg-creds and lease-revoke.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub pg_concurrency: usize,
    /// Concurrent connections for aws-creds.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub aws_concurrency: usize,
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "ceiling,jwt-login,login-exchange,token-lookup,pg-creds,lease-revoke,ssh-sign"
    )]
    pub scenarios: Vec<Compared>,
    /// CI tokens ready before each jwt-login/login-exchange run (one per
    /// request; a run that exhausts them ends early and is marked `*`).
    #[arg(long, value_name = "N", default_value_t = 250_000)]
    pub tokens: usize,
    /// idmint as N identical servers on one PostgreSQL store (shared root
    /// key), the load spread over them connection by connection; CPU and
    /// RSS are their sum. 1 (the default): one server on SQLite.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=8))]
    pub idmint_servers: u16,
    /// Put idmint's store on PostgreSQL even with one server (the
    /// baseline for --idmint-servers).
    #[arg(long)]
    pub idmint_postgres: bool,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Active leases seeded into the server's store before it starts.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub leases: u64,
    /// Leases created through the API first, to validate the seeding
    /// against the real issuance path.
    #[arg(long, value_name = "N", default_value_t = 2_000)]
    pub api_leases: u64,
    /// Expired leases the reaper must revoke while a live load runs.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub expired: u64,
    /// Audit events seeded for `idmint audit verify`.
    #[arg(long, value_name = "N", default_value_t = 10_000_000)]
    pub audit_events: u64,
    /// Length of each latency measurement.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub duration: Duration,
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub concurrency: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// The table on stdout.
    Table,
    /// The table on stdout and the results as JSON in
    /// `target/bench/results.json` (or --json-path).
    Json,
}

/// Options shared by every command.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// The idmint binary; default: `idmint` next to this executable
    /// (target/release/idmint).
    #[arg(long, value_name = "PATH")]
    pub idmint_bin: Option<PathBuf>,
    /// Turn on `replay_protection` (single-use `jti`) in the server's OIDC
    /// config.
    #[arg(long)]
    pub replay_protection: bool,
    /// `exp - iat` of the minted CI tokens.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub token_lifetime: Duration,
    /// Runtime threads of the load generator. It shares the machine's cores
    /// with the server; one thread caps its share at one core.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub client_threads: usize,
    /// Threads that mint tokens before a run (default: all cores).
    #[arg(long, value_name = "N")]
    pub mint_threads: Option<usize>,
    /// Before each run, wait up to this long until other processes use
    /// less than --quiet-threshold cores (the machine is shared); a run
    /// they disturbed anyway is repeated up to three times and the least
    /// disturbed one kept.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait_quiet: Option<Duration>,
    /// Cores other processes may use for the machine to count as quiet.
    #[arg(long, value_name = "CORES", default_value_t = 0.15)]
    pub quiet_threshold: f64,
    #[arg(long, value_enum, default_value = "table")]
    pub output: OutputFormat,
    /// Where `--output json` writes (default target/bench/results.json).
    #[arg(long, value_name = "PATH")]
    pub json_path: Option<PathBuf>,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct SuiteArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Measured time per run (after the warm-up).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured time at the start of each run.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Concurrent connections, one request in flight each; a list runs each.
    #[arg(
        long,
        value_name = "N,..",
        value_delimiter = ',',
        default_value = "16,64"
    )]
    pub concurrency: Vec<usize>,
    /// Scenarios to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "healthz,login,exchange,creds"
    )]
    pub scenarios: Vec<Scenario>,
    /// Algorithm of the incoming CI tokens; a list runs login and exchange
    /// with each.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "es256")]
    pub alg: Vec<IncomingAlg>,
    /// `[[issuer.oauth]] algorithm`; a list restarts the server with each
    /// and reruns exchange and creds.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "es256")]
    pub sign_alg: Vec<SignAlg>,
    /// Unused tokens kept ready before each login/exchange run (one per
    /// request; a run that exhausts them ends early and is marked `*`).
    #[arg(long, value_name = "N", default_value_t = 250_000)]
    pub tokens: usize,
}

#[derive(Debug, Args)]
pub struct MemoryArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Total logins.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub logins: u64,
    /// Logins per batch: tokens are minted one batch at a time (so the
    /// generator's memory stays bounded) and RSS is sampled after each.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub batch: u64,
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub concurrency: usize,
    #[arg(long, value_enum, default_value = "es256")]
    pub alg: IncomingAlg,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 10s, 2m or 1h: {e}"))?;
    if d.is_zero() {
        return Err("the duration must be longer than zero".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_durations() {
        let cli = Cli::try_parse_from([
            "idmint-bench",
            "login-exchange",
            "--duration",
            "5s",
            "--concurrency",
            "16,64",
            "--alg",
            "rs256,es256",
            "--sign-alg",
            "eddsa",
            "--output",
            "json",
        ])
        .unwrap();
        let Command::LoginExchange(a) = cli.command else {
            panic!("expected login-exchange")
        };
        assert_eq!(a.duration, Duration::from_secs(5));
        assert_eq!(a.concurrency, vec![16, 64]);
        assert_eq!(a.alg, vec![IncomingAlg::Rs256, IncomingAlg::Es256]);
        assert_eq!(a.sign_alg, vec![SignAlg::Eddsa]);
        assert_eq!(
            a.scenarios,
            vec![
                Scenario::Healthz,
                Scenario::Login,
                Scenario::Exchange,
                Scenario::Creds
            ]
        );
        assert_eq!(a.common.output, OutputFormat::Json);
        assert_eq!(a.common.token_lifetime, Duration::from_secs(3600));
    }

    #[test]
    fn aws_creds_is_opt_in_and_runs_at_its_own_concurrency() {
        let cli = Cli::try_parse_from(["idmint-bench", "all", "--scenarios", "aws-creds"]).unwrap();
        let Command::All(a) = cli.command else {
            panic!("expected all")
        };
        assert_eq!(a.scenarios, vec![Compared::AwsCreds]);
        assert_eq!(a.aws_concurrency, 32);
        assert!(Compared::AwsCreds.peer_missing().is_some());
        assert!(Compared::PgCreds.peer_missing().is_none());
        let default = Cli::try_parse_from(["idmint-bench", "all"]).unwrap();
        let Command::All(d) = default.command else {
            panic!("expected all")
        };
        assert!(!d.scenarios.contains(&Compared::AwsCreds));
    }

    #[test]
    fn memory_defaults_to_a_million_logins() {
        let cli = Cli::try_parse_from(["idmint-bench", "memory"]).unwrap();
        let Command::Memory(m) = cli.command else {
            panic!("expected memory")
        };
        assert_eq!((m.logins, m.batch, m.concurrency), (1_000_000, 100_000, 64));
    }

    #[test]
    fn refuses_bad_durations() {
        assert!(
            Cli::try_parse_from(["idmint-bench", "login-exchange", "--duration", "0s"]).is_err()
        );
        assert!(
            Cli::try_parse_from(["idmint-bench", "login-exchange", "--duration", "ten"]).is_err()
        );
    }
}
