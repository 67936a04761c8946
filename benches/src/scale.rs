//! `scale`: idmint alone with a million active leases.
//!
//! Steps, all against one server and its SQLite store on disk:
//!
//! 1. **Empty**: login and issuance (`creds`, an oauth lease each) p99 and
//!    RSS with nothing in the store.
//! 2. **API growth**: `--api-leases` leases issued through the API, to
//!    check that the seeded rows below look like real ones (the count in
//!    the store must grow by exactly that much).
//! 3. **Seeding**: the server is stopped and `--leases` active oauth
//!    leases are inserted *directly* through the store crate's SQLite
//!    backend into the server's `idmint.db` (the API issues ~2k leases/s on
//!    two cores: a million would take ten minutes; the store's group commit
//!    takes them in seconds). The rows are what issuance writes: pending →
//!    active, a `token_id` revocation handle, one-day expiry.
//! 4. **Startup** with all of them (target < 2 s), then login and issuance
//!    p99 again (target: within ±20 % of empty) and RSS (target ≤ 256 MiB).
//! 5. **Reaper**: stopped again, `--expired` already-expired oauth leases
//!    are seeded; on restart the reaper revokes them while a login load
//!    runs (target < 10 s; the load's p99 is reported).
//! 6. **Audit**: a log of `--audit-events` valid, hash-chained, signed
//!    events is written with the audit crate's own writer, then
//!    `idmint audit verify` checks it (target < 30 s for 10M).

use crate::cli::ScaleArgs;
use crate::error::{BenchError, Result};
use crate::fixture::{IncomingAlg, Issuer, Server, ServerOptions, SignAlg};
use crate::loadgen::{self, LoadOutcome, LoadPlan, ProgressUnit};
use crate::procstat::ProcSample;
use crate::progress;
use crate::report::Table;
use crate::scenario::{self, Scenario};
use crate::supply::TokenSupply;
use crate::workload::ScenarioWorkload;
use crate::RunEnv;
use idmint_core::{Lease, LeaseId, LeaseState, RequestId, RevocationHandle, TokenId, UnixTime};
use idmint_store::{open_store, Store, StoreLocation};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIB: f64 = 1024.0 * 1024.0;
/// Inserts in flight while seeding: enough to fill the store's group
/// commit (1024 per transaction) several times over.
const SEED_IN_FLIGHT: usize = 8192;
/// Audit appends in flight while writing the seeded log.
const AUDIT_IN_FLIGHT: usize = 8192;
/// How long the reaper may take before the bench stops waiting.
const REAPER_LIMIT: Duration = Duration::from_secs(300);
const REAPER_POLL: Duration = Duration::from_millis(200);
/// The oauth issuer's name in the bench server's config.
const OAUTH_ISSUER: &str = "oauth";

/// Targets of issue 10.
pub const STARTUP_TARGET_S: f64 = 2.0;
pub const RSS_TARGET_MIB: f64 = 256.0;
pub const P99_TOLERANCE: f64 = 0.20;
pub const REAPER_TARGET_S_PER_100K: f64 = 10.0;
pub const AUDIT_TARGET_S_PER_10M: f64 = 30.0;

/// Latency of one scenario at one store size.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub req_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

impl Latency {
    fn of(out: &LoadOutcome) -> Self {
        Self {
            req_per_s: out.rate(),
            p50_ms: out.latency_ms(0.5),
            p99_ms: out.latency_ms(0.99),
            errors: out.errors(),
        }
    }
}

