//! `idmint login`, `logout`, `whoami`

use super::{session_error, Exit, Format};
use crate::args::{GlobalArgs, LoginArgs};
use crate::connection::{self, TokenSource};
use crate::input::read_token;
use crate::output::{emit, json, key_value_table, time_with_relative};
use crate::session::SessionEntry;
use anyhow::{Context, Result};
use idmint_client::{ci, SecretString};
use idmint_core::UnixTime;
use idmint_proto::{IdentitySummary, LoginRequest, LoginResponse, WhoAmI};
use serde_json::{Map, Value};
use std::path::Path;

pub async fn login(global: &GlobalArgs, format: Format, mut args: LoginArgs) -> Result<Exit> {
    let client = connection::anonymous(global)?;
    if args.unix {
        let resp = idmint_client::unix_login(
            &args.socket,
            &idmint_proto::unix::UnixLoginRequest {
                auth: args.auth.clone(),
            },
        )
        .await
        .context("Unix-socket login failed")?;
        return finish_login(&client, format, &resp);
    }
    if let Some(name) = args.approle.clone() {
        let resp = approle_login(&client, &name, &args).await?;
        return finish_login(&client, format, &resp);
    }
    if let Some(name) = args.aws_iam.clone() {
        let req = crate::aws_iam_login::signed_request(&client, &name, &args).await?;
        let resp = client
            .aws_iam_login(&req)
            .await
            .context("AWS IAM login failed")?;
        return finish_login(&client, format, &resp);
    }
    let sso_requested = args.sso.is_some() || args.device;
    let mut access_token: Option<SecretString> = None;
    let (proof, source): (SecretString, String) = match (&args.token_file, &args.token) {
        (Some(path), _) => (read_token(path, "OIDC token")?, path.display().to_string()),
        (None, Some(_)) => (read_token(Path::new("-"), "OIDC token")?, "stdin".into()),
        (None, None) if sso_requested => sso_login(&client, &mut args, &mut access_token).await?,
        (None, None) => match ci::detect(&args.audience).await {
            Ok(found) => (found.token, found.source.to_string()),
            // Not in CI: a person at a terminal. Use SSO when the server
            // offers it; otherwise the CI error says what was looked for.
            Err(ci_error) => match client.sso_methods().await {
                Ok(m) if !m.methods.is_empty() => {
                    sso_login(&client, &mut args, &mut access_token).await?
                }
                _ => return Err(ci_error.into()),
            },
        },
    };
    if format == Format::Text {
        eprintln!(
            "Logging in to {} with the OIDC token from {source}",
            client.base_url()
        );
    }
    let resp = client
        .login(&LoginRequest {
            method: args.method,
            token: proof.expose().to_string(),
            auth: args.auth,
            access_token: access_token.as_ref().map(|t| t.expose().to_string()),
        })
        .await
        .context("login failed")?;
    finish_login(&client, format, &resp)
}

/// `--approle NAME --role-id ID --secret-id-file FILE`: the server says
/// which AppRole the role id belongs to; it must be NAME.
async fn approle_login(
    client: &idmint_client::IdmintClient,
    name: &str,
    args: &LoginArgs,
) -> Result<LoginResponse> {
    let (Some(role_id), Some(file)) = (&args.role_id, &args.secret_id_file) else {
        anyhow::bail!("--approle needs --role-id and --secret-id-file");
    };
    let secret_id = read_token(file, "AppRole secret id")?;
    let resp = client
        .approle_login(&idmint_proto::approle::AppRoleLoginRequest {
            role_id: role_id.clone(),
            secret_id: secret_id.expose().to_string(),
        })
        .await
        .context("AppRole login failed")?;
    if resp.identity.subject != name {
        // Not what was asked for: end the session rather than leave it live.
        let _ = client.with_token(resp.token.clone()).logout().await;
        anyhow::bail!(
            "the role id belongs to AppRole {:?}, not {name:?}; check --role-id (the session was revoked, not cached)",
            resp.identity.subject
        );
    }
    Ok(resp)
}

