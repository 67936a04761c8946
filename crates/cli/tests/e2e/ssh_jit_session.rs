//! `idmint ssh HOST -- CMD` end to end against a real sshd: the in-test
//! agent (standing in for `idmint agent`) enrolls the host, so sshd serves
//! an idmint host certificate, and creates the just-in-time account inside
//! a private mount namespace when the grant arrives. The real CLI then runs
//! the real ssh with the one-time certificate and verifies the host through
//! the host CA only (no trust on first use). Also: server restart keeps
//! agents enrolled and republishes live grants; expiry reaps through the
//! agent; a missing removal report is retried, never forgotten.

use crate::common;
use crate::db_support;
use crate::ssh_support;

use common::bin;
use db_support::{login_admin, login_app};
use idmint_testkit::{
    free_port, poll_until, unix_now, Cli, IdmintServer, JitNamespace, Sshd, SshdOptions, TestJwks,
};
use serde_json::{json, Value};
use ssh_support::{enroll_with_new_token, run_in, spec, ssh_keygen, TestAgent};
use std::time::Duration;

/// Wait for the next grant set after `since`; returns (revision, grants).
async fn next_grants(agent: &TestAgent, since: u64) -> anyhow::Result<(u64, Vec<Value>)> {
    let r = agent.grants(since, 20).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    Ok((
        r.body["revision"].as_u64().unwrap_or_default(),
        r.body["grants"].as_array().cloned().unwrap_or_default(),
    ))
}

fn event(grant: &Value, kind: Value) -> Value {
    json!({"lease_id": grant["lease_id"], "account": grant["account"], "at": unix_now(), "kind": kind})
}

