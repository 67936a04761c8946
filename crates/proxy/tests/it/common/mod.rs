//! Test fixture: the real HTTPS echo upstream (testbed/https-echo.py), a
//! local CA, secrets, and the proxy running in-process; workloads are the
//! real `curl` and `python3`.

#![allow(dead_code)]

use idmint_proxy::{Proxy, ProxyConfig};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CURL_SECRET: &str = "sk-curl-0123456789";
pub const PY_SECRET: &str = "py-key-abcdef";
pub const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

/// A child process killed and reaped on drop.
pub struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub upstream_port: u16,
    pub proxy: SocketAddr,
    _upstream: Peer,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The real binary `python3` runs (pyenv shims exec into it).
pub fn python_exe() -> PathBuf {
    let out = Command::new("python3")
        .args(["-c", "import os; print(os.readlink('/proc/self/exe'))"])
        .output()
        .expect("python3 runs");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn write_secret(path: &Path, value: &str) {
    std::fs::write(path, format!("{value}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn start_upstream(dir: &Path) -> (Peer, u16) {
    idmint_testkit::write_upstream_cert(dir, "DNS:upstream.test,DNS:localhost,IP:127.0.0.1")
        .unwrap();
    let mut child = Command::new("python3")
        .arg(repo_root().join("testbed/https-echo.py"))
        .arg(dir.join("cert.pem"))
        .arg(dir.join("key.pem"))
        .arg("0")
        .arg(dir.join("seen.jsonl"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let peer = Peer(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let port = line
        .strip_prefix("READY ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("echo server did not start: {line:?}"));
    (peer, port)
}

/// Build the fixture. `extra` is appended to the generated proxy.toml.
pub async fn start(extra: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, port) = start_upstream(dir.path());
    idmint_proxy::init_ca(&dir.path().join("ca.pem"), &dir.path().join("ca-key.pem")).unwrap();
    write_secret(&dir.path().join("curl.key"), CURL_SECRET);
    write_secret(&dir.path().join("py.key"), PY_SECRET);
    write_secret(&dir.path().join("aws.key"), AWS_SECRET);
    let test_exe = std::env::current_exe().unwrap();
    // `extra` may add rules for the upstream, whose port is only known now.
    let extra = extra.replace("@UPSTREAM_PORT@", &port.to_string());
    let config = format!(
        r#"
listen = "127.0.0.1:0"
audit_file = "audit.jsonl"
ca_cert = "ca.pem"
ca_key = "ca-key.pem"
upstream_ca_file = ["cert.pem"]
system_roots = false
header_read_timeout = "1s"

[resolve]
"upstream.test" = "127.0.0.1"
"metadata.test" = "169.254.169.254"

[secrets.curl-key]
file = "curl.key"
[secrets.py-key]
file = "py.key"
[secrets.aws-secret]
file = "aws.key"

[[bindings]]
identity = "curl-app"
exe = "/usr/bin/curl"

[[bindings]]
identity = "py-app"
exe = "{py}"

[[bindings]]
identity = "test-harness"
exe = "{test_exe}"

[[rules]]
identity = "curl-app"
host = "upstream.test"
port = {port}
methods = ["GET", "POST"]
path_prefix = "/v1/"
inject = {{ kind = "bearer", secret = "curl-key" }}

[[rules]]
identity = "curl-app"
host = "upstream.test"
port = {port}
path_prefix = "/q/"
inject = {{ kind = "query", name = "key", secret = "curl-key" }}

[[rules]]
identity = "curl-app"
host = "upstream.test"
port = {port}
path_prefix = "/b/"
inject = {{ kind = "basic", username = "svc", secret = "curl-key" }}

[[rules]]
identity = "curl-app"
host = "upstream.test"
port = {port}
path_prefix = "/aws/"
inject = {{ kind = "aws_sigv4", access_key_id = "AKIDEXAMPLE", secret = "aws-secret", region = "us-east-1", service = "sts" }}

[[rules]]
identity = "curl-app"
host = "metadata.test"
port = 80

[[rules]]
identity = "py-app"
host = "upstream.test"
port = {port}
path_prefix = "/py/"
inject = {{ kind = "header", name = "X-Api-Key", secret = "py-key" }}

[[rules]]
identity = "test-harness"
host = "upstream.test"
port = {port}
{extra}
"#,
        py = python_exe().display(),
        test_exe = test_exe.display(),
    );
    std::fs::write(dir.path().join("proxy.toml"), config).unwrap();
    let config = ProxyConfig::load(&dir.path().join("proxy.toml")).unwrap();
    let bound = Proxy::new(config).unwrap().bind().await.unwrap();
    let proxy = bound.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.serve_until(async move {
        let _ = stopped.await;
    }));
    Fixture {
        dir,
        upstream_port: port,
        proxy,
        _upstream: upstream,
        stop: Some(stop),
    }
}

pub struct CurlOutput {
    pub status: std::process::ExitStatus,
    pub body: String,
    pub http_code: String,
    pub connect_code: String,
    pub stderr: String,
}

impl Fixture {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://upstream.test:{}{path}", self.upstream_port)
    }

    /// Run `curl` (or another binary with curl's interface) through the
    /// proxy with HTTPS_PROXY and http_proxy set.
    pub async fn curl_with(&self, exe: &Path, args: &[&str]) -> CurlOutput {
        let proxy = format!("http://{}", self.proxy);
        let out = tokio::process::Command::new(exe)
            .args(["-sS", "-m", "5", "--cacert"])
            .arg(self.path("ca.pem"))
            .args(["-w", "\n%{http_code} %{http_connect}"])
            .args(args)
            .env_clear()
            .env("HTTPS_PROXY", &proxy)
            .env("http_proxy", &proxy)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, codes) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
        let (http_code, connect_code) = codes.split_once(' ').unwrap_or((codes, ""));
        CurlOutput {
            status: out.status,
            body: body.to_string(),
            http_code: http_code.to_string(),
            connect_code: connect_code.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        }
    }

    pub async fn curl(&self, args: &[&str]) -> CurlOutput {
        self.curl_with(Path::new("/usr/bin/curl"), args).await
    }

    /// GET `url` with Python's urllib through the proxy; prints
    /// "<status>\n<body>".
    pub async fn python_get(&self, url: &str) -> (u16, String) {
        let script = r#"
import ssl, sys, urllib.request, urllib.error
proxy, ca, url = sys.argv[1], sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
opener = urllib.request.build_opener(
    urllib.request.ProxyHandler({"https": proxy, "http": proxy}),
    urllib.request.HTTPSHandler(context=ctx))
try:
    r = opener.open(urllib.request.Request(url, headers={"Authorization": "Bearer py-own"}), timeout=5)
    print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
"#;
        let out = tokio::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(format!("http://{}", self.proxy))
            .arg(self.path("ca.pem"))
            .arg(url)
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let (code, body) = stdout.split_once('\n').unwrap_or((&stdout, ""));
        let code = code.trim().parse().unwrap_or_else(|_| {
            panic!(
                "python client failed: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (code, body.to_string())
    }

    /// Every request the upstream saw, in order.
    pub fn seen(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path("seen.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Audit records, polled until `pred` holds for one (the record is
    /// written when the response is produced, the test may be faster).
    pub async fn audit_until(
        &self,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let records: Vec<serde_json::Value> = std::fs::read_to_string(self.path("audit.jsonl"))
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if records.iter().any(&pred) {
                return records;
            }
            assert!(
                Instant::now() < deadline,
                "no matching audit record in {records:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Header values named `name` (case-insensitive) in an echoed request.
pub fn header_values(request: &serde_json::Value, name: &str) -> Vec<String> {
    request["headers"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .filter(|h| h[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
                .filter_map(|h| h[1].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
