//! Static secrets against a real server: `idmint secret put|list|delete`
//! through the CLI, the admin API's refusals and hostile inputs, and the
//! `static` issuer's rule that a workload (here an OIDC-authenticated CI
//! job) never receives a proxy-only secret. The values must appear nowhere
//! at rest: not in list output, the audit log, the server's log or the
//! SQLite files.

use crate::common::bin;
use crate::db_support::{login_admin, login_app, oidc, POLICY};
use idmint_testkit::audit::events_of;
use idmint_testkit::{Cli, IdmintServer, ServerSpec, TestJwks};
use serde_json::{json, Value};
use std::path::Path;

const ROLES: &str = r#"
[[role]]
name = "static/openai"
issuer = "static"
description = "OpenAI key, injected by idmint proxy"
max_ttl = "10m"
static = { secret = "openai" }

[[role]]
name = "static/shared"
issuer = "static"
description = "A value workloads may hold"
max_ttl = "10m"
static = { secret = "shared", deliver_to = "any" }
"#;

const OPENAI_V1: &str = "sk-proj-FIRSTvalue-8c1f0a9e6b2d4f7a";
const OPENAI_V2: &str = "sk-proj-SECONDvalue-1d2e3f4a5b6c7d8e";
const SHARED: &str = "shared-VALUE-5e6f7a8b9c0d";

async fn start() -> anyhow::Result<(TestJwks, IdmintServer)> {
    let jwks = TestJwks::start().await?;
    let mut spec = ServerSpec::with_oidc(vec![oidc(&jwks)]).with_issuer(
        "static",
        idmint_testkit::toml::from_str("name = \"static\"")?,
    );
    spec.roles = ROLES.to_string();
    spec.policies = vec![("db.cedar".to_string(), POLICY.to_string())];
    let server = IdmintServer::start(bin(), spec).await?;
    Ok((jwks, server))
}

/// A CLI whose commands run with `session`.
fn cli_as(session: &str) -> anyhow::Result<Cli> {
    let mut cli = Cli::new(bin())?;
    cli.set_env("IDMINT_TOKEN", session);
    Ok(cli)
}

/// Every file under `dir` (database, WAL, audit, logs) whose bytes contain
/// `needle`.
fn files_containing(dir: &Path, needle: &str) -> anyhow::Result<Vec<String>> {
    let mut hits = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    hits.push(path.display().to_string());
                }
            }
        }
    }
    Ok(hits)
}

