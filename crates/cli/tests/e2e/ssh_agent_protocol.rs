//! The server side of just-in-time SSH sessions, driven by a small
//! in-test agent that signs its requests (the real `idmint agent` has its
//! own end-to-end test): enrollment with single-use join tokens, the long
//! poll, events, the session request waiting for `AccountReady`, revocation
//! waiting for `AccountRemoved`, and every refusal (replayed nonce, bad
//! signature, stale time, another host's lease, unknown host, wrong role,
//! hostile keys, oversized bodies), each audited.

use crate::common;
use crate::db_support;
use crate::ssh_support;

use common::bin;
use db_support::{login, login_admin, login_app, Caller, APP_SUBJECT};
use idmint_testkit::audit::events_of;
use idmint_testkit::{free_port, unix_now, Cli, IdmintServer, TestJwks};
use serde_json::{json, Value};
use ssh_support::{
    enroll, enroll_with_new_token, join_token, principals_of, spec, ssh_keygen, ssh_keygen_l,
    TestAgent,
};

const PROD_HOST: &str = "web-1";
const DEV_HOST: &str = "dev-1";
const OFFLINE_HOST: &str = "db-1";

async fn start() -> anyhow::Result<(TestJwks, IdmintServer)> {
    let jwks = TestJwks::start().await?;
    let hosts = vec![
        format!("{{ name = \"{PROD_HOST}\", address = \"127.0.0.1\", port = {}, labels = {{ env = \"prod\", role = \"web\" }} }}", free_port()?),
        format!("{{ name = \"{DEV_HOST}\", address = \"127.0.0.2\", labels = {{ env = \"dev\" }} }}"),
        format!("{{ name = \"{OFFLINE_HOST}\", address = \"127.0.0.3\", labels = {{ env = \"prod\" }} }}"),
    ];
    let server = IdmintServer::start(bin(), spec(&jwks, &hosts, "2s")?).await?;
    Ok((jwks, server))
}

async fn post(
    server: &IdmintServer,
    path: &str,
    body: &Value,
    who: &Caller,
) -> anyhow::Result<idmint_testkit::ApiResponse> {
    Ok(server
        .api()
        .post_json(path, body, Some(&who.session))
        .await?)
}

/// A [`TestAgent`] for `host`, enrolled with a fresh join token.
async fn enrolled_agent(
    server: &IdmintServer,
    admin: &Caller,
    host: &str,
    host_key: &str,
) -> anyhow::Result<TestAgent> {
    let agent = TestAgent::new(host, &server.base_url())?;
    enroll_with_new_token(server, admin, &agent, host_key).await?;
    Ok(agent)
}

