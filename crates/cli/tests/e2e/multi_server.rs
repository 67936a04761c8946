//! Several active idmint servers on one PostgreSQL database: real
//! PostgreSQL (test kit), three real `idmint server` processes on different
//! ports with one shared root key, all started with `--store postgres://…`
//! (through `IDMINT_STORE`).
//!
//! * a session revoked on one server is refused by the others within 1 s
//!   (`LISTEN/NOTIFY`);
//! * a server killed with SIGKILL under a load of issuances loses no lease,
//!   no lease is revoked twice, and clients retrying elsewhere succeed;
//! * PostgreSQL restarted under load: requests during the outage get clear
//!   503s, servers recover without a restart, and every credential handed
//!   out has a durable lease row and audit event.

use crate::common;

use common::{bin, github_oidc, job_token};
use idmint_testkit::postgres::PgServer;
use idmint_testkit::server::write_root_key;
use idmint_testkit::{free_port, poll_until, IdmintServer, Idp, ServerSpec};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `n` servers sharing `pg`'s database and one new root key.
async fn cluster(
    n: usize,
    idp: &Idp,
    pg: &PgServer,
    spec: impl Fn() -> ServerSpec,
) -> anyhow::Result<Vec<IdmintServer>> {
    let keys = tempfile::tempdir()?;
    let root_key = keys.path().join("root.key");
    write_root_key(&root_key)?;
    cluster_with_key(n, idp, pg, spec, &root_key, "").await
}

/// `n` servers sharing `pg`'s database, sealed with the key in `root_key`.
async fn cluster_with_key(
    n: usize,
    idp: &Idp,
    pg: &PgServer,
    spec: impl Fn() -> ServerSpec,
    root_key: &Path,
    extra_toml: &str,
) -> anyhow::Result<Vec<IdmintServer>> {
    let mut servers = Vec::new();
    for _ in 0..n {
        let dir = tempfile::Builder::new().prefix("idmint-srv-").tempdir()?;
        let port = free_port()?;
        let mut s = spec();
        s.oidc = vec![github_oidc(idp.issuer())];
        let config = s.write(dir.path(), port)?;
        if !extra_toml.is_empty() {
            let text = std::fs::read_to_string(&config)?;
            std::fs::write(&config, format!("{text}\n{extra_toml}\n"))?;
        }
        std::fs::copy(root_key, dir.path().join("root.key"))?;
        let audit = dir.path().join("audit.jsonl");
        let env = vec![("IDMINT_STORE".to_string(), pg.admin_url())];
        servers.push(IdmintServer::start_with_config(bin(), dir, config, port, audit, env).await?);
    }
    Ok(servers)
}

/// A session token from `server` for the fixture identity (`acme/app`, main).
async fn session(server: &IdmintServer, idp: &Idp) -> anyhow::Result<String> {
    let r = server
        .api()
        .login(&job_token(idp, json!({})).await?)
        .await?;
    anyhow::ensure!(r.status == 200, "login: {}", r.summary());
    Ok(r.body["token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no token in {}", r.summary()))?
        .to_string())
}

