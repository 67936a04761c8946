//! The behaviour suite and the multi-server properties, against a real
//! PostgreSQL started by the test kit (one per test, a fresh database).

use super::*;
use crate::conformance::{run_store_suite, sample_lease};
use idmint_testkit::postgres::PgServer;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};

/// A new empty database on `pg`, as a store config.
async fn fresh_database(pg: &PgServer) -> PostgresConfig {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!("idm_test_{}", N.fetch_add(1, Ordering::Relaxed));
    let (client, conn) = tokio_postgres::connect(&pg.admin_url(), tokio_postgres::NoTls)
        .await
        .expect("admin connection");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    PostgresConfig::from_url(&format!(
        "postgres://{}:{}@127.0.0.1:{}/{name}",
        pg.admin_user(),
        pg.admin_password(),
        pg.port()
    ))
}

fn start_pg() -> PgServer {
    PgServer::start().expect("PostgreSQL for the store tests")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let pg = start_pg();
    let store = PostgresStore::open(&fresh_database(&pg).await)
        .await
        .expect("open");
    assert!(
        store.describe().starts_with("postgres:"),
        "{}",
        store.describe()
    );
    assert!(
        !store.describe().contains(pg.admin_password()),
        "describe() must not show the password"
    );
    run_store_suite(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_never_claim_the_same_lease() {
    let pg = start_pg();
    let config = fresh_database(&pg).await;
    let a = PostgresStore::open(&config).await.expect("open a");
    let b = PostgresStore::open(&config).await.expect("open b");
    let mut all = BTreeSet::new();
    for i in 0..300 {
        let lease = sample_lease("race:p", "race", 1_000 + i, 2_000 + i);
        a.insert_lease(&lease).await.expect("insert");
        all.insert(lease.id);
    }
    // Both "servers" claim in small batches until nothing is left.
    async fn drain(store: &PostgresStore) -> Vec<LeaseId> {
        let mut got = Vec::new();
        loop {
            let batch = store
                .claim_due_leases(UnixTime(5_000), 60, 7, UnixTime(6_000))
                .await
                .expect("claim");
            if batch.is_empty() {
                return got;
            }
            got.extend(batch.into_iter().map(|l| l.id));
        }
    }
    let (from_a, from_b) = tokio::join!(drain(&a), drain(&b));
    let set_a: BTreeSet<_> = from_a.iter().cloned().collect();
    let set_b: BTreeSet<_> = from_b.iter().cloned().collect();
    assert_eq!(set_a.len(), from_a.len(), "a claimed a lease twice");
    assert_eq!(set_b.len(), from_b.len(), "b claimed a lease twice");
    assert!(
        set_a.is_disjoint(&set_b),
        "a lease was claimed by both servers"
    );
    let union: BTreeSet<_> = set_a.union(&set_b).cloned().collect();
    assert_eq!(union, all, "every due lease was claimed by someone");
}

/// Waits up to 1 s for an event matching `want` on `rx`.
async fn expect_event(
    rx: &mut broadcast::Receiver<StoreEvent>,
    want: impl Fn(&StoreEvent) -> bool,
    what: &str,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(event)) if want(&event) => return,
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => panic!("change feed failed while waiting for {what}: {e}"),
            Err(_) => panic!("{what} did not reach the other server within 1 s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_other_servers() {
    let pg = start_pg();
    let config = fresh_database(&pg).await;
    let writer = PostgresStore::open(&config).await.expect("open writer");
    let reader = PostgresStore::open(&config).await.expect("open reader");
    let mut rx = reader.subscribe().expect("PostgreSQL has a change feed");
    // The listener announces Resync once it listens: from then on nothing
    // committed is missed.
    expect_event(&mut rx, |e| *e == StoreEvent::Resync, "the first resync").await;

    writer
        .deny_token("tok-x", UnixTime(4_000_000_000))
        .await
        .unwrap();
    expect_event(
        &mut rx,
        |e| {
            *e == StoreEvent::TokenDenied {
                token_id: "tok-x".into(),
                expires_at: UnixTime(4_000_000_000),
            }
        },
        "a token denial",
    )
    .await;
    let v = writer.activate_bundle(&[], "alice", "x").await.unwrap();
    expect_event(
        &mut rx,
        |e| *e == StoreEvent::BundleActivated { version: v },
        "a bundle activation",
    )
    .await;
    writer.put_blob("oauth-key-es256", b"k").await.unwrap();
    expect_event(
        &mut rx,
        |e| {
            *e == StoreEvent::BlobChanged {
                name: "oauth-key-es256".into(),
            }
        },
        "a key change",
    )
    .await;
    // A refused conditional activation announces nothing; the next event
    // is the later denial.
    assert_eq!(
        writer
            .activate_bundle_if(Some(v + 5), &[], "mallory", "")
            .await
            .unwrap(),
        None
    );
    writer
        .deny_token("tok-y", UnixTime(4_000_000_001))
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(1), rx.recv())
        .await
        .expect("an event")
        .expect("feed open");
    assert!(
        matches!(&next, StoreEvent::TokenDenied { token_id, .. } if token_id == "tok-y"),
        "a refused activation must not be announced, got {next:?}"
    );
    assert!(
        SqliteProbe::has_no_feed().await,
        "SQLite has no change feed"
    );
}

/// SQLite is single-server: `subscribe` is `None`.
struct SqliteProbe;
impl SqliteProbe {
    async fn has_no_feed() -> bool {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::SqliteStore::open(&dir.path().join("x.db")).expect("sqlite");
        store.subscribe().is_none()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_shared_and_refuse_newer_schemas() {
    let pg = start_pg();
    let config = fresh_database(&pg).await;
    // Servers starting together: exactly one migrates, all succeed.
    let (a, b, c) = tokio::join!(
        PostgresStore::open(&config),
        PostgresStore::open(&config),
        PostgresStore::open(&config)
    );
    let (a, _b, _c) = (a.expect("a"), b.expect("b"), c.expect("c"));
    assert_eq!(
        PostgresStore::migrate_only(&config).await.expect("migrate"),
        (schema::KNOWN_VERSION, schema::KNOWN_VERSION),
        "migrating a current schema is a no-op"
    );
    drop(a);
    let (client, conn) = tokio_postgres::connect(&config.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
        .batch_execute("UPDATE schema_version SET version = 99")
        .await
        .expect("bump");
    let err = PostgresStore::open(&config)
        .await
        .expect_err("newer schema");
    assert!(
        err.to_string()
            .starts_with("database schema v99 is newer than this idmint"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_database_is_a_clear_backend_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let config = PostgresConfig::from_url(&format!("postgres://u:secretpw@127.0.0.1:{port}/d"));
    let err = PostgresStore::open(&config)
        .await
        .expect_err("nothing listens");
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert!(msg.contains("cannot connect to PostgreSQL"), "{msg}");
    assert!(!msg.contains("secretpw"), "the password leaked: {msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_deployment_copies_into_postgres() {
    let pg = start_pg();
    let dir = tempfile::tempdir().expect("tempdir");
    let from = crate::SqliteStore::open(&dir.path().join("dev.db")).expect("sqlite");
    crate::copy::tests::fill(&from).await;
    let to = PostgresStore::open(&fresh_database(&pg).await)
        .await
        .expect("postgres");
    let mut last_leases = 0;
    let report = crate::copy::copy_store(&from, &to, false, &mut |phase, done, _| {
        if phase == crate::copy::CopyPhase::Leases {
            last_leases = done;
        }
    })
    .await
    .expect("copy");
    assert_eq!(report.leases, 2500);
    assert_eq!(last_leases, 2500, "progress reached the total");
    assert_eq!(report.active_bundle, Some(2));
    let filter = LeaseFilter {
        principal: Some("copy:p".into()),
        limit: 5,
        ..Default::default()
    };
    assert_eq!(
        from.list_leases(&filter).await.unwrap(),
        to.list_leases(&filter).await.unwrap(),
        "newest-first listings agree after the copy"
    );
    assert_eq!(
        to.active_bundle().await.unwrap().map(|b| b.author),
        Some("bob".to_string())
    );
    // The copied store keeps numbering bundles after the imported ones.
    assert_eq!(to.activate_bundle(&[], "carol", "").await.unwrap(), 3);
}

/// A throwaway CA and a server certificate for 127.0.0.1, made with the
/// `openssl` command line tool, readable by the `postgres` OS user.
struct TestCerts {
    dir: std::path::PathBuf,
}

impl TestCerts {
    fn create(name: &str) -> Self {
        let dir = std::path::PathBuf::from(format!("/tmp/idm-pgtls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cert dir");
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("ext");
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=idmint test CA",
        ]);
        run(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        let chown = std::process::Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .expect("chown");
        assert!(chown.success());
        Self { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

impl Drop for TestCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_against_a_tls_server() {
    let certs = TestCerts::create("server");
    let other_ca = TestCerts::create("other");
    let (cert, key) = (certs.path("server.pem"), certs.path("server.key"));
    let pg = PgServer::start_with(&[
        ("ssl", "on"),
        ("ssl_cert_file", cert.as_str()),
        ("ssl_key_file", key.as_str()),
    ])
    .expect("PostgreSQL with TLS");
    let base = fresh_database(&pg).await;

    let mut require = base.clone();
    require.tls = Some(PgTlsMode::Require);
    let store = PostgresStore::open(&require).await.expect("tls = require");
    store
        .put_blob("over-tls", b"x")
        .await
        .expect("write over TLS");

    let mut verify = base.clone();
    verify.tls = Some(PgTlsMode::VerifyFull);
    verify.ca_file = Some(certs.dir.join("ca.pem"));
    let store = PostgresStore::open(&verify)
        .await
        .expect("tls = verify-full");
    assert_eq!(
        store.get_blob("over-tls").await.unwrap().as_deref(),
        Some(&b"x"[..])
    );

    let mut wrong = base.clone();
    wrong.tls = Some(PgTlsMode::VerifyFull);
    wrong.ca_file = Some(other_ca.dir.join("ca.pem"));
    let err = PostgresStore::open(&wrong)
        .await
        .expect_err("a certificate from another CA must be refused");
    let msg = err.to_string();
    assert!(msg.contains("cannot connect to PostgreSQL"), "{msg}");
    assert!(msg.to_lowercase().contains("certificate"), "{msg}");
}
