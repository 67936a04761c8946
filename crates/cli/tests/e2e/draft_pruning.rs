//! Draft pruning against a real server: rejected, activated and superseded
//! drafts disappear after `[governance] draft_retention`, a pending draft
//! on the active version stays, and `policy history` keeps every version's
//! approvers and draft id.

use crate::common;

use common::{bin, github_oidc, job_token, login};
use idmint_client::proto::governance::{
    ApproveRequest, DraftCreateRequest, DraftState, PolicySource,
};
use idmint_client::IdmintClient;
use idmint_testkit::{
    fixtures, free_port, poll_until, IdmintServer, Idp, ServerSpec, TestkitError,
};
use serde_json::json;
use std::time::Duration;

const GOVERNANCE: &str = r#"
@id("governors")
permit (principal, action in [Action::"policy::draft", Action::"policy::approve", Action::"admin"], resource == Server::"idmint")
when { principal has actor && ["alice", "bob"].contains(principal.actor) };
"#;

/// How long finished drafts are kept in this test.
const RETENTION_SECS: u64 = 3;

async fn server(idp: &Idp) -> anyhow::Result<IdmintServer> {
    let mut spec = ServerSpec::with_oidc(vec![github_oidc(idp.issuer())]);
    spec.policies
        .push(("governance.cedar".into(), GOVERNANCE.into()));
    let dir = tempfile::Builder::new().prefix("idmint-prune-").tempdir()?;
    let port = free_port()?;
    let config = spec.write(dir.path(), port)?;
    idmint_testkit::server::write_root_key(&dir.path().join("root.key"))?;
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str(&format!(
        "\n[governance]\nsync_interval = \"1s\"\ndraft_retention = \"{RETENTION_SECS}s\"\n"
    ));
    std::fs::write(&config, text)?;
    let audit = dir.path().join("audit.jsonl");
    Ok(IdmintServer::start_with_config(bin(), dir, config, port, audit, vec![]).await?)
}

async fn person(idp: &Idp, server: &IdmintServer, actor: &str) -> anyhow::Result<IdmintClient> {
    let token = job_token(
        idp,
        json!({"actor": actor, "sub": format!("repo:acme/app:environment:{actor}")}),
    )
    .await?;
    Ok(login(server, &token).await?.1)
}

async fn draft(c: &IdmintClient, marker: &str) -> anyhow::Result<String> {
    let d = c
        .create_draft(&DraftCreateRequest {
            sources: vec![
                PolicySource {
                    name: "governance.cedar".into(),
                    text: GOVERNANCE.into(),
                },
                PolicySource {
                    name: "roles.toml".into(),
                    text: fixtures::ROLES.into(),
                },
                PolicySource {
                    name: "test.cedar".into(),
                    text: format!("{}\n// {marker}\n", fixtures::POLICY),
                },
            ],
            comment: marker.into(),
        })
        .await?;
    Ok(d.id)
}

fn protocol(e: impl std::fmt::Display) -> TestkitError {
    TestkitError::Protocol {
        peer: "idmint".into(),
        message: e.to_string(),
    }
}

/// Ids of the stored drafts, sorted.
async fn draft_ids(c: &IdmintClient) -> Result<Vec<String>, TestkitError> {
    let mut ids: Vec<String> = c
        .list_drafts()
        .await
        .map_err(protocol)?
        .drafts
        .into_iter()
        .map(|d| d.id)
        .collect();
    ids.sort();
    Ok(ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_drafts_are_pruned_and_history_survives() -> anyhow::Result<()> {
    let idp = Idp::start().await?;
    let server = server(&idp).await?;
    let alice = person(&idp, &server, "alice").await?;
    let bob = person(&idp, &server, "bob").await?;
    let bob_key = format!("{}|repo:acme/app:environment:bob", idp.issuer());

    // Activated (v2), rejected, and pending on the active version.
    let applied = draft(&alice, "applied").await?;
    let r = bob
        .approve_draft(&applied, &ApproveRequest::default())
        .await?;
    assert_eq!(r.activated_version, Some(2));
    let rejected = draft(&alice, "rejected").await?;
    bob.reject_draft(&rejected, "no").await?;
    let pending = draft(&alice, "pending").await?;
    assert_eq!(draft_ids(&alice).await?.len(), 3);

    // After the retention only the still-approvable draft is left.
    let want = vec![pending.clone()];
    poll_until("pruning", Duration::from_secs(30), || async {
        Ok((draft_ids(&alice).await? == want).then_some(()))
    })
    .await?;
    let history = alice.policy_history().await?;
    let v2 = history
        .versions
        .iter()
        .find(|v| v.version == 2)
        .ok_or_else(|| anyhow::anyhow!("v2 is in the history"))?;
    assert_eq!(v2.draft_id.as_deref(), Some(applied.as_str()));
    assert_eq!(v2.approvers, vec![bob_key.clone()]);
    assert_eq!(alice.draft(&pending).await?.state, DraftState::Pending);

    // Activating another draft supersedes the pending one: pruned too.
    let next = draft(&alice, "next").await?;
    let r = bob.approve_draft(&next, &ApproveRequest::default()).await?;
    assert_eq!(r.activated_version, Some(3));
    poll_until(
        "pruning the superseded draft",
        Duration::from_secs(30),
        || async { Ok(draft_ids(&alice).await?.is_empty().then_some(())) },
    )
    .await?;
    let history = alice.policy_history().await?;
    assert_eq!(history.active_version, Some(3));
    assert_eq!(history.versions.len(), 3, "every version stays");
    for (version, id) in [(2, &applied), (3, &next)] {
        let v = history
            .versions
            .iter()
            .find(|v| v.version == version)
            .ok_or_else(|| anyhow::anyhow!("v{version} is in the history"))?;
        assert_eq!(v.draft_id.as_deref(), Some(id.as_str()));
        assert_eq!(v.approvers, vec![bob_key.clone()]);
    }
    // Sources of old versions are untouched: a rollback to v2 still works.
    let rb = alice
        .rollback_policy(&idmint_client::proto::governance::RollbackRequest {
            version: 2,
            comment: "back".into(),
        })
        .await?;
    assert!(rb.sources.iter().any(|s| s.text.contains("// applied")));
    Ok(())
}
