//! `idmint creds ROLE`

use super::{session_error, Exit};
use crate::args::{CredsArgs, GlobalArgs, OutputFormat};
use crate::connection::{self, TokenSource};
use crate::credential_env;
use crate::output::{emit, env_exports, json, key_value_table, time_with_relative};
use anyhow::{bail, Result};
use idmint_client::IdmintClient;
use idmint_core::UnixTime;
use idmint_proto::{Credential, CredsRequest, CredsResponse};

pub async fn run(global: &GlobalArgs, args: CredsArgs) -> Result<Exit> {
    let (client, source) = connection::authenticated(global)?;
    let csr = match &args.csr {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read the CSR {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let req = CredsRequest {
        ttl: args.ttl,
        scopes: (!args.scopes.is_empty()).then_some(args.scopes),
        audience: args.audience,
        csr,
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
        OutputFormat::Env => creds_env(&resp)?,
        OutputFormat::Text => creds_text(&resp, UnixTime::now().secs()),
        OutputFormat::Uri => match creds_uri(&resp) {
            Ok(uri) => uri,
            Err(e) => return Err(discard(&client, &source, &resp, e).await),
        },
    };
    emit(&text)?;
    Ok(Exit::Success)
}

/// A credential was issued but cannot be shown in the requested format:
/// revoke its lease (nobody will ever use it) and say so alongside `why`.
async fn discard(
    client: &IdmintClient,
    source: &TokenSource,
    resp: &CredsResponse,
    why: anyhow::Error,
) -> anyhow::Error {
    let outcome = match client.revoke_lease(&resp.lease_id).await {
        Ok(_) => format!("lease {} was revoked", resp.lease_id),
        Err(e) => format!(
            "revoking lease {} failed ({:#}); it expires at {}",
            resp.lease_id,
            session_error(e, source),
            UnixTime(resp.expires_at).rfc3339()
        ),
    };
    anyhow::anyhow!("{why:#}; {outcome}")
}

/// A table of the lease, then the secret parts on their own lines so they
/// can be copied whole (a JWT or URI in a table cell would wrap or stretch
/// the table).
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
            host,
            port,
            database,
        } => {
            rows.push(("Engine", engine.clone()));
            rows.push(("Username", username.clone()));
            rows.push(("Host", host.clone()));
            rows.push(("Port", port.to_string()));
            rows.push(("Database", database.clone().unwrap_or_else(|| "-".into())));
            format!("Password:\n{password}\nConnection URI:\n{uri}\n")
        }
        Credential::Aws {
            access_key_id,
            secret_access_key,
            session_token,
            region,
            mode,
            arn,
            ..
        } => {
            rows.push(("Mode", mode.clone()));
            rows.push(("Region", region.clone().unwrap_or_else(|| "-".into())));
            rows.push(("ARN", arn.clone().unwrap_or_else(|| "-".into())));
            rows.push(("Access key id", access_key_id.clone()));
            let token = session_token
                .as_ref()
                .map(|t| format!("Session token:\n{t}\n"))
                .unwrap_or_default();
            format!("Secret access key:\n{secret_access_key}\n{token}")
        }
        Credential::AwsWebIdentity {
            token,
            role_arn,
            role_session_name,
            region,
            token_id,
        } => {
            rows.push(("Role ARN", role_arn.clone()));
            rows.push(("Session name", role_session_name.clone()));
            rows.push(("Region", region.clone().unwrap_or_else(|| "-".into())));
            rows.push(("Token id", token_id.clone()));
            format!("Web identity token (for AssumeRoleWithWebIdentity):\n{token}\n")
        }
        Credential::AzureClientSecret {
            tenant_id,
            client_id,
            client_secret,
            key_id,
            ..
        } => {
            rows.push(("Tenant", tenant_id.clone()));
            rows.push(("Client id", client_id.clone()));
            rows.push(("Secret key id", key_id.clone()));
            format!("Client secret:\n{client_secret}\n")
        }
        Credential::AzureClientAssertion {
            tenant_id,
            client_id,
            assertion,
            token_id,
        } => {
            rows.push(("Tenant", tenant_id.clone()));
            rows.push(("Client id", client_id.clone()));
            rows.push(("Token id", token_id.clone()));
            format!("Client assertion:\n{assertion}\n")
        }
        Credential::X509Svid {
            certificate_pem,
            bundle_pem,
            spiffe_id,
            serial,
            private_key_pem,
            ..
        } => {
            rows.push(("SPIFFE ID", spiffe_id.clone()));
            rows.push(("Serial", serial.clone()));
            let key = private_key_pem
                .as_ref()
                .map(|k| format!("Private key:\n{k}"))
                .unwrap_or_default();
            format!("Certificate:\n{certificate_pem}Trust bundle:\n{bundle_pem}{key}")
        }
        Credential::StaticSecret { name, value } => {
            rows.push(("Secret", name.clone()));
            format!("Value:\n{value}\n")
        }
    };
    format!("{}\n{secret}", key_value_table(&rows))
}

