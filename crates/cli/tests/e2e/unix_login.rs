//! `[[auth.unix]]` end to end: a real server with `[server] unix_socket`,
//! the real `idmint` CLI and `curl` as peers, and a signing host agent.
//!
//! Covered: `idmint login --unix` over the socket (the peer executable is
//! the idmint binary itself) yields a session that works over TCP with the
//! binding's subject and method `unix`; another executable (curl) is
//! refused 403 with an audited reason; the same route over TCP answers 403
//! `unix_socket_required`; uid and exe_sha256 selector mismatches; the
//! agent attest route from a trusted host (session with `attested_by`), an
//! untrusted host (403), a replayed or tampered signature (401) and an
//! attestation matching no binding (403) — each refusal audited.

use crate::common;
use crate::db_support;
use crate::ssh_support;

use common::bin;
use db_support::login_admin;
use idmint_testkit::audit::events_of;
use idmint_testkit::server::write_root_key;
use idmint_testkit::{free_port, unix_now, Cli, IdmintServer, TestJwks};
use serde_json::{json, Value};
use ssh_support::{enroll_with_new_token, spec, ssh_keygen, TestAgent};
use std::path::PathBuf;

const ATTEST: &str = "/api/v1/agent/attest";
const HASH: &str = "1111111111111111111111111111111111111111111111111111111111111111";

fn idmint_exe() -> anyhow::Result<String> {
    Ok(std::fs::canonicalize(bin())?.display().to_string())
}

fn euid() -> anyhow::Result<u32> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|r| r.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no Uid: in /proc/self/status"))
}

struct Setup {
    _jwks: TestJwks,
    server: IdmintServer,
    socket: PathBuf,
    _socket_dir: tempfile::TempDir,
}

/// A server with an ssh issuer (hosts `web-1`, `db-1`, so agents can
/// enroll), a Unix socket and three `[[auth.unix]]` methods.
async fn start() -> anyhow::Result<Setup> {
    let jwks = TestJwks::start().await?;
    let hosts = vec![
        "{ name = \"web-1\", address = \"127.0.0.1\", labels = { env = \"prod\" } }".to_string(),
        "{ name = \"db-1\", address = \"127.0.0.2\", labels = { env = \"prod\" } }".to_string(),
    ];
    let socket_dir = tempfile::Builder::new().prefix("idm-sock-").tempdir()?;
    let socket = socket_dir.path().join("idmint.sock");
    let spec = spec(&jwks, &hosts, "2s")?
        .set_server("unix_socket", socket.display().to_string())
        .set_server("unix_socket_mode", 0o600);
    let dir = tempfile::Builder::new().prefix("idmint-unix-").tempdir()?;
    write_root_key(&dir.path().join("root.key"))?;
    let port = free_port()?;
    let config = spec.write(dir.path(), port)?;
    let (exe, uid) = (idmint_exe()?, euid()?);
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str(&format!(
        r#"
[[auth.unix]]
name = "local"
session_ttl = "5m"
trusted_hosts = ["web-*"]

[[auth.unix.bindings]]
subject = "idmint-cli"
uid = {uid}
exe = "{exe}"

[[auth.unix.bindings]]
subject = "billing"
uid = 1001
exe = "/usr/local/bin/billing"
cgroup_prefix = "/system.slice/billing.service"
hosts = ["web-*"]

[[auth.unix]]
name = "other-uid"
[[auth.unix.bindings]]
subject = "never"
uid = {other}
exe = "{exe}"

[[auth.unix]]
name = "pinned-hash"
[[auth.unix.bindings]]
subject = "never"
exe = "{exe}"
exe_sha256 = "{HASH}"
"#,
        other = uid + 1,
    ));
    std::fs::write(&config, text)?;
    let audit = dir.path().join("audit.jsonl");
    let server = IdmintServer::start_with_config(bin(), dir, config, port, audit, vec![]).await?;
    Ok(Setup {
        _jwks: jwks,
        server,
        socket,
        _socket_dir: socket_dir,
    })
}

fn last_failure(server: &IdmintServer, code: &str) -> anyhow::Result<Value> {
    let events = server.audit_events()?;
    events_of(&events, "login_failed")
        .into_iter()
        .rev()
        .find(|e| e["error"]["code"] == code)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no audited login_failed with code {code}"))
}