/// Everything `scale` measured.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleReport {
    pub leases: u64,
    pub login_empty: Latency,
    pub creds_empty: Latency,
    pub rss_empty_mib: Option<f64>,
    pub api_leases: u64,
    pub api_seconds: f64,
    /// Live leases in the store after API growth, before seeding.
    pub live_after_api: u64,
    pub seed_seconds: f64,
    pub seed_per_s: f64,
    pub live_after_seed: u64,
    pub startup_s: f64,
    pub rss_after_start_mib: Option<f64>,
    pub login_full: Latency,
    pub creds_full: Latency,
    pub rss_full_mib: Option<f64>,
    pub db_mib: Option<f64>,
    pub expired: u64,
    pub reaper_seconds: Option<f64>,
    pub reaper_left: u64,
    pub reaper_load: Latency,
    pub audit_events: u64,
    pub audit_write_seconds: f64,
    pub audit_mib: Option<f64>,
    pub audit_verify_seconds: f64,
    pub audit_verify_ok: bool,
    /// What `idmint audit verify` printed when it did not pass.
    pub audit_verify_output: Option<String>,
}

impl ScaleReport {
    pub fn table(&self) -> String {
        let mut t = Table::new(&["measure", "value", "target", "verdict"]);
        let verdict = |ok: Option<bool>| match ok {
            Some(true) => "met".to_string(),
            Some(false) => "MISSED".to_string(),
            None => "?".to_string(),
        };
        let within =
            |full: f64, empty: f64| (empty > 0.0).then(|| (full - empty) / empty <= P99_TOLERANCE);
        let mut row = |m: String, v: String, target: String, ok: Option<bool>| {
            t.row(vec![m, v, target, verdict(ok)]);
        };
        row(
            "login p99, empty store".into(),
            format!(
                "{:.2} ms ({:.0} req/s)",
                self.login_empty.p99_ms, self.login_empty.req_per_s
            ),
            "-".into(),
            Some(true),
        );
        row(
            "issuance p99, empty store".into(),
            format!(
                "{:.2} ms ({:.0} req/s)",
                self.creds_empty.p99_ms, self.creds_empty.req_per_s
            ),
            "-".into(),
            Some(true),
        );
        row(
            format!("API growth: {} leases", self.api_leases),
            format!(
                "{:.1} s ({:.0}/s), {} live after",
                self.api_seconds,
                self.api_leases as f64 / self.api_seconds.max(1e-9),
                self.live_after_api
            ),
            "-".into(),
            Some(true),
        );
        row(
            format!("seeding {} leases into the SQLite store", self.leases),
            format!(
                "{:.1} s ({:.0}/s), {} live after",
                self.seed_seconds, self.seed_per_s, self.live_after_seed
            ),
            "-".into(),
            Some(self.live_after_seed >= self.leases),
        );
        row(
            format!("startup with {} live leases", self.live_after_seed),
            format!("{:.2} s", self.startup_s),
            format!("< {STARTUP_TARGET_S} s"),
            Some(self.startup_s < STARTUP_TARGET_S),
        );
        row(
            "login p99, full store".into(),
            format!(
                "{:.2} ms ({:.0} req/s)",
                self.login_full.p99_ms, self.login_full.req_per_s
            ),
            "within +20 % of empty".into(),
            within(self.login_full.p99_ms, self.login_empty.p99_ms),
        );
        row(
            "issuance p99, full store".into(),
            format!(
                "{:.2} ms ({:.0} req/s)",
                self.creds_full.p99_ms, self.creds_full.req_per_s
            ),
            "within +20 % of empty".into(),
            within(self.creds_full.p99_ms, self.creds_empty.p99_ms),
        );
        row(
            "RSS: empty / started full / after load".into(),
            format!(
                "{} / {} / {} MiB",
                mib(self.rss_empty_mib),
                mib(self.rss_after_start_mib),
                mib(self.rss_full_mib)
            ),
            format!("<= {RSS_TARGET_MIB} MiB"),
            self.rss_full_mib
                .zip(self.rss_after_start_mib)
                .map(|(a, b)| a.max(b) <= RSS_TARGET_MIB),
        );
        row(
            "SQLite file".into(),
            format!("{} MiB", mib(self.db_mib)),
            "-".into(),
            Some(true),
        );
        let reaper_target = REAPER_TARGET_S_PER_100K * self.expired as f64 / 100_000.0;
        row(
            format!("reaper: {} expired leases", self.expired),
            match self.reaper_seconds {
                Some(s) => format!("{s:.1} s ({:.0}/s)", self.expired as f64 / s.max(1e-9)),
                None => format!(
                    "not done after {} s: {} left",
                    REAPER_LIMIT.as_secs(),
                    self.reaper_left
                ),
            },
            format!("< {reaper_target:.1} s"),
            Some(self.reaper_seconds.is_some_and(|s| s < reaper_target)),
        );
        row(
            "login p99 while the reaper runs".into(),
            format!(
                "{:.2} ms ({:.0} req/s, {} errors)",
                self.reaper_load.p99_ms, self.reaper_load.req_per_s, self.reaper_load.errors
            ),
            "-".into(),
            Some(self.reaper_load.errors == 0),
        );
        let audit_target = AUDIT_TARGET_S_PER_10M * self.audit_events as f64 / 10_000_000.0;
        row(
            format!(
                "audit verify, {} events ({} MiB)",
                self.audit_events,
                mib(self.audit_mib)
            ),
            format!(
                "{:.1} s, {} (written in {:.1} s)",
                self.audit_verify_seconds,
                if self.audit_verify_ok {
                    "intact"
                } else {
                    "FAILED"
                },
                self.audit_write_seconds
            ),
            format!("< {audit_target:.1} s"),
            Some(self.audit_verify_ok && self.audit_verify_seconds < audit_target),
        );
        t.render()
    }
}