/// Direct SQL on the shared database (the test's view of what is durable).
async fn db(pg: &PgServer) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(&pg.admin_url(), tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// Every audit event of every server, including a killed one's file.
fn all_events(files: &[&Path]) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for f in files {
        // A SIGKILLed server may leave a torn last line; whole lines count.
        let text = std::fs::read_to_string(f)?;
        out.extend(
            text.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok()),
        );
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_on_one_server_is_enforced_by_the_others_within_a_second() -> anyhow::Result<()>
{
    let pg = tokio::task::spawn_blocking(PgServer::start).await??;
    let idp = Idp::start().await?;
    let servers = cluster(3, &idp, &pg, ServerSpec::default).await?;
    let (a, b, c) = (&servers[0], &servers[1], &servers[2]);

    // Issue on A: a session and a credential.
    let token = session(a, &idp).await?;
    let creds = a.api().creds(&token, "demo-api", &json!({})).await?;
    assert_eq!(creds.status, 200, "{}", creds.summary());
    // The session works on C: keys are shared through the sealed store.
    let before = c.api().get("/api/v1/whoami", Some(&token)).await?;
    assert_eq!(before.status, 200, "{}", before.summary());

    // Revoke on B.
    let out = b.api().post_empty("/api/v1/logout", Some(&token)).await?;
    assert_eq!(out.status, 204, "{}", out.summary());
    let revoked_at = Instant::now();

    // Refused on C (and A) within 1 s.
    for (name, server) in [("C", c), ("A", a)] {
        poll_until(
            &format!("server {name} to refuse the revoked session"),
            Duration::from_secs(1),
            || async {
                let r = server.api().get("/api/v1/whoami", Some(&token)).await?;
                Ok((r.status == 401).then_some(()))
            },
        )
        .await?;
    }
    assert!(
        revoked_at.elapsed() < Duration::from_secs(1),
        "propagation took {:?}",
        revoked_at.elapsed()
    );
    let refused = c.api().creds(&token, "demo-api", &json!({})).await?;
    assert_eq!(refused.status, 401, "{}", refused.summary());

    // The denial is in the database, so a server started later knows it too.
    let rows = db(&pg)
        .await?
        .query("SELECT token_id FROM denylist", &[])
        .await?;
    assert_eq!(rows.len(), 1, "one denial stored");
    Ok(())
}

/// Outcome of one client's load run.
#[derive(Default)]
struct LoadResult {
    /// lease id -> index of the server that issued it.
    issued: BTreeMap<String, usize>,
    /// Requests that failed on one server and then succeeded on another.
    retried_elsewhere: usize,
}

/// Issues `count` credentials of `role`, starting on server `first` and
/// moving to the next server whenever one fails (connection refused, 5xx).
async fn issue_with_failover(
    urls: Arc<Vec<idmint_testkit::RawApi>>,
    token: String,
    role: &'static str,
    first: usize,
    count: usize,
) -> anyhow::Result<LoadResult> {
    let mut out = LoadResult::default();
    let mut at = first;
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.issued.len() < count {
        anyhow::ensure!(Instant::now() < deadline, "load did not finish in 60 s");
        let mut failed_once = false;
        loop {
            let api = &urls[at % urls.len()];
            match api.creds(&token, role, &json!({})).await {
                Ok(r) if r.status == 200 => {
                    let id = r.body["lease_id"].as_str().unwrap_or_default().to_string();
                    anyhow::ensure!(!id.is_empty(), "no lease id: {}", r.summary());
                    out.issued.insert(id, at % urls.len());
                    if failed_once {
                        out.retried_elsewhere += 1;
                    }
                    break;
                }
                Ok(r) if r.status >= 500 => {}
                Ok(r) => anyhow::bail!("unexpected answer: {}", r.summary()),
                Err(_) => {}
            }
            failed_once = true;
            at += 1;
            anyhow::ensure!(Instant::now() < deadline, "no server answered");
        }
        at += 1;
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_under_load_loses_no_lease_and_none_is_revoked_twice() -> anyhow::Result<()>
{
    let pg = tokio::task::spawn_blocking(PgServer::start).await??;
    let idp = Idp::start().await?;
    let spec = || {
        ServerSpec::default()
            .set_reaper("claim_for", "3s")
            .set_reaper("pending_grace", "2s")
    };
    let mut servers = cluster(3, &idp, &pg, spec).await?;
    let token = session(&servers[1], &idp).await?;
    let apis: Arc<Vec<_>> = Arc::new(
        servers
            .iter()
            .map(|s| idmint_testkit::RawApi::new(&s.base_url()))
            .collect::<Result<_, _>>()?,
    );
    // Four clients, 40 short-lived (2 s) credentials each, spread over all
    // three servers; server 0 is killed while they run.
    let mut tasks = Vec::new();
    for client in 0..4 {
        tasks.push(tokio::spawn(issue_with_failover(
            apis.clone(),
            token.clone(),
            "short-lived",
            client,
            40,
        )));
    }
    let watcher = db(&pg).await?;
    poll_until("some issuances", Duration::from_secs(30), || async {
        let n: i64 = watcher
            .query_one("SELECT count(*) FROM leases", &[])
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        Ok((n >= 30).then_some(()))
    })
    .await?;
    servers[0].kill()?;
    let mut issued = BTreeMap::new();
    let mut retried = 0;
    for t in tasks {
        let r = t.await??;
        retried += r.retried_elsewhere;
        issued.extend(r.issued);
    }
    assert_eq!(issued.len(), 160, "every client got all its credentials");
    assert!(
        retried > 0,
        "some requests hit the killed server and succeeded on another"
    );

    // No lease lost: every credential handed out has its row, and the two
    // survivors revoke every lease (also those the dead server had claimed
    // or left pending) once claims lapse.
    let client = db(&pg).await?;
    let stored: BTreeSet<String> = client
        .query("SELECT id FROM leases", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for id in issued.keys() {
        assert!(
            stored.contains(id),
            "lease {id} was handed out but not stored"
        );
    }
    poll_until(
        "every lease to be revoked",
        Duration::from_secs(40),
        || async {
            let live: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM leases WHERE state IN ('pending', 'active')",
                    &[],
                )
                .await
                .map(|r| r.get(0))
                .unwrap_or(-1);
            Ok((live == 0).then_some(()))
        },
    )
    .await?;
    let irrevocable: i64 = client
        .query_one("SELECT count(*) FROM leases WHERE state <> 'revoked'", &[])
        .await?
        .get(0);
    assert_eq!(irrevocable, 0, "every lease ends revoked");

    // None revoked twice: across all three audit logs, at most one
    // revocation event per lease.
    let files: Vec<&Path> = servers.iter().map(|s| s.audit_file()).collect();
    let events = all_events(&files)?;
    let mut revocations: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        if e["event"] == "lease_expired" || e["event"] == "lease_revoked" {
            if let Some(id) = e["lease_id"].as_str() {
                *revocations.entry(id.to_string()).or_default() += 1;
            }
        }
    }
    let twice: Vec<_> = revocations.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "leases revoked more than once: {twice:?}");
    let survivors_revoked = issued
        .iter()
        .filter(|(id, _)| revocations.get(*id) == Some(&1))
        .count();
    assert!(
        survivors_revoked >= issued.len() - 5,
        "only {survivors_revoked} of {} revocations are audited",
        issued.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_under_load_gives_clear_503s_and_servers_recover() -> anyhow::Result<()> {
    let pg = tokio::task::spawn_blocking(PgServer::start).await??;
    let idp = Idp::start().await?;
    let servers = cluster(2, &idp, &pg, ServerSpec::default).await?;
    let token = session(&servers[0], &idp).await?;
    let pg = Arc::new(std::sync::Mutex::new(pg));

    // Baseline on both servers.
    for s in &servers {
        let r = s.api().creds(&token, "demo-api", &json!({})).await?;
        assert_eq!(r.status, 200, "{}", r.summary());
    }

    // Background load on both servers for the whole outage and recovery:
    // every answer must be a credential or a clear 503.
    let stop_load = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for worker in 0..3usize {
        let api = idmint_testkit::RawApi::new(&servers[worker % 2].base_url())?;
        let (token, stop_load) = (token.clone(), stop_load.clone());
        load.push(tokio::spawn(async move {
            let mut seen: Vec<(usize, u16, Option<String>)> = Vec::new();
            while !stop_load.load(std::sync::atomic::Ordering::Relaxed) {
                let r = api.creds(&token, "demo-api", &json!({})).await?;
                let lease = r.body["lease_id"].as_str().map(str::to_string);
                seen.push((worker % 2, r.status, lease));
            }
            Ok::<_, anyhow::Error>(seen)
        }));
    }

    // Stop the database; every request meanwhile gets a clear 503 and no
    // credential.
    {
        let pg = pg.clone();
        tokio::task::spawn_blocking(move || {
            pg.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.stop()?;
            Ok::<_, anyhow::Error>(())
        })
        .await??;
    }
    let mut handed_out: Vec<(usize, String)> = Vec::new();
    let mut refusals = 0;
    for round in 0..6 {
        for s in &servers {
            let r = s.api().creds(&token, "demo-api", &json!({})).await?;
            match r.status {
                503 => {
                    assert_eq!(r.error_code(), Some("store_unavailable"), "{}", r.summary());
                    assert!(
                        r.body.get("credential").is_none() && !r.text.contains("access_token"),
                        "a 503 carries no credential: {}",
                        r.summary()
                    );
                    let msg = r.error_message().unwrap_or_default();
                    assert!(
                        msg.contains("PostgreSQL"),
                        "the 503 names the database: {msg}"
                    );
                    refusals += 1;
                }
                200 => anyhow::bail!(
                    "round {round}: a credential was issued while the database was down: {}",
                    r.summary()
                ),
                other => anyhow::bail!("unexpected HTTP {other}: {}", r.summary()),
            }
        }
    }
    assert_eq!(refusals, 12);
    for s in &servers {
        assert_eq!(
            s.get("/readyz").await?.status,
            503,
            "not ready without the store"
        );
    }

    // Start it again: both servers recover on their own.
    {
        let pg = pg.clone();
        tokio::task::spawn_blocking(move || {
            pg.lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .restart()?;
            Ok::<_, anyhow::Error>(())
        })
        .await??;
    }
    for (i, s) in servers.iter().enumerate() {
        let id = poll_until(
            &format!("server {i} to issue again after the restart"),
            Duration::from_secs(20),
            || async {
                let r = s.api().creds(&token, "demo-api", &json!({})).await?;
                Ok((r.status == 200)
                    .then(|| r.body["lease_id"].as_str().map(str::to_string))
                    .flatten())
            },
        )
        .await?;
        handed_out.push((i, id));
        assert_eq!(s.get("/readyz").await?.status, 200);
    }
    stop_load.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut load_503s = 0;
    for task in load {
        for (i, status, lease) in task.await?? {
            match (status, lease) {
                (200, Some(id)) => handed_out.push((i, id)),
                (503, None) => load_503s += 1,
                other => anyhow::bail!("load got {other:?}: neither a credential nor a clear 503"),
            }
        }
    }
    assert!(load_503s > 0, "the load saw the outage");

    // Every credential handed out after recovery has a durable lease row
    // and an audit event on the server that issued it.
    let admin_url = pg
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .admin_url();
    let (client, conn) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    for (i, id) in &handed_out {
        let n: i64 = client
            .query_one("SELECT count(*) FROM leases WHERE id = $1", &[id])
            .await?
            .get(0);
        assert_eq!(n, 1, "lease {id} is durable");
        let events = servers[*i].audit_events()?;
        assert!(
            events
                .iter()
                .any(|e| e["lease_id"] == id.as_str() && e["outcome"] == "success"),
            "lease {id} has its audit event on server {i}"
        );
    }

    // One hash chain per server; `audit verify` checks them all at once.
    let out = std::process::Command::new(bin())
        .args(["audit", "verify"])
        .args(servers.iter().map(|s| s.audit_file()))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("2 logs") && text.contains("every chain is intact"),
        "{text}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_deployment_moves_into_postgres_with_store_migrate() -> anyhow::Result<()> {
    let pg = tokio::task::spawn_blocking(PgServer::start).await??;
    let idp = Idp::start().await?;
    // A single-node SQLite deployment with a session and a credential.
    let mut single = IdmintServer::start(
        bin(),
        ServerSpec::with_oidc(vec![github_oidc(idp.issuer())]),
    )
    .await?;
    let token = session(&single, &idp).await?;
    let creds = single.api().creds(&token, "demo-api", &json!({})).await?;
    assert_eq!(creds.status, 200, "{}", creds.summary());
    let lease_id = creds.body["lease_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    single.stop()?;

    let sqlite_url = format!("sqlite://{}", single.dir().join("idmint.db").display());
    let migrate = |args: Vec<String>| {
        std::process::Command::new(bin())
            .env_remove("IDMINT_STORE")
            .args(["store", "migrate"])
            .args(args)
            .output()
    };
    let out = migrate(vec![
        "--from".into(),
        sqlite_url.clone(),
        "--to".into(),
        pg.admin_url(),
        "-o".into(),
        "json".into(),
    ])?;
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["verified"], true, "{report}");
    assert_eq!(report["leases"], 1, "{report}");
    assert_eq!(report["active_bundle"], 1, "{report}");
    assert!(
        report["blobs"].as_u64().unwrap_or(0) >= 3,
        "keys copied: {report}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(pg.admin_password())
            && !stderr.contains(pg.admin_password()),
        "the database password must not be printed"
    );

    // Copying again into the now non-empty database is refused.
    let again = migrate(vec![
        "--from".into(),
        sqlite_url,
        "--to".into(),
        pg.admin_url(),
    ])?;
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("--force"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // The schema is current.
    let schema = migrate(vec!["--store".into(), pg.admin_url()])?;
    assert!(schema.status.success());
    assert!(
        String::from_utf8_lossy(&schema.stdout).contains("already at schema v"),
        "{}",
        String::from_utf8_lossy(&schema.stdout)
    );

    // A PostgreSQL server with the same root key carries on: the old session
    // is valid (same session key), the lease is there, issuing works.
    let servers = cluster_with_key(
        1,
        &idp,
        &pg,
        ServerSpec::default,
        &single.dir().join("root.key"),
        "",
    )
    .await?;
    let who = servers[0].api().get("/api/v1/whoami", Some(&token)).await?;
    assert_eq!(who.status, 200, "{}", who.summary());
    let n: i64 = db(&pg)
        .await?
        .query_one("SELECT count(*) FROM leases WHERE id = $1", &[&lease_id])
        .await?
        .get(0);
    assert_eq!(n, 1, "the lease was copied");
    let more = servers[0]
        .api()
        .creds(&token, "demo-api", &json!({}))
        .await?;
    assert_eq!(more.status, 200, "{}", more.summary());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_activation_reaches_every_server_within_a_second() -> anyhow::Result<()> {
    let pg = tokio::task::spawn_blocking(PgServer::start).await??;
    let idp = Idp::start().await?;
    let keys = tempfile::tempdir()?;
    let root_key = keys.path().join("root.key");
    write_root_key(&root_key)?;
    // Polling for activations is pushed out of the way: only the change
    // feed can deliver the new version in time.
    let servers = cluster_with_key(
        2,
        &idp,
        &pg,
        ServerSpec::default,
        &root_key,
        "[governance]\nsync_interval = \"1h\"",
    )
    .await?;
    let version = |s: &IdmintServer| {
        let api = s.api().clone();
        async move {
            let r = api.get("/readyz", None).await?;
            Ok::<_, idmint_testkit::TestkitError>(r.body["policy_version"].as_u64())
        }
    };
    for s in &servers {
        assert_eq!(version(s).await?, Some(1));
    }
    // Another server's activation, as the store commits it: new version,
    // active pointer and notification in one transaction.
    let mut client = db(&pg).await?;
    let tx = client.transaction().await?;
    tx.batch_execute(
        "INSERT INTO bundles (version, sources, created_at, author, comment) \
           SELECT 2, sources, created_at + 1, 'carol', 'activated elsewhere' \
           FROM bundles WHERE version = 1; \
         UPDATE active_bundle SET version = 2 WHERE id = 1; \
         SELECT pg_notify('idmint_bundle', '2');",
    )
    .await?;
    tx.commit().await?;
    let activated = Instant::now();
    for (i, s) in servers.iter().enumerate() {
        poll_until(
            &format!("server {i} to install policy v2"),
            Duration::from_secs(1),
            || async { Ok((version(s).await? == Some(2)).then_some(())) },
        )
        .await?;
    }
    assert!(activated.elapsed() < Duration::from_secs(1));
    Ok(())
}
