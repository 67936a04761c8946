//! Transparent mode for real: in a private network namespace (`unshare
//! -n`), the standalone `idmint-proxy` binary listens on
//! `transparent_listen`, an nftables `redirect` sends the TCP connections
//! of uid 65534 to it, and `curl` running as that uid (never told about a
//! proxy) reaches the real HTTPS echo upstream with the credential
//! injected. Hostile cases: an SNI that does not belong to the address
//! connected to, no SNI at all, and the same mismatch in a plain HTTP
//! `Host` header.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const SECRET: &str = "sk-transparent-0123456789";

const SCRIPT: &str = r#"
set -u
dir=$1; echo_py=$2; proxy=$3
ip link set lo up
mkdir -p "$dir/www" && echo plain-ok > "$dir/www/index.html"
python3 "$echo_py" "$dir/cert.pem" "$dir/key.pem" 8443 "$dir/seen.jsonl" > "$dir/echo.out" 2>&1 &
python3 -m http.server 8080 --bind 127.0.0.1 --directory "$dir/www" > /dev/null 2>&1 &
"$proxy" "$dir/proxy.toml" > "$dir/proxy.out" 2> "$dir/proxy.log" &
trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT
# Wait (bounded) until the three listeners accept.
for port in 8443 8080 8721; do
  up=no
  for i in $(seq 400); do
    if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then up=yes; break; fi
    sleep 0.05
  done
  [ $up = yes ] || { echo "port $port never listened" >&2; cat "$dir/proxy.log" >&2; exit 3; }
done
nft -f "$dir/rules.nft" || exit 4
run() {
  name=$1; shift
  setpriv --reuid 65534 --regid 65534 --clear-groups \
    curl -sS -m 5 -w '\n%{http_code}' "$@" > "$dir/$name.out" 2> "$dir/$name.err"
  echo $? > "$dir/$name.rc"
}
run sni --cacert "$dir/ca.pem" --resolve upstream.test:8443:127.0.0.1 \
  -H 'Authorization: Bearer workload-own' https://upstream.test:8443/v1/models
run mismatch --cacert "$dir/ca.pem" --resolve upstream.test:8443:127.0.0.2 https://upstream.test:8443/v1/models
run nosni --cacert "$dir/ca.pem" https://127.0.0.1:8443/v1/models
run plain --resolve upstream.test:8080:127.0.0.1 http://upstream.test:8080/index.html
run plainmismatch --resolve upstream.test:8080:127.0.0.2 http://upstream.test:8080/index.html
exit 0
"#;

const RULES: &str = r#"
table ip idmint_transparent_test {
    chain out {
        type nat hook output priority -100; policy accept;
        meta skuid 65534 tcp dport { 8443, 8080 } redirect to :8721
    }
}
"#;

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