fn mib(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "?".into())
}

pub async fn run(args: &ScaleArgs, env: &RunEnv) -> Result<ScaleReport> {
    let alg = IncomingAlg::Es256;
    let issuer = Issuer::start(&[alg]).await?;
    let mut supply = TokenSupply::new(
        &issuer,
        &[alg],
        args.common.token_lifetime,
        env.mint_threads,
        env.quiet,
    )?;
    let options = ServerOptions {
        bin: env.idmint_bin.clone(),
        sign_alg: SignAlg::Es256,
        replay_protection: args.common.replay_protection,
    };
    let mut server = Server::start(&issuer, &options).await?;
    let db = server.dir().join("idmint.db");
    env.note(&format!(
        "idmint pid {} on {}, store {}",
        server.pid().map(|p| p.to_string()).unwrap_or_default(),
        server.addr(),
        db.display()
    ));
    let mut measure = Measure {
        args,
        env,
        supply: &mut supply,
        alg,
    };

    env.note("1/6 empty store: login and issuance");
    let login_empty = measure.timed(&server, Scenario::Login).await?;
    let creds_empty = measure.timed(&server, Scenario::Creds).await?;
    let rss_empty_mib = rss(&server, env);

    env.note(&format!("2/6 {} leases through the API", args.api_leases));
    let started = Instant::now();
    measure.counted_creds(&server, args.api_leases).await?;
    let api_seconds = started.elapsed().as_secs_f64();
    server.stop()?;
    let live_after_api = count_live(&db).await?;

    env.note(&format!(
        "3/6 seeding {} active leases into {}",
        args.leases,
        db.display()
    ));
    let far = UnixTime::now().secs() + 86_400;
    let seed_seconds = seed_leases(&db, args.leases, far, env.quiet).await?;
    let live_after_seed = count_live(&db).await?;
    if live_after_seed < live_after_api + args.leases {
        return Err(BenchError::Preflight {
            scenario: "scale",
            message: format!(
                "seeding {} leases left {live_after_seed} live (expected at least {})",
                args.leases,
                live_after_api + args.leases
            ),
        });
    }

    env.note("4/6 startup and latency with the full store");
    let started = Instant::now();
    server.restart().await?;
    let startup_s = started.elapsed().as_secs_f64();
    let rss_after_start_mib = rss(&server, env);
    let login_full = measure.timed(&server, Scenario::Login).await?;
    let creds_full = measure.timed(&server, Scenario::Creds).await?;
    let rss_full_mib = rss(&server, env);
    let db_mib = std::fs::metadata(&db).ok().map(|m| m.len() as f64 / MIB);

    env.note(&format!(
        "5/6 reaper: {} expired leases under a login load",
        args.expired
    ));
    server.stop()?;
    let past = UnixTime::now().secs() - 60;
    seed_leases(&db, args.expired, past, env.quiet).await?;
    server.restart().await?;
    let reaper_started = Instant::now();
    let watcher = tokio::spawn(wait_reaped(db.clone(), reaper_started));
    let reaper_load = measure.timed(&server, Scenario::Login).await?;
    let (reaper_seconds, reaper_left) = watcher
        .await
        .map_err(|e| BenchError::io("watching the reaper", std::io::Error::other(e)))??;
    server.stop()?;

    env.note(&format!(
        "6/6 audit: {} events, then idmint audit verify",
        args.audit_events
    ));
    let audit_dir = tempfile::Builder::new()
        .prefix("idmint-bench-audit-")
        .tempdir()
        .map_err(|e| BenchError::io("creating the audit temp dir", e))?;
    let audit_file = audit_dir.path().join("audit.jsonl");
    let (audit_write_seconds, public_key) =
        write_audit(&audit_file, args.audit_events, env.quiet).await?;
    let audit_mib = std::fs::metadata(&audit_file)
        .ok()
        .map(|m| m.len() as f64 / MIB);
    let (audit_verify_seconds, audit_verify_ok, audit_verify_output) =
        verify_audit(&env.idmint_bin, &audit_file, &public_key).await?;
    if let Some(output) = &audit_verify_output {
        env.note(&format!("  idmint audit verify failed:\n{output}"));
    }

    Ok(ScaleReport {
        leases: args.leases,
        login_empty,
        creds_empty,
        rss_empty_mib,
        api_leases: args.api_leases,
        api_seconds,
        live_after_api,
        seed_seconds,
        seed_per_s: args.leases as f64 / seed_seconds.max(1e-9),
        live_after_seed,
        startup_s,
        rss_after_start_mib,
        login_full,
        creds_full,
        rss_full_mib,
        db_mib,
        expired: args.expired,
        reaper_seconds,
        reaper_left,
        reaper_load,
        audit_events: args.audit_events,
        audit_write_seconds,
        audit_mib,
        audit_verify_seconds,
        audit_verify_ok,
        audit_verify_output,
    })
}

