//! `all`: every comparison scenario against idmint and, with `--peer
//! openbao`, against a real OpenBao configured the same way, alternating
//! between the systems run by run with the same duration and concurrency.
//!
//! Modules: `targets` (the shared PostgreSQL and idmint's server),
//! `flows` (the timed operations), `rows` (records, table, JSON) and
//! `crate::chart` (the SVG).

pub mod aws;
pub mod flows;
pub mod rows;
pub mod targets;

use crate::cli::{AllArgs, Compared, PeerKind};
use crate::error::Result;
use crate::fixture::{IncomingAlg, Issuer};
use crate::http::{Outgoing, JSON};
use crate::loadgen::{self, LoadPlan, ProgressUnit};
use crate::openbao::setup::{self as bao_setup, BaoSetup, PgTarget};
use crate::openbao::OpenBao;
use crate::progress;
use crate::scenario;
use crate::supply::TokenSupply;
use crate::tokens::{TokenPool, AUDIENCE};
use crate::workload::{Harvest, Workload};
use crate::RunEnv;
use aws::SharedMoto;
use flows::{bao_follow_up, bao_login, idmint_login, Consume, Repeat, SessionSource};
use hyper::Method;
use rows::{Row, System};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use targets::{IdmintTarget, SharedPg};

/// CI tokens kept ready beyond one per connection for per-connection
/// logins.
const SESSION_SPARE_TOKENS: usize = 8;
const INCOMING: IncomingAlg = IncomingAlg::Es256;

/// What an idmint row says when the server has no `POST
/// /api/v1/ssh/sign/{role}` route (an older build).
pub const SSH_SIGN_MISSING: &str = "skipped: idmint ssh/sign not built";

/// Everything a run needs to reach one system.
struct Endpoint {
    system: System,
    addr: SocketAddr,
    pid: Option<u32>,
    /// The other servers of a multi-server idmint.
    more: Vec<(SocketAddr, Option<u32>)>,
}

/// The systems under test, started once for the whole comparison.
struct Systems {
    idmint: IdmintTarget,
    bao: Option<OpenBao>,
    /// Kept alive for the whole run; dropped last.
    pg: Option<SharedPg>,
    /// The AWS of `aws-creds`; kept alive like `pg`.
    moto: Option<SharedMoto>,
    idmint_leases: Harvest,
    bao_leases: Harvest,
    ssh_public_key: String,
}

