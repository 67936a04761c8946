//! `idmint proxy` injecting credentials minted by a real `idmint server`
//! for the calling process: the host is enrolled with the real
//! `idmint agent enroll`, the proxy attests each workload with the
//! host's agent key (`POST /api/v1/agent/attest`, `[[auth.unix]]` on the
//! server), mints with the session (`POST /api/v1/creds/{role}`) and
//! injects. Workloads are the real `curl` and `python3`; the upstream is
//! the real HTTPS echo (testbed/https-echo.py).
//!
//! Checked: the minted token reaches the upstream and is reused from the
//! cache (one issuance); a process the server maps to another subject is
//! refused 403 (config drift) and audited; with the server stopped the
//! cached token is still injected until it expires, then requests fail
//! closed with 503 naming the server error.

use crate::common;
use crate::db_support;
use crate::ssh_support;

use common::bin;
use db_support::login_admin;
use idmint_testkit::audit::events_of;
use idmint_testkit::server::write_root_key;
use idmint_testkit::{free_port, Cli, IdmintServer, TestJwks};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HOST: &str = "web-1";
/// Lifetime of the minted token: short, so expiry is observed.
const TOKEN_TTL_SECS: u64 = 12;

/// Killed and reaped on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python_exe() -> anyhow::Result<String> {
    let out = Command::new("python3")
        .args(["-c", "import os; print(os.readlink('/proc/self/exe'))"])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The HTTPS echo upstream on a free port; returns it and its port.
fn start_upstream(d: &Path) -> anyhow::Result<(Reaped, u16)> {
    idmint_testkit::write_upstream_cert(d, "DNS:upstream.test,IP:127.0.0.1")?;
    let echo = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testbed/https-echo.py");
    let mut child = Command::new("python3")
        .arg(echo)
        .arg(d.join("cert.pem"))
        .arg(d.join("key.pem"))
        .arg("0")
        .arg(d.join("seen.jsonl"))
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let reaped = Reaped(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let port = line
        .trim()
        .strip_prefix("READY ")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("echo server did not start: {line:?}"))?;
    Ok((reaped, port))
}

/// A server with an ssh issuer (so `web-1` can enroll), an oauth role
/// `proxy/github` that subject `curl-app` may get, and `[[auth.unix]]`
/// trusting `web-1`: curl is `curl-app`, python is `billing-bot`.
async fn start_server(jwks: &TestJwks) -> anyhow::Result<IdmintServer> {
    let hosts = vec![format!(
        "{{ name = \"{HOST}\", address = \"127.0.0.1\", labels = {{ env = \"prod\" }} }}"
    )];
    let mut spec = ssh_support::spec(jwks, &hosts, "2s")?;
    spec.roles.push_str(&format!(
        r#"
[[role]]
name = "proxy/github"
issuer = "oauth"
max_ttl = "{TOKEN_TTL_SECS}s"
default_ttl = "{TOKEN_TTL_SECS}s"
audiences = ["https://api.github.test"]
scopes = ["repo:read"]
"#
    ));
    spec.policies.push((
        "proxy.cedar".to_string(),
        r#"
@id("proxy-workloads")
permit (principal, action == Action::"issue", resource == Role::"proxy/github")
when { principal.subject == "curl-app" || principal.subject == "billing-bot" };
"#
        .to_string(),
    ));
    let dir = tempfile::Builder::new().prefix("idmint-pxy-").tempdir()?;
    write_root_key(&dir.path().join("root.key"))?;
    let port = free_port()?;
    let config = spec.write(dir.path(), port)?;
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str(&format!(
        r#"
[[auth.unix]]
name = "proxy"
session_ttl = "5m"
trusted_hosts = ["{HOST}"]

[[auth.unix.bindings]]
subject = "curl-app"
exe = "/usr/bin/curl"

[[auth.unix.bindings]]
subject = "billing-bot"
exe = "{python}"
"#,
        python = python_exe()?
    ));
    std::fs::write(&config, text)?;
    let audit = dir.path().join("audit.jsonl");
    Ok(IdmintServer::start_with_config(bin(), dir, config, port, audit, vec![]).await?)
}

