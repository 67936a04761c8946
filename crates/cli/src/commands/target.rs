//! `idmint target rotate-admin NAME`

use super::{denied, session_error, Exit, Format};
use crate::args::{GlobalArgs, TargetCommand};
use crate::connection;
use crate::output::{emit, json};
use anyhow::Result;
use idmint_proto::RotateAdminResponse;

pub async fn run(global: &GlobalArgs, format: Format, cmd: TargetCommand) -> Result<Exit> {
    let (client, source) = connection::authenticated(global)?;
    match cmd {
        TargetCommand::RotateAdmin { name } => {
            let resp = match client.rotate_admin(&name).await {
                Ok(resp) => resp,
                Err(e) if e.is_denied() => return Ok(denied(&e)),
                Err(e) => return Err(session_error(e, &source)),
            };
            match format {
                Format::Json => emit(&json(&resp)?)?,
                Format::Text => emit(&rotated_text(&resp))?,
            }
        }
    }
    Ok(Exit::Success)
}

pub fn rotated_text(resp: &RotateAdminResponse) -> String {
    format!(
        "Rotated the admin password of target {}: idmint now uses sealed credential version {}; nobody else knows it.\n",
        resp.target, resp.version
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text() {
        let resp = RotateAdminResponse {
            target: "orders-pg".into(),
            version: 4,
        };
        assert_eq!(
            rotated_text(&resp),
            "Rotated the admin password of target orders-pg: idmint now uses sealed credential version 4; nobody else knows it.\n"
        );
        let j: serde_json::Value = serde_json::from_str(&json(&resp).unwrap()).unwrap();
        assert_eq!(j, serde_json::json!({"target": "orders-pg", "version": 4}));
    }
}