async fn lease_state(
    server: &IdmintServer,
    admin_session: &str,
    id: &str,
) -> idmint_testkit::Result<Value> {
    let r = server
        .api()
        .get("/api/v1/leases?all=true", Some(admin_session))
        .await?;
    Ok(r.body["leases"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["id"] == id)
        .cloned()
        .unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idmint_ssh_logs_in_to_a_real_sshd_with_a_host_certificate() -> anyhow::Result<()> {
    let jwks = TestJwks::start().await?;
    let port = free_port()?;
    let hosts = vec![format!("{{ name = \"web-1\", address = \"127.0.0.1\", port = {port}, labels = {{ env = \"prod\" }} }}")];
    let server = IdmintServer::start(bin(), spec(&jwks, &hosts, "5s")?).await?;
    let admin = login_admin(&server, &jwks).await?;
    let app = login_app(&server, &jwks).await?;
    let dir = tempfile::tempdir()?;

    // Enroll: sshd's host key gets an idmint host certificate.
    let (host_key, host_pub) = ssh_keygen(dir.path(), "sshd_host_key")?;
    let agent = TestAgent::new("web-1", &server.base_url())?;
    let enrolled = enroll_with_new_token(&server, &admin, &agent, &host_pub).await?;
    let host_cert = dir.path().join("sshd_host_key-cert.pub");
    std::fs::write(
        &host_cert,
        format!(
            "{}\n",
            enrolled["host_certificate"].as_str().unwrap_or_default()
        ),
    )?;
    let ns = JitNamespace::start()?;
    let user_ca_path = dir.path().join("user_ca.pub");
    std::fs::write(
        &user_ca_path,
        format!("{}\n", enrolled["user_ca"].as_str().unwrap_or_default()),
    )?;
    let sshd = Sshd::start_with(
        &ns,
        SshdOptions {
            port: Some(port),
            host_key: Some(host_key),
            host_certificate: Some(host_cert),
            ..SshdOptions::trusting(&user_ca_path)
        },
    )?;

    // The CLI asks for a session; the agent creates the account in the
    // namespace and reports it ready; the CLI runs ssh.
    let rev = agent.revision().await?;
    let tmp = dir.path().join("cli-tmp");
    std::fs::create_dir(&tmp)?;
    let mut cli = Cli::new(bin())?;
    cli.set_env("IDMINT_TOKEN", &app.session);
    cli.set_env("TMPDIR", &tmp.display().to_string());
    let url = server.base_url();
    let run = tokio::spawn(async move {
        cli.run(&[
            "ssh",
            "web-1",
            "--server",
            &url,
            "--ssh-option",
            "BatchMode=yes",
            "--",
            "id",
            "-un",
        ])
        .await
    });
    let (rev, grants) = next_grants(&agent, rev).await?;
    let grant = grants.first().cloned().unwrap_or_default();
    let account = grant["account"].as_str().unwrap_or_default().to_string();
    run_in(
        &ns,
        "useradd",
        &["-m", "-l", "-s", "/bin/sh", "-p", "*", &account],
    )?;
    let r = agent
        .event(&event(
            &grant,
            json!({"type": "account_ready", "uid": 0, "sudo_rules": 1}),
        ))
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let out = run.await??;
    assert!(out.success(), "{}\nsshd: {}", out.summary(), sshd.log());
    assert_eq!(
        out.stdout.trim(),
        account,
        "logged in as the just-in-time account"
    );
    assert!(
        out.stderr.contains("web-deploy on web-1 as"),
        "{}",
        out.stderr
    );
    // The host was verified through the host CA (no TOFU prompt, no
    // "Permanently added"), and the session's files are gone.
    assert!(!out.stderr.contains("Permanently added"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_dir(&tmp)?.count(),
        0,
        "key, certificate and known_hosts removed"
    );
    let log = sshd.log();
    assert!(
        log.contains(&format!("Accepted publickey for {account}")),
        "{log}"
    );
    assert!(
        log.contains("ED25519-CERT")
            && log.contains(&format!(
                "ID {} (serial",
                grant["key_id"].as_str().unwrap_or_default()
            )),
        "{log}"
    );

    // Revoke: the grant disappears, the agent deletes the account and
    // reports it; the next login is refused.
    let lease_id = grant["lease_id"].as_str().unwrap_or_default().to_string();
    let revoke = {
        let api = server.api().clone();
        let session = app.session.clone();
        let id = lease_id.clone();
        tokio::spawn(async move {
            api.post_empty(&format!("/api/v1/leases/{id}/revoke"), Some(&session))
                .await
        })
    };
    let (_, grants) = next_grants(&agent, rev).await?;
    assert!(grants.is_empty());
    run_in(&ns, "userdel", &["-r", &account])?;
    let r = agent.event(&event(&grant, json!({"type": "account_removed", "residue": {"clean": true, "removed": [], "remaining": []}}))).await?;
    assert_eq!(r.status, 200);
    let revoked = revoke.await??;
    assert_eq!(
        (revoked.status, revoked.body["state"].as_str()),
        (200, Some("revoked")),
        "{}",
        revoked.summary()
    );
    drop(sshd);
    drop(ns);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_republishes_grants_and_expiry_is_reaped_through_the_agent() -> anyhow::Result<()> {
    let jwks = TestJwks::start().await?;
    let hosts = vec![
        "{ name = \"web-1\", address = \"127.0.0.1\", labels = { env = \"prod\" } }".to_string(),
    ];
    let mut spec = spec(&jwks, &hosts, "5s")?;
    spec.roles.push_str("\n[[role]]\nname = \"web-brief\"\nissuer = \"ssh\"\nmax_ttl = \"3s\"\nssh = { hosts = { env = \"prod\" } }\n");
    spec.policies.push(("brief.cedar".into(), "@id(\"brief\")\npermit (principal, action == Action::\"issue\", resource == Role::\"web-brief\")\nwhen { principal has repository && principal.repository == \"acme/app\" };\n".into()));
    let mut server = IdmintServer::start(bin(), spec).await?;
    let admin = login_admin(&server, &jwks).await?;
    let app = login_app(&server, &jwks).await?;
    let dir = tempfile::tempdir()?;
    let (_, host_pub) = ssh_keygen(dir.path(), "hk")?;
    let (_, user_pub) = ssh_keygen(dir.path(), "uk")?;
    let agent = TestAgent::new("web-1", &server.base_url())?;
    enroll_with_new_token(&server, &admin, &agent, &host_pub).await?;

    // Two roles now permit web-1: without a role the request is ambiguous.
    let r = server
        .api()
        .post_json(
            "/api/v1/ssh/sessions",
            &json!({"host": "web-1", "public_key": user_pub}),
            Some(&app.session),
        )
        .await?;
    assert_eq!(
        (r.status, r.error_code()),
        (400, Some("ambiguous_role")),
        "{}",
        r.summary()
    );
    let msg = r.error_message().unwrap_or_default();
    assert!(
        msg.contains("web-deploy") && msg.contains("web-brief"),
        "{msg}"
    );

    // A 5-minute session, ready.
    let api = server.api().clone();
    let open = |role: &str| {
        let api = api.clone();
        let session = app.session.clone();
        let body = json!({"host": "web-1", "role": role, "public_key": user_pub});
        tokio::spawn(async move {
            api.post_json("/api/v1/ssh/sessions", &body, Some(&session))
                .await
        })
    };
    let rev = agent.revision().await?;
    let pending = open("web-deploy");
    let (_, grants) = next_grants(&agent, rev).await?;
    let long = grants[0].clone();
    agent
        .event(&event(
            &long,
            json!({"type": "account_ready", "uid": 1, "sudo_rules": 1}),
        ))
        .await?;
    assert_eq!(pending.await??.status, 200);

    // Restart: the agent key is still enrolled and the live grant is back.
    server.restart().await?;
    let r = agent.grants(0, 0).await?;
    assert_eq!(r.status, 200, "agent key survived the restart: {}", r.body);
    let grants = r.body["grants"].as_array().cloned().unwrap_or_default();
    assert_eq!(grants.len(), 1, "{}", r.body);
    assert_eq!(grants[0]["account"], long["account"]);
    assert_eq!(grants[0]["sudo"], json!(["/usr/bin/systemctl restart web"]));
    let rev = r.body["revision"].as_u64().unwrap_or_default();

    // A 3-second session: at expiry the reaper withdraws the grant and the
    // lease is revoked once the agent reports the removal.
    let pending = open("web-brief");
    let (rev, grants) = next_grants(&agent, rev).await?;
    let brief = grants
        .iter()
        .find(|g| g["account"] != long["account"])
        .cloned()
        .unwrap_or_default();
    agent
        .event(&event(
            &brief,
            json!({"type": "account_ready", "uid": 2, "sudo_rules": 0}),
        ))
        .await?;
    let resp = pending.await??;
    assert_eq!(resp.status, 200, "{}", resp.summary());
    assert!(resp.body["expires_at"].as_i64().unwrap_or_default() - unix_now() <= 3);
    let (_, grants) = next_grants(&agent, rev).await?;
    assert!(
        grants.iter().all(|g| g["account"] != brief["account"]),
        "expired grant withdrawn"
    );
    let brief_id = brief["lease_id"].as_str().unwrap_or_default();
    // Until the agent confirms, the reaper keeps retrying (never forgets).
    let row = poll_until(
        "a failed revocation attempt to be recorded",
        Duration::from_secs(20),
        || async {
            let row = lease_state(&server, &admin.session, brief_id).await?;
            Ok((row["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("has not confirmed")))
            .then_some(row))
        },
    )
    .await?;
    assert_eq!(row["state"], "active", "{row}");
    agent.event(&event(&brief, json!({"type": "account_removed", "residue": {"clean": true, "removed": [], "remaining": []}}))).await?;
    let row = lease_state(&server, &admin.session, brief_id).await?;
    assert_eq!(row["state"], "revoked", "{row}");
    Ok(())
}