/// `export` lines for `eval` (see [`credential_env::exported`]).
pub fn creds_env(resp: &CredsResponse) -> Result<String> {
    let vars = credential_env::exported(resp)?;
    let pairs: Vec<(&str, &str)> = vars.iter().map(|v| (v.name, v.value.expose())).collect();
    Ok(env_exports(&pairs))
}

/// Only the connection URI and a newline, for `psql "$(idmint creds … -o
/// uri)"` (command substitution drops the newline).
pub fn creds_uri(resp: &CredsResponse) -> Result<String> {
    match &resp.credential {
        Credential::DatabaseUser { uri, .. } => {
            if uri.contains(['\n', '\r', '\0']) {
                bail!("the connection URI from the server contains a line break or NUL byte; use `--output json` to see it");
            }
            Ok(format!("{uri}\n"))
        }
        Credential::OauthToken { .. }
        | Credential::Aws { .. }
        | Credential::AwsWebIdentity { .. }
        | Credential::AzureClientSecret { .. }
        | Credential::AzureClientAssertion { .. }
        | Credential::X509Svid { .. }
        | Credential::StaticSecret { .. } => bail!(
            "`--output uri` only applies to database credentials, and role {} issued another kind of credential; use `--output env` or `--output json`",
            resp.role
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential_env::tests::{db_resp, oauth_resp};

    #[test]
    fn env_output_is_eval_safe() {
        assert_eq!(
            creds_env(&oauth_resp()).unwrap(),
            "export IDMINT_LEASE_ID='lease_1'\n\
             export IDMINT_ACCESS_TOKEN='eyJ.x.y'\n\
             export IDMINT_TOKEN_TYPE='Bearer'\n\
             export IDMINT_EXPIRES_AT='300'\n"
        );
    }

    #[test]
    fn env_output_for_a_database_user() {
        assert_eq!(
            creds_env(&db_resp("postgres", "v_app", "pw", Some("orders"))).unwrap(),
            "export IDMINT_LEASE_ID='lease_db1'\n\
             export DATABASE_URL='postgres://u:p@db.internal:5432/orders'\n\
             export IDMINT_USERNAME='v_app'\n\
             export IDMINT_PASSWORD='pw'\n\
             export IDMINT_EXPIRES_AT='900'\n"
        );
    }

    /// Values that would run commands or end the quoting if they were not
    /// quoted right.
    const HOSTILE: &[&str] = &[
        "it's",
        "'; touch /tmp/idmint-pwned; '",
        "$(touch /tmp/idmint-pwned)",
        "`id`",
        "a\"b\\c",
        "line1\nline2",
        "tab\there",
        "$HOME ${PATH} !! * ?",
        "ünïcødé ✓",
        "'",
        "''",
        "\\'",
        "-n",
        "",
    ];

    #[test]
    fn env_output_quotes_hostile_usernames_and_passwords() {
        for value in HOSTILE {
            let out = creds_env(&db_resp("postgres", value, value, None)).unwrap();
            // Every line is one complete `export NAME='…'` statement: the
            // value is in single quotes, and a quote inside it is closed,
            // escaped and reopened.
            let quoted = format!("'{}'", value.replace('\'', r"'\''"));
            assert!(
                out.contains(&format!("export IDMINT_USERNAME={quoted}\n")),
                "{value:?}: {out}"
            );
            assert!(
                out.contains(&format!("export IDMINT_PASSWORD={quoted}\n")),
                "{value:?}: {out}"
            );
        }
    }

    /// The real test of quoting: a POSIX shell evaluates the output and the
    /// variables hold exactly the original bytes.
    #[test]
    fn env_output_round_trips_through_a_real_shell() {
        for value in HOSTILE {
            let out = creds_env(&db_resp("postgres", value, value, None)).unwrap();
            let shell = std::process::Command::new("sh")
                .arg("-c")
                .arg(r#"eval "$1" && printf '%s\0%s' "$IDMINT_USERNAME" "$IDMINT_PASSWORD""#)
                .arg("sh")
                .arg(&out)
                .output()
                .unwrap();
            assert!(shell.status.success(), "{value:?}: {shell:?}");
            assert_eq!(
                String::from_utf8(shell.stdout).unwrap(),
                format!("{value}\0{value}"),
                "{value:?}"
            );
        }
    }

    #[test]
    fn text_output_has_lease_role_expiry_and_token() {
        let t = creds_text(&oauth_resp(), 0);
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
    fn text_output_for_a_database_user() {
        let t = creds_text(&db_resp("postgres", "v_app", "s3cr3t", Some("orders")), 0);
        let row = |k: &str, v: &str| {
            t.lines()
                .any(|l| l.contains(k) && l.contains(v))
                .then_some(())
                .ok_or_else(|| format!("no row {k} = {v}: {t}"))
        };
        for (k, v) in [
            ("Lease", "lease_db1"),
            ("Engine", "postgres"),
            ("Username", "v_app"),
            ("Host", "db.internal"),
            ("Port", "5432"),
            ("Database", "orders"),
            ("Expires", "1970-01-01T00:15:00Z (in 15m)"),
        ] {
            row(k, v).unwrap();
        }
        assert!(
            t.ends_with(
                "Password:\ns3cr3t\nConnection URI:\npostgres://u:p@db.internal:5432/orders\n"
            ),
            "{t}"
        );
        let t = creds_text(&db_resp("redis", "v_app", "pw", None), 0);
        assert!(
            t.lines().any(|l| l.contains("Database") && l.contains('-')),
            "{t}"
        );
    }

    #[test]
    fn aws_keys_in_env_and_text_output() {
        use crate::credential_env::tests::aws_resp;
        let env = creds_env(&aws_resp(Some("to'ken"))).unwrap();
        assert!(
            env.contains("export AWS_ACCESS_KEY_ID='ASIAEXAMPLE'\n"),
            "{env}"
        );
        assert!(
            env.contains("export AWS_SESSION_TOKEN='to'\\''ken'\n"),
            "{env}"
        );
        let t = creds_text(&aws_resp(Some("tok")), 0);
        assert!(
            t.lines()
                .any(|l| l.contains("Mode") && l.contains("assumed_role")),
            "{t}"
        );
        assert!(
            t.ends_with("Secret access key:\nse/cr+et\nSession token:\ntok\n"),
            "{t}"
        );
        assert!(creds_uri(&aws_resp(None)).is_err());
    }

    #[test]
    fn uri_output() {
        assert_eq!(
            creds_uri(&db_resp("postgres", "v_app", "pw", None)).unwrap(),
            "postgres://u:p@db.internal:5432/orders\n"
        );
        let e = creds_uri(&oauth_resp()).unwrap_err().to_string();
        assert!(
            e.contains("only applies to database credentials") && e.contains("demo-api"),
            "{e}"
        );
        assert!(!e.contains("eyJ.x.y"), "{e}");
        let mut resp = db_resp("postgres", "v_app", "pw", None);
        if let Credential::DatabaseUser { uri, .. } = &mut resp.credential {
            *uri = "postgres://x\nrm -rf /".into();
        }
        assert!(creds_uri(&resp).is_err());
    }

    #[test]
    fn json_output_round_trips() {
        let j = json(&oauth_resp()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["lease_id"], "lease_1");
        assert_eq!(v["credential"]["type"], "oauth_token");
        assert_eq!(v["credential"]["access_token"], "eyJ.x.y");
        let j = json(&db_resp("mysql", "v_app", "pw", Some("orders"))).unwrap();
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["credential"]["type"], "database_user");
        assert_eq!(v["credential"]["password"], "pw");
        assert_eq!(v["credential"]["port"], 5432);
    }
}
