//! The core flow through the `idmint` CLI binary, as a user or a CI job
//! runs it: login (from a file, from stdin, and auto-detected in GitHub
//! Actions), whoami, creds, leases, logout; offline audit verification
//! (including tampered copies) and tracing; `server --check-config`.

use crate::common;

use common::{bin, job_token, server_for};
use idmint_testkit::{Cli, CliOutput, Idp};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn ok(out: &CliOutput) -> anyhow::Result<serde_json::Value> {
    assert!(out.success(), "{}", out.summary());
    Ok(out.json()?)
}

fn mode_of(path: &Path) -> anyhow::Result<u32> {
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

/// Copy `lines` into a new file `name` next to `dir` and run `audit verify`
/// on it.
async fn verify_copy(
    cli: &Cli,
    dir: &Path,
    name: &str,
    lines: &[&str],
) -> anyhow::Result<CliOutput> {
    let path = dir.join(name);
    std::fs::write(
        &path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )?;
    Ok(cli
        .run(&["audit", "verify", &path.display().to_string()])
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_login_creds_leases_audit_and_check_config() -> anyhow::Result<()> {
    let idp = Idp::start().await?;
    let server = server_for(&idp).await?;
    let url = server.base_url();
    let cli = Cli::new(bin())?;
    let proof = job_token(&idp, json!({})).await?;
    let token_file = cli.home().join("oidc-token");
    std::fs::write(&token_file, &proof)?;

    // login: the session is cached in $XDG_CACHE_HOME/idmint/session.json, 0600.
    let tf = token_file.display().to_string();
    let login = ok(&cli
        .run(&[
            "login",
            "--token-file",
            &tf,
            "--server",
            &url,
            "--output",
            "json",
        ])
        .await?)?;
    let session = login["token"].as_str().unwrap_or_default().to_string();
    assert!(session.starts_with("idm_"), "{login}");
    assert_eq!(
        login["identity"]["subject"],
        "repo:acme/app:ref:refs/heads/main"
    );
    let cache = cli.cache_dir().join("idmint/session.json");
    assert_eq!(mode_of(&cache)?, 0o600, "the session cache holds tokens");
    assert!(std::fs::read_to_string(&cache)?.contains(&session));

    // Text output of login never prints the session token.
    let text_login = cli
        .run(&["login", "--token-file", &tf, "--server", &url])
        .await?;
    assert!(text_login.success(), "{}", text_login.summary());
    assert!(
        !text_login.stdout.contains("idm_") && !text_login.stderr.contains("idm_"),
        "{}",
        text_login.summary()
    );

    let me = ok(&cli.run(&["whoami", "--server", &url, "-o", "json"]).await?)?;
    assert_eq!(me["identity"]["attributes"]["repository"], "acme/app");
    assert_eq!(me["identity"]["auth"], "github");

    let creds = ok(&cli
        .run(&[
            "creds",
            "demo-api",
            "--server",
            &url,
            "-o",
            "json",
            "--scope",
            "orders:read",
        ])
        .await?)?;
    let lease_id = creds["lease_id"].as_str().unwrap_or_default().to_string();
    assert!(!lease_id.is_empty(), "{creds}");
    assert_eq!(creds["credential"]["type"], "oauth_token");
    assert_eq!(creds["credential"]["scopes"], json!(["orders:read"]));

    let env = cli
        .run(&["creds", "demo-api", "--server", &url, "-o", "env"])
        .await?;
    assert!(
        env.success() && env.stdout.contains("export IDMINT_ACCESS_TOKEN="),
        "{}",
        env.summary()
    );

    // Denied by policy: exit code 2 and the reason.
    let denied = cli.run(&["creds", "locked", "--server", &url]).await?;
    assert_eq!(denied.code, Some(2), "{}", denied.summary());
    assert!(
        denied.stderr.contains("policy_denied"),
        "{}",
        denied.summary()
    );

    let leases = ok(&cli
        .run(&["leases", "list", "--server", &url, "-o", "json"])
        .await?)?;
    let listed: Vec<&str> = leases["leases"]
        .as_array()
        .map(|a| a.iter().filter_map(|l| l["id"].as_str()).collect())
        .unwrap_or_default();
    assert!(listed.contains(&lease_id.as_str()), "{leases}");
    let revoked = ok(&cli
        .run(&[
            "leases", "revoke", &lease_id, "--server", &url, "-o", "json",
        ])
        .await?)?;
    assert_eq!(revoked["state"], "revoked");
    let table = cli.run(&["leases", "list", "--server", &url]).await?;
    assert!(
        table.success() && table.stdout.contains(&lease_id) && table.stdout.contains("revoked"),
        "{}",
        table.summary()
    );

    // Offline audit verification of the live log.
    let audit = server.audit_file().display().to_string();
    let verified = cli.run(&["audit", "verify", &audit]).await?;
    assert!(verified.success(), "{}", verified.summary());
    assert!(verified.stdout.contains("OK"), "{}", verified.summary());

    // Tampered copies fail and name the line.
    let original = std::fs::read_to_string(server.audit_file())?;
    let lines: Vec<&str> = original.lines().collect();
    assert!(
        lines.len() >= 6,
        "enough events to tamper with: {}",
        lines.len()
    );
    let work = tempfile::tempdir()?;

    let mut edited = lines.clone();
    let changed = edited[2].replacen("\"outcome\":\"success\"", "\"outcome\":\"denied\"", 1);
    assert_ne!(
        changed, edited[2],
        "line 3 (a successful login) must actually change"
    );
    edited[2] = &changed;
    let out = verify_copy(&cli, work.path(), "edited.jsonl", &edited).await?;
    assert!(!out.success(), "edited line must fail: {}", out.summary());
    assert!(
        out.stdout.contains("line 3"),
        "names the edited line: {}",
        out.summary()
    );

    let mut deleted = lines.clone();
    deleted.remove(2);
    let out = verify_copy(&cli, work.path(), "deleted.jsonl", &deleted).await?;
    assert!(!out.success(), "deleted line must fail: {}", out.summary());
    assert!(
        out.stdout.contains("line 3"),
        "names where the chain breaks: {}",
        out.summary()
    );

    let mut swapped = lines.clone();
    swapped.swap(2, 3);
    let out = verify_copy(&cli, work.path(), "swapped.jsonl", &swapped).await?;
    assert!(!out.success(), "swapped lines must fail: {}", out.summary());
    assert!(
        out.stdout.contains("line 3") || out.stdout.contains("line 4"),
        "names a swapped line: {}",
        out.summary()
    );

    // Trace: proof → identity → decision (bundle version) → credential → end.
    let trace = cli
        .run(&["audit", "trace", &lease_id, "--file", &audit])
        .await?;
    assert!(trace.success(), "{}", trace.summary());
    let chain = trace
        .stdout
        .lines()
        .find(|l| l.starts_with("chain:"))
        .unwrap_or_default()
        .to_string();
    let order = [
        "proof",
        "identity",
        "decision allowed (bundle v1)",
        "credential",
        "end: lease_revoked",
    ];
    let positions: Vec<Option<usize>> = order.iter().map(|step| chain.find(step)).collect();
    assert!(
        positions.iter().all(Option::is_some),
        "every step in the chain: {chain}\n{}",
        trace.summary()
    );
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "steps in order: {chain}"
    );
    assert!(trace.stdout.contains(&lease_id));

    // logout: revoked on the server and forgotten locally.
    let out = ok(&cli.run(&["logout", "--server", &url, "-o", "json"]).await?)?;
    assert_eq!(out["revoked"], true, "{out}");
    let after = cli.run(&["whoami", "--server", &url]).await?;
    assert!(!after.success(), "{}", after.summary());
    assert!(
        after.stderr.contains("idmint login"),
        "says how to fix it: {}",
        after.summary()
    );

    // --check-config: the running server's config is fine…
    let config = server.config_path().display().to_string();
    let good = cli
        .run(&["server", "--config", &config, "--check-config"])
        .await?;
    assert!(
        good.success() && good.stdout.contains("configuration OK"),
        "{}",
        good.summary()
    );

    // …a typo'd key names the file, the line and the key…
    let text = std::fs::read_to_string(server.config_path())?;
    let typo = text.replacen("audiences = ", "audience = ", 1);
    let typo_line = typo
        .lines()
        .position(|l| l.starts_with("audience = "))
        .map(|i| i + 1)
        .unwrap_or(0);
    let bad_path = work.path().join("typo.toml");
    std::fs::write(&bad_path, &typo)?;
    let bad = cli
        .run(&[
            "server",
            "--config",
            &bad_path.display().to_string(),
            "--check-config",
        ])
        .await?;
    assert!(!bad.success(), "{}", bad.summary());
    let all = format!("{}{}", bad.stdout, bad.stderr);
    assert!(all.contains("typo.toml"), "names the file: {all}");
    assert!(
        all.contains(&format!("line {typo_line}")),
        "names line {typo_line}: {all}"
    );
    assert!(all.contains("audience"), "names the key: {all}");

    // …and so does a semantically invalid value.
    let semantic = text.replacen(
        "allow_insecure_http = true",
        "allow_insecure_http = true\nleeway_seconds = 3000",
        1,
    );
    let bad_path = work.path().join("leeway.toml");
    std::fs::write(&bad_path, &semantic)?;
    let bad = cli
        .run(&[
            "server",
            "--config",
            &bad_path.display().to_string(),
            "--check-config",
        ])
        .await?;
    let all = format!("{}{}", bad.stdout, bad.stderr);
    assert!(!bad.success(), "{}", bad.summary());
    assert!(
        all.contains("leeway.toml") && all.contains("line ") && all.contains("leeway_seconds"),
        "{all}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_login_from_stdin_and_github_actions_autodetection() -> anyhow::Result<()> {
    let idp = Idp::start().await?;
    let server = server_for(&idp).await?;
    let url = server.base_url();
    let mut cli = Cli::new(bin())?;
    let token_file = cli.home().join("sessions/idmint.json");
    cli.set_env("IDMINT_TOKEN_FILE", &token_file.display().to_string());

    // A token on stdin (never as an argument).
    let proof = job_token(&idp, json!({})).await?;
    let out = cli
        .run_stdin(
            &["login", "--token", "-", "--server", &url, "-o", "json"],
            &proof,
        )
        .await?;
    let login = ok(&out)?;
    assert_eq!(
        login["identity"]["subject"],
        "repo:acme/app:ref:refs/heads/main"
    );
    assert_eq!(
        mode_of(&token_file)?,
        0o600,
        "IDMINT_TOKEN_FILE is honoured and private"
    );

    // GitHub Actions: no token flag; the runner's ID token endpoint is used.
    let out = cli
        .run_env(
            &["login", "--server", &url, "-o", "json"],
            &idp.actions_env(),
        )
        .await?;
    let login = ok(&out)?;
    assert_eq!(
        login["identity"]["subject"], "repo:octo-org/octo-repo:ref:refs/heads/main",
        "the ci-job client's token"
    );
    let me = ok(&cli.run(&["whoami", "--server", &url, "-o", "json"]).await?)?;
    assert_eq!(
        me["identity"]["attributes"]["repository"],
        "octo-org/octo-repo"
    );
    assert_eq!(
        me["identity"]["attributes"]["aud"], "idmint",
        "requested with --audience idmint"
    );
    // octo-org is not acme/app: the fixture policy denies it.
    let denied = cli.run(&["creds", "demo-api", "--server", &url]).await?;
    assert_eq!(denied.code, Some(2), "{}", denied.summary());

    // Outside CI with no token: a clear error listing what was checked.
    let none = cli.run(&["login", "--server", &url]).await?;
    assert_eq!(none.code, Some(1), "{}", none.summary());
    assert!(
        none.stderr.contains("ACTIONS_ID_TOKEN_REQUEST_URL")
            && none.stderr.contains("--token-file"),
        "{}",
        none.summary()
    );
    Ok(())
}
