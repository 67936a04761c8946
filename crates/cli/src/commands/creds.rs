//! `idmint creds ROLE`

use super::{session_error, Exit};
use crate::args::{CredsArgs, GlobalArgs, OutputFormat};
use crate::connection;
use crate::output::{emit, env_exports, json, key_value_table, time_with_relative};
use anyhow::Result;
use idmint_core::UnixTime;
use idmint_proto::{Credential, CredsRequest, CredsResponse};

pub async fn run(global: &GlobalArgs, args: CredsArgs) -> Result<Exit> {
    let (client, source) = connection::authenticated(global)?;
    let req = CredsRequest {
        ttl: args.ttl,
        scopes: (!args.scopes.is_empty()).then_some(args.scopes),
        audience: args.audience,
    };
    let resp = match client.creds(&args.role, &req).await {
        Ok(r) => r,
        Err(e) if e.is_denied() => {
            eprintln!("denied: {e}");
            return Ok(Exit::Denied);
        }
        Err(e) => return Err(session_error(e, &source)),
    };
    let text = match global.output {
        OutputFormat::Json => json(&resp)?,
        OutputFormat::Env => creds_env(&resp),
        OutputFormat::Text => creds_text(&resp, UnixTime::now().secs()),
    };
    emit(&text)?;
    Ok(Exit::Success)
}

/// A table of the lease, then the credential on its own lines so it can be
/// copied whole (a JWT in a table cell would wrap or stretch the table).
pub fn creds_text(resp: &CredsResponse, now: i64) -> String {
    let ttl = if resp.ttl_clamped {
        format!(
            "{}s (shortened: the request asked for more than allowed)",
            resp.ttl_seconds
        )
    } else {
        format!("{}s", resp.ttl_seconds)
    };
    let mut rows = vec![
        ("Lease", resp.lease_id.clone()),
        ("Role", resp.role.clone()),
        ("Issuer", resp.issuer.clone()),
        ("Expires", time_with_relative(resp.expires_at, now)),
        ("TTL", ttl),
        ("Policy version", resp.policy_version.to_string()),
        ("Fingerprint", resp.fingerprint.clone()),
    ];
    let secret = match &resp.credential {
        Credential::OauthToken {
            access_token,
            token_type,
            audience,
            scopes,
            token_id,
        } => {
            rows.push(("Audience", audience.clone().unwrap_or_else(|| "-".into())));
            rows.push((
                "Scopes",
                if scopes.is_empty() {
                    "-".into()
                } else {
                    scopes.join(" ")
                },
            ));
            rows.push(("Token id", token_id.clone()));
            format!("Access token ({token_type}):\n{access_token}\n")
        }
        Credential::DatabaseUser {
            engine,
            username,
            password,
            uri,
            ..
        } => {
            rows.push(("Engine", engine.clone()));
            rows.push(("Username", username.clone()));
            format!("Password:\n{password}\nConnection URI:\n{uri}\n")
        }
    };
    format!("{}\n{secret}", key_value_table(&rows))
}

/// `export` lines. Deliberately not `IDMINT_TOKEN`, which holds the idmint
/// session and would be overwritten by an `eval`.
pub fn creds_env(resp: &CredsResponse) -> String {
    let expires_at = resp.expires_at.to_string();
    let mut vars: Vec<(&str, &str)> = vec![("IDMINT_LEASE_ID", &resp.lease_id)];
    match &resp.credential {
        Credential::OauthToken {
            access_token,
            token_type,
            ..
        } => {
            vars.push(("IDMINT_ACCESS_TOKEN", access_token));
            vars.push(("IDMINT_TOKEN_TYPE", token_type));
        }
        Credential::DatabaseUser {
            username,
            password,
            uri,
            ..
        } => {
            vars.push(("IDMINT_USERNAME", username));
            vars.push(("IDMINT_PASSWORD", password));
            vars.push(("DATABASE_URL", uri));
        }
    }
    vars.push(("IDMINT_EXPIRES_AT", &expires_at));
    env_exports(&vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp() -> CredsResponse {
        CredsResponse {
            lease_id: "lease_1".into(),
            role: "demo-api".into(),
            issuer: "oauth".into(),
            expires_at: 300,
            ttl_seconds: 300,
            ttl_clamped: true,
            policy_version: 3,
            fingerprint: "fp_abc".into(),
            credential: Credential::OauthToken {
                access_token: "eyJ.x.y".into(),
                token_type: "Bearer".into(),
                audience: Some("https://api.example.test".into()),
                scopes: vec!["orders:read".into()],
                token_id: "jti_1".into(),
            },
        }
    }

    #[test]
    fn env_output_is_eval_safe() {
        assert_eq!(
            creds_env(&resp()),
            "export IDMINT_LEASE_ID='lease_1'\n\
             export IDMINT_ACCESS_TOKEN='eyJ.x.y'\n\
             export IDMINT_TOKEN_TYPE='Bearer'\n\
             export IDMINT_EXPIRES_AT='300'\n"
        );
    }

    #[test]
    fn text_output_has_lease_role_expiry_and_token() {
        let t = creds_text(&resp(), 0);
        for needle in [
            "lease_1",
            "demo-api",
            "1970-01-01T00:05:00Z (in 5m)",
            "shortened",
            "orders:read",
            "fp_abc",
        ] {
            assert!(t.contains(needle), "missing {needle}: {t}");
        }
        assert!(t.ends_with("Access token (Bearer):\neyJ.x.y\n"), "{t}");
    }

    #[test]
    fn json_output_round_trips() {
        let j = json(&resp()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["lease_id"], "lease_1");
        assert_eq!(v["credential"]["type"], "oauth_token");
        assert_eq!(v["credential"]["access_token"], "eyJ.x.y");
    }
}
