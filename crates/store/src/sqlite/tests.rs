use super::*;
use crate::conformance::{run_store_suite, sample_lease};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

fn temp_store() -> (tempfile::TempDir, PathBuf, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("idmint.db");
    let store = SqliteStore::open(&path).unwrap();
    (dir, path, store)
}

#[tokio::test]
async fn conformance_suite() {
    let (_dir, _path, store) = temp_store();
    run_store_suite(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_multi_thread_runtime() {
    let (_dir, _path, store) = temp_store();
    run_store_suite(&store).await;
}

#[tokio::test]
async fn creates_private_file_and_describes_itself() {
    let (_dir, path, store) = temp_store();
    assert_eq!(store.describe(), format!("sqlite:{}", path.display()));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "database file must be private");
    // Force the WAL file into existence and check it inherits the mode.
    store.deny_token("t", UnixTime(10)).await.unwrap();
    let wal = path.with_extension("db-wal");
    let wal_mode = std::fs::metadata(&wal).unwrap().permissions().mode() & 0o777;
    assert_eq!(wal_mode, 0o600, "WAL file must be private too");
    let journal: String = open_reader(&path)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
}

#[tokio::test]
async fn persists_across_reopen() {
    let (_dir, path, store) = temp_store();
    let mut lease = sample_lease("p:alice", "role", 1_000, 2_000);
    lease.policy_version = u64::MAX; // stored as the same bits in a signed column
    lease.attempts = u32::MAX - 1;
    store.insert_lease(&lease).await.unwrap();
    store.put_blob_if_absent("k", b"sealed").await.unwrap();
    let sources = vec![SourceFile {
        name: "a.cedar".into(),
        text: "x".into(),
    }];
    store.activate_bundle(&sources, "alice", "c").await.unwrap();
    store.deny_token("tok", UnixTime(99)).await.unwrap();
    drop(store);

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.get_lease(&lease.id).await.unwrap(),
        Some(lease.clone())
    );
    assert_eq!(
        store.get_blob("k").await.unwrap().as_deref(),
        Some(&b"sealed"[..])
    );
    let active = store.active_bundle().await.unwrap().unwrap();
    assert_eq!((active.version, active.sources), (1, sources));
    assert_eq!(store.activate_bundle(&[], "bob", "").await.unwrap(), 2);
    assert_eq!(
        store.denied_tokens(UnixTime(0)).await.unwrap(),
        vec![("tok".to_string(), UnixTime(99))]
    );
    // The attempt counter saturates instead of overflowing u32.
    store
        .record_revoke_failure(&lease.id, UnixTime(5), "e")
        .await
        .unwrap();
    store
        .record_revoke_failure(&lease.id, UnixTime(6), "e")
        .await
        .unwrap();
    let reread = store.get_lease(&lease.id).await.unwrap().unwrap();
    assert_eq!(reread.attempts, u32::MAX);
}

#[tokio::test]
async fn refuses_newer_schema() {
    let (_dir, path, store) = temp_store();
    drop(store);
    {
        let conn = Connection::open(&path).unwrap();
        assert_eq!(
            schema::recorded_version(&conn).unwrap(),
            schema::KNOWN_VERSION
        );
        conn.execute("UPDATE schema_version SET version = 3 WHERE id = 1", [])
            .unwrap();
    }
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Migration(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "database schema v3 is newer than this idmint (knows v{}): upgrade idmint",
            schema::KNOWN_VERSION
        )),
        "{msg}"
    );
    // Refusing changed nothing.
    let conn = Connection::open(&path).unwrap();
    assert_eq!(schema::recorded_version(&conn).unwrap(), 3);
}

#[tokio::test]
async fn reopening_a_current_schema_is_a_no_op() {
    let (_dir, path, store) = temp_store();
    drop(store);
    let first = SqliteStore::open(&path).unwrap();
    drop(first);
    let conn = Connection::open(&path).unwrap();
    assert_eq!(
        schema::recorded_version(&conn).unwrap(),
        schema::KNOWN_VERSION
    );
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1);
}

#[test]
fn refuses_a_file_that_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(err.to_string().contains("not a SQLite database"), "{err}");
}

