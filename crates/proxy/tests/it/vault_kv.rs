//! `vault_kv` secrets against a real OpenBao dev server: the value is
//! injected upstream, a rotated value is picked up after `refresh`, and
//! with OpenBao gone the cached value is used until `refresh + grace`,
//! after which requests fail closed with 503 naming the KV error.

use crate::common;
use idmint_testkit::OpenBao;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

const ROOT_TOKEN: &str = "root-token-for-proxy-tests";

fn kv_rules(bao: &OpenBao, token_file: &std::path::Path) -> String {
    format!(
        r#"path_prefix = "/harness-only/"

[[rules]]
identity = "curl-app"
host = "upstream.test"
port = @UPSTREAM_PORT@
path_prefix = "/kv/"
inject = {{ kind = "header", name = "X-Api-Key", secret = "kv-key" }}

[secrets.kv-key]
vault_kv = {{ addr = "{addr}", path = "apps/billing", field = "api_key", token_file = "{token}", refresh = "1s", grace = "3s" }}
"#,
        addr = bao.url(),
        token = token_file.display()
    )
}

/// The `X-Api-Key` values of every request the upstream saw.
fn seen_keys(fx: &common::Fixture) -> Vec<String> {
    fx.seen()
        .iter()
        .flat_map(|r| common::header_values(r, "x-api-key"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_value_is_injected_rotated_and_cached_through_an_outage() {
    let mut bao = OpenBao::start(ROOT_TOKEN).await.unwrap();
    bao.kv_put(
        "apps/billing",
        serde_json::json!({"api_key": "kv-value-one", "other": "x"}),
    )
    .await
    .unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("bao.token");
    std::fs::write(&token_file, format!("{ROOT_TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let fx = common::start(&kv_rules(&bao, &token_file)).await;

    // 1. The current value reaches the upstream; the workload's own is replaced.
    let out = fx
        .curl(&["-H", "X-Api-Key: workload-own", &fx.url("/kv/charge")])
        .await;
    assert_eq!(out.http_code, "200", "{} {}", out.body, out.stderr);
    assert_eq!(seen_keys(&fx), vec!["kv-value-one".to_string()]);

    // 2. Rotation: a new version is used once `refresh` has passed.
    bao.kv_put(
        "apps/billing",
        serde_json::json!({"api_key": "kv-value-two"}),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = fx.curl(&[&fx.url("/kv/charge")]).await;
        assert_eq!(out.http_code, "200", "{} {}", out.body, out.stderr);
        if seen_keys(&fx).last().map(String::as_str) == Some("kv-value-two") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rotated value never injected: {:?}",
            seen_keys(&fx)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 3. OpenBao goes away: the cached value is still injected...
    bao.kill().unwrap();
    let killed = Instant::now();
    let out = fx.curl(&[&fx.url("/kv/charge")]).await;
    assert_eq!(
        out.http_code, "200",
        "cached value not served: {}",
        out.body
    );
    assert_eq!(
        seen_keys(&fx).last().map(String::as_str),
        Some("kv-value-two")
    );

    // ...until refresh + grace, then the proxy fails closed with 503.
    let deadline = Instant::now() + Duration::from_secs(15);
    let refused = loop {
        let out = fx.curl(&[&fx.url("/kv/charge")]).await;
        if out.http_code == "503" {
            break out;
        }
        assert_eq!(out.http_code, "200", "{}", out.body);
        assert!(Instant::now() < deadline, "never failed closed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        killed.elapsed() >= Duration::from_millis(900),
        "failed closed before the cached value expired"
    );
    assert!(
        refused
            .body
            .contains("credential `kv-key` (vault_kv) is unavailable"),
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("cannot read KV secret"),
        "{}",
        refused.body
    );
    assert!(refused.body.contains(&bao.url()), "{}", refused.body);
    assert!(!refused.body.contains("kv-value"), "{}", refused.body);

    // The audit log names the source and fingerprints, never the values.
    let records = fx
        .audit_until(|r| r["status"] == 503 && r["credential"] == "kv-key")
        .await;
    let audit = std::fs::read_to_string(fx.path("audit.jsonl")).unwrap();
    assert!(!audit.contains("kv-value"), "secret in the audit log");
    let fingerprints: std::collections::BTreeSet<String> = records
        .iter()
        .filter(|r| r["credential"] == "kv-key" && r["status"] == 200)
        .map(|r| {
            assert_eq!(r["credential_source"], "vault_kv");
            r["credential_fingerprint"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        fingerprints.len(),
        2,
        "one fingerprint per version: {fingerprints:?}"
    );
    let failed = records.iter().find(|r| r["status"] == 503).unwrap();
    assert_eq!(failed["decision"], "error");
    assert_eq!(failed["credential_source"], "vault_kv");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_field_and_bad_token_fail_closed_with_the_reason() {
    let bao = OpenBao::start(ROOT_TOKEN).await.unwrap();
    bao.kv_put("apps/billing", serde_json::json!({"not_the_key": "v"}))
        .await
        .unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("bao.token");
    std::fs::write(&token_file, "wrong-token").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let fx = common::start(&kv_rules(&bao, &token_file)).await;

    let out = fx.curl(&[&fx.url("/kv/charge")]).await;
    assert_eq!(out.http_code, "502", "{}", out.body);
    assert!(out.body.contains("403"), "{}", out.body);
    assert!(seen_keys(&fx).is_empty());

    // The token file is re-read: fixing it needs no restart, and a field
    // that is not there is named.
    std::fs::write(&token_file, ROOT_TOKEN).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let out = loop {
        let out = fx.curl(&[&fx.url("/kv/charge")]).await;
        if !out.body.contains("403") {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "token change not picked up: {}",
            out.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(out.http_code, "502", "{}", out.body);
    assert!(out.body.contains("has no field `api_key`"), "{}", out.body);
    assert!(seen_keys(&fx).is_empty());
}
