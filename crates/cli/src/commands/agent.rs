//! `idmint agent enroll|run|install|status`: parsing was done by clap, the
//! work is in `idmint-agent`; this prints.

use super::{Exit, Format};
use crate::args::{
    AgentCommand, AgentEnrollArgs, AgentInstallArgs, AgentRunArgs, AgentStateArgs, GlobalArgs,
    DEFAULT_SERVER,
};
use crate::output::{emit, json, key_value_table, list_table, time_with_relative};
use anyhow::{bail, Context, Result};
use idmint_agent::state::CachedGrants;
use idmint_agent::{
    AgentConfig, HostSystem, InstallPlan, ServerLink, StateDir, UidAllocator, UidRange,
};
use idmint_core::{Secret, UnixTime};
use std::io::Read;

pub async fn run(global: &GlobalArgs, format: Format, command: AgentCommand) -> Result<Exit> {
    match command {
        AgentCommand::Enroll(args) => enroll(global, format, args).await,
        AgentCommand::Run(args) => run_agent(global, args).await,
        AgentCommand::Install(args) => install(format, args),
        AgentCommand::Status(args) => status(format, args),
    }
}

fn require_root(what: &str) -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("`idmint agent {what}` must run as root: it creates and removes Unix accounts and writes sshd and sudo configuration");
    }
    Ok(())
}

async fn enroll(global: &GlobalArgs, format: Format, args: AgentEnrollArgs) -> Result<Exit> {
    require_root("enroll")?;
    let token = if args.join_token == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the join token from stdin")?;
        Secret::new(s.trim().to_string())
    } else {
        Secret::new(args.join_token)
    };
    if token.expose().is_empty() {
        bail!("the join token is empty; get one with `idmint ssh host-token HOST`");
    }
    let state = StateDir::open(&args.state.state_dir)?;
    let link = ServerLink::new(&global.server, global.ca_cert.as_deref())?;
    let outcome = idmint_agent::enroll(&state, &link, &args.host, token, &args.host_key)
        .await
        .context("enrollment failed")?;
    match format {
        Format::Json => emit(&json(&outcome)?)?,
        Format::Text => emit(&format!(
            "Enrolled {} with {}.\n  agent key:        {}\n  host certificate: {}\n  user CA:          {}\nNext: `idmint agent install` to review the sshd settings, then `idmint agent run`.\n",
            outcome.host,
            outcome.server,
            outcome.agent_public_key,
            outcome.host_certificate_path.display(),
            outcome.user_ca_path.display()
        ))?,
    }
    Ok(Exit::Success)
}

async fn run_agent(global: &GlobalArgs, args: AgentRunArgs) -> Result<Exit> {
    require_root("run")?;
    let uid_range: UidRange = args.uid_range.parse()?;
    let config = AgentConfig {
        state_dir: args.state.state_dir,
        server_override: (global.server != DEFAULT_SERVER).then(|| global.server.clone()),
        ca_cert: global.ca_cert.clone(),
        host: HostSystem::local(),
        uid_range,
        tick: args.scan_interval,
        ..AgentConfig::default()
    };
    let enrollment = StateDir::open(&config.state_dir)?.require_enrollment()?;
    eprintln!(
        "idmint agent: running for host {} against {} (state in {}); stop with SIGTERM or Ctrl-C",
        enrollment.host,
        config
            .server_override
            .as_deref()
            .unwrap_or(&enrollment.server),
        config.state_dir.display()
    );
    idmint_agent::run_agent(config, shutdown_signal()).await?;
    Ok(Exit::Success)
}

/// SIGTERM (systemd stop) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

fn install(format: Format, args: AgentInstallArgs) -> Result<Exit> {
    let state = StateDir::open(&args.state.state_dir)?;
    let host = HostSystem::local();
    let plan = InstallPlan::prepare(&host, &state)?;
    if args.apply {
        require_root("install --apply")?;
        plan.apply(&host)?;
    }
    match format {
        Format::Json => emit(&json(&serde_json::json!({
            "applied": args.apply,
            "plan": plan,
        }))?)?,
        Format::Text => emit(&install_text(&plan, args.apply))?,
    }
    Ok(if plan.ready() {
        Exit::Success
    } else {
        Exit::Problems
    })
}

