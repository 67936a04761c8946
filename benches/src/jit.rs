//! `idmint-bench jit`: how long a just-in-time SSH grant takes to become a
//! usable account on the host (issue 4's target: grant → account ready
//! < 200 ms p99).
//!
//! Real processes only, as in the SSH end-to-end tests: the `idmint server`
//! (SQLite store, audit on) with one `[[issuer.ssh]]` host, and the real
//! `idmint agent`, enrolled with a join token, running as root inside a
//! private mount namespace (the test kit's `JitNamespace`: overlay `/etc`,
//! private `/home`), so the machine's own accounts never change. sshd is not
//! needed: connecting is the client's business, readiness is the agent's.
//!
//! One operation is `POST /api/v1/ssh/sessions`, which answers only once the
//! agent has received the grant (long poll), created `wl_…` with a fresh UID
//! and its home, installed the sudoers drop-in (`visudo -cf`, 0440, rename)
//! and reported ready — so its latency is *grant → account ready* plus the
//! certificate signature. Each grant's lease is revoked right after (untimed),
//! so the agent removes accounts while it creates new ones, as on a busy
//! host. At the end the bench waits until the namespace's `/etc/passwd` has no
//! `wl_` entry and `/home` no `wl_` directory left, and reports how long that
//! took: a run that leaves residue fails.

use crate::error::{BenchError, Result};
use crate::RunEnv;
use idmint_client::IdmintClient;
use idmint_proto::ssh::SshSessionRequest;
use idmint_proto::LoginRequest;
use idmint_testkit::{
    free_port, IdmintServer, JitNamespace, KeyAlg, OidcSpec, Peer, ServerSpec, SshKey, TestJwks,
    TestKey,
};
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const HOST: &str = "bench-host";

const ROLES: &str = r#"
[[role]]
name = "deploy"
issuer = "ssh"
max_ttl = "10m"
default_ttl = "5m"
ssh = { hosts = { env = "bench" }, sudo = ["/usr/bin/systemctl restart web"] }
"#;

const POLICY: &str = r#"
@id("bench-sessions")
permit (principal, action == Action::"issue", resource == Role::"deploy")
when { principal has repository && principal.repository == "acme/app"
       && context has host && context.host.labels.env == "bench" };

@id("bench-admin")
permit (principal, action == Action::"admin", resource)
when { principal has repository && principal.repository == "acme/ops" };
"#;

/// Settings of one `jit` command.
pub struct JitBenchArgs {
    pub grants: usize,
    pub concurrency: Vec<usize>,
}

/// One concurrency level's figures.
#[derive(Debug, Clone, Serialize)]
pub struct JitRow {
    pub concurrency: usize,
    pub grants: usize,
    pub errors: usize,
    pub grants_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// From the last grant's answer until no `wl_` account or home is left.
    pub cleanup_s: f64,
}

fn http(what: &str) -> impl FnOnce(idmint_client::ClientError) -> BenchError + '_ {
    move |e| BenchError::Http {
        what: what.to_string(),
        message: e.to_string(),
    }
}