pub async fn run(args: &AllArgs, env: &RunEnv) -> Result<Vec<Row>> {
    let bao_bin = match args.peer {
        Some(PeerKind::Openbao) => Some(crate::openbao::launch::locate_binary(
            args.bao_bin.as_deref(),
        )?),
        None => None,
    };
    let scenarios = canonical(&args.scenarios);
    let wantspg = scenarios
        .iter()
        .any(|s| matches!(s, Compared::PgCreds | Compared::LeaseRevoke));
    let issuer = Issuer::start(&[INCOMING]).await?;
    let mut supply = TokenSupply::new(
        &issuer,
        &[INCOMING],
        args.common.token_lifetime,
        env.mint_threads,
        env.quiet,
    )?;
    let pg = if wantspg {
        env.note("starting PostgreSQL (shared by both systems)");
        Some(SharedPg::start().await?)
    } else {
        None
    };
    let moto = if scenarios.contains(&Compared::AwsCreds) {
        env.note("starting moto (AWS emulation, authentication enforced)");
        let moto = SharedMoto::start().await?;
        env.note(&format!("moto on {}", moto.endpoint()));
        Some(moto)
    } else {
        None
    };
    let idmint = IdmintTarget::start(
        &env.idmint_bin,
        &issuer,
        pg.as_ref(),
        moto.as_ref(),
        usize::from(args.idmint_servers),
        args.idmint_postgres,
    )
    .await?;
    env.note(&format!(
        "idmint pid {} on {}",
        idmint.pid().map(|p| p.to_string()).unwrap_or_default(),
        idmint.addr()
    ));
    for (addr, pid) in idmint.more() {
        env.note(&format!(
            "idmint pid {} on {addr} (same PostgreSQL store)",
            pid.map(|p| p.to_string()).unwrap_or_default()
        ));
    }
    let bao = match &bao_bin {
        Some(bin) => {
            let bao = OpenBao::start(bin).await?;
            let key = issuer.key(INCOMING)?;
            let setup = BaoSetup {
                issuer: &issuer.url(),
                key: &key,
                audience: AUDIENCE,
                token_audience: scenario::ROLE_AUDIENCE,
                user_claim: &args.bao_user_claim,
                pg: pg.as_ref().map(|pg| PgTarget {
                    port: pg.port(),
                    admin_user: targets::BAO_PG_ADMIN,
                    admin_password: &pg.bao_password,
                    database: targets::PG_DATABASE,
                    group: targets::PG_GROUP,
                }),
            };
            let mut api = bao.admin().await?;
            if let Err(e) = bao_setup::configure(&mut api, &setup).await {
                env.note(&format!("OpenBao log:\n{}", bao.log_tail(20)));
                return Err(e);
            }
            env.note(&format!(
                "OpenBao {} pid {} on {} (raft storage, user_claim {})",
                crate::openbao::launch::VERSION,
                bao.pid().map(|p| p.to_string()).unwrap_or_default(),
                bao.addr(),
                args.bao_user_claim
            ));
            Some(bao)
        }
        None => None,
    };
    let ssh_key = idmint_testkit::TestKey::generate(idmint_testkit::KeyAlg::EdDsa)
        .map_err(|e| crate::error::BenchError::peer("generating an SSH key", e))?;
    let systems = Systems {
        idmint,
        bao,
        pg,
        moto,
        idmint_leases: Harvest::default(),
        bao_leases: Harvest::default(),
        ssh_public_key: bao_setup::openssh_ed25519(&ssh_key)?,
    };

    let mut rows = Vec::new();
    for scenario in scenarios {
        let concurrency = if scenario.uses_postgres() {
            vec![args.pg_concurrency]
        } else if scenario == Compared::AwsCreds {
            vec![args.aws_concurrency]
        } else {
            dedup(&args.concurrency)
        };
        for c in concurrency {
            for endpoint in systems.endpoints(scenario) {
                if endpoint.system == System::Idmint
                    && scenario == Compared::SshSign
                    && !systems.idmint_signs_ssh(&mut supply).await?
                {
                    rows.push(Row::skipped(scenario, endpoint.system, c, SSH_SIGN_MISSING));
                    continue;
                }
                let moto_before = systems.sample_moto(env, scenario);
                let started = std::time::Instant::now();
                let mut row =
                    run_one(args, env, &systems, &mut supply, scenario, &endpoint, c).await?;
                if let Some(note) = systems.moto_note(env, moto_before, started.elapsed(), &row) {
                    env.note(&format!("  {note}"));
                    row.note = Some(note);
                }
                rows.push(row);
            }
            if scenario.uses_postgres() {
                systems.note_postgres(env).await;
            }
        }
    }
    rows::fill_ratios(&mut rows);
    Ok(rows)
}

impl Systems {
    /// moto's CPU counters before an `aws-creds` run.
    fn sample_moto(&self, env: &RunEnv, scenario: Compared) -> Option<crate::procstat::ProcSample> {
        if scenario != Compared::AwsCreds {
            return None;
        }
        self.moto.as_ref()?.sample(env.clock_ticks)
    }

    /// How many cores moto used over a run (warm-up included: it is busy
    /// then too) and, when the run had errors, the end of its log.
    fn moto_note(
        &self,
        env: &RunEnv,
        before: Option<crate::procstat::ProcSample>,
        elapsed: Duration,
        row: &Row,
    ) -> Option<String> {
        let moto = self.moto.as_ref()?;
        let before = before?;
        if row.errors > 0 {
            env.note(&format!("  moto log:\n{}", moto.log_tail(10)));
        }
        let after = moto.sample(env.clock_ticks)?;
        let seconds = elapsed.as_secs_f64();
        if seconds <= 0.0 {
            return None;
        }
        let cores = (after.cpu_seconds - before.cpu_seconds).max(0.0) / seconds;
        Some(format!(
            "moto used {cores:.2} cores (warm-up included); {}",
            aws::NO_PEER
        ))
    }