async fn unix_cli_login(
    cli: &Cli,
    s: &Setup,
    auth: &str,
) -> anyhow::Result<idmint_testkit::CliOutput> {
    let socket = s.socket.display().to_string();
    let base = s.server.base_url();
    Ok(cli
        .run(&[
            "login", "--unix", "--socket", &socket, "--auth", auth, "-o", "json", "--server", &base,
        ])
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_socket_login_and_refusals() -> anyhow::Result<()> {
    let s = start().await?;
    let base = s.server.base_url();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&s.socket)?.permissions());
    assert_eq!(mode & 0o777, 0o600, "unix_socket_mode is applied");

    // The idmint binary itself, over the socket: a session.
    let cli = Cli::new(bin())?;
    let out = unix_cli_login(&cli, &s, "local").await?;
    anyhow::ensure!(out.success(), "login --unix: {}", out.summary());
    let resp = out.json()?;
    assert_eq!(resp["identity"]["subject"], "idmint-cli");
    assert_eq!(resp["identity"]["method"], "unix");
    let token = resp["token"].as_str().unwrap_or_default().to_string();

    // The token works over TCP; whoami shows the kernel's facts.
    let me = s.server.api().get("/api/v1/whoami", Some(&token)).await?;
    assert_eq!(me.status, 200, "{}", me.text);
    let id = &me.body["identity"];
    assert_eq!(id["subject"], "idmint-cli");
    assert_eq!(id["method"], "unix");
    assert_eq!(id["kind"], "process");
    assert_eq!(id["auth"], "local");
    assert!(
        id["issuer"]
            .as_str()
            .unwrap_or_default()
            .starts_with("unix://"),
        "{id}"
    );
    assert_eq!(id["attributes"]["exe"], idmint_exe()?.as_str());
    assert_eq!(id["attributes"]["uid"], euid()?);
    assert_eq!(
        id["attributes"]["exe_sha256"].as_str().map(str::len),
        Some(64)
    );
    assert!(id["attributes"]["pid"].as_u64().is_some_and(|p| p > 0));
    assert!(id["attributes"].get("attested_by").is_none());

    // The CLI cached it for the TCP server: `idmint whoami` uses it.
    let who = cli
        .run(&["whoami", "-o", "json", "--server", &base])
        .await?;
    anyhow::ensure!(who.success(), "whoami: {}", who.summary());
    assert_eq!(who.json()?["identity"]["subject"], "idmint-cli");

    let events = s.server.audit_events()?;
    let ok = events_of(&events, "login")
        .into_iter()
        .find(|e| e["identity"]["method"] == "unix")
        .ok_or_else(|| anyhow::anyhow!("no audited unix login"))?;
    assert_eq!(ok["outcome"], "success");
    assert_eq!(ok["identity"]["subject"], "idmint-cli");

    // Another executable on the same socket (curl): no binding matches.
    let curl = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--unix-socket",
            &s.socket.display().to_string(),
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"auth":"local"}"#,
            "-w",
            "\n%{http_code}",
            "http://localhost/api/v1/auth/unix/login",
        ])
        .output()
        .await?;
    let text = String::from_utf8_lossy(&curl.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    assert_eq!(code, "403", "{text}");
    let body: Value = serde_json::from_str(body)?;
    assert_eq!(body["error"]["code"], "no_matching_binding", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("binding #1 exe differs"),
        "{body}"
    );
    let failed = last_failure(&s.server, "no_matching_binding")?;
    let curl_exe = std::fs::canonicalize("/usr/bin/curl")?
        .display()
        .to_string();
    assert_eq!(failed["detail"]["exe"], curl_exe.as_str(), "{failed}");
    assert_eq!(failed["detail"]["unix"], "local");
    assert_eq!(failed["outcome"], "denied");

    // The same route over TCP: refused, pointing at the socket.
    let tcp = s
        .server
        .api()
        .post_json("/api/v1/auth/unix/login", &json!({"auth": "local"}), None)
        .await?;
    assert_eq!(tcp.status, 403, "{}", tcp.text);
    assert_eq!(tcp.body["error"]["code"], "unix_socket_required");
    assert!(tcp.text.contains("--unix --socket"), "{}", tcp.text);
    last_failure(&s.server, "unix_socket_required")?;

    // Selector mismatches: uid, then the executable's hash.
    let out = unix_cli_login(&cli, &s, "other-uid").await?;
    assert!(!out.success());
    assert!(out.stderr.contains("uid differs"), "{}", out.summary());
    let out = unix_cli_login(&cli, &s, "pinned-hash").await?;
    assert!(!out.success());
    assert!(
        out.stderr.contains("exe_sha256 differs"),
        "{}",
        out.summary()
    );
    let failed = last_failure(&s.server, "no_matching_binding")?;
    assert_eq!(failed["detail"]["unix"], "pinned-hash");

    // Several methods and none named: the caller must choose.
    let socket = s.socket.display().to_string();
    let out = cli
        .run(&["login", "--unix", "--socket", &socket, "--server", &base])
        .await?;
    assert!(!out.success());
    assert!(out.stderr.contains("auth_required"), "{}", out.summary());
    Ok(())
}

