//! `idmint policy draft …|history|rollback`: the server-side policy
//! governance commands. The server decides everything (validation, who may
//! approve, activation); these commands only send and render.

use super::policy::read_policy_dir;
use super::{denied, session_error, Exit, Format};
use crate::args::{GlobalArgs, PolicyDraftCommand, PolicyRollbackArgs};
use crate::connection::{self, TokenSource};
use crate::output::{emit, json, list_table, time_with_relative};
use anyhow::Result;
use idmint_client::{ClientError, IdmintClient};
use idmint_core::UnixTime;
use idmint_proto::governance::{
    ApproveRequest, ApproveResponse, DraftCreateRequest, DraftDiff, DraftInfo, DraftList,
    PolicyHistory, PolicySource, RollbackRequest,
};
use serde::Serialize;

/// Refusals by policy or the two-person rule exit with 2 (like a denied
/// credential); everything else is an error.
fn refused(e: ClientError, source: &TokenSource) -> Result<Exit> {
    if e.is_denied() {
        return Ok(denied(&e));
    }
    Err(session_error(e, source))
}

fn show<T: Serialize>(format: Format, value: &T, text: impl FnOnce(&T) -> String) -> Result<()> {
    match format {
        Format::Json => emit(&json(value)?),
        Format::Text => emit(&text(value)),
    }
}

pub async fn draft(global: &GlobalArgs, format: Format, cmd: PolicyDraftCommand) -> Result<Exit> {
    let (client, source) = connection::authenticated(global)?;
    let result = run_draft(&client, format, cmd).await;
    match result {
        Ok(()) => Ok(Exit::Success),
        Err(Failure::Client(e)) => refused(e, &source),
        Err(Failure::Other(e)) => Err(e),
    }
}

enum Failure {
    Client(ClientError),
    Other(anyhow::Error),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::Client(e)
    }
}
impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

async fn run_draft(
    client: &IdmintClient,
    format: Format,
    cmd: PolicyDraftCommand,
) -> Result<(), Failure> {
    let now = UnixTime::now().secs();
    match cmd {
        PolicyDraftCommand::Create(args) => {
            let sources = read_policy_dir(&args.from)?
                .into_iter()
                .map(|s| PolicySource {
                    name: s.name,
                    text: s.text,
                })
                .collect();
            let d = client
                .create_draft(&DraftCreateRequest {
                    sources,
                    comment: args.comment,
                })
                .await?;
            show(format, &d, |d| {
                format!("Created draft {}.\n{}", d.id, draft_text(d, now))
            })?;
        }
        PolicyDraftCommand::List => {
            let list = client.list_drafts().await?;
            show(format, &list, |l| drafts_text(l, now))?;
        }
        PolicyDraftCommand::Show(args) => {
            let d = client.draft(&args.id).await?;
            show(format, &d, |d| draft_text(d, now))?;
        }
        PolicyDraftCommand::Diff(args) => {
            let d = client.draft_diff(&args.id).await?;
            show(format, &d, diff_text)?;
        }
        PolicyDraftCommand::Approve(args) => {
            let r = client
                .approve_draft(
                    &args.id,
                    &ApproveRequest {
                        break_glass: args.break_glass,
                        reason: args.reason,
                    },
                )
                .await?;
            show(format, &r, |r| approve_text(r, now))?;
        }
        PolicyDraftCommand::Reject(args) => {
            let d = client.reject_draft(&args.id, &args.reason).await?;
            show(format, &d, |d| format!("Rejected draft {}.\n", d.id))?;
        }
    }
    Ok(())
}

pub async fn history(global: &GlobalArgs, format: Format) -> Result<Exit> {
    let (client, source) = connection::authenticated(global)?;
    match client.policy_history().await {
        Ok(h) => {
            show(format, &h, |h| history_text(h, UnixTime::now().secs()))?;
            for w in &h.warnings {
                eprintln!("WARNING: {w}");
            }
            Ok(Exit::Success)
        }
        Err(e) => refused(e, &source),
    }
}

pub async fn rollback(
    global: &GlobalArgs,
    format: Format,
    args: PolicyRollbackArgs,
) -> Result<Exit> {
    let (client, source) = connection::authenticated(global)?;
    let req = RollbackRequest {
        version: args.version,
        comment: args.comment,
    };
    match client.rollback_policy(&req).await {
        Ok(d) => {
            show(format, &d, |d| {
                format!(
                    "Created rollback draft {} (sources of v{}); it needs approval like any draft.\n{}",
                    d.id,
                    args.version,
                    draft_text(d, UnixTime::now().secs())
                )
            })?;
            Ok(Exit::Success)
        }
        Err(e) => refused(e, &source),
    }
}

fn drafts_text(list: &DraftList, now: i64) -> String {
    if list.drafts.is_empty() {
        return "No drafts.\n".into();
    }
    let rows = list
        .drafts
        .iter()
        .map(|d| {
            vec![
                d.id.clone(),
                d.state.as_str().to_string(),
                format!("{}/{}", d.approvals.len(), d.required_approvals),
                d.base_version.map(|v| format!("v{v}")).unwrap_or_default(),
                d.author.clone(),
                time_with_relative(d.created_at, now),
                d.comment.clone(),
            ]
        })
        .collect();
    list_table(
        &[
            "ID",
            "STATE",
            "APPROVALS",
            "BASE",
            "AUTHOR",
            "CREATED",
            "COMMENT",
        ],
        rows,
    )
}

