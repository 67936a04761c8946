//! SigV4 re-signing against a real verifier: moto with authentication
//! enforced (TESTBED §2). The workload (curl) sends an unsigned STS call —
//! or one signed with a forged key — and the proxy signs it with the key
//! it holds; moto accepts only a correct signature by a known key.

use idmint_proxy::{Proxy, ProxyConfig};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Killed and reaped on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn venv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv-testbed/bin")
}

fn start_moto() -> (Reaped, u16) {
    let mut child = Command::new(venv().join("moto_server"))
        .args(["-H", "127.0.0.1", "-p", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("moto_server from .venv-testbed (TESTBED §2)");
    let stderr = child.stderr.take().unwrap();
    let moto = Reaped(child);
    let mut reader = BufReader::new(stderr);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "moto exited before announcing its port"
        );
        if let Some(rest) = line.split("Running on http://127.0.0.1:").nth(1) {
            let port = rest.trim().parse().unwrap();
            // Keep draining moto's log so it never blocks on a full pipe.
            std::thread::spawn(move || {
                let mut sink = String::new();
                while reader.read_line(&mut sink).is_ok_and(|n| n > 0) {
                    sink.clear();
                }
            });
            return (moto, port);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_accepts_the_proxys_signature_and_not_the_workloads() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_moto, port) = start_moto();
    let endpoint = format!("http://127.0.0.1:{port}");
    let status = Command::new(venv().join("python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testbed/moto-bootstrap.py"))
        .arg(&endpoint)
        .arg(d.join("creds.json"))
        .arg("--enforce")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "moto bootstrap failed");
    let creds: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("creds.json")).unwrap()).unwrap();
    let key_id = creds["AccessKeyId"].as_str().unwrap();
    std::fs::write(
        d.join("aws.key"),
        creds["SecretAccessKey"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::set_permissions(d.join("aws.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        d.join("proxy.toml"),
        format!(
            r#"listen = "127.0.0.1:0"
audit_file = "audit.jsonl"
system_roots = true
[secrets.aws]
file = "aws.key"
[[bindings]]
identity = "curl-app"
exe = "/usr/bin/curl"
[[rules]]
identity = "curl-app"
host = "127.0.0.1"
port = {port}
methods = ["POST"]
plaintext = true
inject = {{ kind = "aws_sigv4", access_key_id = "{key_id}", secret = "aws", region = "us-east-1", service = "sts" }}
"#
        ),
    )
    .unwrap();
    let config = ProxyConfig::load(&d.join("proxy.toml")).unwrap();
    let bound = Proxy::new(config).unwrap().bind().await.unwrap();
    let proxy = format!("http://{}", bound.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.serve_until(async move {
        let _ = stopped.await;
    }));

    let sts = |extra: &[&str]| {
        let mut cmd = tokio::process::Command::new("/usr/bin/curl");
        cmd.args(["-sS", "-m", "10", "-w", "\n%{http_code}"])
            .args(["-H", "Content-Type: application/x-www-form-urlencoded"])
            .args([
                "--data-binary",
                "Action=GetCallerIdentity&Version=2011-06-15",
            ])
            .args(extra)
            .arg(format!("{endpoint}/"))
            .env_clear()
            .env("http_proxy", &proxy);
        cmd
    };
    // Unsigned by the workload: the proxy's signature is what moto checks.
    let out = sts(&[]).output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n200"), "{text}");
    assert!(text.contains("<Arn>arn:aws:iam::"), "{text}");
    assert!(text.contains("user/admin</Arn>"), "{text}");

    // A forged signature from the workload is replaced, not forwarded.
    let forged = "Authorization: AWS4-HMAC-SHA256 Credential=AKIAFORGED0000000000/20250101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=00";
    let out = sts(&["-H", forged]).output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n200"), "{text}");

    // Without the proxy moto refuses the same unsigned request.
    let out = tokio::process::Command::new("/usr/bin/curl")
        .args(["-sS", "-m", "10", "-w", "\n%{http_code}"])
        .args(["-H", "Content-Type: application/x-www-form-urlencoded"])
        .args([
            "--data-binary",
            "Action=GetCallerIdentity&Version=2011-06-15",
        ])
        .arg(format!("{endpoint}/"))
        .env_clear()
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.ends_with("\n200"),
        "moto must enforce signatures: {text}"
    );
    let _ = stop.send(());
}