fn rss(server: &Server, env: &RunEnv) -> Option<f64> {
    server
        .pid()
        .and_then(|pid| ProcSample::read(pid, env.clock_ticks))
        .map(|s| s.rss_bytes as f64 / MIB)
}

struct Measure<'a> {
    args: &'a ScaleArgs,
    env: &'a RunEnv,
    supply: &'a mut TokenSupply,
    alg: IncomingAlg,
}

impl Measure<'_> {
    /// One timed run of `scenario` (login or creds) at `--concurrency`.
    async fn timed(&mut self, server: &Server, scenario: Scenario) -> Result<Latency> {
        let c = self.args.concurrency.max(1);
        // Logins take one token per request; a generous bound for a short
        // run on two cores, topped up from the supply's leftovers.
        let needed = if scenario.token_per_request() {
            (self.args.duration.as_secs_f64() * 20_000.0) as usize + c
        } else {
            c + 8
        };
        let pool = self.supply.pool(self.alg, needed).await?;
        let label = format!("{} c={c}", scenario.as_str());
        let bar = progress::timed(self.args.duration.as_secs().max(1), &label, self.env.quiet);
        let out = loadgen::run(LoadPlan {
            addr: server.addr(),
            more: Vec::new(),
            workload: ScenarioWorkload::new(scenario, pool.clone()),
            concurrency: c,
            warmup: Duration::from_secs(1),
            duration: Some(self.args.duration),
            server_pid: server.pid(),
            clock_ticks: self.env.clock_ticks,
            progress: bar.clone(),
            progress_unit: ProgressUnit::Seconds,
        })
        .await?;
        bar.finish_and_clear();
        self.supply.give_back(self.alg, pool);
        let latency = Latency::of(&out);
        self.env.note(&format!(
            "  {label}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors{}",
            latency.req_per_s,
            latency.p50_ms,
            latency.p99_ms,
            latency.errors,
            out.first_rejection
                .as_ref()
                .map(|r| format!(" (first: {r})"))
                .unwrap_or_default()
        ));
        Ok(latency)
    }

    /// Exactly `count` issuances through the API.
    async fn counted_creds(&mut self, server: &Server, count: u64) -> Result<()> {
        use crate::compare::flows::{Consume, SessionSource};
        if count == 0 {
            return Ok(());
        }
        let c = self.args.concurrency.max(1);
        let sessions = self.supply.pool(self.alg, c + 8).await?;
        let items = Arc::new(crate::tokens::TokenPool::new(vec![
            String::new();
            count as usize
        ]));
        let workload = Arc::new(Consume {
            session: SessionSource::IdmintLogin(sessions.clone()),
            pool: items,
            make: Arc::new(|_, session| Ok(scenario::creds_request(session.unwrap_or_default()))),
            follow_up: None,
        });
        let bar = progress::counter(count, "issuing leases through the API", self.env.quiet);
        let out = loadgen::run(LoadPlan {
            addr: server.addr(),
            more: Vec::new(),
            workload,
            concurrency: c,
            warmup: Duration::ZERO,
            duration: None,
            server_pid: server.pid(),
            clock_ticks: self.env.clock_ticks,
            progress: bar.clone(),
            progress_unit: ProgressUnit::Requests,
        })
        .await?;
        bar.finish_and_clear();
        self.supply.give_back(self.alg, sessions);
        if out.ok != count {
            return Err(BenchError::Preflight {
                scenario: "scale",
                message: format!(
                    "{} of {count} API issuances succeeded{}",
                    out.ok,
                    out.first_rejection
                        .map(|r| format!("; first error: {r}"))
                        .unwrap_or_default()
                ),
            });
        }
        Ok(())
    }
}

