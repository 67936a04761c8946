//! Policy governance against a real server: drafts, the two-person rule,
//! stale drafts, invalid Cedar, concurrent activation, rollback, impact on
//! recorded requests, and break-glass expiry.

use crate::common;

use common::{bin, github_oidc, job_token, login};
use idmint_client::proto::governance::{
    ApproveRequest, DraftCreateRequest, DraftState, PolicySource, RollbackRequest,
};
use idmint_client::{ClientError, IdmintClient};
use idmint_testkit::{
    fixtures, free_port, poll_until, unix_now, Cli, IdmintServer, Idp, ServerSpec, TestkitError,
};
use serde_json::json;
use std::time::Duration;

/// Who may govern: the `actor` claim of these identities.
const GOVERNANCE: &str = r#"
@id("governors")
permit (principal, action in [Action::"policy::draft", Action::"policy::approve", Action::"admin"], resource == Server::"idmint")
when { principal has actor && ["alice", "bob", "carol"].contains(principal.actor) };
"#;

/// A role whose changes need two approvals (`env = prod`).
const PROD_ROLE: &str = r#"
[[role]]
name = "prod-api"
issuer = "oauth"
max_ttl = "5m"
audiences = ["https://prod.example.test"]
scopes = ["read"]
labels = { env = "prod" }
"#;

fn sources(roles: &str, extra_cedar: &str) -> Vec<PolicySource> {
    vec![
        PolicySource {
            name: "governance.cedar".into(),
            text: GOVERNANCE.into(),
        },
        PolicySource {
            name: "roles.toml".into(),
            text: roles.into(),
        },
        PolicySource {
            name: "test.cedar".into(),
            text: format!("{}{extra_cedar}", fixtures::POLICY),
        },
    ]
}

/// A server whose initial policy lets alice, bob and carol govern, with
/// `governance` appended to its `idmint.toml`.
async fn governed_server(idp: &Idp, governance: &str) -> anyhow::Result<IdmintServer> {
    let mut spec = ServerSpec::with_oidc(vec![github_oidc(idp.issuer())]);
    spec.policies
        .push(("governance.cedar".into(), GOVERNANCE.into()));
    let dir = tempfile::Builder::new().prefix("idmint-gov-").tempdir()?;
    let port = free_port()?;
    let config = spec.write(dir.path(), port)?;
    idmint_testkit::server::write_root_key(&dir.path().join("root.key"))?;
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str(&format!("\n[governance]\n{governance}\n"));
    std::fs::write(&config, text)?;
    let audit = dir.path().join("audit.jsonl");
    Ok(IdmintServer::start_with_config(bin(), dir, config, port, audit, vec![]).await?)
}

/// A session for the person `actor` (subject `…:environment:<actor>`).
async fn person(idp: &Idp, server: &IdmintServer, actor: &str) -> anyhow::Result<IdmintClient> {
    let token = job_token(
        idp,
        json!({"actor": actor, "sub": format!("repo:acme/app:environment:{actor}")}),
    )
    .await?;
    Ok(login(server, &token).await?.1)
}

fn api_code(e: &ClientError) -> Option<&str> {
    match e {
        ClientError::Api { code, .. } => Some(code.as_str()),
        _ => None,
    }
}

async fn draft(
    c: &IdmintClient,
    roles: &str,
    cedar: &str,
    comment: &str,
) -> anyhow::Result<idmint_client::proto::governance::DraftInfo> {
    Ok(c.create_draft(&DraftCreateRequest {
        sources: sources(roles, cedar),
        comment: comment.into(),
    })
    .await?)
}