    /// Whether the idmint binary routes `POST /api/v1/ssh/sign/{role}`:
    /// axum answers an unknown route with an empty 404, the handler always
    /// with a JSON body.
    async fn idmint_signs_ssh(&self, supply: &mut TokenSupply) -> Result<bool> {
        let pool = supply.pool(INCOMING, 1).await?;
        let mut conn = crate::http::Connection::open(self.idmint.addr()).await?;
        let token = pool.take().map(str::to_string).unwrap_or_default();
        let login = conn.send(idmint_login(&token)?, true).await?;
        let session: serde_json::Value = serde_json::from_slice(&login.body)?;
        let probe = Outgoing::post(
            format!("/api/v1/ssh/sign/{}", targets::IDMINT_SSH_ROLE),
            JSON,
            serde_json::to_string(&serde_json::json!({ "public_key": self.ssh_public_key }))?,
        )
        .with_bearer(session["token"].as_str().unwrap_or_default().to_string());
        let answer = conn.send(probe, true).await?;
        Ok(!(answer.status == 404 && answer.body.is_empty()))
    }

    /// How many issued users PostgreSQL holds and how many leases wait for
    /// lease-revoke: shows that pg-creds really created users and that
    /// lease-revoke really dropped them.
    async fn note_postgres(&self, env: &RunEnv) {
        if let Some(pg) = &self.pg {
            match pg.live_users().await {
                Ok(n) => env.note(&format!(
                    "  PostgreSQL: {n} issued users in `{}`; leases to revoke: idmint {}, OpenBao {}",
                    targets::PG_GROUP,
                    self.idmint_leases.len(),
                    self.bao_leases.len()
                )),
                Err(e) => env.note(&format!("  PostgreSQL: counting users failed: {e}")),
            }
        }
    }

    /// idmint first, then OpenBao (both token types where the token type
    /// matters).
    fn endpoints(&self, scenario: Compared) -> Vec<Endpoint> {
        let mut out = vec![Endpoint {
            system: System::Idmint,
            addr: self.idmint.addr(),
            pid: self.idmint.pid(),
            more: self.idmint.more(),
        }];
        if let Some(bao) = self
            .bao
            .as_ref()
            .filter(|_| scenario.peer_missing().is_none())
        {
            let systems: &[System] = if scenario.token_type_matters() {
                &[System::OpenBaoBatch, System::OpenBaoService]
            } else {
                &[System::OpenBao]
            };
            for system in systems {
                out.push(Endpoint {
                    system: *system,
                    addr: bao.addr(),
                    pid: bao.pid(),
                    more: Vec::new(),
                });
            }
        }
        out
    }
}

/// The JWT role of OpenBao's login for `system`.
fn bao_role(system: System) -> &'static str {
    match system {
        System::OpenBaoService => bao_setup::ROLE_SERVICE,
        _ => bao_setup::ROLE_BATCH,
    }
}