fn billing(uid: u32) -> Value {
    json!({
        "auth": "local",
        "process": {
            "pid": 4242, "start_time": 777, "uid": uid, "gid": 1001,
            "exe": "/usr/local/bin/billing", "exe_sha256": HASH,
            "cgroup": "/system.slice/billing.service"
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_attestations() -> anyhow::Result<()> {
    let s = start().await?;
    let admin = login_admin(&s.server, &s._jwks).await?;
    let keys = tempfile::tempdir()?;
    let (_, host_key) = ssh_keygen(keys.path(), "host_key")?;
    let web = TestAgent::new("web-1", &s.server.base_url())?;
    enroll_with_new_token(&s.server, &admin, &web, &host_key).await?;
    let db = TestAgent::new("db-1", &s.server.base_url())?;
    enroll_with_new_token(&s.server, &admin, &db, &host_key).await?;

    // A trusted host vouches for its process: a session for the binding.
    let body = serde_json::to_vec(&billing(1001))?;
    let (reply, header) = web.send("POST", ATTEST, &body).await?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["identity"]["subject"], "billing");
    assert_eq!(reply.body["identity"]["issuer"], "unix://web-1");
    let token = reply.body["token"].as_str().unwrap_or_default().to_string();
    let me = s.server.api().get("/api/v1/whoami", Some(&token)).await?;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["identity"]["attributes"]["attested_by"], "web-1");
    assert_eq!(me.body["identity"]["attributes"]["pid"], 4242);
    let events = s.server.audit_events()?;
    let ok = events_of(&events, "login")
        .into_iter()
        .find(|e| e["identity"]["subject"] == "billing")
        .ok_or_else(|| anyhow::anyhow!("no audited attested login"))?;
    assert_eq!(ok["identity"]["claims_used"]["attested_by"], "web-1");

    // The same signed request again: replay refused.
    let again = web.send_with("POST", ATTEST, &body, &header).await?;
    assert_eq!(again.status, 401, "{}", again.body);
    assert_eq!(again.code(), "agent_auth_failed");

    // Signed for another body (tampered in transit): refused.
    let nonce = idmint_core::ids::random_hex(16)?;
    let forged = web.authorization(
        "POST",
        ATTEST,
        &serde_json::to_vec(&billing(0))?,
        unix_now(),
        &nonce,
    );
    let tampered = web.send_with("POST", ATTEST, &body, &forged).await?;
    assert_eq!(tampered.status, 401, "{}", tampered.body);
    let events = s.server.audit_events()?;
    assert!(events_of(&events, "agent_auth_failed").len() >= 2);

    // An enrolled host outside trusted_hosts: its word is not taken.
    let (reply, _) = db.send("POST", ATTEST, &body).await?;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(reply.code(), "untrusted_host");
    let failed = last_failure(&s.server, "untrusted_host")?;
    assert_eq!(failed["detail"]["attested_by"], "db-1");

    // A trusted host, but the process matches no binding (uid 1002).
    let (reply, _) = web
        .send("POST", ATTEST, &serde_json::to_vec(&billing(1002))?)
        .await?;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(reply.code(), "no_matching_binding");
    let failed = last_failure(&s.server, "no_matching_binding")?;
    assert_eq!(failed["detail"]["uid"], 1002);
    assert_eq!(failed["detail"]["attested_by"], "web-1");

    // Hostile attestation (relative exe): 400, audited.
    let mut hostile = billing(1001);
    hostile["process"]["exe"] = json!("billing");
    let (reply, _) = web
        .send("POST", ATTEST, &serde_json::to_vec(&hostile)?)
        .await?;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.code(), "invalid_attestation");
    last_failure(&s.server, "invalid_attestation")?;
    Ok(())
}