async fn open_db(db: &Path) -> Result<Arc<dyn Store>> {
    open_store(&StoreLocation::Sqlite(db.to_path_buf()))
        .await
        .map_err(|e| BenchError::Preflight {
            scenario: "scale",
            message: format!("opening {}: {e}", db.display()),
        })
}

async fn count_live(db: &Path) -> Result<u64> {
    let store = open_db(db).await?;
    store
        .count_leases(true)
        .await
        .map_err(|e| BenchError::Preflight {
            scenario: "scale",
            message: format!("counting leases in {}: {e}", db.display()),
        })
}

/// An active oauth lease as issuance leaves it, expiring at `expires_at`.
fn seeded_lease(n: u64, expires_at: i64) -> Result<Lease> {
    let random = |e: idmint_core::ids::RandomError| BenchError::Mint(format!("random id: {e}"));
    let now = UnixTime::now().secs();
    Ok(Lease {
        id: LeaseId::generate().map_err(random)?,
        request_id: RequestId::generate().map_err(random)?,
        role: scenario::ROLE.to_string(),
        issuer: OAUTH_ISSUER.to_string(),
        principal: format!("seed|repo:acme/app:ref:refs/heads/main:job:{n}"),
        policy_version: 1,
        created_at: UnixTime(now.min(expires_at - 1)),
        expires_at: UnixTime(expires_at),
        state: LeaseState::Active,
        revocation: RevocationHandle {
            kind: "token_id".to_string(),
            value: TokenId::generate().map_err(random)?.to_string(),
        },
        fingerprint: Some(format!("fp_{n:032x}")),
        attempts: 0,
        next_attempt_at: UnixTime(expires_at),
        last_error: None,
    })
}