pub async fn run(args: &JitBenchArgs, env: &RunEnv) -> Result<Vec<JitRow>> {
    let jwks = TestJwks::start()
        .await
        .map_err(|e| BenchError::peer("starting the OIDC issuer", e))?;
    use idmint_testkit::toml::{Table, Value};
    let mut host = Table::new();
    host.insert("name".into(), HOST.into());
    host.insert("address".into(), "127.0.0.1".into());
    let port = free_port().map_err(|e| BenchError::peer("picking a port", e))?;
    host.insert("port".into(), Value::Integer(i64::from(port)));
    host.insert(
        "labels".into(),
        Value::Table(Table::from_iter([("env".to_string(), "bench".into())])),
    );
    let mut issuer = Table::new();
    issuer.insert("name".into(), "ssh".into());
    issuer.insert("ready_timeout".into(), "20s".into());
    issuer.insert("hosts".into(), Value::Array(vec![Value::Table(host)]));
    let mut spec = ServerSpec::with_oidc(vec![
        OidcSpec::new("ci", &jwks.issuer()).preset("github-actions")
    ])
    .with_issuer("ssh", issuer);
    spec.roles = ROLES.to_string();
    spec.policies = vec![("jit.cedar".to_string(), POLICY.to_string())];
    let server = IdmintServer::start(&env.idmint_bin, spec)
        .await
        .map_err(|e| BenchError::peer("starting the idmint server", e))?;
    let url = server.base_url();
    let app = login(
        &server,
        &jwks,
        "repo:acme/app:ref:refs/heads/main",
        "acme/app",
    )
    .await?;
    let admin = login(
        &server,
        &jwks,
        "repo:acme/ops:ref:refs/heads/main",
        "acme/ops",
    )
    .await?;

    // The host: a private namespace, enrolment, the agent.
    let ns = JitNamespace::start().map_err(|source| BenchError::Peer {
        what: "starting the private mount namespace (the jit scenario needs root, \
               unshare, useradd and visudo: run it as root on a machine with \
               openssh-server and sudo installed)",
        source,
    })?;
    let state = tempfile::tempdir().map_err(|e| BenchError::io("creating a state dir", e))?;
    let state_dir = state.path().join("agent-state");
    let host_key =
        SshKey::generate(HOST).map_err(|e| BenchError::peer("generating the host key", e))?;
    let join = admin
        .ssh_join_token(HOST)
        .await
        .map_err(http("join token"))?;
    enroll(&ns, env, &url, &host_key, &state_dir, &join.join_token)?;
    let log_path = state.path().join("agent.log");
    let base = 3_700_000 + (std::process::id() % 1000) * 2_000;
    let child = ns
        .command(&env.idmint_bin)
        .args(["agent", "run", "--server", &url, "--scan-interval", "100ms"])
        .arg("--uid-range")
        .arg(format!("{base}..{}", base + 2_000))
        .arg("--state-dir")
        .arg(&state_dir)
        .env("IDMINT_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(&log_path)
                .map_err(|e| BenchError::io("creating the agent log", e))?,
        )
        .spawn()
        .map_err(|e| BenchError::io("starting idmint agent", e))?;
    let _agent = Peer::new("idmint agent", child, vec![log_path.clone()]);
    wait_for_agent(&app, &admin).await?;

    let mut rows = Vec::new();
    for &concurrency in &args.concurrency {
        let concurrency = concurrency.max(1);
        env.settle(server.pid()).await;
        if !env.quiet {
            env.note(&format!(
                "running jit c={concurrency}: {} grants",
                args.grants
            ));
        }
        rows.push(measure(&ns, &app, &admin, args.grants, concurrency).await?);
    }
    Ok(rows)
}

async fn login(
    server: &IdmintServer,
    jwks: &TestJwks,
    subject: &str,
    repository: &str,
) -> Result<IdmintClient> {
    let mut claims = jwks
        .standard_claims(subject)
        .map_err(|e| BenchError::peer("building CI claims", e))?;
    claims["repository"] = repository.into();
    let token = jwks
        .sign_claims(&claims)
        .map_err(|e| BenchError::peer("signing a CI token", e))?;
    let client = server
        .client()
        .map_err(|e| BenchError::peer("building a client", e))?;
    let resp = client
        .login(&LoginRequest {
            method: "oidc".into(),
            token,
            auth: None,
            access_token: None,
        })
        .await
        .map_err(http("login"))?;
    Ok(client.with_token(resp.token))
}