/// Caches the session and prints the result.
fn finish_login(
    client: &idmint_client::IdmintClient,
    format: Format,
    resp: &LoginResponse,
) -> Result<Exit> {
    let cache = connection::session_cache()?;
    let now = UnixTime::now().secs();
    cache.store(
        SessionEntry {
            server: client.base_url(),
            token: resp.token.clone(),
            expires_at: resp.expires_at,
            subject: resp.identity.subject.clone(),
        },
        now,
    )?;
    match format {
        Format::Json => emit(&json(resp)?)?,
        Format::Text => emit(&login_text(&client.base_url(), resp, cache.path(), now))?,
    }
    if connection::env_token().is_some() {
        eprintln!("note: IDMINT_TOKEN is set and takes precedence over this login; unset it to use the new session");
    }
    Ok(Exit::Success)
}

/// Runs the SSO flow; sets `args.auth` to the chosen method so the server
/// verifies the ID token with exactly that config.
async fn sso_login(
    client: &idmint_client::IdmintClient,
    args: &mut LoginArgs,
    access_token: &mut Option<SecretString>,
) -> Result<(SecretString, String)> {
    let methods = client
        .sso_methods()
        .await
        .context("asking the server for its SSO login methods")?;
    let name = args.sso.as_deref().filter(|n| !n.is_empty());
    let method = crate::sso::choose(&methods.methods, name)?.clone();
    let opts = crate::sso::SsoOptions {
        device: args.device,
        no_browser: args.no_browser,
        login_hint: args.login_hint.clone(),
    };
    let tokens = crate::sso::id_token(&method, &opts).await?;
    args.auth = Some(method.name.clone());
    *access_token = tokens.access_token;
    Ok((tokens.id_token, format!("SSO ({})", method.name)))
}

fn login_text(server: &str, resp: &LoginResponse, cache: &Path, now: i64) -> String {
    format!(
        "Logged in to {server} as {subject}\n{table}Session cached in {cache}\n",
        subject = resp.identity.subject,
        table = identity_table(
            &resp.identity,
            &[
                ("Session", resp.token_id.clone()),
                ("Expires", time_with_relative(resp.expires_at, now)),
                (
                    "Renewable",
                    if resp.renewable { "yes" } else { "no" }.to_string()
                ),
            ],
        ),
        cache = cache.display(),
    )
}

/// Idempotent: logging out when not logged in, or with an expired
/// session, succeeds and says so.
pub async fn logout(global: &GlobalArgs, format: Format) -> Result<Exit> {
    let client = connection::anonymous(global)?;
    let server = client.base_url();
    let (client, source) = match connection::env_token() {
        Some(token) => (client.with_token(token), TokenSource::Env),
        None => {
            let cache = connection::session_cache()?;
            match cache.get(&server)? {
                Some(s) if s.expires_at > UnixTime::now().secs() => {
                    (client.with_token(s.token), TokenSource::Cache(cache))
                }
                stale => {
                    let forgotten = stale.is_some() && cache.remove(&server)?;
                    return emit_logout(format, &server, false, forgotten);
                }
            }
        }
    };
    // A token the server no longer accepts is as good as logged out.
    let revoked = match client.logout().await {
        Ok(()) => true,
        Err(e) if e.is_unauthenticated() => false,
        Err(e) => {
            return Err(session_error(e, &source))
                .context("logout failed; the local session was kept")
        }
    };
    let forgotten = match &source {
        TokenSource::Cache(cache) => cache.remove(&server)?,
        TokenSource::Env => false,
    };
    emit_logout(format, &server, revoked, forgotten)?;
    if matches!(source, TokenSource::Env) {
        eprintln!("note: the token came from IDMINT_TOKEN, which is still set in your environment");
    }
    Ok(Exit::Success)
}

fn emit_logout(format: Format, server: &str, revoked: bool, forgotten: bool) -> Result<Exit> {
    match format {
        Format::Json => emit(&json(&serde_json::json!({
            "server": server,
            "revoked": revoked,
            "cache_entry_removed": forgotten,
        }))?)?,
        Format::Text => emit(&logout_text(server, revoked, forgotten))?,
    }
    Ok(Exit::Success)
}

