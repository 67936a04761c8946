//! Anomaly signals at issuance against a real server: first use of a role,
//! a new source network (and a spoofed `X-Forwarded-For` that must not
//! count), a burst over the identity's baseline — each an `anomaly` audit
//! event and a `/metrics` count — and the `require_approval` round trip
//! with a second admin through `idmint approvals`.

use crate::common;

use common::{bin, github_oidc, job_token, login};
use idmint_client::ClientError;
use idmint_testkit::{free_port, Cli, IdmintServer, Idp, ServerSpec};
use serde_json::{json, Value};
use std::net::IpAddr;

/// Who may administer: the `actor` claim of these identities.
const ADMINS: &str = r#"
@id("approvers")
permit (principal, action == Action::"admin", resource == Server::"idmint")
when { principal has actor && ["alice", "bob"].contains(principal.actor) };
"#;

async fn anomaly_server(idp: &Idp, anomaly: &str) -> anyhow::Result<IdmintServer> {
    let mut spec = ServerSpec::with_oidc(vec![github_oidc(idp.issuer())]);
    spec.policies.push(("admins.cedar".into(), ADMINS.into()));
    let dir = tempfile::Builder::new().prefix("idmint-anom-").tempdir()?;
    let port = free_port()?;
    let config = spec.write(dir.path(), port)?;
    idmint_testkit::server::write_root_key(&dir.path().join("root.key"))?;
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str(&format!("\n[anomaly]\n{anomaly}\n"));
    std::fs::write(&config, text)?;
    let audit = dir.path().join("audit.jsonl");
    Ok(IdmintServer::start_with_config(bin(), dir, config, port, audit, vec![]).await?)
}

/// `POST /api/v1/creds/demo-api`; returns status, request id and body.
async fn creds(
    http: &reqwest::Client,
    base: &str,
    session: &str,
    forwarded_for: Option<&str>,
) -> anyhow::Result<(u16, String, Value)> {
    let mut req = http
        .post(format!("{base}/api/v1/creds/demo-api"))
        .bearer_auth(session)
        .json(&json!({}));
    if let Some(xff) = forwarded_for {
        req = req.header("x-forwarded-for", xff);
    }
    let r = req.send().await?;
    let status = r.status().as_u16();
    let rid = r
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok((status, rid, r.json().await?))
}

fn anomalies(server: &IdmintServer, kind: &str) -> anyhow::Result<Vec<Value>> {
    Ok(server
        .audit_events()?
        .into_iter()
        .filter(|e| e["event"] == "anomaly" && e["detail"]["kind"] == kind)
        .collect())
}