#[test]
fn redirected_curl_gets_the_credential_and_hostile_names_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // curl runs as uid 65534 and must read the CA (the secret stays 0600).
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    idmint_testkit::write_upstream_cert(dir, "DNS:upstream.test").unwrap();
    idmint_proxy::init_ca(&dir.join("ca.pem"), &dir.join("ca-key.pem")).unwrap();
    std::fs::set_permissions(dir.join("ca.pem"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(dir.join("api.key"), SECRET).unwrap();
    std::fs::set_permissions(dir.join("api.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        dir.join("proxy.toml"),
        r#"
listen = "127.0.0.1:8720"
transparent_listen = "127.0.0.1:8721"
audit_file = "audit.jsonl"
ca_cert = "ca.pem"
ca_key = "ca-key.pem"
upstream_ca_file = ["cert.pem"]
system_roots = false

[resolve]
"upstream.test" = "127.0.0.1"

[secrets.api]
file = "api.key"

[[bindings]]
identity = "curl-nobody"
exe = "/usr/bin/curl"
uid = 65534

[[rules]]
identity = "curl-nobody"
host = "upstream.test"
port = 8443
path_prefix = "/v1/"
inject = { kind = "bearer", secret = "api" }

[[rules]]
identity = "curl-nobody"
host = "upstream.test"
port = 8080
plaintext = true
inject = { kind = "bearer", secret = "api" }

[[rules]]
identity = "curl-nobody"
host = "127.0.0.1"
port = 8443
"#,
    )
    .unwrap();
    std::fs::write(dir.join("rules.nft"), RULES).unwrap();
    std::fs::write(dir.join("run.sh"), SCRIPT).unwrap();
    let echo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testbed/https-echo.py");
    let out = Command::new("timeout")
        .args(["120", "unshare", "-n", "bash"])
        .arg(dir.join("run.sh"))
        .arg(dir)
        .arg(echo)
        .arg(env!("CARGO_BIN_EXE_idmint-proxy"))
        .output()
        .unwrap();
    let log = read(dir, "proxy.log");
    assert!(
        out.status.success(),
        "netns script failed: {}\n{}\nproxy log:\n{log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // 1. TLS with SNI, addressed to an address the name resolves to: the
    //    upstream got the injected credential, never the workload's own.
    let sni = read(dir, "sni.out");
    assert!(
        sni.ends_with("\n200"),
        "{sni}\n{}\n{log}",
        read(dir, "sni.err")
    );
    let seen: Vec<serde_json::Value> = read(dir, "seen.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(seen.len(), 1, "only the allowed request arrives: {seen:#?}");
    assert_eq!(seen[0]["path"], "/v1/models");
    assert_eq!(
        crate::common::header_values(&seen[0], "authorization"),
        vec![format!("Bearer {SECRET}")]
    );
    assert!(
        !sni.contains(SECRET),
        "the echoed credential is redacted: {sni}"
    );

    // 2. SNI upstream.test sent to 127.0.0.2: refused before any TLS.
    assert_ne!(
        read(dir, "mismatch.rc").trim(),
        "0",
        "{}",
        read(dir, "mismatch.out")
    );
    assert!(
        log.contains(
            "upstream.test resolves to 127.0.0.1, but the connection was addressed to 127.0.0.2"
        ),
        "{log}"
    );
    // 3. No SNI (curl sends none for an IP address): refused, clear log.
    assert_ne!(
        read(dir, "nosni.rc").trim(),
        "0",
        "{}",
        read(dir, "nosni.out")
    );
    assert!(log.contains("carries no server name (SNI)"), "{log}");

    // 4. Plain HTTP: the Host header names the destination; injected.
    let plain = read(dir, "plain.out");
    assert!(plain.ends_with("plain-ok\n\n200"), "{plain}\n{log}");
    // 5. Host header not matching the address: 403 with the reason.
    let mismatch = read(dir, "plainmismatch.out");
    assert!(mismatch.ends_with("\n403"), "{mismatch}");
    assert!(
        mismatch.contains("does not belong to that address"),
        "{mismatch}"
    );

    let audit: Vec<serde_json::Value> = read(dir, "audit.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let allowed: Vec<&serde_json::Value> =
        audit.iter().filter(|r| r["decision"] == "allow").collect();
    assert_eq!(allowed.len(), 2, "{audit:#?}");
    assert!(allowed
        .iter()
        .all(|r| r["identity"] == "curl-nobody" && r["uid"] == 65534 && r["credential"] == "api"));
    assert!(allowed
        .iter()
        .any(|r| r["mode"] == "intercept" && r["address"] == "127.0.0.1:8443"));
    assert!(allowed
        .iter()
        .any(|r| r["mode"] == "forward" && r["address"] == "127.0.0.1:8080"));
    let denied: Vec<&str> = audit
        .iter()
        .filter(|r| r["mode"] == "transparent" && r["decision"] == "deny")
        .filter_map(|r| r["reason"].as_str())
        .collect();
    // The three hostile requests, plus the script's readiness probe, which
    // connected to the transparent listener directly (not redirected).
    assert_eq!(denied.len(), 4, "{audit:#?}");
    assert_eq!(
        denied
            .iter()
            .filter(|r| r.contains("does not belong"))
            .count(),
        2
    );
    assert_eq!(
        denied
            .iter()
            .filter(|r| r.contains("no server name"))
            .count(),
        1
    );
    assert_eq!(
        denied.iter().filter(|r| r.contains("redirect")).count(),
        1,
        "{denied:#?}"
    );
    assert!(!read(dir, "audit.jsonl").contains(SECRET));
}