/// Inserts `count` leases into the stopped server's store; returns the
/// seconds it took.
async fn seed_leases(db: &Path, count: u64, expires_at: i64, quiet: bool) -> Result<f64> {
    let store = open_db(db).await?;
    let bar = progress::counter(count, "seeding leases", quiet);
    let started = Instant::now();
    let mut n = 0u64;
    while n < count {
        let chunk = (count - n).min(SEED_IN_FLIGHT as u64);
        let mut set = tokio::task::JoinSet::new();
        for i in 0..chunk {
            let lease = seeded_lease(n + i, expires_at)?;
            let store = store.clone();
            set.spawn(async move { store.insert_lease(&lease).await });
        }
        while let Some(joined) = set.join_next().await {
            joined
                .map_err(|e| BenchError::Mint(format!("a seeding task failed: {e}")))?
                .map_err(|e| BenchError::Preflight {
                    scenario: "scale",
                    message: format!("inserting a lease: {e}"),
                })?;
        }
        n += chunk;
        bar.set_position(n);
    }
    bar.finish_and_clear();
    Ok(started.elapsed().as_secs_f64())
}

/// Polls the store (a second, read-only-in-practice connection: SQLite WAL
/// lets it read while the server writes) until no lease is due; returns
/// how long that took, or `None` and how many were left after
/// [`REAPER_LIMIT`].
async fn wait_reaped(db: PathBuf, started: Instant) -> Result<(Option<f64>, u64)> {
    let store = open_db(&db).await?;
    loop {
        let now = UnixTime::now();
        let due = store
            .due_leases(now, 3600, idmint_store::MAX_DUE_LIMIT)
            .await
            .map_err(|e| BenchError::Preflight {
                scenario: "scale",
                message: format!("reading due leases: {e}"),
            })?
            .len() as u64;
        if due == 0 {
            return Ok((Some(started.elapsed().as_secs_f64()), 0));
        }
        if started.elapsed() >= REAPER_LIMIT {
            return Ok((None, due));
        }
        tokio::time::sleep(REAPER_POLL).await;
    }
}

/// Writes `count` valid events (credential issuance, as the server writes
/// them) through the audit crate's writer; returns the seconds it took and
/// the log's public key (base64url).
async fn write_audit(path: &Path, count: u64, quiet: bool) -> Result<(f64, String)> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use idmint_audit::{AuditConfig, AuditEvent, AuditLog};
    let audit_error = |what: &str, e: idmint_audit::AuditError| BenchError::Preflight {
        scenario: "scale",
        message: format!("{what}: {e}"),
    };
    let key = idmint_audit::generate_signing_key().map_err(|e| audit_error("audit key", e))?;
    let log = AuditLog::open(
        AuditConfig {
            file: Some(path.to_path_buf()),
            max_batch: idmint_audit::MAX_MAX_BATCH,
            ..AuditConfig::default()
        },
        key.expose(),
    )
    .map_err(|e| audit_error("opening the audit log", e))?;
    let identity = Arc::new(ci_identity());
    let bar = progress::counter(count, "writing audit events", quiet);
    let started = Instant::now();
    let mut n = 0u64;
    while n < count {
        let chunk = (count - n).min(AUDIT_IN_FLIGHT as u64);
        let mut set = tokio::task::JoinSet::new();
        for i in 0..chunk {
            let log = log.clone();
            let identity = identity.clone();
            let k = n + i;
            set.spawn(async move {
                let mut event = AuditEvent::new("credential_issued", "success");
                event.identity = Some((*identity).clone());
                event.request_id = Some(format!("req_{k:032x}"));
                event.action = Some("issue".into());
                event.role = Some(scenario::ROLE.into());
                event.ttl_seconds = Some(300);
                event.lease_id = Some(format!("lease_{k:032x}"));
                event.fingerprint = Some(format!("fp_{k:032x}"));
                event.source_ip = Some("127.0.0.1".into());
                log.append(event).await
            });
        }
        while let Some(joined) = set.join_next().await {
            joined
                .map_err(|e| BenchError::Mint(format!("an audit task failed: {e}")))?
                .map_err(|e| audit_error("appending an audit event", e))?;
        }
        n += chunk;
        bar.set_position(n);
    }
    log.close()
        .await
        .map_err(|e| audit_error("closing the audit log", e))?;
    bar.finish_and_clear();
    Ok((
        started.elapsed().as_secs_f64(),
        URL_SAFE_NO_PAD.encode(log.public_key()),
    ))
}