async fn run_one(
    args: &AllArgs,
    env: &RunEnv,
    systems: &Systems,
    supply: &mut TokenSupply,
    scenario: Compared,
    endpoint: &Endpoint,
    concurrency: usize,
) -> Result<Row> {
    let per_request = matches!(scenario, Compared::JwtLogin | Compared::LoginExchange);
    let pool = if per_request {
        supply.pool(INCOMING, args.tokens).await?
    } else {
        supply
            .pool(INCOMING, concurrency + SESSION_SPARE_TOKENS)
            .await?
    };
    let idmint = endpoint.system == System::Idmint;
    let harvest = if idmint {
        systems.idmint_leases.clone()
    } else {
        systems.bao_leases.clone()
    };
    let session = if idmint {
        SessionSource::IdmintLogin(pool.clone())
    } else {
        SessionSource::BaoLogin {
            role: bao_role(endpoint.system),
            pool: pool.clone(),
        }
    };
    let mut lease_pool = None;
    let workload: Arc<dyn Workload> = match (scenario, idmint) {
        (Compared::Ceiling, true) => repeat(SessionSource::None, None, |_| {
            Ok(Outgoing::get(scenario::HEALTHZ_PATH))
        }),
        (Compared::Ceiling, false) => repeat(SessionSource::None, None, |_| {
            Ok(Outgoing::get("/v1/sys/health"))
        }),
        (Compared::JwtLogin, true) => consume(SessionSource::None, pool.clone(), None, |t, _| {
            idmint_login(t)
        }),
        (Compared::JwtLogin, false) => {
            let role = bao_role(endpoint.system);
            consume(SessionSource::None, pool.clone(), None, move |t, _| {
                bao_login(role, t)
            })
        }
        (Compared::LoginExchange, true) => {
            consume(SessionSource::None, pool.clone(), None, |t, _| {
                Ok(scenario::exchange_request(t))
            })
        }
        (Compared::LoginExchange, false) => {
            let role = bao_role(endpoint.system);
            let path = format!("/v1/identity/oidc/token/{}", bao_setup::OIDC_ROLE);
            consume(
                SessionSource::None,
                pool.clone(),
                Some(bao_follow_up(path)),
                move |t, _| bao_login(role, t),
            )
        }
        (Compared::TokenLookup, true) => repeat(session, None, |s| {
            Ok(Outgoing::get("/api/v1/whoami").with_bearer(s.unwrap_or_default().to_string()))
        }),
        (Compared::TokenLookup, false) => repeat(session, None, |s| {
            Ok(Outgoing::get("/v1/auth/token/lookup-self")
                .with_bearer(s.unwrap_or_default().to_string()))
        }),
        (Compared::PgCreds, true) => repeat(session, Some(harvest), |s| {
            Ok(Outgoing::post(
                format!("/api/v1/creds/{}", targets::IDMINT_PG_ROLE),
                JSON,
                "{}".into(),
            )
            .with_bearer(s.unwrap_or_default().to_string()))
        }),
        (Compared::PgCreds, false) => repeat(session, Some(harvest), |s| {
            Ok(
                Outgoing::get(format!("/v1/database/creds/{}", bao_setup::DB_ROLE))
                    .with_bearer(s.unwrap_or_default().to_string()),
            )
        }),
        (Compared::LeaseRevoke, true) => {
            let leases = Arc::new(TokenPool::new(harvest.take_all()));
            lease_pool = Some(leases.clone());
            consume(session, leases, None, |id, s| {
                Ok(
                    Outgoing::post(format!("/api/v1/leases/{id}/revoke"), JSON, String::new())
                        .with_bearer(s.unwrap_or_default().to_string()),
                )
            })
        }
        (Compared::LeaseRevoke, false) => {
            let leases = Arc::new(TokenPool::new(harvest.take_all()));
            lease_pool = Some(leases.clone());
            let root = match &systems.bao {
                Some(bao) => SessionSource::Fixed(bao.root_token().clone()),
                None => SessionSource::None,
            };
            consume(root, leases, None, |id, s| {
                let body = serde_json::to_string(&serde_json::json!({ "lease_id": id }))?;
                Ok(Outgoing::post("/v1/sys/leases/revoke", JSON, body)
                    .with_method(Method::PUT)
                    .with_bearer(s.unwrap_or_default().to_string()))
            })
        }
        (Compared::AwsCreds, _) => repeat(session, None, |s| {
            Ok(Outgoing::post(
                format!("/api/v1/creds/{}", aws::IDMINT_AWS_ROLE),
                JSON,
                "{}".into(),
            )
            .with_bearer(s.unwrap_or_default().to_string()))
        }),
        (Compared::SshSign, idmint) => {
            // idmint's role fixes the principals; OpenBao is told them.
            let (path, body) = if idmint {
                (
                    format!("/api/v1/ssh/sign/{}", targets::IDMINT_SSH_ROLE),
                    serde_json::json!({ "public_key": systems.ssh_public_key }),
                )
            } else {
                (
                    format!("/v1/ssh/sign/{}", bao_setup::SSH_ROLE),
                    serde_json::json!({
                        "public_key": systems.ssh_public_key,
                        "valid_principals": bao_setup::SSH_USER,
                    }),
                )
            };
            let body = serde_json::to_string(&body)?;
            repeat(session, None, move |s| {
                Ok(Outgoing::post(path.clone(), JSON, body.clone())
                    .with_bearer(s.unwrap_or_default().to_string()))
            })
        }
    };
    let leases_before = lease_pool.as_ref().map(|p| p.remaining());

    env.settle(endpoint.pid).await;
    let label = format!(
        "{} {} c={concurrency}",
        scenario.as_str(),
        endpoint.system.as_str()
    );
    env.note(&format!("running {label}"));
    let (warmup, duration) = if scenario == Compared::LeaseRevoke {
        // Every revocation consumes a lease: no warm-up, so that the
        // window covers all of them and none is wasted.
        (Duration::ZERO, args.duration)
    } else {
        (args.warmup, args.duration)
    };
    let bar = progress::timed((warmup + duration).as_secs().max(1), &label, env.quiet);
    let outcome = loadgen::run(LoadPlan {
        addr: endpoint.addr,
        more: endpoint.more.clone(),
        workload,
        concurrency,
        warmup,
        duration: Some(duration),
        server_pid: endpoint.pid,
        clock_ticks: env.clock_ticks,
        progress: bar.clone(),
        progress_unit: ProgressUnit::Seconds,
    })
    .await?;
    bar.finish_and_clear();
    supply.give_back(INCOMING, pool);
    let mut row = Row::new(scenario, endpoint.system, concurrency, &outcome);
    if let Some(n) = leases_before {
        row.note = Some(format!("{n} leases from pg-creds to revoke"));
    }
    env.note(&row.summary());
    if let Some(rejection) = &outcome.first_rejection {
        env.note(&format!("  first error answer: {rejection}"));
    }
    for failure in &outcome.failures {
        env.note(&format!("  load task stopped early: {failure}"));
    }
    Ok(row)
}