/// The value of `idmint_anomalies_total{kind, action}` (0 when absent).
async fn counter(server: &IdmintServer, kind: &str, action: &str) -> anyhow::Result<u64> {
    let text = server.get("/metrics").await?.text;
    let prefix = format!("idmint_anomalies_total{{kind=\"{kind}\",action=\"{action}\"}} ");
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_are_audited_and_counted_and_xff_is_not_trusted() -> anyhow::Result<()> {
    let idp = Idp::start().await?;
    let server = anomaly_server(
        &idp,
        "burst_window = \"1m\"\nbaseline_window = \"1h\"\nburst_factor = 3\nburst_min = 5",
    )
    .await?;
    let base = server.base_url();
    let token = job_token(&idp, json!({})).await?;
    let (resp, _) = login(&server, &token).await?;
    let session = resp.token;
    let http = reqwest::Client::new();

    // 1: the first issuance of demo-api from 127.0.0.0/24.
    let (status, rid, body) = creds(&http, &base, &session, None).await?;
    assert_eq!(status, 200, "{body}");
    let first = anomalies(&server, "first_role_use")?;
    assert_eq!(first.len(), 1, "{first:?}");
    let ev = &first[0];
    assert_eq!(ev["role"], "demo-api");
    assert_eq!(ev["request_id"], rid.as_str());
    assert_eq!(ev["detail"]["action"], "audit");
    assert_eq!(ev["identity"]["subject"], resp.identity.subject.as_str());
    let nets = anomalies(&server, "new_network")?;
    assert_eq!(nets.len(), 1, "{nets:?}");
    assert_eq!(nets[0]["detail"]["network"], "127.0.0.0/24");
    assert_eq!(nets[0]["request_id"], rid.as_str());

    // 2: a spoofed X-Forwarded-For from elsewhere changes nothing: the
    // server trusts no proxy, so the network is the socket's.
    let (status, _, body) = creds(&http, &base, &session, Some("203.0.113.9, 10.9.9.9")).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(anomalies(&server, "new_network")?.len(), 1);
    assert_eq!(anomalies(&server, "first_role_use")?.len(), 1, "seen now");

    // 3: a really different /24 (loopback 127.0.1.0/24) is a new network.
    let other = reqwest::Client::builder()
        .local_address(Some("127.0.1.7".parse::<IpAddr>()?))
        .build()?;
    let (status, rid3, body) = creds(&other, &base, &session, None).await?;
    assert_eq!(status, 200, "{body}");
    let nets = anomalies(&server, "new_network")?;
    assert_eq!(nets.len(), 2, "{nets:?}");
    assert_eq!(nets[1]["detail"]["network"], "127.0.1.0/24");
    assert_eq!(nets[1]["request_id"], rid3.as_str());
    assert_eq!(anomalies(&server, "burst")?.len(), 0, "3 < burst_min");

    // 4 and 5: five issuances within a minute with no baseline is a burst,
    // reported once for the window however long it goes on.
    for _ in 0..4 {
        let (status, _, body) = creds(&http, &base, &session, None).await?;
        assert_eq!(status, 200, "{body}");
    }
    let bursts = anomalies(&server, "burst")?;
    assert_eq!(bursts.len(), 1, "{bursts:?}");
    assert!(bursts[0]["detail"]["recent"].as_u64().unwrap_or(0) >= 5);

    assert_eq!(counter(&server, "first_role_use", "audit").await?, 1);
    assert_eq!(counter(&server, "new_network", "audit").await?, 2);
    assert_eq!(counter(&server, "burst", "audit").await?, 1);
    Ok(())
}

async fn person_token(idp: &Idp, actor: &str) -> anyhow::Result<String> {
    job_token(
        idp,
        json!({"actor": actor, "sub": format!("repo:acme/app:environment:{actor}")}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_approval_needs_a_second_admin() -> anyhow::Result<()> {
    let idp = Idp::start().await?;
    let server = anomaly_server(
        &idp,
        "approval_ttl = \"10m\"\n[[anomaly.rule]]\nroles = \"demo-*\"\nsignals = [\"first_role_use\"]\naction = \"require_approval\"",
    )
    .await?;
    let base = server.base_url();
    let (alice, alice_client) = login(&server, &person_token(&idp, "alice").await?).await?;
    let (_, bob_client) = login(&server, &person_token(&idp, "bob").await?).await?;
    let http = reqwest::Client::new();

    // Refused, with an approval opened.
    let (status, _, body) = creds(&http, &base, &alice.token, None).await?;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "approval_required");
    let list = bob_client.list_approvals().await?;
    assert_eq!(list.approvals.len(), 1, "{list:?}");
    let id = list.approvals[0].id.clone();
    assert_eq!(list.approvals[0].role, "demo-api");
    assert_eq!(
        list.approvals[0].signals,
        vec!["first_role_use".to_string()]
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&id), "{message}");

    // A retry before approval is refused again, with the same approval.
    let (status, _, body) = creds(&http, &base, &alice.token, None).await?;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains(&id));
    assert_eq!(bob_client.list_approvals().await?.approvals.len(), 1);

    // The requester cannot approve it, even as an admin: through the API…
    match alice_client.approve_approval(&id).await {
        Err(ClientError::Api { code, .. }) => assert_eq!(code, "self_approval"),
        other => anyhow::bail!("self-approval must be refused: {other:?}"),
    }
    // …and through the CLI (exit 2, like any refusal).
    let cli = Cli::new(bin())?;
    let url = server.base_url();
    let login_as = |actor: &'static str| {
        let cli = &cli;
        let idp = &idp;
        let url = url.clone();
        async move {
            let file = cli.home().join(format!("{actor}-token"));
            std::fs::write(&file, person_token(idp, actor).await?)?;
            let out = cli
                .run(&[
                    "login",
                    "--token-file",
                    &file.display().to_string(),
                    "--server",
                    &url,
                ])
                .await?;
            anyhow::ensure!(out.success(), "{}", out.summary());
            Ok::<_, anyhow::Error>(())
        }
    };
    login_as("alice").await?;
    let out = cli
        .run(&["approvals", "approve", &id, "--server", &url])
        .await?;
    assert_eq!(out.code, Some(2), "{}", out.summary());
    assert!(out.stderr.contains("second person"), "{}", out.summary());

    // A non-admin cannot even list them.
    let (_, job) = login(&server, &job_token(&idp, json!({})).await?).await?;
    assert!(job.list_approvals().await.is_err());

    // Bob approves through the CLI.
    login_as("bob").await?;
    let out = cli
        .run(&["approvals", "list", "--server", &url, "--output", "json"])
        .await?;
    assert!(out.success(), "{}", out.summary());
    assert_eq!(out.json()?["approvals"][0]["id"], id.as_str());
    let out = cli
        .run(&["approvals", "approve", &id, "--server", &url])
        .await?;
    assert!(out.success(), "{}", out.summary());
    let out = cli
        .run(&["approvals", "approve", &id, "--server", &url])
        .await?;
    assert!(!out.success(), "approving twice: {}", out.summary());

    // Alice's retry gets the credential, once; the role is now seen, so the
    // next one needs no approval either.
    let (status, rid, body) = creds(&http, &base, &alice.token, None).await?;
    assert_eq!(status, 200, "{body}");
    assert!(bob_client.list_approvals().await?.approvals.is_empty());
    let (status, _, body) = creds(&http, &base, &alice.token, None).await?;
    assert_eq!(status, 200, "{body}");

    let events = server.audit_events()?;
    let flagged: Vec<&Value> = events.iter().filter(|e| e["event"] == "anomaly").collect();
    assert_eq!(flagged.len(), 1, "one signal, reported once: {flagged:?}");
    assert_eq!(flagged[0]["detail"]["kind"], "first_role_use");
    assert_eq!(flagged[0]["detail"]["action"], "require_approval");
    assert_eq!(flagged[0]["detail"]["approval_id"], id.as_str());
    let used = events
        .iter()
        .find(|e| e["event"] == "anomaly_approval_used")
        .ok_or_else(|| anyhow::anyhow!("the approved issuance is audited"))?;
    assert_eq!(used["request_id"], rid.as_str());
    assert!(
        used["detail"]["approved_by"]
            .as_str()
            .unwrap_or_default()
            .ends_with(":environment:bob"),
        "{used}"
    );
    let refusals = events
        .iter()
        .filter(|e| e["error"]["code"] == "approval_required")
        .count();
    assert_eq!(refusals, 2, "both refused attempts are audited");
    assert_eq!(
        counter(&server, "first_role_use", "require_approval").await?,
        1
    );
    Ok(())
}