async fn active_version(c: &IdmintClient) -> anyhow::Result<u64> {
    Ok(c.policy_history().await?.active_version.unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_person_rule_stale_drafts_labels_rollback_and_impact() -> anyhow::Result<()> {
    let idp = Idp::start().await?;
    let server = governed_server(&idp, "approvals_for_labels = { env = { prod = 2 } }").await?;
    let alice = person(&idp, &server, "alice").await?;
    let bob = person(&idp, &server, "bob").await?;
    let carol = person(&idp, &server, "carol").await?;
    assert_eq!(active_version(&alice).await?, 1);

    // A recorded real request: the default job gets demo-api under v1.
    let job = job_token(&idp, json!({})).await?;
    let (_, job_client) = login(&server, &job).await?;
    job_client
        .creds("demo-api", &Default::default())
        .await
        .map_err(|e| anyhow::anyhow!("the fixture job must get demo-api: {e}"))?;

    // Someone the policy does not let govern cannot draft.
    let e = draft(&job_client, fixtures::ROLES, "", "x")
        .await
        .unwrap_err();
    let e = e.downcast::<ClientError>()?;
    assert_eq!(api_code(&e), Some("policy_forbidden"), "{e}");

    // Invalid Cedar is refused with file and line, and never stored.
    let e = draft(
        &alice,
        fixtures::ROLES,
        "\npermit (principal action);\n",
        "broken",
    )
    .await
    .unwrap_err()
    .downcast::<ClientError>()?;
    assert_eq!(api_code(&e), Some("invalid_policy"), "{e}");
    assert!(e.to_string().contains("test.cedar: line"), "{e}");
    // A role naming an issuer the server lacks is refused too.
    let bad_role = format!(
        "{}\n[[role]]\nname = \"x\"\nissuer = \"nope\"\nmax_ttl = \"1m\"\n",
        fixtures::ROLES
    );
    let e = draft(&alice, &bad_role, "", "bad role")
        .await
        .unwrap_err()
        .downcast::<ClientError>()?;
    assert_eq!(api_code(&e), Some("invalid_policy"), "{e}");
    assert!(e.to_string().contains("roles.toml"), "{e}");
    assert!(
        alice.list_drafts().await?.drafts.is_empty(),
        "invalid drafts are never stored"
    );

    // A draft that forbids demo-api for the job: its impact names the job.
    let forbid = "\n@id(\"freeze\")\nforbid (principal, action == Action::\"issue\", resource == Role::\"demo-api\");\n";
    let d1 = draft(&alice, fixtures::ROLES, forbid, "freeze demo-api").await?;
    assert_eq!(d1.state, DraftState::Pending);
    assert_eq!(d1.base_version, Some(1));
    assert_eq!(d1.required_approvals, 1);
    assert!(d1.impact.requests_evaluated >= 1, "{:?}", d1.impact);
    assert_eq!(
        d1.impact.newly_denied,
        vec![format!(
            "{}|repo:acme/app:ref:refs/heads/main",
            idp.issuer()
        )],
        "{:?}",
        d1.impact
    );
    assert!(d1.impact.newly_allowed.is_empty());
    let diff = alice.draft_diff(&d1.id).await?;
    let file = diff
        .files
        .iter()
        .find(|f| f.name == "test.cedar")
        .expect("test.cedar differs");
    assert!(
        file.unified.contains("+@id(\"freeze\")"),
        "{}",
        file.unified
    );
    assert!(file
        .unified
        .starts_with("--- active/test.cedar\n+++ draft/test.cedar\n@@ "));

    // Self-approval is refused; a second admin's approval activates.
    let e = alice
        .approve_draft(&d1.id, &ApproveRequest::default())
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), Some("self_approval"), "{e}");
    assert!(e.to_string().contains("two-person rule"), "{e}");
    assert_eq!(
        active_version(&alice).await?,
        1,
        "self-approval changed nothing"
    );
    let r = bob
        .approve_draft(&d1.id, &ApproveRequest::default())
        .await?;
    assert_eq!(r.activated_version, Some(2));
    assert_eq!(r.draft.state, DraftState::Activated);
    // The new policy is in force at once.
    let e = job_client
        .creds("demo-api", &Default::default())
        .await
        .unwrap_err();
    assert!(e.is_denied(), "v2 forbids demo-api: {e}");
    let e = carol
        .approve_draft(&d1.id, &ApproveRequest::default())
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), Some("draft_not_pending"), "{e}");

    // Two drafts on v2: once one activates, the other is stale.
    let d2 = draft(&alice, fixtures::ROLES, "", "unfreeze").await?;
    let d3 = draft(&alice, fixtures::ROLES, forbid, "noop").await?;
    assert_eq!(
        bob.approve_draft(&d2.id, &ApproveRequest::default())
            .await?
            .activated_version,
        Some(3)
    );
    let e = carol
        .approve_draft(&d3.id, &ApproveRequest::default())
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), Some("stale_draft"), "{e}");
    assert!(
        e.to_string()
            .contains("made against policy v2 but v3 is active"),
        "{e}"
    );
    assert_eq!(active_version(&alice).await?, 3);

    // A change to an env=prod role needs two approvers besides the author.
    let prod_roles = format!("{}{PROD_ROLE}", fixtures::ROLES);
    let d4 = draft(&alice, &prod_roles, "", "add prod-api").await?;
    assert_eq!(d4.required_approvals, 2);
    assert_eq!(d4.roles.added, vec!["prod-api".to_string()]);
    let r = bob
        .approve_draft(&d4.id, &ApproveRequest::default())
        .await?;
    assert_eq!(r.activated_version, None, "one of two approvals");
    let e = bob
        .approve_draft(&d4.id, &ApproveRequest::default())
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), Some("already_approved"), "{e}");
    let r = carol
        .approve_draft(&d4.id, &ApproveRequest::default())
        .await?;
    assert_eq!(r.activated_version, Some(4));

    // Rollback is a draft: nothing changes until someone else approves.
    let rb = alice
        .rollback_policy(&RollbackRequest {
            version: 1,
            comment: String::new(),
        })
        .await?;
    assert_eq!(rb.rollback_of, Some(1));
    assert_eq!(rb.roles.removed, vec!["prod-api".to_string()]);
    assert_eq!(
        rb.required_approvals, 2,
        "removing a prod role needs the prod count"
    );
    assert_eq!(active_version(&alice).await?, 4);
    bob.approve_draft(&rb.id, &ApproveRequest::default())
        .await?;
    let r = carol
        .approve_draft(&rb.id, &ApproveRequest::default())
        .await?;
    assert_eq!(r.activated_version, Some(5));

    // History: author, approvers, comment per version.
    let h = alice.policy_history().await?;
    let versions: Vec<u64> = h.versions.iter().map(|v| v.version).collect();
    assert_eq!(versions, vec![5, 4, 3, 2, 1]);
    let v2 = &h.versions[3];
    assert!(v2.author.ends_with("environment:alice"), "{v2:?}");
    assert_eq!(v2.approvers.len(), 1);
    assert!(v2.approvers[0].ends_with("environment:bob"), "{v2:?}");
    assert!(v2.comment.starts_with("freeze demo-api"), "{v2:?}");
    assert_eq!(h.versions[0].approvers.len(), 2);
    assert!(h.warnings.is_empty());

    // Every governance action is audited with draft, versions and approvers.
    let events = server.audit_events()?;
    let activated: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "policy_activated")
        .collect();
    assert_eq!(activated.len(), 4, "v2..v5");
    assert_eq!(activated[0]["detail"]["draft_id"], d1.id.as_str());
    assert_eq!(activated[0]["detail"]["base_version"], 1);
    assert_eq!(activated[0]["detail"]["new_version"], 2);
    assert!(events.iter().any(|e| e["event"] == "policy_draft_created"));
    assert!(events.iter().any(|e| e["event"] == "policy_draft_approved"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_approvals_activate_exactly_one_version() -> anyhow::Result<()> {
    let idp = Idp::start().await?;
    let server = governed_server(&idp, "approvals = 1").await?;
    let alice = person(&idp, &server, "alice").await?;
    let bob = person(&idp, &server, "bob").await?;
    let carol = person(&idp, &server, "carol").await?;

    // Two different drafts on the same base, approved at the same time.
    let a = draft(&alice, fixtures::ROLES, "\n// a\n", "a").await?;
    let b = draft(&alice, fixtures::ROLES, "\n// b\n", "b").await?;
    let req = ApproveRequest::default();
    let (ra, rb) = tokio::join!(
        bob.approve_draft(&a.id, &req),
        carol.approve_draft(&b.id, &req)
    );
    let wins: Vec<u64> = [&ra, &rb]
        .iter()
        .filter_map(|r| r.as_ref().ok().and_then(|r| r.activated_version))
        .collect();
    assert_eq!(wins, vec![2], "exactly one activation: {ra:?} / {rb:?}");
    let loser = if ra.is_ok() { rb } else { ra };
    assert_eq!(api_code(&loser.unwrap_err()), Some("stale_draft"));

    // The same draft approved by two admins at once: one version.
    let c = draft(&alice, fixtures::ROLES, "\n// c\n", "c").await?;
    let (rc1, rc2) = tokio::join!(
        bob.approve_draft(&c.id, &req),
        carol.approve_draft(&c.id, &req)
    );
    let wins = [&rc1, &rc2]
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.activated_version.is_some()))
        .count();
    assert_eq!(wins, 1, "{rc1:?} / {rc2:?}");
    let h = alice.policy_history().await?;
    assert_eq!(h.active_version, Some(3));
    assert_eq!(h.versions.len(), 3, "no version was created twice");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_is_loud_bounded_and_reverts() -> anyhow::Result<()> {
    let idp = Idp::start().await?;
    let server = governed_server(&idp, "break_glass_ttl = \"5s\"\nsync_interval = \"1s\"").await?;
    let alice = person(&idp, &server, "alice").await?;
    let bob = person(&idp, &server, "bob").await?;
    let cli = Cli::new(bin())?;
    let alice_token = job_token(
        &idp,
        json!({"actor": "alice", "sub": "repo:acme/app:environment:alice"}),
    )
    .await?;
    let token_file = cli.home().join("alice-token");
    std::fs::write(&token_file, &alice_token)?;
    let url = server.base_url();
    let out = cli
        .run(&[
            "login",
            "--token-file",
            &token_file.display().to_string(),
            "--server",
            &url,
        ])
        .await?;
    assert!(out.success(), "{}", out.summary());

    // Through the CLI: invalid Cedar is refused with its file and line.
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("roles.toml"), fixtures::ROLES)?;
    std::fs::write(dir.path().join("governance.cedar"), GOVERNANCE)?;
    std::fs::write(
        dir.path().join("bad.cedar"),
        "permit (principal, action, resource);\npermit (principal action resource);\n",
    )?;
    let from = dir.path().display().to_string();
    let out = cli
        .run(&[
            "policy", "draft", "create", "--from", &from, "--server", &url,
        ])
        .await?;
    assert!(!out.success());
    assert!(
        out.stderr.contains("bad.cedar: line 2"),
        "{}",
        out.summary()
    );

    // A valid draft; self-approval exits with 2.
    std::fs::write(
        dir.path().join("bad.cedar"),
        "forbid (principal, action == Action::\"issue\", resource == Role::\"demo-api\");\n",
    )?;
    let out = cli
        .run(&[
            "policy",
            "draft",
            "create",
            "--from",
            &from,
            "--comment",
            "incident",
            "--server",
            &url,
            "--output",
            "json",
        ])
        .await?;
    assert!(out.success(), "{}", out.summary());
    let id = out.json()?["id"].as_str().unwrap_or_default().to_string();
    let out = cli
        .run(&["policy", "draft", "approve", &id, "--server", &url])
        .await?;
    assert_eq!(out.code, Some(2), "{}", out.summary());
    assert!(out.stderr.contains("two-person rule"), "{}", out.summary());
    let out = cli
        .run(&["policy", "draft", "show", &id, "--server", &url])
        .await?;
    assert!(
        out.stdout.contains("impact:    would newly deny"),
        "{}",
        out.summary()
    );

    // Break-glass: active at once, loudly.
    let out = cli
        .run(&[
            "policy",
            "draft",
            "approve",
            &id,
            "--break-glass",
            "--reason",
            "INC-42",
            "--server",
            &url,
        ])
        .await?;
    assert!(out.success(), "{}", out.summary());
    assert!(out.stdout.contains("BREAK-GLASS"), "{}", out.summary());
    assert_eq!(active_version(&bob).await?, 2);
    let h = bob.policy_history().await?;
    assert_eq!(h.warnings.len(), 1, "{h:?}");
    assert!(h.warnings[0].contains("INC-42"), "{h:?}");
    let out = cli.run(&["policy", "history", "--server", &url]).await?;
    assert!(
        out.stderr.contains("WARNING: BREAK-GLASS"),
        "{}",
        out.summary()
    );
    // `idmint status` shows it too.
    let out = cli.run(&["status", "--server", &url]).await?;
    assert!(
        out.stdout.contains("WARNING: BREAK-GLASS"),
        "{}",
        out.summary()
    );
    let metrics = server.get("/metrics").await?;
    assert!(
        metrics
            .text
            .contains("idmint_policy_governance_total{outcome=\"break_glass\"} 1"),
        "{}",
        metrics.text
    );
    assert!(server.audit_events()?.iter().any(
        |e| e["event"] == "policy_break_glass" && e["detail"]["break_glass_reason"] == "INC-42"
    ));

    // Unconfirmed: it reverts to v1's sources as v3.
    let reverted = poll_until("break-glass revert", Duration::from_secs(20), || async {
        let h = bob
            .policy_history()
            .await
            .map_err(|e| TestkitError::Protocol {
                peer: "idmint".into(),
                message: e.to_string(),
            })?;
        // Reverted once v3 is active and the draft no longer warns.
        Ok((h.active_version == Some(3) && h.warnings.is_empty()).then_some(h))
    })
    .await?;
    assert_eq!(reverted.versions[0].author, "break-glass-expiry");
    let d = alice.draft(&id).await?;
    assert_eq!(d.state, DraftState::Reverted);
    assert_eq!(d.break_glass.and_then(|b| b.reverted_to), Some(3));
    assert!(server
        .audit_events()?
        .iter()
        .any(|e| e["event"] == "policy_break_glass_expired"));

    // Confirmed by a second admin in the window: it stays.
    let d = draft(&alice, fixtures::ROLES, "\n// hotfix\n", "hotfix").await?;
    let r = alice
        .approve_draft(
            &d.id,
            &ApproveRequest {
                break_glass: true,
                reason: Some("INC-43".into()),
            },
        )
        .await?;
    assert_eq!(r.activated_version, Some(4));
    let e = alice
        .approve_draft(&d.id, &ApproveRequest::default())
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), Some("self_approval"), "{e}");
    let r = bob.approve_draft(&d.id, &ApproveRequest::default()).await?;
    assert_eq!(r.draft.state, DraftState::Activated);
    let expires = r.draft.break_glass.map(|b| b.expires_at).unwrap_or(0);
    poll_until(
        "the break-glass window to pass",
        Duration::from_secs(20),
        || async { Ok((unix_now() > expires + 2).then_some(())) },
    )
    .await?;
    assert_eq!(
        active_version(&bob).await?,
        4,
        "a confirmed break-glass stays"
    );
    Ok(())
}