fn enroll(
    ns: &JitNamespace,
    env: &RunEnv,
    url: &str,
    host_key: &SshKey,
    state_dir: &Path,
    join_token: &str,
) -> Result<()> {
    let mut child = ns
        .command(&env.idmint_bin)
        .args(["agent", "enroll", "--server", url, "--host", HOST])
        .args(["--join-token", "-", "--host-key"])
        .arg(host_key.public_key_path())
        .arg("--state-dir")
        .arg(state_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| BenchError::io("starting idmint agent enroll", e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(join_token.as_bytes())
            .map_err(|e| BenchError::io("passing the join token", e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| BenchError::io("waiting for idmint agent enroll", e))?;
    if !out.status.success() {
        return Err(BenchError::Preflight {
            scenario: "jit",
            message: format!(
                "idmint agent enroll failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// A fresh client key per grant, as `idmint ssh` makes one (only its public
/// half is sent; the bench never connects).
fn fresh_public_key() -> Result<String> {
    let key = TestKey::generate(KeyAlg::EdDsa)
        .map_err(|e| BenchError::peer("generating a client key", e))?;
    crate::openbao::setup::openssh_ed25519(&key)
}

fn request() -> Result<SshSessionRequest> {
    Ok(SshSessionRequest {
        host: HOST.into(),
        role: Some("deploy".into()),
        public_key: fresh_public_key()?,
        ttl: None,
    })
}

/// The server answers `agent_unavailable` until the agent's first long
/// poll arrives; the first grant that succeeds (untimed, then revoked)
/// proves the path.
async fn wait_for_agent(app: &IdmintClient, admin: &IdmintClient) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match app.ssh_session(&request()?).await {
            Ok(resp) => {
                admin
                    .revoke_lease(&resp.lease_id)
                    .await
                    .map_err(http("revoking the first grant"))?;
                return Ok(());
            }
            Err(e) if e.to_string().contains("agent_unavailable") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                return Err(BenchError::Preflight {
                    scenario: "jit",
                    message: format!("the first session grant failed: {e}"),
                })
            }
        }
    }
}

async fn measure(
    ns: &JitNamespace,
    app: &IdmintClient,
    admin: &IdmintClient,
    grants: usize,
    concurrency: usize,
) -> Result<JitRow> {
    let started = Instant::now();
    let per_worker = grants.div_ceil(concurrency);
    let workers = (0..concurrency).map(|w| {
        let count = per_worker.min(grants.saturating_sub(w * per_worker));
        async move {
            let mut latencies = Vec::with_capacity(count);
            let mut errors = 0usize;
            for _ in 0..count {
                let req = request()?;
                let t = Instant::now();
                match app.ssh_session(&req).await {
                    Ok(resp) => {
                        latencies.push(t.elapsed());
                        // Untimed: the agent removes the account while the
                        // next grants arrive.
                        if admin.revoke_lease(&resp.lease_id).await.is_err() {
                            errors += 1;
                        }
                    }
                    Err(_) => errors += 1,
                }
            }
            Ok::<_, BenchError>((latencies, errors))
        }
    });
    let results = futures_util::future::join_all(workers).await;
    let elapsed = started.elapsed();
    let mut latencies = Vec::with_capacity(grants);
    let mut errors = 0;
    for r in results {
        let (l, e) = r?;
        latencies.extend(l);
        errors += e;
    }
    let cleanup_started = Instant::now();
    wait_for_no_residue(ns).await?;
    let cleanup = cleanup_started.elapsed();
    latencies.sort();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1000.0
    };
    Ok(JitRow {
        concurrency,
        grants: latencies.len(),
        errors,
        grants_per_s: latencies.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_ms: pct(0.50),
        p90_ms: pct(0.90),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
        cleanup_s: cleanup.as_secs_f64(),
    })
}

/// No `wl_` entry in the namespace's passwd and no `wl_` home left.
async fn wait_for_no_residue(ns: &JitNamespace) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let passwd = std::fs::read_to_string(ns.host_path("/etc/passwd")).unwrap_or_default();
        let accounts = passwd.lines().filter(|l| l.starts_with("wl_")).count();
        let homes = std::fs::read_dir(ns.host_path("/home"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("wl_"))
                    .count()
            })
            .unwrap_or(0);
        if accounts == 0 && homes == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(BenchError::Preflight {
                scenario: "jit",
                message: format!(
                    "{accounts} wl_ account(s) and {homes} home(s) still on the host 60 s after their leases were revoked"
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn table(rows: &[JitRow]) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::ASCII_MARKDOWN);
    t.set_header([
        "conc",
        "grants",
        "errors",
        "grants/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "cleanup s",
    ]);
    for r in rows {
        t.add_row([
            r.concurrency.to_string(),
            r.grants.to_string(),
            r.errors.to_string(),
            format!("{:.1}", r.grants_per_s),
            format!("{:.1}", r.p50_ms),
            format!("{:.1}", r.p90_ms),
            format!("{:.1}", r.p99_ms),
            format!("{:.1}", r.max_ms),
            format!("{:.2}", r.cleanup_s),
        ]);
    }
    format!("{t}\n")
}
