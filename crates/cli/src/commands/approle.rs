//! `idmint approle secret-id NAME`

use super::{session_error, Exit, Format};
use crate::args::{ApproleCommand, GlobalArgs};
use crate::connection;
use crate::output::{emit, json};
use anyhow::{Context, Result};

pub async fn run(global: &GlobalArgs, format: Format, cmd: ApproleCommand) -> Result<Exit> {
    match cmd {
        ApproleCommand::SecretId { name } => {
            let (client, source) = connection::authenticated(global)?;
            let resp = client
                .approle_secret_id(&name)
                .await
                .map_err(|e| session_error(e, &source))
                .with_context(|| format!("creating a secret id for AppRole {name:?} failed"))?;
            match format {
                Format::Json => emit(&json(&resp)?)?,
                Format::Text => {
                    // The secret id alone on stdout (for `> file`); the
                    // rest on stderr for the human.
                    eprintln!(
                        "Secret id for AppRole {} (accessor {}), valid until {}, {} use(s){}",
                        resp.approle,
                        resp.secret_id_accessor,
                        idmint_core::UnixTime(resp.expires_at).rfc3339(),
                        if resp.secret_id_num_uses == 0 {
                            "unlimited".to_string()
                        } else {
                            resp.secret_id_num_uses.to_string()
                        },
                        if resp.bound_cidrs.is_empty() {
                            String::new()
                        } else {
                            format!(", from {}", resp.bound_cidrs.join(", "))
                        }
                    );
                    emit(&format!("{}\n", resp.secret_id))?;
                }
            }
            Ok(Exit::Success)
        }
    }
}
