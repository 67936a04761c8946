//! `idmint leases list|renew|revoke`

use super::{denied, session_error, Exit, Format};
use crate::args::{GlobalArgs, LeasesCommand, LeasesListArgs, LeasesRenewArgs, LeasesRevokeArgs};
use crate::confirm::{self, Confirmation};
use crate::connection::{self, TokenSource};
use crate::output::{emit, json, list_table, time_with_relative};
use anyhow::{bail, Result};
use idmint_client::{IdmintClient, LeaseQuery};
use idmint_core::UnixTime;
use idmint_proto::{LeaseInfo, LeaseList, RenewRequest, RevokePrefixResponse};
use std::collections::BTreeMap;

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
        LeasesCommand::Renew(args) => return renew(&client, &source, format, args).await,
        LeasesCommand::Revoke(LeasesRevokeArgs {
            id: Some(id),
            prefix: None,
            ..
        }) => {
            let lease = client
                .revoke_lease(&id)
                .await
                .map_err(|e| session_error(e, &source))?;
            match format {
                Format::Json => emit(&json(&lease)?)?,
                Format::Text => emit(&revoked_text(&lease))?,
            }
        }
        LeasesCommand::Revoke(LeasesRevokeArgs {
            id: None,
            prefix: Some(prefix),
            yes,
        }) => return revoke_prefix(&client, &source, format, &prefix, yes).await,
        LeasesCommand::Revoke(_) => {
            bail!("give either a lease id or --prefix PREFIX to `idmint leases revoke`")
        }
    }
    Ok(Exit::Success)
}

async fn renew(
    client: &IdmintClient,
    source: &TokenSource,
    format: Format,
    args: LeasesRenewArgs,
) -> Result<Exit> {
    let req = RenewRequest { ttl: args.ttl };
    let lease = match client.renew_lease(&args.id, &req).await {
        Ok(lease) => lease,
        Err(e) if e.is_denied() => return Ok(denied(&e)),
        Err(e) => return Err(session_error(e, source)),
    };
    match format {
        Format::Json => emit(&json(&lease)?)?,
        Format::Text => emit(&renewed_text(&lease, UnixTime::now().secs()))?,
    }
    Ok(Exit::Success)
}

/// Incident response: revoke every live lease of the matching roles, after
/// confirmation (see [`confirm`]). Exits with 1 when some could not be
/// revoked now.
async fn revoke_prefix(
    client: &IdmintClient,
    source: &TokenSource,
    format: Format,
    prefix: &str,
    yes: bool,
) -> Result<Exit> {
    use std::io::IsTerminal;
    match confirm::needed(yes, std::io::stdin().is_terminal()) {
        Confirmation::Given => {}
        Confirmation::Refused => bail!(
            "refusing to revoke every lease whose role starts with {prefix:?} without confirmation: stdin is not a terminal, so pass --yes"
        ),
        Confirmation::Ask => {
            let query = LeaseQuery {
                all: true,
                role_prefix: Some(prefix.to_string()),
                live: true,
                limit: None,
            };
            let live = match client.leases(&query).await {
                Ok(list) => list,
                Err(e) if e.is_denied() => return Ok(denied(&e)),
                Err(e) => return Err(session_error(e, source)),
            };
            let question = prefix_question(prefix, &live);
            if !confirm::ask(&question, std::io::stdin().lock(), std::io::stderr())? {
                eprintln!("Nothing was revoked.");
                return Ok(Exit::Problems);
            }
        }
    }
    let resp = match client.revoke_prefix(prefix).await {
        Ok(resp) => resp,
        Err(e) if e.is_denied() => return Ok(denied(&e)),
        Err(e) => return Err(session_error(e, source)),
    };
    match format {
        Format::Json => emit(&json(&resp)?)?,
        Format::Text => emit(&revoked_prefix_text(prefix, &resp))?,
    }
    Ok(if resp.failed.is_empty() {
        Exit::Success
    } else {
        Exit::Problems
    })
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

pub fn renewed_text(lease: &LeaseInfo, now: i64) -> String {
    format!(
        "Lease {} ({}) renewed: expires {}\n",
        lease.id,
        lease.role,
        time_with_relative(lease.expires_at, now)
    )
}

/// The confirmation question, with how many live leases match now per
/// role, so a wrong prefix shows before anything is revoked.
pub fn prefix_question(prefix: &str, live: &LeaseList) -> String {
    let mut per_role: BTreeMap<&str, usize> = BTreeMap::new();
    for lease in &live.leases {
        *per_role.entry(lease.role.as_str()).or_default() += 1;
    }
    let matching = if per_role.is_empty() {
        "none are live right now".to_string()
    } else {
        let roles: Vec<String> = per_role
            .iter()
            .map(|(role, n)| format!("{role}: {n}"))
            .collect();
        format!(
            "{} live right now ({})",
            plural(live.leases.len(), "lease"),
            roles.join(", ")
        )
    };
    format!(
        "This revokes every live lease whose role starts with {prefix:?}, for every principal; {matching}.\nRevoke them?"
    )
}

pub fn revoked_prefix_text(prefix: &str, resp: &RevokePrefixResponse) -> String {
    let mut s = format!(
        "Revoked {} whose role starts with {prefix:?}.\n",
        plural(resp.revoked.len(), "lease")
    );
    for id in &resp.revoked {
        s.push_str(&format!("  {id}\n"));
    }
    if !resp.failed.is_empty() {
        s.push_str(&format!(
            "Could not revoke {} now; the server keeps retrying:\n",
            plural(resp.failed.len(), "lease")
        ));
        let rows = resp
            .failed
            .iter()
            .map(|l| {
                vec![
                    l.id.clone(),
                    l.role.clone(),
                    l.state.clone(),
                    l.last_error.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        s.push_str(&list_table(&["ID", "ROLE", "STATE", "LAST ERROR"], rows));
    }
    s
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
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
    fn renew_text() {
        assert_eq!(
            renewed_text(&lease("lease_a"), 0),
            "Lease lease_a (demo-api) renewed: expires 1970-01-01T00:01:00Z (in 1m)\n"
        );
    }

    #[test]
    fn prefix_confirmation_shows_what_matches() {
        let mut b = lease("lease_b");
        b.role = "db/orders-admin".into();
        let list = LeaseList {
            leases: vec![lease("lease_a"), b, lease("lease_c")],
        };
        assert_eq!(
            prefix_question("d", &list),
            "This revokes every live lease whose role starts with \"d\", for every principal; \
             3 leases live right now (db/orders-admin: 1, demo-api: 2).\nRevoke them?"
        );
        let q = prefix_question("x\"y", &LeaseList { leases: vec![] });
        assert!(
            q.contains(r#"starts with "x\"y""#) && q.contains("none are live"),
            "{q}"
        );
    }

    #[test]
    fn prefix_result_text() {
        let resp = RevokePrefixResponse {
            revoked: vec!["lease_a".into()],
            failed: vec![],
        };
        assert_eq!(
            revoked_prefix_text("db/", &resp),
            "Revoked 1 lease whose role starts with \"db/\".\n  lease_a\n"
        );
        let mut failed = lease("lease_f");
        failed.last_error = Some("connection refused".into());
        let resp = RevokePrefixResponse {
            revoked: vec![],
            failed: vec![failed],
        };
        let t = revoked_prefix_text("db/", &resp);
        assert!(t.starts_with("Revoked 0 leases"), "{t}");
        assert!(t.contains("Could not revoke 1 lease now"), "{t}");
        assert!(
            t.lines()
                .any(|l| l.contains("lease_f") && l.contains("connection refused")),
            "{t}"
        );
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