fn names(list: &[String]) -> String {
    if list.is_empty() {
        "-".into()
    } else {
        list.join(", ")
    }
}

/// The draft view: state, approvals, what changes, and the impact on
/// recorded real requests.
pub fn draft_text(d: &DraftInfo, now: i64) -> String {
    let mut s = format!(
        "Draft {} ({}) by {}, {}\n",
        d.id,
        d.state.as_str(),
        d.author,
        time_with_relative(d.created_at, now)
    );
    if !d.comment.is_empty() {
        s.push_str(&format!("  comment:   {}\n", d.comment));
    }
    if let Some(v) = d.base_version {
        s.push_str(&format!("  base:      v{v}\n"));
    }
    if let Some(v) = d.rollback_of {
        s.push_str(&format!("  rollback:  to the sources of v{v}\n"));
    }
    let approvers: Vec<String> = d.approvals.iter().map(|a| a.principal.clone()).collect();
    s.push_str(&format!(
        "  approvals: {}/{} ({})\n",
        d.approvals.len(),
        d.required_approvals,
        names(&approvers)
    ));
    s.push_str(&format!(
        "  roles:     added {}; removed {}; changed {}\n",
        names(&d.roles.added),
        names(&d.roles.removed),
        names(&d.roles.changed)
    ));
    let i = &d.impact;
    s.push_str(&format!(
        "  impact:    would newly deny {} {}, newly allow {} (replayed {} recorded requests)\n",
        i.newly_denied.len(),
        if i.newly_denied.len() == 1 {
            "identity"
        } else {
            "identities"
        },
        i.newly_allowed.len(),
        i.requests_evaluated
    ));
    for who in &i.newly_denied {
        s.push_str(&format!("    - newly denied: {who}\n"));
    }
    for who in &i.newly_allowed {
        s.push_str(&format!("    + newly allowed: {who}\n"));
    }
    if let Some(v) = d.activated_version {
        s.push_str(&format!("  activated: v{v}\n"));
    }
    if let (Some(by), Some(reason)) = (&d.rejected_by, &d.reject_reason) {
        s.push_str(&format!("  rejected:  by {} ({reason})\n", by.principal));
    }
    if let Some(b) = &d.break_glass {
        s.push_str(&format!(
            "  BREAK-GLASS by {} ({}): v{} until {}{}\n",
            b.principal,
            b.reason,
            b.activated_version,
            time_with_relative(b.expires_at, now),
            match (b.confirmed_at, b.reverted_to) {
                (Some(_), _) => ", confirmed by a second admin".to_string(),
                (None, Some(v)) => format!(
                    ", expired: reverted (v{v} restores v{})",
                    b.previous_version
                ),
                (None, None) if d.state.as_str() == "reverted" =>
                    ", expired: nothing reverted (policy changed since)".into(),
                (None, None) =>
                    ", NOT YET CONFIRMED: reverts unless a second admin approves".into(),
            }
        ));
    }
    s
}

fn diff_text(d: &DraftDiff) -> String {
    let mut s = format!(
        "Draft {} against active v{}\n",
        d.id,
        d.active_version.unwrap_or(0)
    );
    s.push_str(&format!(
        "roles: added {}; removed {}; changed {}\n",
        names(&d.roles.added),
        names(&d.roles.removed),
        names(&d.roles.changed)
    ));
    if d.files.is_empty() {
        s.push_str("No differences.\n");
    }
    for f in &d.files {
        s.push_str(&f.unified);
    }
    s
}

fn approve_text(r: &ApproveResponse, now: i64) -> String {
    let d = &r.draft;
    match (r.activated_version, &d.break_glass) {
        (Some(v), Some(_)) => format!(
            "BREAK-GLASS: draft {} is active as policy v{v} now. It reverts automatically unless a second admin approves it in time.\n{}",
            d.id,
            draft_text(d, now)
        ),
        (Some(v), None) => format!("Approved draft {}; policy v{v} is now active.\n", d.id),
        (None, _) => format!(
            "Approved draft {} ({}/{} approvals).\n",
            d.id,
            d.approvals.len(),
            d.required_approvals
        ),
    }
}

fn history_text(h: &PolicyHistory, now: i64) -> String {
    let rows = h
        .versions
        .iter()
        .map(|v| {
            vec![
                format!("v{}{}", v.version, if v.active { " *" } else { "" }),
                time_with_relative(v.created_at, now),
                v.author.clone(),
                names(&v.approvers),
                if v.break_glass.is_some() {
                    format!("[BREAK-GLASS] {}", v.comment)
                } else {
                    v.comment.clone()
                },
            ]
        })
        .collect();
    let mut s = list_table(
        &["VERSION", "CREATED", "AUTHOR", "APPROVERS", "COMMENT"],
        rows,
    );
    for w in &h.warnings {
        s.push_str(&format!("WARNING: {w}\n"));
    }
    s
}