/// Enroll `web-1` with the real `idmint agent enroll` into `state_dir`.
async fn enroll(
    server: &IdmintServer,
    jwks: &TestJwks,
    work: &Path,
    state_dir: &Path,
) -> anyhow::Result<()> {
    let admin = login_admin(server, jwks).await?;
    let url = server.base_url();
    let mut cli = Cli::new(bin())?;
    cli.set_env("IDMINT_TOKEN", &admin.session);
    let out = cli
        .run(&["ssh", "host-token", HOST, "--server", &url])
        .await?;
    anyhow::ensure!(out.success(), "host-token: {}", out.summary());
    let (host_key, _) = ssh_support::ssh_keygen(work, "ssh_host_ed25519_key")?;
    let mut enroll = Command::new(bin())
        .args([
            "agent",
            "enroll",
            "--server",
            &url,
            "--host",
            HOST,
            "--join-token",
            "-",
            "--host-key",
        ])
        .arg(host_key.with_extension("pub"))
        .arg("--state-dir")
        .arg(state_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    enroll
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(out.stdout.trim().as_bytes())?;
    let enrolled = enroll.wait_with_output()?;
    anyhow::ensure!(
        enrolled.status.success(),
        "enroll: {}",
        String::from_utf8_lossy(&enrolled.stderr)
    );
    Ok(())
}

fn proxy_config(state_dir: &Path, upstream_port: u16) -> anyhow::Result<String> {
    Ok(format!(
        r#"listen = "127.0.0.1:0"
audit_file = "audit.jsonl"
ca_cert = "ca.pem"
ca_key = "ca-key.pem"
upstream_ca_file = ["cert.pem"]
system_roots = false

[resolve]
"upstream.test" = "127.0.0.1"

[idmint]
agent_state_dir = "{state}"
auth = "proxy"
refresh_before = "2s"
retry_after = "1s"

[secrets.github]
idmint = {{ role = "proxy/github" }}

[[bindings]]
identity = "curl-app"
exe = "/usr/bin/curl"

[[bindings]]
identity = "py-app"
exe = "{python}"

[[rules]]
identity = "curl-app"
host = "upstream.test"
port = {upstream_port}
path_prefix = "/gh/"
inject = {{ kind = "bearer", secret = "github" }}

[[rules]]
identity = "py-app"
host = "upstream.test"
port = {upstream_port}
path_prefix = "/gh/"
inject = {{ kind = "bearer", secret = "github" }}
"#,
        state = state_dir.display(),
        python = python_exe()?,
    ))
}

struct Curl {
    code: String,
    body: String,
    stderr: String,
}

fn curl(d: &Path, proxy: &str, url: &str) -> anyhow::Result<Curl> {
    let out = Command::new("/usr/bin/curl")
        .args(["-sS", "-m", "10", "-w", "\n%{http_code}", "--cacert"])
        .arg(d.join("ca.pem"))
        .arg(url)
        .env_clear()
        .env("HTTPS_PROXY", format!("http://{proxy}"))
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    Ok(Curl {
        code: code.trim().to_string(),
        body: body.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    })
}

/// Bearer tokens the upstream received, in order.
fn seen_tokens(d: &Path) -> Vec<String> {
    std::fs::read_to_string(d.join("seen.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .flat_map(|r| {
            r["headers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|h| {
                    h[0].as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case("authorization"))
                })
                .filter_map(|h| h[1].as_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn proxy_audit(d: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(d.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_injects_tokens_minted_for_the_attested_process() -> anyhow::Result<()> {
    let jwks = TestJwks::start().await?;
    let mut server = start_server(&jwks).await?;
    let work = tempfile::tempdir()?;
    let d = work.path();
    let state_dir: PathBuf = d.join("agent-state");
    enroll(&server, &jwks, d, &state_dir).await?;
    let (_upstream, upstream_port) = start_upstream(d)?;

    let out = Command::new(bin())
        .args(["proxy", "init-ca", "--cert"])
        .arg(d.join("ca.pem"))
        .arg("--key")
        .arg(d.join("ca-key.pem"))
        .output()?;
    anyhow::ensure!(out.status.success(), "init-ca: {out:?}");
    std::fs::write(
        d.join("proxy.toml"),
        proxy_config(&state_dir, upstream_port)?,
    )?;
    let check = Command::new(bin())
        .args(["proxy", "--check-config", "--config"])
        .arg(d.join("proxy.toml"))
        .output()?;
    anyhow::ensure!(check.status.success(), "check-config: {check:?}");

    let mut child = Command::new(bin())
        .args(["proxy", "--config"])
        .arg(d.join("proxy.toml"))
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
    let _proxy = Reaped(child);
    let mut lines = BufReader::new(stderr);
    let mut line = String::new();
    lines.read_line(&mut line)?;
    // Keep draining the proxy's log into a file (shown on failure).
    let log_path = d.join("proxy.log");
    let mut log = std::fs::File::create(&log_path)?;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut lines, &mut log);
    });
    let proxy_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let proxy = line
        .trim()
        .strip_prefix("idmint proxy listening on ")
        .ok_or_else(|| anyhow::anyhow!("unexpected proxy output: {line:?}"))?
        .to_string();
    let url = format!("https://upstream.test:{upstream_port}/gh/repos");

    // 1. curl gets a token minted for subject curl-app, injected upstream.
    let first = curl(d, &proxy, &url)?;
    assert_eq!(first.code, "200", "{}", first.body);
    let tokens = seen_tokens(d);
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    let token = tokens[0]
        .strip_prefix("Bearer ")
        .unwrap_or_default()
        .to_string();
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token}");
    assert!(!first.body.contains(&token), "the workload saw the token");

    // 2. Cached: a second request reuses it (one issuance at the server).
    let second = curl(d, &proxy, &url)?;
    assert_eq!(second.code, "200", "{}", second.body);
    assert_eq!(seen_tokens(d).last(), Some(&format!("Bearer {token}")));
    let events = server.audit_events()?;
    let logins: Vec<_> = events_of(&events, "login")
        .into_iter()
        .filter(|e| e["identity"]["method"] == "unix")
        .collect();
    assert_eq!(logins.len(), 1, "one attested login: {logins:#?}");
    assert_eq!(logins[0]["identity"]["subject"], "curl-app");

    let records = proxy_audit(d);
    let ok: Vec<_> = records
        .iter()
        .filter(|r| r["identity"] == "curl-app" && r["status"] == 200)
        .collect();
    assert_eq!(ok.len(), 2, "{records:#?}");
    for r in &ok {
        assert_eq!(r["credential"], "github");
        assert_eq!(r["credential_source"], "idmint");
        assert_eq!(r["credential_fingerprint"].as_str().map(str::len), Some(32));
        assert!(
            r["lease_id"]
                .as_str()
                .is_some_and(|l| l.starts_with("lse_")),
            "{r}"
        );
        assert!(
            r["request_id"]
                .as_str()
                .is_some_and(|l| l.starts_with("prx_")),
            "{r}"
        );
    }

    // 2b. The workload gets the request id back, and `idmint audit trace`
    //     follows it from the proxy's record to the lease and the login.
    let headers = d.join("headers.txt");
    let out = Command::new("/usr/bin/curl")
        .args(["-sS", "-m", "10", "-o", "/dev/null", "-D"])
        .arg(&headers)
        .arg("--cacert")
        .arg(d.join("ca.pem"))
        .arg(&url)
        .env_clear()
        .env("HTTPS_PROXY", format!("http://{proxy}"))
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let request_id = std::fs::read_to_string(&headers)?
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-idmint-proxy-request-id:")
                .map(|v| v.trim().to_string())
        })
        .ok_or_else(|| anyhow::anyhow!("no x-idmint-proxy-request-id header"))?;
    let record = proxy_audit(d)
        .into_iter()
        .find(|r| r["request_id"] == request_id.as_str())
        .ok_or_else(|| anyhow::anyhow!("no proxy record {request_id}"))?;
    let traced = Command::new(bin())
        .args(["-o", "json", "audit", "trace", &request_id, "--proxy-audit"])
        .arg(d.join("audit.jsonl"))
        .arg("--file")
        .arg(server.audit_file())
        .output()?;
    anyhow::ensure!(
        traced.status.success(),
        "audit trace: {}",
        String::from_utf8_lossy(&traced.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&traced.stdout)?;
    assert_eq!(doc["proxy_request"]["request_id"], request_id.as_str());
    assert_eq!(doc["reference"], record["lease_id"]);
    let chain = &doc["chain"];
    assert_eq!(chain["identity"]["subject"], "curl-app", "{doc:#}");
    assert_eq!(chain["identity"]["method"], "unix", "{doc:#}");
    assert_eq!(chain["identity"]["issuer"], "unix://web-1", "{doc:#}");
    assert_eq!(chain["decision"]["allowed"], true, "{doc:#}");
    assert_eq!(
        chain["credential"]["lease_id"], record["lease_id"],
        "{doc:#}"
    );
    // A proxy id without the proxy's file is explained, not searched for.
    let bare = Command::new(bin())
        .args(["audit", "trace", &request_id, "--file"])
        .arg(server.audit_file())
        .output()?;
    assert!(!bare.status.success());
    assert!(String::from_utf8_lossy(&bare.stderr).contains("--proxy-audit"));

    // 3. Config drift: the server maps python to `billing-bot`, the proxy's
    //    bindings say `py-app` → refused 403, audited, nothing injected.
    let py = Command::new("python3")
        .arg("-c")
        .arg(
            r#"
import ssl, sys, urllib.request, urllib.error
proxy, ca, url = sys.argv[1], sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
opener = urllib.request.build_opener(
    urllib.request.ProxyHandler({"https": proxy}), urllib.request.HTTPSHandler(context=ctx))
try:
    r = opener.open(url, timeout=10); print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
"#,
        )
        .arg(format!("http://{proxy}"))
        .arg(d.join("ca.pem"))
        .arg(&url)
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()?;
    let py_out = String::from_utf8_lossy(&py.stdout).to_string();
    assert!(
        py_out.starts_with("403"),
        "{py_out} {}",
        String::from_utf8_lossy(&py.stderr)
    );
    assert!(py_out.contains("subject mismatch"), "{py_out}");
    assert!(
        py_out.contains("billing-bot") && py_out.contains("py-app"),
        "{py_out}"
    );
    assert_eq!(
        seen_tokens(d).len(),
        3,
        "nothing injected for the mismatch (2 + the traced request)"
    );
    let denied = proxy_audit(d)
        .into_iter()
        .find(|r| r["identity"] == "py-app")
        .ok_or_else(|| anyhow::anyhow!("no audit record for py-app"))?;
    assert_eq!(denied["decision"], "deny");
    assert_eq!(denied["status"], 403);
    assert!(
        denied["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("subject mismatch"),
        "{denied}"
    );

    // 4. The server goes away: the cached token is still injected until it
    //    expires, then requests fail closed with 503 naming the error.
    server.stop()?;
    let stopped = Instant::now();
    let cached = curl(d, &proxy, &url)?;
    assert_eq!(
        cached.code, "200",
        "cached token not served: {}",
        cached.body
    );
    assert_eq!(seen_tokens(d).last(), Some(&format!("Bearer {token}")));
    let deadline = Instant::now() + Duration::from_secs(TOKEN_TTL_SECS + 15);
    let refused = loop {
        let r = curl(d, &proxy, &url)?;
        if r.code == "503" {
            break r;
        }
        assert_eq!(
            r.code,
            "200",
            "{} {}; proxy log: {}",
            r.body,
            r.stderr,
            proxy_log()
        );
        assert_eq!(
            seen_tokens(d).last(),
            Some(&format!("Bearer {token}")),
            "only the cached token can be served while the server is down"
        );
        anyhow::ensure!(Instant::now() < deadline, "never failed closed");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(stopped.elapsed() < Duration::from_secs(TOKEN_TTL_SECS + 2));
    assert!(
        refused
            .body
            .contains("credential `github` (idmint) is unavailable"),
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("cannot reach the idmint server"),
        "{}",
        refused.body
    );
    let audit_text = std::fs::read_to_string(d.join("audit.jsonl"))?;
    assert!(!audit_text.contains(&token), "token in the proxy audit log");
    Ok(())
}
