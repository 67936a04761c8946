//! Smoke test of the benchmark commands: each runs for a few seconds with
//! tiny counts against the real idmint server and must produce its table
//! and a JSON document with measurements. No speed is asserted (CI
//! machines vary); what is asserted is that every scenario ran and
//! succeeded.
//!
//! Only idmint is covered: the OpenBao comparison needs a 180 MB download
//! and is run by hand with the command documented in docs/benchmarks.md.
//!
//! Needs `target/<profile>/idmint` (built by any workspace build, or
//! `cargo build -p idmint`) and, for pg-creds, PostgreSQL 15 run as root
//! (see idmint-testkit's postgres module), like the other integration
//! tests.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn bench_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_idmint-bench"))
}

/// `idmint` next to the bench binary (the same profile directory).
fn idmint_bin() -> PathBuf {
    let path = bench_bin()
        .parent()
        .expect("the bench binary is in a directory")
        .join("idmint");
    assert!(
        path.is_file(),
        "{} is missing: build the server first with `cargo build -p idmint` (a workspace build does it)",
        path.display()
    );
    path
}

fn run(args: &[&str], json: &Path) -> String {
    let out = Command::new(bench_bin())
        .args(args)
        .arg("--idmint-bin")
        .arg(idmint_bin())
        .arg("--json-path")
        .arg(json)
        .args(["--quiet", "--mint-threads", "1"])
        .output()
        .expect("running idmint-bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "idmint-bench {args:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("the JSON results exist"))
        .expect("the results are JSON")
}

#[test]
fn all_without_a_peer_measures_every_idmint_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("comparison.json");
    let stdout = run(
        &[
            "all",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--concurrency",
            "2",
            "--pg-concurrency",
            "2",
            "--tokens",
            "3000",
        ],
        &json,
    );
    for scenario in [
        "ceiling",
        "jwt-login",
        "login-exchange",
        "token-lookup",
        "pg-creds",
        "lease-revoke",
        "ssh-sign",
    ] {
        assert!(stdout.contains(scenario), "{scenario} missing:\n{stdout}");
    }
    let doc = read_json(&json);
    let rows = doc["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 7, "{rows:#?}");
    for row in rows {
        assert_eq!(row["system"], "idmint");
        if row["scenario"] == "ssh-sign" && !row["skipped"].is_null() {
            assert!(row["skipped"].as_str().unwrap().contains("not built"));
            continue;
        }
        assert!(
            row["ok"].as_u64().unwrap() > 0,
            "nothing succeeded: {row:#}"
        );
        assert_eq!(row["errors"], 0, "{row:#}");
        assert!(row["p99_ms"].as_f64().unwrap() > 0.0, "{row:#}");
    }
    // lease-revoke revoked what pg-creds issued.
    let issued = rows.iter().find(|r| r["scenario"] == "pg-creds").unwrap();
    let revoked = rows
        .iter()
        .find(|r| r["scenario"] == "lease-revoke")
        .unwrap();
    assert!(revoked["ok"].as_u64().unwrap() <= issued["ok"].as_u64().unwrap() + 1000);
    let svg = std::fs::read_to_string(dir.path().join("comparison.svg")).expect("the chart");
    assert!(
        svg.starts_with("<svg") && svg.contains("jwt-login c=2"),
        "{svg}"
    );
}

#[test]
fn scale_with_tiny_counts_reports_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("scale.json");
    let stdout = run(
        &[
            "scale",
            "--leases",
            "3000",
            "--api-leases",
            "40",
            "--expired",
            "300",
            "--audit-events",
            "5000",
            "--duration",
            "1s",
            "--concurrency",
            "2",
        ],
        &json,
    );
    assert!(stdout.contains("startup with"), "{stdout}");
    let scale = &read_json(&json)["scale"];
    assert_eq!(scale["leases"], 3000);
    // API leases + the creds runs' leases + the seeded ones.
    assert!(scale["live_after_api"].as_u64().unwrap() >= 40, "{scale:#}");
    assert!(
        scale["live_after_seed"].as_u64().unwrap()
            >= scale["live_after_api"].as_u64().unwrap() + 3000,
        "{scale:#}"
    );
    assert!(scale["startup_s"].as_f64().unwrap() > 0.0);
    assert!(scale["rss_full_mib"].as_f64().unwrap() > 1.0);
    assert!(
        scale["reaper_seconds"].as_f64().is_some(),
        "the reaper did not finish 300 leases: {scale:#}"
    );
    assert_eq!(scale["reaper_left"], 0);
    assert_eq!(scale["audit_verify_ok"], true, "{scale:#}");
    for key in ["login_empty", "creds_empty", "login_full", "creds_full"] {
        assert!(
            scale[key]["req_per_s"].as_f64().unwrap() > 0.0,
            "{key}: {scale:#}"
        );
        assert_eq!(scale[key]["errors"], 0, "{key}: {scale:#}");
    }
}

/// Needs root (the agent creates accounts inside a private mount namespace),
/// like the SSH end-to-end tests; CI runs as root.
#[test]
fn jit_measures_grant_to_ready_and_leaves_no_account() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("jit.json");
    let stdout = run(&["jit", "--grants", "4", "--concurrency", "1,2"], &json);
    assert!(stdout.contains("grant -> account ready"), "{stdout}");
    let rows = read_json(&json)["jit"].as_array().cloned().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (row, conc) in rows.iter().zip([1, 2]) {
        assert_eq!(row["concurrency"], conc, "{row}");
        assert_eq!(row["grants"], 4, "{row}");
        assert_eq!(row["errors"], 0, "{row}");
        let (p50, max) = (
            row["p50_ms"].as_f64().unwrap(),
            row["max_ms"].as_f64().unwrap(),
        );
        assert!(p50 > 0.0 && max >= p50, "{row}");
    }
}

/// Two servers on one PostgreSQL store: both take load (a session opened
/// on one is honoured by the other), and the JSON records the setting.
#[test]
fn all_with_two_servers_on_postgres_spreads_the_load() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("cluster.json");
    let stdout = run(
        &[
            "all",
            "--idmint-servers",
            "2",
            "--scenarios",
            "jwt-login,ssh-sign",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--concurrency",
            "4",
            "--tokens",
            "3000",
        ],
        &json,
    );
    assert!(stdout.contains("ssh-sign"), "{stdout}");
    let doc = read_json(&json);
    assert_eq!(doc["settings"]["idmint_servers"], 2, "{doc:#}");
    assert_eq!(doc["settings"]["idmint_postgres"], true, "{doc:#}");
    let rows = doc["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{rows:#?}");
    for row in rows {
        assert!(row["ok"].as_u64().unwrap() > 0, "{row:#}");
        assert_eq!(row["errors"], 0, "{row:#}");
    }
}