/// Real parallelism: 8 spawned tasks on a multi-threaded runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_inserts_from_spawned_tasks_are_all_stored() {
    let (_dir, _path, store) = temp_store();
    let store = Arc::new(store);
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..8 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let mut ids = Vec::with_capacity(500);
            for i in 0..500 {
                let lease = sample_lease(&format!("par:{task}"), "r", i, i + 60);
                store.insert_lease(&lease).await.unwrap();
                ids.push(lease.id);
            }
            ids
        });
    }
    let mut expected = BTreeSet::new();
    while let Some(ids) = tasks.join_next().await {
        expected.extend(ids.unwrap());
    }
    assert_eq!(expected.len(), 4000);
    assert_eq!(store.count_leases(false).await.unwrap(), 4000);
    let listed = store
        .list_leases(&LeaseFilter {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let listed: BTreeSet<LeaseId> = listed.into_iter().map(|l| l.id).collect();
    assert_eq!(listed, expected);
}

/// A failing job inside a group-commit batch (a duplicate id) is rolled back
/// alone; the jobs batched with it still commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_write_does_not_fail_its_batch() {
    let (_dir, _path, store) = temp_store();
    let store = Arc::new(store);
    let existing = sample_lease("batch:x", "r", 1, 2);
    store.insert_lease(&existing).await.unwrap();

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let store = Arc::clone(&store);
        let lease = if i % 2 == 0 {
            let mut dup = sample_lease("batch:dup", "r", 1, 2);
            dup.id = existing.id.clone();
            dup
        } else {
            sample_lease("batch:new", "r", 1, 2)
        };
        tasks.spawn(async move { (i, lease.id.clone(), store.insert_lease(&lease).await) });
    }
    let mut fresh = BTreeSet::new();
    while let Some(joined) = tasks.join_next().await {
        let (i, id, result) = joined.unwrap();
        if i % 2 == 0 {
            assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
        } else {
            result.unwrap();
            fresh.insert(id);
        }
    }
    let listed = store
        .list_leases(&LeaseFilter {
            principal: Some("batch:new".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        listed.into_iter().map(|l| l.id).collect::<BTreeSet<_>>(),
        fresh
    );
    assert_eq!(store.count_leases(false).await.unwrap(), 101);
    assert_eq!(
        store.get_lease(&existing.id).await.unwrap(),
        Some(existing),
        "duplicates never overwrite"
    );
}

/// The queries whose cost must not grow with the number of leases read
/// through an index, never a full scan or a sort of all matching rows.
#[test]
fn query_plans_use_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    let plan = |sql: &str| -> Vec<String> {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, String>(3)).unwrap();
        rows.map(Result::unwrap).collect()
    };
    let due_sql = sql::DUE_LEASES.replace("?1", "1000").replace("?2", "10");
    let stale_sql = sql::STALE_PENDING_LEASES
        .replace("?1", "1000")
        .replace("?2", "940")
        .replace("?3", "60")
        .replace("?4", "10");
    let claim_due_sql = sql::CLAIMABLE_DUE_LEASES
        .replace("?1", "1000")
        .replace("?2", "10");
    let claim_stale_sql = sql::CLAIMABLE_STALE_PENDING_LEASES
        .replace("?1", "1000")
        .replace("?2", "940")
        .replace("?3", "60")
        .replace("?4", "10");
    let export_sql = sql::EXPORT_LEASES
        .replace("?1", "'lse_x'")
        .replace("?2", "10");
    let cases: [(&str, String, &str); 9] = [
        ("due", due_sql, "leases_due"),
        ("stale pending", stale_sql, "leases_pending"),
        ("claimable due", claim_due_sql, "leases_due"),
        ("claimable stale pending", claim_stale_sql, "leases_pending"),
        (
            "export (rowid keyset)",
            export_sql,
            "sqlite_autoindex_leases_1",
        ),
        (
            "count live",
            sql::COUNT_LIVE_LEASES.to_string(),
            "leases_due",
        ),
        (
            "by principal",
            format!(
                "{} WHERE principal = 'x' ORDER BY rowid DESC LIMIT 10",
                sql::LIST_LEASES_PREFIX
            ),
            "leases_by_principal",
        ),
        (
            "denied tokens",
            sql::DENIED_TOKENS.replace("?1", "5"),
            "denylist_by_expiry",
        ),
        (
            "purge denials",
            sql::PURGE_DENIALS.replace("?1", "5"),
            "denylist_by_expiry",
        ),
    ];
    for (name, sql, index) in cases {
        let steps = plan(&sql);
        let joined = steps.join(" | ");
        assert!(
            joined.contains(&format!("INDEX {index}")),
            "{name}: expected index {index}, plan: {joined}"
        );
        assert!(
            !joined.contains("TEMP B-TREE"),
            "{name}: must not sort, plan: {joined}"
        );
        assert!(
            !steps
                .iter()
                .any(|s| s == "SCAN leases" || s == "SCAN denylist"),
            "{name}: full scan, plan: {joined}"
        );
    }
    let get = plan(&sql::GET_LEASE.replace("?1", "'lse_x'")).join(" | ");
    assert!(get.contains("sqlite_autoindex_leases_1"), "{get}");
}

/// The checkpoint thread folds the WAL back into the database file without
/// any help from the writer (whose own auto-checkpoint threshold is far
/// above what this test writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_checkpoints_copy_the_wal_into_the_database_file() {
    let (_dir, path, store) = temp_store();
    let before = std::fs::metadata(&path).unwrap().len();
    let store = Arc::new(store);
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..20 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            for i in 0..100 {
                let lease = sample_lease(&format!("ckpt:{task}"), "r", i, i + 60);
                store.insert_lease(&lease).await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let size = std::fs::metadata(&path).unwrap().len();
        if size >= before + 256 * 1024 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "database file is still {size} bytes: the WAL was never checkpointed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.count_leases(false).await.unwrap(), 2000);
}