/// The identity of a GitHub Actions job as the server records it: every
/// verified claim goes into `claims_used`, which makes a real event about
/// 1 KB (the size `idmint audit verify` has to hash).
fn ci_identity() -> idmint_audit::AuditIdentity {
    let claims = serde_json::json!({
        "aud": "idmint", "sub": "repo:acme/app:ref:refs/heads/main",
        "repository": "acme/app", "repository_owner": "acme", "repository_id": "4242",
        "ref": "refs/heads/main", "ref_type": "branch",
        "sha": "0123456789abcdef0123456789abcdef01234567", "workflow": "release",
        "workflow_ref": "acme/app/.github/workflows/release.yml@refs/heads/main",
        "job_workflow_ref": "acme/app/.github/workflows/release.yml@refs/heads/main",
        "actor": "octocat", "event_name": "push", "run_id": "1001", "run_attempt": "1",
        "environment": "production",
    });
    idmint_audit::AuditIdentity {
        subject: "repo:acme/app:ref:refs/heads/main".into(),
        issuer: "https://token.actions.githubusercontent.com".into(),
        method: "oidc".into(),
        auth: "github".into(),
        kind: "ci".into(),
        claims_used: claims.as_object().cloned().unwrap_or_default(),
        proof_id: "0123456789abcdef".into(),
    }
}

/// Runs `idmint audit verify FILE --public-key KEY`; returns its wall time,
/// whether it found the log intact and, when not, the end of its output.
async fn verify_audit(
    bin: &Path,
    file: &Path,
    public_key: &str,
) -> Result<(f64, bool, Option<String>)> {
    let started = Instant::now();
    let out = tokio::process::Command::new(bin)
        .args(["audit", "verify"])
        .arg(file)
        .args(["--public-key", public_key])
        .output()
        .await
        .map_err(|e| BenchError::io(format!("running {} audit verify", bin.display()), e))?;
    let seconds = started.elapsed().as_secs_f64();
    let problem = (!out.status.success()).then(|| {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let tail: Vec<&str> = text.lines().rev().take(8).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    });
    Ok((seconds, out.status.success(), problem))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_leases_look_like_issued_ones() {
        let lease = seeded_lease(7, 2_000_000_000).unwrap();
        assert_eq!(lease.state, LeaseState::Active);
        assert_eq!(lease.issuer, OAUTH_ISSUER);
        assert_eq!(lease.role, scenario::ROLE);
        assert!(TokenId::parse(&lease.revocation.value).is_some());
        assert_eq!(lease.next_attempt_at, lease.expires_at);
        assert!(lease.created_at < lease.expires_at);
        let other = seeded_lease(8, 2_000_000_000).unwrap();
        assert_ne!(lease.id, other.id);
    }

    #[tokio::test]
    async fn seeding_and_counting_go_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("idmint.db");
        let far = UnixTime::now().secs() + 3600;
        seed_leases(&db, 300, far, true).await.unwrap();
        seed_leases(&db, 20, UnixTime::now().secs() - 5, true)
            .await
            .unwrap();
        assert_eq!(count_live(&db).await.unwrap(), 320);
        let store = open_db(&db).await.unwrap();
        let due = store.due_leases(UnixTime::now(), 3600, 1000).await.unwrap();
        assert_eq!(due.len(), 20);
    }

    #[tokio::test]
    async fn the_seeded_audit_log_is_a_valid_chain() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.jsonl");
        let (_, key) = write_audit(&file, 2_500, true).await.unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        // 2,500 events plus a checkpoint every 1,000 (and one at close).
        assert!(text.lines().count() >= 2_502, "{}", text.lines().count());
        use base64::Engine as _;
        let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(key)
            .unwrap();
        let report = idmint_audit::verify::verify_file(&file, Some(&key)).unwrap();
        assert!(report.is_ok(), "{report:?}");
    }
}
