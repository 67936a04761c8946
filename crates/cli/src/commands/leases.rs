//! `idmint leases list|revoke`

use super::{session_error, Exit, Format};
use crate::args::{GlobalArgs, LeasesCommand, LeasesListArgs};
use crate::connection;
use crate::output::{emit, json, list_table, time_with_relative};
use anyhow::Result;
use idmint_client::LeaseQuery;
use idmint_core::UnixTime;
use idmint_proto::{LeaseInfo, LeaseList};

pub async fn run(global: &GlobalArgs, format: Format, cmd: LeasesCommand) -> Result<Exit> {
    let (client, source) = connection::authenticated(global)?;
    match cmd {
        LeasesCommand::List(args) => {
            let all = args.all;
            let list = client
                .leases(&query(args))
                .await
                .map_err(|e| session_error(e, &source))?;
            match format {
                Format::Json => emit(&json(&list)?)?,
                Format::Text => emit(&leases_text(&list, all, UnixTime::now().secs()))?,
            }
        }
        LeasesCommand::Revoke { id } => {
            let lease = client
                .revoke_lease(&id)
                .await
                .map_err(|e| session_error(e, &source))?;
            match format {
                Format::Json => emit(&json(&lease)?)?,
                Format::Text => emit(&revoked_text(&lease))?,
            }
        }
    }
    Ok(Exit::Success)
}

fn query(args: LeasesListArgs) -> LeaseQuery {
    LeaseQuery {
        all: args.all,
        role_prefix: args.role_prefix,
        live: args.live,
        limit: args.limit,
    }
}

/// One row per lease; the principal column only with `--all` (otherwise it
/// is always the caller).
pub fn leases_text(list: &LeaseList, all: bool, now: i64) -> String {
    if list.leases.is_empty() {
        return "No leases.\n".into();
    }
    let mut header = vec!["ID", "ROLE", "STATE", "EXPIRES"];
    if all {
        header.push("PRINCIPAL");
    }
    let rows = list
        .leases
        .iter()
        .map(|l| {
            let mut row = vec![
                l.id.clone(),
                l.role.clone(),
                l.state.clone(),
                time_with_relative(l.expires_at, now),
            ];
            if all {
                row.push(l.principal.clone());
            }
            row
        })
        .collect();
    list_table(&header, rows)
}

pub fn revoked_text(lease: &LeaseInfo) -> String {
    let mut s = format!(
        "Lease {} ({}) is now {}\n",
        lease.id, lease.role, lease.state
    );
    if let Some(err) = &lease.last_error {
        s.push_str(&format!("last error: {err}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(id: &str) -> LeaseInfo {
        LeaseInfo {
            id: id.into(),
            role: "demo-api".into(),
            issuer: "oauth".into(),
            principal: "iss|sub".into(),
            state: "active".into(),
            policy_version: 1,
            created_at: 0,
            expires_at: 60,
            fingerprint: None,
            last_error: None,
        }
    }

    #[test]
    fn list_text() {
        assert_eq!(
            leases_text(&LeaseList { leases: vec![] }, false, 0),
            "No leases.\n"
        );
        let list = LeaseList {
            leases: vec![lease("lease_a"), lease("lease_b")],
        };
        let t = leases_text(&list, false, 0);
        assert!(
            t.contains("lease_a") && t.contains("lease_b") && t.contains("(in 1m)"),
            "{t}"
        );
        assert!(!t.contains("PRINCIPAL"), "{t}");
        assert!(leases_text(&list, true, 0).contains("iss|sub"));
    }

    #[test]
    fn revoke_text() {
        let mut l = lease("lease_a");
        l.state = "revoked".into();
        assert_eq!(
            revoked_text(&l),
            "Lease lease_a (demo-api) is now revoked\n"
        );
    }
}
