//! Issuance guardrails against a real server: a flood from one identity is
//! answered with 429 + Retry-After by its own bucket and does not slow or
//! refuse another identity; live-lease quotas per identity.

use crate::common;

use common::{bin, github_oidc, job_token, login};
use idmint_testkit::{free_port, IdmintServer, Idp, ServerSpec};
use serde_json::json;
use std::time::{Duration, Instant};

/// Requests the flooding identity sends.
const FLOOD: usize = 200;
/// Concurrent flooding connections.
const FLOODERS: usize = 4;

async fn limited_server(idp: &Idp, limits: &str) -> anyhow::Result<IdmintServer> {
    let spec = ServerSpec::with_oidc(vec![github_oidc(idp.issuer())]);
    let dir = tempfile::Builder::new().prefix("idmint-lim-").tempdir()?;
    let port = free_port()?;
    let config = spec.write(dir.path(), port)?;
    idmint_testkit::server::write_root_key(&dir.path().join("root.key"))?;
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str(&format!("\n[limits]\n{limits}\n"));
    std::fs::write(&config, text)?;
    let audit = dir.path().join("audit.jsonl");
    Ok(IdmintServer::start_with_config(bin(), dir, config, port, audit, vec![]).await?)
}

/// A session token for a job whose subject ends in `name`.
async fn session(idp: &Idp, server: &IdmintServer, name: &str) -> anyhow::Result<String> {
    let token = job_token(
        idp,
        json!({"sub": format!("repo:acme/app:environment:{name}")}),
    )
    .await?;
    Ok(login(server, &token).await?.0.token)
}

async fn creds(
    http: &reqwest::Client,
    base: &str,
    session: &str,
) -> anyhow::Result<reqwest::Response> {
    Ok(http
        .post(format!("{base}/api/v1/creds/demo-api"))
        .bearer_auth(session)
        .json(&json!({}))
        .send()
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_identity_does_not_slow_another() -> anyhow::Result<()> {
    let idp = Idp::start().await?;
    let server = limited_server(&idp, "per_identity = { rate = 2, burst = 3 }").await?;
    let base = server.base_url();
    let flooder = session(&idp, &server, "flooder").await?;
    let victim = session(&idp, &server, "victim").await?;
    let http = reqwest::Client::new();

    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..FLOODERS {
        let (http, base, flooder) = (http.clone(), base.clone(), flooder.clone());
        tasks.push(tokio::spawn(async move {
            let mut ok = 0usize;
            let mut limited = 0usize;
            let mut retry_after_ok = true;
            for _ in 0..FLOOD / FLOODERS {
                let r = creds(&http, &base, &flooder).await?;
                match r.status().as_u16() {
                    200 => ok += 1,
                    429 => {
                        limited += 1;
                        let secs = r
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<u64>().ok());
                        retry_after_ok &= secs.is_some_and(|s| s >= 1);
                        let body: serde_json::Value = r.json().await?;
                        retry_after_ok &= body["error"]["code"] == "rate_limited";
                    }
                    other => anyhow::bail!("unexpected status {other} during the flood"),
                }
            }
            Ok::<_, anyhow::Error>((ok, limited, retry_after_ok))
        }));
    }

    // Meanwhile the victim gets every credential it asks for, promptly.
    let mut victim_latencies = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let r = creds(&http, &base, &victim).await?;
        victim_latencies.push(t.elapsed());
        assert_eq!(
            r.status().as_u16(),
            200,
            "the victim must not be limited: {}",
            r.text().await?
        );
    }

    let (mut ok, mut limited) = (0, 0);
    for t in tasks {
        let (o, l, headers_ok) = t.await??;
        ok += o;
        limited += l;
        assert!(
            headers_ok,
            "every 429 carries Retry-After >= 1 and code rate_limited"
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(ok + limited, FLOOD);
    // burst + rate × time (+1 for rounding at the edges).
    let allowed = 3.0 + 2.0 * elapsed + 1.0;
    assert!(
        (ok as f64) <= allowed,
        "the flooder got {ok} credentials in {elapsed:.2}s; its bucket allows {allowed:.1}"
    );
    assert!(
        limited >= FLOOD / 2,
        "most of the flood is refused: {limited}"
    );
    let slowest = victim_latencies.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < Duration::from_millis(1500),
        "the victim's requests stayed fast during the flood: {victim_latencies:?}"
    );
    // Refusals are audited.
    let refused = server
        .audit_events()?
        .iter()
        .filter(|e| e["event"] == "issue_refused" && e["error"]["code"] == "rate_limited")
        .count();
    assert_eq!(refused, limited);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_lease_quota_per_identity() -> anyhow::Result<()> {
    let idp = Idp::start().await?;
    let server = limited_server(&idp, "max_leases_per_identity = 2").await?;
    let base = server.base_url();
    let token = job_token(&idp, json!({})).await?;
    let (resp, client) = login(&server, &token).await?;
    let http = reqwest::Client::new();
    for _ in 0..2 {
        let r = creds(&http, &base, &resp.token).await?;
        assert_eq!(r.status().as_u16(), 200);
    }
    let r = creds(&http, &base, &resp.token).await?;
    assert_eq!(r.status().as_u16(), 429);
    let body: serde_json::Value = r.json().await?;
    assert_eq!(body["error"]["code"], "lease_quota_exceeded", "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("idmint leases revoke"));

    // Revoking one frees a slot.
    let leases = client.leases(&Default::default()).await?;
    let first = leases
        .leases
        .first()
        .map(|l| l.id.clone())
        .unwrap_or_default();
    client.revoke_lease(&first).await?;
    let r = creds(&http, &base, &resp.token).await?;
    assert_eq!(r.status().as_u16(), 200);
    Ok(())
}
