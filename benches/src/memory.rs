//! `memory`: a million logins against one server, RSS sampled after every
//! batch.
//!
//! Tokens are minted one batch at a time, between batches, so the
//! generator's memory stays at one batch of tokens and minting never
//! overlaps the load. The first batch is the warm-up: growth is measured
//! from the RSS after it.

use crate::cli::MemoryArgs;
use crate::error::Result;
use crate::fixture::{Issuer, Server, ServerOptions, SignAlg};
use crate::loadgen::{self, LoadPlan, ProgressUnit};
use crate::procstat::ProcSample;
use crate::progress;
use crate::report::{MemoryReport, MemorySample};
use crate::scenario::Scenario;
use crate::supply::TokenSupply;
use crate::tokens::TokenPool;
use crate::workload::ScenarioWorkload;
use crate::RunEnv;
use std::path::Path;
use std::sync::Arc;

const MIB: f64 = 1024.0 * 1024.0;

pub async fn run(args: &MemoryArgs, env: &RunEnv) -> Result<MemoryReport> {
    let issuer = Issuer::start(&[args.alg]).await?;
    let mut supply = TokenSupply::new(
        &issuer,
        &[args.alg],
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
    env.note(&format!(
        "idmint server pid {} on {} (data {}), replay protection {}",
        server
            .pid()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "?".into()),
        server.addr(),
        server.data_dir().display(),
        if args.common.replay_protection {
            "on"
        } else {
            "off"
        },
    ));
    let preflight = Arc::new(TokenPool::new(supply.mint(args.alg, 1).await?));
    server
        .preflight(Scenario::Login, || preflight.take().map(str::to_string))
        .await?;

    env.settle(server.pid()).await;
    let batch = args.batch.max(1);
    let mut done = 0u64;
    let mut samples = Vec::new();
    while done < args.logins {
        let count = batch.min(args.logins - done);
        let tokens = supply
            .mint(args.alg, usize::try_from(count).unwrap_or(usize::MAX))
            .await?;
        let bar = progress::counter(
            count,
            &format!("logins {}..{}", done + 1, done + count),
            env.quiet,
        );
        let outcome = loadgen::run(LoadPlan {
            addr: server.addr(),
            more: Vec::new(),
            workload: ScenarioWorkload::new(Scenario::Login, Arc::new(TokenPool::new(tokens))),
            concurrency: args.concurrency,
            warmup: std::time::Duration::ZERO,
            duration: None,
            server_pid: server.pid(),
            clock_ticks: env.clock_ticks,
            progress: bar.clone(),
            progress_unit: ProgressUnit::Requests,
        })
        .await?;
        bar.finish_and_clear();
        done += count;
        let rss = server
            .pid()
            .and_then(|pid| ProcSample::read(pid, env.clock_ticks))
            .map(|s| s.rss_bytes as f64 / MIB);
        let sample = MemorySample {
            logins: done,
            batch_req_per_s: outcome.rate(),
            batch_p99_ms: outcome.latency_ms(0.99),
            batch_errors: outcome.errors(),
            errors_by_status: outcome
                .errors_by_status
                .iter()
                .map(|(s, n)| (s.to_string(), *n))
                .collect(),
            server_rss_mb: rss,
            audit_mb: file_mb(&[server.audit_file()]),
            other_cores: crate::report::other_cores(&outcome),
            db_mb: file_mb(&[
                &server.data_dir().join("idmint.db"),
                &server.data_dir().join("idmint.db-wal"),
                &server.data_dir().join("idmint.db-shm"),
            ]),
        };
        env.note(&format!(
            "{:>9} logins: {:>8.0} req/s, p99 {:.2} ms, errors {}, server RSS {} MB",
            sample.logins,
            sample.batch_req_per_s,
            sample.batch_p99_ms,
            sample.batch_errors,
            rss.map(|r| format!("{r:.1}")).unwrap_or_else(|| "?".into()),
        ));
        for failure in &outcome.failures {
            env.note(&format!("  load task stopped early: {failure}"));
        }
        samples.push(sample);
    }
    server.stop()?;
    Ok(MemoryReport::new(samples))
}

/// Total size of the files that exist, in MiB.
fn file_mb(paths: &[&Path]) -> Option<f64> {
    let sizes: Vec<u64> = paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .collect();
    (!sizes.is_empty()).then(|| sizes.iter().sum::<u64>() as f64 / MIB)
}
