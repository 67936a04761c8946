//! `idmint approvals list|approve`: issuances an anomaly rule held for a
//! second admin. The server decides (admin, not the requester); this only
//! sends and renders.

use super::{denied, session_error, Exit, Format};
use crate::args::{ApprovalsCommand, GlobalArgs};
use crate::connection;
use crate::output::{emit, json, list_table, time_with_relative};
use anyhow::Result;
use idmint_core::UnixTime;
use idmint_proto::anomaly::{AnomalyApproval, ApprovalList, ApprovalState};

pub async fn run(global: &GlobalArgs, format: Format, cmd: ApprovalsCommand) -> Result<Exit> {
    let (client, source) = connection::authenticated(global)?;
    let now = UnixTime::now().secs();
    let result = match cmd {
        ApprovalsCommand::List => client.list_approvals().await.map(|l| match format {
            Format::Json => json(&l),
            Format::Text => Ok(list_text(&l, now)),
        }),
        ApprovalsCommand::Approve(args) => {
            client
                .approve_approval(&args.id)
                .await
                .map(|a| match format {
                    Format::Json => json(&a),
                    Format::Text => Ok(approved_text(&a, now)),
                })
        }
    };
    match result {
        Ok(text) => {
            emit(&text?)?;
            Ok(Exit::Success)
        }
        Err(e) if e.is_denied() => Ok(denied(&e)),
        Err(e) => Err(session_error(e, &source)),
    }
}

fn state_str(s: ApprovalState) -> &'static str {
    match s {
        ApprovalState::Pending => "pending",
        ApprovalState::Approved => "approved",
    }
}

fn list_text(list: &ApprovalList, now: i64) -> String {
    if list.approvals.is_empty() {
        return "No approvals waiting.\n".into();
    }
    let rows = list
        .approvals
        .iter()
        .map(|a| {
            vec![
                a.id.clone(),
                state_str(a.state).to_string(),
                a.subject.clone(),
                a.role.clone(),
                a.signals.join(","),
                time_with_relative(a.created_at, now),
                time_with_relative(a.expires_at, now),
            ]
        })
        .collect();
    list_table(
        &[
            "ID", "STATE", "SUBJECT", "ROLE", "SIGNALS", "CREATED", "EXPIRES",
        ],
        rows,
    )
}

fn approved_text(a: &AnomalyApproval, now: i64) -> String {
    format!(
        "Approved {}: {} may get role {} once, until {}.\n",
        a.id,
        a.subject,
        a.role,
        time_with_relative(a.expires_at, now)
    )
}
