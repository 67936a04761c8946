//! `idmint dev token`

use super::{Exit, Format};
use crate::args::{DevCommand, DevTokenArgs, GlobalArgs};
use crate::connection;
use crate::output::{emit, json};
use anyhow::{bail, Context, Result};
use idmint_client::DemoTokenRequest;
use serde_json::{json, Map, Value};

pub async fn run(global: &GlobalArgs, format: Format, cmd: DevCommand) -> Result<Exit> {
    match cmd {
        DevCommand::Token(args) => token(global, format, args).await,
    }
}

async fn token(global: &GlobalArgs, format: Format, args: DevTokenArgs) -> Result<Exit> {
    let client = connection::anonymous(global)?;
    let req = demo_request(args)?;
    let token = client
        .demo_token(&req)
        .await
        .context("getting a token from the demo IdP")?;
    match format {
        // Just the token, so it pipes into `idmint login --token -`.
        Format::Text => emit(&format!("{token}\n"))?,
        Format::Json => emit(&json(&json!({"token": token}))?)?,
    }
    Ok(Exit::Success)
}

/// `--claims-json` first, then each `--claim` on top.
fn demo_request(args: DevTokenArgs) -> Result<DemoTokenRequest> {
    let mut claims = match &args.claims_json {
        Some(text) => {
            match serde_json::from_str::<Value>(text).context("--claims-json is not JSON")? {
                Value::Object(map) => map,
                _ => bail!("--claims-json must be a JSON object, e.g. '{{\"run_attempt\": 2}}'"),
            }
        }
        None => Map::new(),
    };
    for (k, v) in args.claims {
        claims.insert(k, Value::String(v));
    }
    Ok(DemoTokenRequest {
        subject: args.subject,
        audience: args.audience,
        claims,
        ttl_seconds: args.ttl_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_flags_override_json() {
        let req = demo_request(DevTokenArgs {
            subject: None,
            claims: vec![("repository".into(), "acme/other".into())],
            claims_json: Some(r#"{"repository": "x", "run_attempt": 2}"#.into()),
            audience: None,
            ttl_seconds: Some(60),
        })
        .unwrap();
        assert_eq!(
            Value::Object(req.claims),
            json!({"repository": "acme/other", "run_attempt": 2})
        );
        assert_eq!(req.ttl_seconds, Some(60));
        let e = demo_request(DevTokenArgs {
            subject: None,
            claims: vec![],
            claims_json: Some("[1]".into()),
            audience: None,
            ttl_seconds: None,
        })
        .unwrap_err();
        assert!(e.to_string().contains("JSON object"), "{e}");
    }
}
