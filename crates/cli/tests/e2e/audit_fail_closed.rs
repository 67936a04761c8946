//! Fail-closed audit: when the audit log cannot be written, nothing is
//! issued. The audit file lives on a small tmpfs that the test fills up
//! while the server runs, so the server's appends fail with `ENOSPC` — a
//! real full disk under a live process (permission changes would not
//! affect its already-open descriptor).

use crate::common;

use common::{bin, github_oidc, job_token, login};
use idmint_client::proto::token_types::{GRANT_TOKEN_EXCHANGE, JWT};
use idmint_client::proto::CredsRequest;
use idmint_client::{ClientError, LeaseQuery};
use idmint_testkit::{metric_value, IdmintServer, Idp, ServerSpec, SmallDisk};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_audit_disk_refuses_logins_and_credentials() -> anyhow::Result<()> {
    // Declared first so it is unmounted last, after the server is gone.
    let disk = SmallDisk::mount(512)?;
    let idp = Idp::start().await?;
    let mut spec = ServerSpec::with_oidc(vec![github_oidc(idp.issuer())]);
    spec.audit_file = Some(disk.path().join("audit.jsonl"));
    let server = IdmintServer::start(bin(), spec).await?;

    // Healthy baseline.
    let (_, client) = login(&server, &job_token(&idp, json!({})).await?).await?;
    let baseline = client.creds("demo-api", &CredsRequest::default()).await?;
    assert_eq!(server.get("/readyz").await?.status, 200);
    let proof = job_token(&idp, json!({})).await?;

    disk.fill()?;

    // The audit file's last page may still have room for an event or two;
    // after that every append fails. Bounded: a page holds a few events.
    let mut first_refusal = None;
    for attempt in 0..16 {
        let r = server.api().login(&proof).await?;
        match r.status {
            200 => continue,
            503 => {
                first_refusal = Some((attempt, r));
                break;
            }
            other => panic!(
                "unexpected HTTP {other} while the disk is full: {}",
                r.summary()
            ),
        }
    }
    let (attempt, refusal) =
        first_refusal.ok_or_else(|| anyhow::anyhow!("16 logins succeeded on a full disk"))?;
    assert!(attempt < 16);
    assert_eq!(
        refusal.error_code(),
        Some("audit_unavailable"),
        "{}",
        refusal.summary()
    );
    assert!(
        refusal.body.get("token").is_none(),
        "no session without an audit record: {}",
        refusal.summary()
    );

    // From now on: no session, no credential, no token exchange.
    let r = server.api().login(&proof).await?;
    assert_eq!(
        (r.status, r.error_code()),
        (503, Some("audit_unavailable")),
        "{}",
        r.summary()
    );
    assert!(!r.text.contains("idm_"), "{}", r.summary());

    let e = client
        .creds("demo-api", &CredsRequest::default())
        .await
        .expect_err("no credential on a full disk");
    match &e {
        ClientError::Api { status, code, .. } => {
            assert_eq!((*status, code.as_str()), (503, "audit_unavailable"), "{e}")
        }
        other => panic!("expected an API error, got {other:?}"),
    }

    let r = server
        .api()
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", GRANT_TOKEN_EXCHANGE),
                ("subject_token", &proof),
                ("subject_token_type", JWT),
                ("audience", "https://api.example.test"),
            ],
        )
        .await?;
    assert_eq!(r.status, 503, "{}", r.summary());
    assert!(r.body.get("access_token").is_none(), "{}", r.summary());

    // Nothing that was attempted on the full disk is live: only the
    // baseline lease is active.
    let leases = client.leases(&LeaseQuery::default()).await?;
    let active: Vec<&str> = leases
        .leases
        .iter()
        .filter(|l| l.state == "active")
        .map(|l| l.id.as_str())
        .collect();
    assert_eq!(
        active,
        vec![baseline.lease_id.as_str()],
        "{:?}",
        leases.leases
    );

    // Readiness and metrics say why.
    let ready = server.get("/readyz").await?;
    assert_eq!(ready.status, 503, "{}", ready.summary());
    assert!(ready.text.contains("audit"), "{}", ready.summary());
    let metrics = server.get("/metrics").await?.text;
    let failures = metric_value(&metrics, "idmint_audit_write_failures", "").unwrap_or(0.0);
    assert!(failures >= 1.0, "audit write failures counted: {failures}");

    // Liveness is separate from readiness: the process is up and says so.
    assert_eq!(server.get("/healthz").await?.status, 200);
    Ok(())
}