fn session_body(host: &str, key: &str) -> Value {
    json!({"host": host, "public_key": key})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_and_agent_request_authentication() -> anyhow::Result<()> {
    let (jwks, server) = start().await?;
    let dir = tempfile::tempdir()?;
    let admin = login_admin(&server, &jwks).await?;
    let app = login_app(&server, &jwks).await?;
    let (_, host_key) = ssh_keygen(dir.path(), "host_key")?;

    // Only admins create join tokens; unknown hosts get none.
    let r = post(
        &server,
        "/api/v1/ssh/hosts/web-1/join-token",
        &json!({}),
        &app,
    )
    .await?;
    assert_eq!(
        (r.status, r.error_code()),
        (403, Some("not_admin")),
        "{}",
        r.summary()
    );
    let r = post(
        &server,
        "/api/v1/ssh/hosts/nope/join-token",
        &json!({}),
        &admin,
    )
    .await?;
    assert_eq!(
        (r.status, r.error_code()),
        (404, Some("unknown_host")),
        "{}",
        r.summary()
    );

    let agent = TestAgent::new(PROD_HOST, &server.base_url())?;
    // Before enrollment the agent is nobody.
    let r = agent.grants(0, 0).await?;
    assert_eq!((r.status, r.code()), (401, "agent_auth_failed"));

    let token = join_token(&server, &admin, PROD_HOST).await?;
    // A token is bound to its host and single-use.
    let dev_agent = TestAgent::new(DEV_HOST, &server.base_url())?;
    let r = enroll(&server, &dev_agent, &token, &host_key).await?;
    assert_eq!(
        (r.status, r.error_code()),
        (401, Some("invalid_join_token")),
        "{}",
        r.summary()
    );
    let r = enroll(&server, &agent, "idm_join_0000", &host_key).await?;
    assert_eq!(r.status, 401, "{}", r.summary());
    let r = enroll(&server, &agent, &token, "ssh-rsa AAAAB3NzaC1yc2E=").await?;
    assert_eq!(
        (r.status, r.error_code()),
        (400, Some("invalid_public_key")),
        "{}",
        r.summary()
    );
    // (a refused key does not burn the token)
    let r = enroll(&server, &agent, &token, &host_key).await?;
    assert_eq!(r.status, 200, "{}", r.summary());
    let again = enroll(&server, &agent, &token, &host_key).await?;
    assert_eq!(
        (again.status, again.error_code()),
        (401, Some("invalid_join_token")),
        "{}",
        again.summary()
    );

    // The host certificate is a real OpenSSH host certificate for the
    // host's name and address, signed by the host CA that /ssh/ca publishes.
    let listing = ssh_keygen_l(
        dir.path(),
        r.body["host_certificate"].as_str().unwrap_or_default(),
    )?;
    assert!(listing.contains("host certificate"), "{listing}");
    assert_eq!(
        principals_of(&listing),
        vec!["web-1", "127.0.0.1"],
        "{listing}"
    );
    let ca = server.get("/api/v1/ssh/ca").await?;
    assert_eq!(ca.status, 200);
    assert_eq!(r.body["user_ca"], ca.body["issuers"][0]["user_ca"]);
    let host_ca = ca.body["issuers"][0]["host_ca"]
        .as_str()
        .unwrap_or_default();
    let host_ca_fp = {
        let p = dir.path().join("host_ca.pub");
        std::fs::write(&p, format!("{host_ca}\n"))?;
        let out = std::process::Command::new("ssh-keygen")
            .arg("-l")
            .arg("-f")
            .arg(&p)
            .output()?;
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        listing.contains(&format!("Signing CA: ED25519 {host_ca_fp}")),
        "{listing}"
    );

    // Signed requests work; the same request again is a replay.
    let (ok, header) = agent
        .send("GET", "/api/v1/agent/grants?since=0&wait=0", b"")
        .await?;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["grants"], json!([]));
    let replay = agent
        .send_with("GET", "/api/v1/agent/grants?since=0&wait=0", b"", &header)
        .await?;
    assert_eq!(replay.status, 401);
    assert!(
        replay.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("replayed"),
        "{}",
        replay.body
    );
    // A signature by another key, a stale timestamp, a changed path: refused.
    let forged = TestAgent::new(PROD_HOST, &server.base_url())?;
    let (r, _) = forged.send("GET", "/api/v1/agent/grants", b"").await?;
    assert_eq!(r.status, 401);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("signature"),
        "{}",
        r.body
    );
    let stale = agent.authorization(
        "GET",
        "/api/v1/agent/grants",
        b"",
        unix_now() - 600,
        "00112233445566778899aabbccddeeff",
    );
    let r = agent
        .send_with("GET", "/api/v1/agent/grants", b"", &stale)
        .await?;
    assert_eq!(r.status, 401);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("clock"),
        "{}",
        r.body
    );
    let moved = agent.authorization(
        "GET",
        "/api/v1/agent/grants?since=0",
        b"",
        unix_now(),
        "ffeeddccbbaa99887766554433221100",
    );
    let r = agent
        .send_with("GET", "/api/v1/agent/grants?since=5", b"", &moved)
        .await?;
    assert_eq!(r.status, 401);
    let r = agent
        .send_with("GET", "/api/v1/agent/grants", b"", "IdmintAgent garbage")
        .await?;
    assert_eq!(r.status, 401);

    let events = server.audit_events()?;
    assert_eq!(
        events_of(&events, "ssh_host_enrolled")
            .iter()
            .filter(|e| e["outcome"] == "success")
            .count(),
        1
    );
    assert!(events_of(&events, "agent_auth_failed").len() >= 5);
    assert_eq!(
        events_of(&events, "ssh_join_token_created")
            .iter()
            .filter(|e| e["outcome"] == "success")
            .count(),
        1
    );
    let logged = std::fs::read_to_string(server.audit_file())?;
    assert!(
        !logged.contains(&token),
        "the join token itself must never be audited"
    );
    Ok(())
}