fn install_text(plan: &InstallPlan, applied: bool) -> String {
    let mut s = String::new();
    if applied {
        s.push_str(&format!(
            "Wrote {}, {} and {}; sshd -t accepted it. Reload sshd to use it.\n\n",
            plan.user_ca_target.display(),
            plan.host_cert_target.display(),
            plan.sshd_dropin.display()
        ));
    } else {
        s.push_str(&format!(
            "sshd settings for {} (written by --apply):\n\n",
            plan.sshd_dropin.display()
        ));
    }
    for line in plan.sshd_config.lines() {
        s.push_str(&format!("    {line}\n"));
    }
    s.push_str("\nChecks:\n");
    for c in &plan.checks {
        s.push_str(&format!(
            "  [{}] {}: {}\n",
            if c.ok { "ok" } else { "!!" },
            c.what,
            c.detail
        ));
    }
    s
}

fn status(format: Format, args: AgentStateArgs) -> Result<Exit> {
    let state = StateDir::open(&args.state_dir)?;
    let enrollment = state.enrollment()?;
    let cached = state.cached_grants()?;
    let ledger = state.ledger()?;
    let next_uid = UidAllocator::new(state.clone(), UidRange::DEFAULT)
        .peek()
        .ok();
    match format {
        Format::Json => emit(&json(&serde_json::json!({
            "state_dir": state.path(),
            "enrollment": enrollment,
            "grants": cached,
            "accounts": ledger.accounts,
            "next_uid": next_uid,
        }))?)?,
        Format::Text => emit(&status_text(
            &state,
            enrollment.as_ref(),
            cached.as_ref(),
            &ledger,
        ))?,
    }
    Ok(if enrollment.is_some() {
        Exit::Success
    } else {
        Exit::Problems
    })
}

fn status_text(
    state: &StateDir,
    enrollment: Option<&idmint_agent::Enrollment>,
    cached: Option<&CachedGrants>,
    ledger: &idmint_agent::state::Ledger,
) -> String {
    let now = UnixTime::now().secs();
    let Some(e) = enrollment else {
        return format!(
            "Not enrolled (state directory {}).\nRun `idmint agent enroll --server URL --host NAME --join-token -` first.\n",
            state.path().display()
        );
    };
    let mut rows = vec![
        ("host", e.host.clone()),
        ("server", e.server.clone()),
        ("enrolled", time_with_relative(e.enrolled_at, now)),
        ("state directory", state.path().display().to_string()),
    ];
    match cached {
        Some(c) => {
            rows.push(("grants revision", c.grants.revision.to_string()));
            rows.push(("grants received", time_with_relative(c.received_at, now)));
            rows.push(("server clock offset", format!("{}s", c.clock_offset_secs)));
        }
        None => rows.push(("grants", "none received yet".into())),
    }
    let mut s = key_value_table(&rows);
    if let Some(c) = cached {
        if !c.grants.grants.is_empty() {
            let grant_rows = c
                .grants
                .grants
                .iter()
                .map(|g| {
                    let account = ledger.accounts.get(&g.account);
                    vec![
                        g.account.clone(),
                        g.lease_id.clone(),
                        account
                            .map(|a| a.uid.to_string())
                            .unwrap_or_else(|| "-".into()),
                        match account.and_then(|a| a.session_started_at) {
                            Some(t) => format!("since {}", time_with_relative(t, now)),
                            None if ledger.consumed.contains_key(&g.lease_id) => "used".into(),
                            None => "-".into(),
                        },
                        // Expiry is judged by the server's clock.
                        time_with_relative(g.expires_at, now + c.clock_offset_secs),
                    ]
                })
                .collect();
            s.push_str(&list_table(
                &["account", "lease", "uid", "session", "expires"],
                grant_rows,
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_says_how_to_enroll() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let text = status_text(&state, None, None, &Default::default());
        assert!(text.contains("idmint agent enroll"), "{text}");
    }
}