/// `method path` with a session and an optional raw JSON body.
async fn raw(
    server: &IdmintServer,
    method: reqwest::Method,
    path: &str,
    session: &str,
    body: Option<Vec<u8>>,
) -> anyhow::Result<(u16, Value)> {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", server.base_url()))
        .bearer_auth(session);
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn secrets_are_sealed_listed_without_values_and_kept_from_workloads() -> anyhow::Result<()> {
    let (jwks, server) = start().await?;
    let url = server.base_url();
    let admin = login_admin(&server, &jwks).await?;
    let app = login_app(&server, &jwks).await?;
    let cli = cli_as(&admin.session)?;

    // put from a file (trailing newline removed) and from stdin.
    let src = tempfile::tempdir()?;
    let key_file = src.path().join("openai.key");
    std::fs::write(&key_file, format!("{OPENAI_V1}\n"))?;
    let kf = key_file.display().to_string();
    let put = cli
        .run(&[
            "secret",
            "put",
            "openai",
            "--from-file",
            &kf,
            "--server",
            &url,
            "-o",
            "json",
        ])
        .await?;
    assert!(put.success(), "{}", put.summary());
    let v1 = put.json()?;
    assert_eq!(v1["name"], "openai");
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["size"], OPENAI_V1.len());
    let fp1 = v1["fingerprint"].as_str().unwrap_or_default().to_string();
    assert!(fp1.starts_with("fp_"), "{v1}");
    assert!(!put.stdout.contains(OPENAI_V1) && !put.stderr.contains(OPENAI_V1));

    let put = cli
        .run_stdin(
            &["secret", "put", "shared", "--stdin", "--server", &url],
            &format!("{SHARED}\n"),
        )
        .await?;
    assert!(put.success(), "{}", put.summary());
    assert!(put.stdout.contains("version 1"), "{}", put.stdout);

    // Replacing bumps the version and the fingerprint.
    std::fs::write(&key_file, OPENAI_V2)?;
    let put = cli
        .run(&[
            "secret",
            "put",
            "openai",
            "--from-file",
            &kf,
            "--server",
            &url,
            "-o",
            "json",
        ])
        .await?;
    assert!(put.success(), "{}", put.summary());
    let v2 = put.json()?;
    assert_eq!(v2["version"], 2);
    let fp2 = v2["fingerprint"].as_str().unwrap_or_default().to_string();
    assert_ne!(fp1, fp2);

    // The value is never a command-line argument.
    let argv = cli
        .run(&["secret", "put", "openai", OPENAI_V1, "--server", &url])
        .await?;
    assert!(
        !argv.success(),
        "a value on the command line must be refused"
    );
    let none = cli
        .run(&["secret", "put", "openai", "--server", &url])
        .await?;
    assert!(!none.success());
    assert!(cli
        .run(&["secret", "put", "--help"])
        .await?
        .stdout
        .contains("shell history"));

    // list: names and fingerprints, never values.
    let list = cli
        .run(&["secret", "list", "--server", &url, "-o", "json"])
        .await?;
    assert!(list.success(), "{}", list.summary());
    let listed = list.json()?;
    let names: Vec<&str> = listed["secrets"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["openai", "shared"]);
    assert_eq!(listed["secrets"][0]["fingerprint"], fp2.as_str());
    assert_eq!(listed["secrets"][0]["version"], 2);
    assert!(listed["secrets"][0]["updated_by"]
        .as_str()
        .is_some_and(|b| b.ends_with(&admin.subject)));
    for v in [OPENAI_V1, OPENAI_V2, SHARED] {
        assert!(!list.stdout.contains(v), "list output holds a value");
    }
    let text = cli.run(&["secret", "list", "--server", &url]).await?;
    assert!(
        text.success() && text.stdout.contains(&fp2),
        "{}",
        text.summary()
    );

    // A non-admin can neither store nor list; the refusals are audited.
    let denied = cli_as(&app.session)?
        .run_stdin(
            &["secret", "put", "openai", "--stdin", "--server", &url],
            "sk-evil",
        )
        .await?;
    assert_eq!(denied.code, Some(2), "{}", denied.summary());
    assert!(denied.stderr.contains("admin"), "{}", denied.stderr);
    let (status, body) = raw(
        &server,
        reqwest::Method::PUT,
        "/api/v1/secrets/openai",
        &app.session,
        Some(br#"{"value":"sk-evil"}"#.to_vec()),
    )
    .await?;
    assert_eq!((status, code(&body)), (403, "admin_required"), "{body}");
    let (status, body) = raw(
        &server,
        reqwest::Method::GET,
        "/api/v1/secrets",
        &app.session,
        None,
    )
    .await?;
    assert_eq!((status, code(&body)), (403, "admin_required"), "{body}");
    let (status, body) = raw(
        &server,
        reqwest::Method::DELETE,
        "/api/v1/secrets/openai",
        &app.session,
        None,
    )
    .await?;
    assert_eq!((status, code(&body)), (403, "admin_required"), "{body}");

    // The workload (OIDC) is refused the proxy-only role although the policy
    // permits it; the refusal is audited.
    let resp = server
        .api()
        .creds(&app.session, "static/openai", &json!({}))
        .await?;
    assert_eq!(resp.status, 403, "{}", resp.summary());
    assert_eq!(resp.error_code(), Some("static_secret_proxy_only"));
    let msg = resp.error_message().unwrap_or_default();
    assert!(
        msg.contains("idmint proxy") && msg.contains("oidc"),
        "{msg}"
    );
    assert!(!resp.text.contains(OPENAI_V2));
    // The same through the CLI: exit 2 (denied), no value.
    let out = cli_as(&app.session)?
        .run(&["creds", "static/openai", "--server", &url, "-o", "json"])
        .await?;
    assert!(
        !out.success() && !out.stdout.contains(OPENAI_V2),
        "{}",
        out.summary()
    );

    // deliver_to = "any": the workload gets it, fingerprint as listed.
    let resp = server
        .api()
        .creds(&app.session, "static/shared", &json!({}))
        .await?;
    assert_eq!(resp.status, 200, "{}", resp.summary());
    let cred = &resp.body["credential"];
    assert_eq!(cred["type"], "static_secret");
    assert_eq!(
        (cred["name"].as_str(), cred["value"].as_str()),
        (Some("shared"), Some(SHARED))
    );
    let shared_fp = listed["secrets"][1]["fingerprint"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(resp.body["fingerprint"], shared_fp);
    let lease_id = resp.body["lease_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let leases = app.client.leases(&Default::default()).await?;
    let lease = leases.leases.iter().find(|l| l.id == lease_id);
    assert_eq!(
        lease.and_then(|l| l.fingerprint.as_deref()),
        Some(shared_fp),
        "the lease shows the secret's fingerprint"
    );
    // Nothing to revoke: ending the lease works and changes nothing.
    app.client.revoke_lease(&lease_id).await?;

    // Delete, then the role fails clearly.
    let del = cli
        .run(&["secret", "delete", "shared", "--server", &url])
        .await?;
    assert!(del.success(), "{}", del.summary());
    let again = cli
        .run(&["secret", "delete", "shared", "--server", &url])
        .await?;
    assert!(
        !again.success() && again.stderr.contains("no static secret named"),
        "{}",
        again.summary()
    );
    let resp = server
        .api()
        .creds(&app.session, "static/shared", &json!({}))
        .await?;
    assert_eq!(resp.status, 503, "{}", resp.summary());
    assert_eq!(resp.error_code(), Some("static_secret_missing"));
    assert!(
        resp.error_message()
            .unwrap_or_default()
            .contains("idmint secret put shared"),
        "{}",
        resp.summary()
    );

    // The audit trail: fingerprints, never values.
    let events = server.audit_events()?;
    let admin_events = events_of(&events, "admin");
    let puts: Vec<&&Value> = admin_events
        .iter()
        .filter(|e| e["action"] == "secret_put" && e["outcome"] == "success")
        .collect();
    assert_eq!(puts.len(), 3, "three successful puts");
    assert!(puts.iter().any(|e| e["fingerprint"] == fp2.as_str()
        && e["detail"]["version"] == 2
        && e["detail"]["replaced_fingerprint"] == fp1.as_str()));
    assert!(admin_events
        .iter()
        .any(|e| e["action"] == "secret_put" && e["outcome"] == "denied"));
    assert!(admin_events.iter().any(|e| e["action"] == "secret_delete"
        && e["outcome"] == "success"
        && e["fingerprint"] == shared_fp));
    assert!(
        events.iter().any(|e| e["role"] == "static/openai"
            && e["outcome"] == "denied"
            && e["error"]["code"] == "static_secret_proxy_only"),
        "the refused delivery is audited"
    );
    assert!(events.iter().any(|e| e["event"] == "credential_issued"
        && e["role"] == "static/shared"
        && e["fingerprint"] == shared_fp));

    // At rest: no value in the audit file, the server log, the database.
    for v in [OPENAI_V1, OPENAI_V2, SHARED] {
        let hits = files_containing(server.dir(), v)?;
        assert!(hits.is_empty(), "value found in {hits:?}");
        assert!(!server.log_tail(10_000).contains(v));
    }
    assert!(
        server.dir().join("idmint.db").exists(),
        "the scan covered the database"
    );
    Ok(())
}

#[tokio::test]
async fn hostile_names_and_values_are_refused() -> anyhow::Result<()> {
    let (jwks, server) = start().await?;
    let admin = login_admin(&server, &jwks).await?;
    let put = |path: String, body: Vec<u8>| {
        let server = &server;
        let session = admin.session.clone();
        async move { raw(server, reqwest::Method::PUT, &path, &session, Some(body)).await }
    };
    let ok_body = br#"{"value":"v"}"#.to_vec();

    let long = "a".repeat(200);
    for (path, why) in [
        ("/api/v1/secrets/..%2Fx".to_string(), "../x"),
        (
            "/api/v1/secrets/..%2F..%2Fetc%2Fpasswd".to_string(),
            "traversal",
        ),
        ("/api/v1/secrets/OpenAI".to_string(), "uppercase"),
        (format!("/api/v1/secrets/{long}"), "200 characters"),
        ("/api/v1/secrets/.hidden".to_string(), "leading dot"),
        ("/api/v1/secrets/a%20b".to_string(), "space"),
        ("/api/v1/secrets/a%00b".to_string(), "NUL"),
    ] {
        let (status, body) = put(path, ok_body.clone()).await?;
        assert_eq!(
            (status, code(&body)),
            (400, "invalid_secret_name"),
            "{why}: {body}"
        );
    }
    let (status, _) = put("/api/v1/secrets/".to_string(), ok_body.clone()).await?;
    assert!(status == 404 || status == 405, "an empty name: {status}");

    for (body, want, why) in [
        (b"{not json".to_vec(), "invalid_request", "invalid JSON"),
        (
            br#"{"value":"v","extra":1}"#.to_vec(),
            "invalid_request",
            "unknown field",
        ),
        (br#"{}"#.to_vec(), "invalid_request", "no value"),
        (
            br#"{"value":42}"#.to_vec(),
            "invalid_request",
            "not a string",
        ),
        (br#"{"value":""}"#.to_vec(), "empty_secret", "empty"),
        (
            br#"{"value":"a\u0000b"}"#.to_vec(),
            "invalid_secret_value",
            "NUL",
        ),
    ] {
        let (status, resp) = put("/api/v1/secrets/x".to_string(), body).await?;
        assert_eq!((status, code(&resp)), (400, want), "{why}: {resp}");
    }

    // 64 KiB is the limit: one byte more is refused with its own error, even
    // though the server's default body limit is 64 KiB too.
    let max = 64 * 1024;
    let big = serde_json::to_vec(&json!({ "value": "a".repeat(max + 1) }))?;
    let (status, resp) = put("/api/v1/secrets/big".to_string(), big).await?;
    assert_eq!((status, code(&resp)), (413, "secret_too_large"), "{resp}");
    assert!(resp["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("64 KiB"));
    let fits = serde_json::to_vec(&json!({ "value": "a".repeat(max) }))?;
    let (status, resp) = put("/api/v1/secrets/big".to_string(), fits).await?;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["size"], max);

    // The CLI refuses an oversized file before sending it.
    let src = tempfile::tempdir()?;
    let f = src.path().join("huge");
    std::fs::write(&f, vec![b'a'; max + 10])?;
    let cli = cli_as(&admin.session)?;
    let out = cli
        .run(&[
            "secret",
            "put",
            "huge",
            "--from-file",
            &f.display().to_string(),
            "--server",
            &server.base_url(),
        ])
        .await?;
    assert!(
        !out.success() && out.stderr.contains("64 KiB"),
        "{}",
        out.summary()
    );
    let out = cli
        .run(&[
            "secret",
            "put",
            "x",
            "--stdin",
            "--from-env",
            "HOME",
            "--server",
            &server.base_url(),
        ])
        .await?;
    assert!(!out.success(), "two sources at once must be refused");

    // Delete of an unknown or invalid name.
    let (status, body) = raw(
        &server,
        reqwest::Method::DELETE,
        "/api/v1/secrets/nope",
        &admin.session,
        None,
    )
    .await?;
    assert_eq!((status, code(&body)), (404, "unknown_secret"), "{body}");
    let (status, body) = raw(
        &server,
        reqwest::Method::DELETE,
        "/api/v1/secrets/..%2Fx",
        &admin.session,
        None,
    )
    .await?;
    assert_eq!(
        (status, code(&body)),
        (400, "invalid_secret_name"),
        "{body}"
    );

    // Only the one valid secret was stored.
    let list = admin.client.list_secrets().await?;
    let names: Vec<&str> = list.secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["big"]);
    // Refused attempts are audited without the offending bytes.
    let events = server.audit_events()?;
    let refused = events_of(&events, "admin")
        .into_iter()
        .filter(|e| e["action"] == "secret_put" && e["outcome"] == "error")
        .count();
    assert!(refused >= 14, "refused puts audited: {refused}");
    Ok(())
}