/// Open a session in the background while `agent` plays its part.
fn open_session(
    server: &IdmintServer,
    app: &Caller,
    body: Value,
) -> tokio::task::JoinHandle<anyhow::Result<idmint_testkit::ApiResponse>> {
    let api = server.api().clone();
    let session = app.session.clone();
    tokio::spawn(async move {
        Ok(api
            .post_json("/api/v1/ssh/sessions", &body, Some(&session))
            .await?)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_waits_for_the_agent_and_revocation_for_removal() -> anyhow::Result<()> {
    let (jwks, server) = start().await?;
    let dir = tempfile::tempdir()?;
    let admin = login_admin(&server, &jwks).await?;
    let app = login_app(&server, &jwks).await?;
    let (_, host_key) = ssh_keygen(dir.path(), "host_key")?;
    let (_, user_key) = ssh_keygen(dir.path(), "user_key")?;
    let agent = enrolled_agent(&server, &admin, PROD_HOST, &host_key).await?;
    let dev_agent = enrolled_agent(&server, &admin, DEV_HOST, &host_key).await?;

    // A host whose agent never connected: 503 naming it, nothing issued.
    let r = post(
        &server,
        "/api/v1/ssh/sessions",
        &session_body(OFFLINE_HOST, &user_key),
        &app,
    )
    .await?;
    assert_eq!(
        (r.status, r.error_code()),
        (503, Some("agent_unavailable")),
        "{}",
        r.summary()
    );
    assert!(r.error_message().unwrap_or_default().contains(OFFLINE_HOST));

    // The agent polls (so it counts as connected) …
    let first = agent.grants(0, 0).await?;
    let rev0 = first.body["revision"].as_u64().unwrap_or_default();
    // … the session request publishes a grant and waits for it.
    let pending = open_session(&server, &app, session_body(PROD_HOST, &user_key));
    let polled = agent.grants(rev0, 20).await?;
    assert_eq!(polled.status, 200, "{}", polled.body);
    let grant = polled.body["grants"][0].clone();
    let account = grant["account"].as_str().unwrap_or_default().to_string();
    let lease_id = grant["lease_id"].as_str().unwrap_or_default().to_string();
    assert!(account.starts_with("wl_") && account.len() == 13, "{grant}");
    assert_eq!(grant["sudo"], json!(["/usr/bin/systemctl restart web"]));
    assert_eq!(grant["shell"], "/bin/bash");
    assert!(
        grant["key_id"]
            .as_str()
            .unwrap_or_default()
            .ends_with(APP_SUBJECT),
        "{grant}"
    );
    let rev1 = polled.body["revision"].as_u64().unwrap_or_default();

    // Events for another host's lease are refused (and audited).
    let ready = json!({"lease_id": lease_id, "account": account, "at": unix_now(), "kind": {"type": "account_ready", "uid": 5001, "sudo_rules": 1}});
    let r = dev_agent.event(&ready).await?;
    assert_eq!((r.status, r.code()), (403, "wrong_host"), "{}", r.body);
    // A malformed event: 400.
    let r = agent
        .event(&json!({"lease_id": lease_id, "kind": "nope"}))
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = agent.event(&ready).await?;
    assert_eq!(r.status, 200, "{}", r.body);

    let resp = pending.await??;
    assert_eq!(resp.status, 200, "{}", resp.summary());
    assert_eq!(resp.body["account"], account.as_str());
    assert_eq!(resp.body["lease_id"], lease_id.as_str());
    assert_eq!(
        resp.body["role"], "web-deploy",
        "the only permitted role for the host was picked"
    );
    assert!(
        resp.body["port"].as_u64().is_some_and(|p| p > 0 && p != 22),
        "{}",
        resp.body
    );
    assert!(
        resp.body["known_hosts"]
            .as_str()
            .unwrap_or_default()
            .starts_with("@cert-authority [127.0.0.1]:"),
        "{}",
        resp.body
    );
    let listing = ssh_keygen_l(
        dir.path(),
        resp.body["certificate"].as_str().unwrap_or_default(),
    )?;
    assert!(listing.contains("user certificate"), "{listing}");
    assert_eq!(principals_of(&listing), vec![account.clone()], "{listing}");
    let request_id = resp.body["request_id"].as_str().unwrap_or_default();
    assert!(
        listing.contains(&format!("Key ID: \"{request_id} {APP_SUBJECT}\"")),
        "{listing}"
    );
    assert!(listing.contains("permit-pty"), "{listing}");
    assert!(!listing.contains("permit-port-forwarding"), "{listing}");
    let lease = server
        .api()
        .get("/api/v1/leases?all=true", Some(&admin.session))
        .await?;
    let row = lease.body["leases"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["id"] == lease_id.as_str())
        .cloned()
        .unwrap_or_default();
    assert_eq!(row["state"], "active", "{row}");

    // Session life events are audited.
    for kind in [
        json!({"type": "session_started", "source": "127.0.0.1"}),
        json!({"type": "session_ended", "duration_secs": 42, "reason": "logout"}),
    ] {
        let r = agent
            .event(
                &json!({"lease_id": lease_id, "account": account, "at": unix_now(), "kind": kind}),
            )
            .await?;
        assert_eq!(r.status, 200, "{}", r.body);
    }

    // Revocation withdraws the grant and completes once the agent reports
    // the account removed.
    let revoke = {
        let api = server.api().clone();
        let session = app.session.clone();
        let id = lease_id.clone();
        tokio::spawn(async move {
            api.post_empty(&format!("/api/v1/leases/{id}/revoke"), Some(&session))
                .await
        })
    };
    let polled = agent.grants(rev1, 20).await?;
    assert_eq!(polled.body["grants"], json!([]), "{}", polled.body);
    let removed = json!({"lease_id": lease_id, "account": account, "at": unix_now(),
        "kind": {"type": "account_removed", "residue": {"clean": true, "removed": ["/tmp/x owned by 5001"], "remaining": []}}});
    let r = agent.event(&removed).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let revoked = revoke.await??;
    assert_eq!(revoked.status, 200, "{}", revoked.summary());
    assert_eq!(revoked.body["state"], "revoked", "{}", revoked.body);

    // A session request whose agent never answers: 503 after
    // ready_timeout, the grant withdrawn again (nothing left behind).
    let rev2 = agent.revision().await?;
    let pending = open_session(&server, &app, session_body(PROD_HOST, &user_key));
    let polled = agent.grants(rev2, 20).await?;
    let slow_account = polled.body["grants"][0]["account"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(slow_account.starts_with("wl_"), "{}", polled.body);
    let resp = pending.await??;
    assert_eq!(
        (resp.status, resp.error_code()),
        (503, Some("agent_timeout")),
        "{}",
        resp.summary()
    );
    assert!(resp.error_message().unwrap_or_default().contains(PROD_HOST));
    let after = agent.grants(0, 0).await?;
    assert_eq!(after.body["grants"], json!([]), "{}", after.body);

    let events = server.audit_events()?;
    let issued: Vec<&Value> = events_of(&events, "ssh_certificate_issued")
        .into_iter()
        .filter(|e| e["outcome"] == "success")
        .collect();
    assert_eq!(issued.len(), 1);
    let d = &issued[0]["detail"];
    assert!(
        d["serial"].as_u64().is_some()
            && d["key_fingerprint"]
                .as_str()
                .unwrap_or_default()
                .starts_with("SHA256:"),
        "{d}"
    );
    assert_eq!(d["principals"], json!([account]));
    assert!(
        issued[0]["fingerprint"]
            .as_str()
            .unwrap_or_default()
            .starts_with("fp_"),
        "{}",
        issued[0]
    );
    assert_eq!(
        issued[0]["decision"]["policy_ids"],
        json!(["app-prod-sessions"])
    );
    for (event, n) in [
        ("ssh_account_ready", 1),
        ("ssh_session_started", 1),
        ("ssh_session_ended", 1),
        ("ssh_account_removed", 1),
    ] {
        assert_eq!(events_of(&events, event).len(), n, "{event}");
    }
    assert_eq!(
        events_of(&events, "ssh_session_ended")[0]["detail"]["duration_secs"],
        42
    );
    assert_eq!(
        events_of(&events, "ssh_account_removed")[0]["detail"]["residue"]["clean"],
        true
    );
    assert!(events_of(&events, "agent_event_rejected")
        .iter()
        .any(|e| e["error"]["code"] == "wrong_host"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_session_requests_get_clear_audited_errors() -> anyhow::Result<()> {
    let (jwks, mut server) = start().await?;
    let dir = tempfile::tempdir()?;
    let app = login_app(&server, &jwks).await?;
    let (_, key) = ssh_keygen(dir.path(), "k")?;
    let stranger = login(
        &server,
        &jwks,
        "repo:evil/app:ref:refs/heads/main",
        &json!({"repository": "evil/app"}),
    )
    .await?;

    let cases: Vec<(Value, u16, &str)> = vec![
        (session_body("nope", &key), 404, "unknown_host"),
        (
            json!({"host": PROD_HOST, "role": "dev-shell", "public_key": key}),
            403,
            "host_not_allowed",
        ),
        (
            json!({"host": PROD_HOST, "role": "ci-cert", "public_key": key}),
            400,
            "wrong_role",
        ),
        (
            json!({"host": PROD_HOST, "role": "missing", "public_key": key}),
            404,
            "unknown_role",
        ),
        (session_body(DEV_HOST, &key), 403, "policy_denied"),
        (
            session_body(PROD_HOST, "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ=="),
            400,
            "invalid_public_key",
        ),
        (
            session_body(PROD_HOST, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA"),
            400,
            "invalid_public_key",
        ),
        (
            session_body(PROD_HOST, &format!("ssh-ed25519 {}", "A".repeat(5000))),
            400,
            "invalid_public_key",
        ),
        (
            session_body(PROD_HOST, &format!("{key} trailing\n\0garbage")),
            503,
            "agent_unavailable",
        ),
        (
            json!({"host": PROD_HOST, "public_key": key, "account": "root"}),
            400,
            "invalid_request",
        ),
        (
            json!({"host": PROD_HOST, "public_key": key, "ttl": "forever"}),
            400,
            "invalid_request",
        ),
    ];
    for (body, status, code) in cases {
        let r = post(&server, "/api/v1/ssh/sessions", &body, &app).await?;
        assert_eq!(
            (r.status, r.error_code()),
            (status, Some(code)),
            "{body}: {}",
            r.summary()
        );
        assert!(!r.error_message().unwrap_or_default().is_empty());
    }
    // Policy: a stranger gets nothing, on any host.
    let r = post(
        &server,
        "/api/v1/ssh/sessions",
        &session_body(PROD_HOST, &key),
        &stranger,
    )
    .await?;
    assert_eq!(
        (r.status, r.error_code()),
        (403, Some("policy_denied")),
        "{}",
        r.summary()
    );
    // Oversized bodies are refused before parsing.
    let big = json!({"host": PROD_HOST, "public_key": "x".repeat(200_000)});
    let r = post(&server, "/api/v1/ssh/sessions", &big, &app).await?;
    assert_eq!(r.status, 413, "{}", r.summary());
    let agent = TestAgent::new(PROD_HOST, &server.base_url())?;
    let r = agent.event(&json!({"pad": "x".repeat(200_000)})).await?;
    assert_eq!(r.status, 413, "{}", r.body);
    // No session token at all.
    let r = server
        .api()
        .post_json("/api/v1/ssh/sessions", &session_body(PROD_HOST, &key), None)
        .await?;
    assert_eq!(r.status, 401);

    assert!(server.is_running()?, "the server survived");
    let events = server.audit_events()?;
    let refused = events_of(&events, "ssh_grant_decided")
        .into_iter()
        .filter(|e| e["outcome"] != "success")
        .count();
    assert!(refused >= 10, "every refusal is audited ({refused})");
    assert!(events_of(&events, "ssh_certificate_issued")
        .iter()
        .all(|e| e["outcome"] != "success"));
    Ok(())
}

/// `idmint ssh HOST --print` through the real CLI, with the in-test agent
/// making the account ready: the printed command carries the certificate,
/// key and known_hosts files it wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_ssh_print_shows_the_command_and_files() -> anyhow::Result<()> {
    let (jwks, server) = start().await?;
    let dir = tempfile::tempdir()?;
    let admin = login_admin(&server, &jwks).await?;
    let app = login_app(&server, &jwks).await?;
    let (_, host_key) = ssh_keygen(dir.path(), "host_key")?;
    let agent = enrolled_agent(&server, &admin, PROD_HOST, &host_key).await?;
    let rev = agent.revision().await?;

    let mut cli = Cli::new(bin())?;
    cli.set_env("IDMINT_TOKEN", &app.session);
    let url = server.base_url();
    let run = {
        let url = url.clone();
        tokio::spawn(async move {
            cli.run(&[
                "ssh",
                "web-1",
                "--print",
                "--server",
                &url,
                "--ssh-option",
                "ConnectTimeout=3",
                "--",
                "uptime",
            ])
            .await
        })
    };
    let polled = agent.grants(rev, 20).await?;
    let grant = polled.body["grants"][0].clone();
    let r = agent.event(&json!({"lease_id": grant["lease_id"], "account": grant["account"], "at": unix_now(), "kind": {"type": "account_ready", "uid": 1, "sudo_rules": 1}})).await?;
    assert_eq!(r.status, 200);
    let out = run.await??;
    assert!(out.success(), "{}", out.summary());
    let account = grant["account"].as_str().unwrap_or_default();
    let line = out.stdout.lines().last().unwrap_or_default().to_string();
    assert!(line.starts_with("ssh -F none -i "), "{line}");
    assert!(
        line.contains("IdentitiesOnly=yes")
            && line.contains("StrictHostKeyChecking=yes")
            && line.contains("IdentityAgent=none"),
        "{line}"
    );
    assert!(line.contains("-o ConnectTimeout=3"), "{line}");
    assert!(
        line.ends_with(&format!("-- {account}@127.0.0.1 uptime")),
        "{line}"
    );
    // The files exist, private, and the certificate is for the account.
    let key_path = line
        .split_whitespace()
        .skip_while(|w| *w != "-i")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let files = std::path::Path::new(&key_path)
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&files)?.permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::metadata(&key_path)?.permissions().mode() & 0o777,
        0o600
    );
    let cert = std::fs::read_to_string(files.join("id_ed25519-cert.pub"))?;
    let listing = ssh_keygen_l(dir.path(), cert.trim())?;
    assert_eq!(principals_of(&listing), vec![account.to_string()]);
    let derived = std::process::Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&key_path)
        .output()?;
    assert!(
        derived.status.success(),
        "the key file is a valid OpenSSH private key"
    );
    std::fs::remove_dir_all(&files)?;
    Ok(())
}
