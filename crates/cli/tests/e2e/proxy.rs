//! `idmint proxy` as a user runs it: the real binary creates its CA,
//! validates configurations, and injects a credential into a real curl
//! request to the real HTTPS echo upstream (testbed/https-echo.py).

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

const IDMINT: &str = env!("CARGO_BIN_EXE_idmint");

/// Killed and reaped on drop, also when the test fails.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawn `cmd` and return it with the first stdout/stderr line.
fn spawn_with_first_line(cmd: &mut Command, from_stderr: bool) -> (Reaped, String) {
    let mut child = if from_stderr {
        cmd.stderr(Stdio::piped()).spawn().unwrap()
    } else {
        cmd.stdout(Stdio::piped()).spawn().unwrap()
    };
    let mut line = String::new();
    if from_stderr {
        let pipe = child.stderr.take().unwrap();
        BufReader::new(pipe).read_line(&mut line).unwrap();
    } else {
        let pipe = child.stdout.take().unwrap();
        BufReader::new(pipe).read_line(&mut line).unwrap();
    }
    (Reaped(child), line)
}

fn config(dir: &Path, upstream_port: u16, prefix: &str) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
audit_file = "audit.jsonl"
ca_cert = "ca.pem"
ca_key = "ca-key.pem"
upstream_ca_file = ["cert.pem"]
system_roots = false
[resolve]
"upstream.test" = "127.0.0.1"
[secrets.api]
file = "{key}"
[[bindings]]
identity = "curl-app"
exe = "/usr/bin/curl"
[[rules]]
identity = "curl-app"
host = "upstream.test"
port = {upstream_port}
path_prefix = "/v1/"
inject = {{ kind = "header", name = "x-api-key", prefix = "{prefix}", secret = "api" }}
"#,
        key = dir.join("api.key").display()
    )
}

#[test]
fn init_ca_check_config_and_inject_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let out = Command::new(IDMINT)
        .args(["proxy", "init-ca", "--cert"])
        .arg(d.join("ca.pem"))
        .arg("--key")
        .arg(d.join("ca-key.pem"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mode = std::fs::metadata(d.join("ca-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = Command::new(IDMINT)
        .args(["proxy", "init-ca", "--cert"])
        .arg(d.join("ca.pem"))
        .arg("--key")
        .arg(d.join("ca-key.pem"))
        .output()
        .unwrap();
    assert!(!again.status.success(), "init-ca must not overwrite a CA");

    idmint_testkit::write_upstream_cert(d, "DNS:upstream.test,IP:127.0.0.1").unwrap();
    let echo = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testbed/https-echo.py");
    let (_upstream, ready) = spawn_with_first_line(
        Command::new("python3")
            .arg(echo)
            .arg(d.join("cert.pem"))
            .arg(d.join("key.pem"))
            .arg("0")
            .arg(d.join("seen.jsonl")),
        false,
    );
    let upstream_port: u16 = ready
        .trim()
        .strip_prefix("READY ")
        .unwrap()
        .parse()
        .unwrap();

    std::fs::write(d.join("api.key"), "the-api-key\n").unwrap();
    std::fs::set_permissions(d.join("api.key"), std::fs::Permissions::from_mode(0o600)).unwrap();

    // A header prefix with CRLF is refused at load, naming the key.
    std::fs::write(
        d.join("bad.toml"),
        config(d, upstream_port, "x\\r\\nX-Evil: 1"),
    )
    .unwrap();
    let out = Command::new(IDMINT)
        .args(["proxy", "--check-config", "--config"])
        .arg(d.join("bad.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rules[0].inject.prefix") && stderr.contains("CR or LF"),
        "{stderr}"
    );

    std::fs::write(d.join("proxy.toml"), config(d, upstream_port, "Key ")).unwrap();
    let out = Command::new(IDMINT)
        .args(["proxy", "--check-config", "--config"])
        .arg(d.join("proxy.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let (_proxy, listening) = spawn_with_first_line(
        Command::new(IDMINT)
            .args(["proxy", "--config"])
            .arg(d.join("proxy.toml")),
        true,
    );
    let addr = listening
        .trim()
        .strip_prefix("idmint proxy listening on ")
        .unwrap_or_else(|| panic!("unexpected proxy output: {listening:?}"))
        .to_string();
    let out = Command::new("curl")
        .args(["-sS", "-m", "5", "--cacert"])
        .arg(d.join("ca.pem"))
        .arg(format!("https://upstream.test:{upstream_port}/v1/models"))
        .env_clear()
        .env("HTTPS_PROXY", format!("http://{addr}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // The echo reflects the request: the workload sees it redacted…
    let reply = String::from_utf8_lossy(&out.stdout);
    assert!(
        reply.contains("Key [redacted-by-idmint-proxy]") && !reply.contains("the-api-key"),
        "{reply}"
    );
    // …while the upstream received the credential.
    let seen = std::fs::read_to_string(d.join("seen.jsonl")).unwrap();
    let echoed: serde_json::Value = serde_json::from_str(seen.lines().next().unwrap()).unwrap();
    let injected: Vec<&str> = echoed["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| {
            h[0].as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case("x-api-key"))
        })
        .filter_map(|h| h[1].as_str())
        .collect();
    assert_eq!(injected, vec!["Key the-api-key"]);
}
