//! `idmint token-exchange`

use super::Exit;
use crate::args::{GlobalArgs, OutputFormat, TokenExchangeArgs};
use crate::connection;
use crate::input::read_token;
use crate::output::{emit, env_exports, json};
use anyhow::{bail, Result};
use idmint_client::TokenExchangeParams;
use idmint_proto::TokenExchangeResponse;
use std::path::Path;
use std::time::Duration;

const NO_URI_OUTPUT: &str = "`--output uri` only applies to database credentials from `idmint creds`; token-exchange mints access tokens: use `--output env` or `--output json`";

pub async fn run(global: &GlobalArgs, args: TokenExchangeArgs) -> Result<Exit> {
    // Checked before a token is minted for nothing.
    if global.output == OutputFormat::Uri {
        bail!(NO_URI_OUTPUT);
    }
    let stdin = Path::new("-");
    if args.subject_token_file == stdin && args.actor_token_file.as_deref() == Some(stdin) {
        bail!("only one of --subject-token-file and --actor-token-file can read stdin (`-`)");
    }
    let client = connection::anonymous(global)?;
    let mut params = TokenExchangeParams::new(
        read_token(&args.subject_token_file, "subject token")?,
        args.subject_token_type,
    );
    params.audience = Some(args.audience);
    params.scopes = args.scopes;
    params.role = args.role;
    params.resource = args.resource;
    if let Some(path) = &args.actor_token_file {
        params.actor_token = Some(read_token(path, "actor token")?);
        params.actor_token_type = Some(args.actor_token_type);
    }
    let resp = match client.token_exchange(&params).await {
        Ok(r) => r,
        Err(e) if e.is_denied() => {
            eprintln!("denied: {e}");
            return Ok(Exit::Denied);
        }
        Err(e) => return Err(e.into()),
    };
    let text = match global.output {
        OutputFormat::Json => json(&resp)?,
        OutputFormat::Env => exchange_env(&resp),
        OutputFormat::Text => exchange_text(&resp),
        OutputFormat::Uri => bail!(NO_URI_OUTPUT),
    };
    emit(&text)?;
    Ok(Exit::Success)
}

pub fn exchange_text(resp: &TokenExchangeResponse) -> String {
    let scope = resp
        .scope
        .as_deref()
        .map(|s| format!(", scope {s}"))
        .unwrap_or_default();
    format!(
        "Access token ({}, expires in {}{scope}):\n{}\n",
        resp.token_type,
        humantime::format_duration(Duration::from_secs(resp.expires_in)),
        resp.access_token
    )
}

pub fn exchange_env(resp: &TokenExchangeResponse) -> String {
    let expires_in = resp.expires_in.to_string();
    env_exports(&[
        ("IDMINT_ACCESS_TOKEN", &resp.access_token),
        ("IDMINT_TOKEN_TYPE", &resp.token_type),
        ("IDMINT_EXPIRES_IN", &expires_in),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp() -> TokenExchangeResponse {
        TokenExchangeResponse {
            access_token: "eyJ.a.b".into(),
            issued_token_type: idmint_proto::token_types::ACCESS_TOKEN.into(),
            token_type: "Bearer".into(),
            expires_in: 300,
            scope: Some("orders:read".into()),
        }
    }

    #[test]
    fn formats() {
        assert_eq!(
            exchange_text(&resp()),
            "Access token (Bearer, expires in 5m, scope orders:read):\neyJ.a.b\n"
        );
        assert_eq!(
            exchange_env(&resp()),
            "export IDMINT_ACCESS_TOKEN='eyJ.a.b'\nexport IDMINT_TOKEN_TYPE='Bearer'\nexport IDMINT_EXPIRES_IN='300'\n"
        );
    }
}