fn logout_text(server: &str, revoked: bool, forgotten: bool) -> String {
    match (revoked, forgotten) {
        (true, _) => format!("Logged out of {server} (session revoked)\n"),
        (false, true) => {
            format!("Logged out of {server} (the session had already expired or been revoked)\n")
        }
        (false, false) => format!("Not logged in to {server}\n"),
    }
}

pub async fn whoami(global: &GlobalArgs, format: Format) -> Result<Exit> {
    let (client, source) = connection::authenticated(global)?;
    let me = client
        .whoami()
        .await
        .map_err(|e| session_error(e, &source))?;
    match format {
        Format::Json => emit(&json(&me)?)?,
        Format::Text => emit(&whoami_text(&me, UnixTime::now().secs()))?,
    }
    Ok(Exit::Success)
}

fn whoami_text(me: &WhoAmI, now: i64) -> String {
    identity_table(
        &me.identity,
        &[
            ("Session", me.token_id.clone()),
            ("Issued", UnixTime(me.issued_at).rfc3339()),
            ("Expires", time_with_relative(me.expires_at, now)),
        ],
    )
}

/// Identity facts, then `extra` rows, then one row per verified claim.
fn identity_table(id: &IdentitySummary, extra: &[(&str, String)]) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("Subject", id.subject.clone()),
        ("Kind", id.kind.clone()),
        ("Issuer", id.issuer.clone()),
        ("Method", format!("{} (auth {})", id.method, id.auth)),
    ];
    rows.extend(extra.iter().cloned());
    let claims = claim_rows(&id.attributes);
    rows.extend(claims.iter().map(|(k, v)| (k.as_str(), v.clone())));
    key_value_table(&rows)
}

/// `claim.<name>` rows; strings unquoted, everything else as compact JSON.
fn claim_rows(attributes: &Map<String, Value>) -> Vec<(String, String)> {
    attributes
        .iter()
        .map(|(k, v)| {
            let shown = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (format!("claim.{k}"), shown)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> IdentitySummary {
        IdentitySummary {
            kind: "ci".into(),
            subject: "repo:acme/app:ref:refs/heads/main".into(),
            issuer: "http://127.0.0.1:1/demo-idp".into(),
            method: "oidc".into(),
            auth: "demo".into(),
            attributes: serde_json::json!({"repository": "acme/app", "run_attempt": 2})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        }
    }

    #[test]
    fn login_text_shows_identity_but_not_the_token() {
        let resp = LoginResponse {
            token: "idm_SECRET".into(),
            token_id: "tok_1".into(),
            expires_at: 300,
            renewable: false,
            identity: identity(),
        };
        let t = login_text("http://h", &resp, Path::new("/c/session.json"), 0);
        assert!(
            t.starts_with("Logged in to http://h as repo:acme/app:ref:refs/heads/main\n"),
            "{t}"
        );
        assert!(
            t.contains("tok_1") && t.contains("(in 5m)") && t.contains("/c/session.json"),
            "{t}"
        );
        assert!(
            t.contains("claim.repository") && t.contains("acme/app"),
            "{t}"
        );
        assert!(!t.contains("idm_SECRET"), "{t}");
    }

    #[test]
    fn logout_messages() {
        assert_eq!(
            logout_text("http://h", true, true),
            "Logged out of http://h (session revoked)\n"
        );
        assert!(logout_text("http://h", false, true).contains("already expired"));
        assert_eq!(
            logout_text("http://h", false, false),
            "Not logged in to http://h\n"
        );
    }

    #[test]
    fn claims_render_strings_bare_and_others_as_json() {
        let rows = claim_rows(&identity().attributes);
        assert_eq!(
            rows,
            vec![
                ("claim.repository".to_string(), "acme/app".to_string()),
                ("claim.run_attempt".to_string(), "2".to_string()),
            ]
        );
    }
}