fn repeat(
    session: SessionSource,
    harvest: Option<Harvest>,
    make: impl Fn(Option<&str>) -> Result<Outgoing> + Send + Sync + 'static,
) -> Arc<dyn Workload> {
    Arc::new(Repeat {
        session,
        make: Arc::new(make),
        harvest,
    })
}

fn consume(
    session: SessionSource,
    pool: Arc<TokenPool>,
    follow_up: Option<flows::FollowUp>,
    make: impl Fn(&str, Option<&str>) -> Result<Outgoing> + Send + Sync + 'static,
) -> Arc<dyn Workload> {
    Arc::new(Consume {
        session,
        pool,
        make: Arc::new(make),
        follow_up,
    })
}

/// The scenarios in the order they must run (lease-revoke consumes what
/// pg-creds issued), each once.
fn canonical(selected: &[Compared]) -> Vec<Compared> {
    let mut out = dedup(selected);
    out.sort();
    out
}

fn dedup<T: Copy + PartialEq>(items: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for item in items {
        if !out.contains(item) {
            out.push(*item);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_creds_runs_before_lease_revoke_whatever_the_order_given() {
        let order = canonical(&[
            Compared::LeaseRevoke,
            Compared::Ceiling,
            Compared::PgCreds,
            Compared::LeaseRevoke,
        ]);
        assert_eq!(
            order,
            vec![Compared::Ceiling, Compared::PgCreds, Compared::LeaseRevoke]
        );
    }

    #[test]
    fn the_service_token_variant_is_only_run_where_it_matters() {
        assert!(Compared::JwtLogin.token_type_matters());
        assert!(Compared::TokenLookup.token_type_matters());
        assert!(!Compared::PgCreds.token_type_matters());
        assert_eq!(bao_role(System::OpenBaoService), bao_setup::ROLE_SERVICE);
        assert_eq!(bao_role(System::OpenBao), bao_setup::ROLE_BATCH);
    }
}
