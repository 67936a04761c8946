//! `idmint status`

use super::{Exit, Format};
use crate::args::GlobalArgs;
use crate::connection;
use crate::output::{emit, json};
use anyhow::Result;
use idmint_proto::Health;

pub async fn run(global: &GlobalArgs, format: Format) -> Result<Exit> {
    let client = connection::anonymous(global)?;
    let live = client.health().await?;
    let ready = client.ready().await?;
    let warnings = policy_warnings(global).await;
    match format {
        Format::Json => emit(&json(&serde_json::json!({
            "server": client.base_url(),
            "health": live,
            "ready": ready,
            "policy_warnings": warnings,
        }))?)?,
        Format::Text => {
            let mut text = status_text(&client.base_url(), &live, &ready);
            for w in &warnings {
                text.push_str(&format!(
                    "  WARNING: {w}
"
                ));
            }
            emit(&text)?
        }
    }
    Ok(if is_ok(&live) && is_ok(&ready) {
        Exit::Success
    } else {
        Exit::Problems
    })
}

/// Governance warnings (an unconfirmed break-glass policy activation),
/// when there is a session allowed to read the policy history; status
/// works without one, so every failure here just means "none shown".
async fn policy_warnings(global: &GlobalArgs) -> Vec<String> {
    let Ok((client, _)) = connection::authenticated(global) else {
        return Vec::new();
    };
    client
        .policy_history()
        .await
        .map(|h| h.warnings)
        .unwrap_or_default()
}

/// `/healthz` says `ok`, `/readyz` says `ready`; either with problems, or
/// any other status, is not healthy.
fn is_ok(h: &Health) -> bool {
    h.problems.is_empty() && matches!(h.status.as_str(), "ok" | "ready")
}

fn status_text(server: &str, live: &Health, ready: &Health) -> String {
    let mut s = format!(
        "{server}\n  live:  {}\n  ready: {}",
        live.status, ready.status
    );
    if let Some(v) = ready.policy_version.or(live.policy_version) {
        s.push_str(&format!(" (policy v{v})"));
    }
    s.push('\n');
    for p in live.problems.iter().chain(&ready.problems) {
        s.push_str(&format!("  problem: {p}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_problems() {
        let ok = Health {
            status: "ok".into(),
            policy_version: Some(2),
            problems: vec![],
        };
        let ready = Health {
            status: "ready".into(),
            policy_version: Some(2),
            problems: vec![],
        };
        let bad = Health {
            status: "not_ready".into(),
            policy_version: None,
            problems: vec!["audit sink down".into()],
        };
        assert_eq!(
            status_text("http://h", &ok, &ready),
            "http://h\n  live:  ok\n  ready: ready (policy v2)\n"
        );
        let t = status_text("http://h", &ok, &bad);
        assert!(
            t.contains("ready: not_ready") && t.contains("problem: audit sink down"),
            "{t}"
        );
        assert!(is_ok(&ok) && is_ok(&ready) && !is_ok(&bad));
    }
}
