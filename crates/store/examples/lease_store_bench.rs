//! Lease issuance cost at the store: SQLite vs PostgreSQL.
//!
//! What one credential costs the store on the issuance hot path: the
//! write-ahead `insert_lease`, then the `pending → active` transition (two
//! durable writes). `CONCURRENCY` tasks issue `TOTAL` leases; the output is
//! throughput and latency percentiles per backend, as a Markdown table.
//!
//! PostgreSQL is started by the test kit (root + Debian PostgreSQL 15, as
//! in the tests) twice: durable (`fsync = on`, `synchronous_commit = on`,
//! what production must run) and with the test kit's non-durable settings.
//!
//! ```sh
//! cargo run -p idmint-store --example lease_store_bench
//! ```

use idmint_core::{Lease, LeaseId, LeaseState, RequestId, RevocationHandle, UnixTime};
use idmint_store::{PostgresConfig, PostgresStore, SqliteStore, Store};
use idmint_testkit::postgres::PgServer;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOTAL: usize = 20_000;
const CONCURRENCY: usize = 32;

fn lease(i: usize) -> Lease {
    let now = UnixTime::now();
    Lease {
        id: LeaseId::generate().expect("rng"),
        request_id: RequestId::generate().expect("rng"),
        role: "bench-role".into(),
        issuer: "oauth".into(),
        principal: format!("bench:{}", i % 64),
        policy_version: 1,
        created_at: now,
        expires_at: UnixTime(now.0 + 300),
        state: LeaseState::Pending,
        revocation: RevocationHandle {
            kind: "token_id".into(),
            value: format!("tok-{i}"),
        },
        fingerprint: None,
        attempts: 0,
        next_attempt_at: UnixTime(now.0 + 300),
        last_error: None,
    }
}

struct Outcome {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

async fn run(store: Arc<dyn Store>) -> Outcome {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..CONCURRENCY {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(TOTAL / CONCURRENCY);
            for i in 0..TOTAL / CONCURRENCY {
                let l = lease(t * TOTAL + i);
                let s = Instant::now();
                store.insert_lease(&l).await.expect("insert");
                store
                    .transition_lease(
                        &l.id,
                        LeaseState::Pending,
                        LeaseState::Active,
                        Some("fp"),
                        None,
                    )
                    .await
                    .expect("activate");
                lat.push(s.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(TOTAL);
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    let pick = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Outcome {
        per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50: pick(0.50),
        p99: pick(0.99),
    }
}

async fn postgres(settings: &[(&str, &str)]) -> (PgServer, Arc<dyn Store>) {
    let pg = PgServer::start_with(settings).expect("PostgreSQL");
    let config = PostgresConfig::from_url(&pg.admin_url());
    let store = PostgresStore::open(&config).await.expect("open");
    (pg, Arc::new(store))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("bench.db")).expect("sqlite"));
    let mut rows = vec![(
        "SQLite (WAL, synchronous=FULL, group commit)",
        run(sqlite).await,
    )];
    let (_pg, durable) = postgres(&[
        ("fsync", "on"),
        ("synchronous_commit", "on"),
        ("full_page_writes", "on"),
    ])
    .await;
    rows.push((
        "PostgreSQL 15, durable (fsync, synchronous_commit on)",
        run(durable).await,
    ));
    let (_pg2, fast) = postgres(&[]).await;
    rows.push((
        "PostgreSQL 15, fsync=off, synchronous_commit=off",
        run(fast).await,
    ));
    println!("{TOTAL} leases, {CONCURRENCY} concurrent tasks, insert + activate per lease\n");
    println!("| store | leases/s | p50 | p99 |");
    println!("|---|---:|---:|---:|");
    for (name, o) in rows {
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms |",
            o.per_sec,
            o.p50.as_secs_f64() * 1e3,
            o.p99.as_secs_f64() * 1e3
        );
    }
}
