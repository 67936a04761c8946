use idmint_core::*;
use idmint_store::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn lease(i: i64) -> Lease {
    Lease {
        id: LeaseId::generate().unwrap(),
        request_id: RequestId::generate().unwrap(),
        role: "deploy-web".into(),
        issuer: "oauth".into(),
        principal: format!("repo:acme/app{}", i % 50),
        policy_version: 1,
        created_at: UnixTime(1_750_000_000 + i / 1000),
        expires_at: UnixTime(1_750_000_300 + i / 1000),
        state: LeaseState::Pending,
        revocation: RevocationHandle {
            kind: "token_id".into(),
            value: "tok_x".into(),
        },
        fingerprint: None,
        attempts: 0,
        next_attempt_at: UnixTime(1_750_000_300 + i / 1000),
        last_error: None,
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::args().nth(1).unwrap_or("/tmp/perfdb".into());
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(SqliteStore::open(&std::path::Path::new(&dir).join("x.db")).unwrap());
    rt.block_on(async move {
        let deadline = Instant::now() + Duration::from_secs(4);
        let start = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for t in 0..256i64 {
            let store = store.clone();
            set.spawn(async move {
                let mut n = 0u64;
                let mut i = t * 1_000_000;
                while Instant::now() < deadline {
                    let l = lease(i);
                    store.insert_lease(&l).await.unwrap();
                    assert!(store
                        .transition_lease(
                            &l.id,
                            LeaseState::Pending,
                            LeaseState::Active,
                            Some("fp"),
                            None
                        )
                        .await
                        .unwrap());
                    n += 1;
                    i += 1;
                }
                n
            });
        }
        let mut total = 0;
        while let Some(n) = set.join_next().await {
            total += n.unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{total} issuances in {secs:.2}s = {:.0}/s; live={}",
            total as f64 / secs,
            store.count_leases(true).await.unwrap()
        );
        for e in std::fs::read_dir("/proc/self/task").unwrap() {
            let e = e.unwrap();
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap();
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap();
            let f: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap()
                .split_whitespace()
                .collect();
            let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
            if ticks > 10 {
                println!(
                    "{} cpu {:.2}s = {:.1} us/issuance",
                    comm.trim(),
                    ticks as f64 / 100.0,
                    ticks as f64 * 10_000.0 / total as f64
                );
            }
        }
        let t = Instant::now();
        let due = store
            .due_leases(UnixTime(1_750_000_310), 60, 1000)
            .await
            .unwrap();
        println!("due {} in {:?}", due.len(), t.elapsed());
    });
}
