//! `idmint demo`: the whole flow, step by step, against a dev server
//! started in this process.
//!
//! Uses the client library directly and never the session cache, so the
//! demo leaves nothing behind but what `--keep-running` asks for.

use super::{Exit, Format};
use crate::args::DemoArgs;
use crate::jwt::unverified_claims;
use crate::output::{emit, list_table};
use anyhow::{anyhow, bail, Context, Result};
use idmint_client::{
    ClientOptions, DemoTokenRequest, IdmintClient, LeaseQuery, SecretString, TokenExchangeParams,
    TokenType,
};
use idmint_core::UnixTime;
use idmint_proto::{Credential, CredsRequest, LoginRequest};
use idmint_server::{ServeOptions, ServerInfo};
use serde_json::{json, Map, Value};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The sample policy's role, audience and scope (see `idmint server --dev`).
const ROLE: &str = "demo-api";
const AUDIENCE: &str = "https://api.example.test";
const SCOPE: &str = "orders:read";
const REPOSITORY: &str = "acme/app";
const GIT_REF: &str = "refs/heads/main";

/// A dev server that has not bound its port by then is stuck.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);

const STEPS: usize = 8;

pub async fn run(format: Format, args: DemoArgs) -> Result<Exit> {
    if format != Format::Text {
        bail!("`idmint demo` prints a walkthrough for people; it has no JSON output");
    }
    let data_dir = tempfile::Builder::new()
        .prefix("idmint-demo-")
        .tempdir()
        .context("creating a temporary directory for the demo server")?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let opts = ServeOptions {
        config: None,
        dev: true,
        data_dir: Some(data_dir.path().to_path_buf()),
        listen: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
        store: None,
    };
    let mut server = tokio::spawn(idmint_server::serve(opts, Some(tx)));

    emit("Starting a dev server (SQLite, generated keys, demo IdP, sample policy)...\n")?;
    let info = match tokio::time::timeout(STARTUP_DEADLINE, rx).await {
        Ok(Ok(info)) => info,
        Ok(Err(_)) => {
            // The server dropped the sender: it failed before binding.
            let why = match (&mut server).await {
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(())) => "it stopped right away".to_string(),
                Err(e) => e.to_string(),
            };
            bail!("the dev server did not start: {why}");
        }
        Err(_) => {
            server.abort();
            bail!(
                "the dev server did not start within {}s",
                STARTUP_DEADLINE.as_secs()
            );
        }
    };
    emit(&format!(
        "  listening on {}, data in {}\n",
        info.base_url,
        info.data_dir.display()
    ))?;

    let mut demo = Demo::new(&info)?;
    let outcome = demo.run_steps().await;
    let exit = match &outcome {
        Ok(()) => {
            emit(&format!("\nAll {STEPS} steps succeeded.\n"))?;
            Exit::Success
        }
        Err((step, e)) => {
            eprintln!("\nStep {step} failed: {e:#}");
            Exit::Problems
        }
    };

    if args.keep_running {
        emit(&keep_running_text(&info))?;
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("the dev server stopped with an error: {e}"),
            Err(e) => eprintln!("the dev server task failed: {e}"),
        }
    } else {
        server.abort();
        // Wait for the abort so the server's files are closed before the
        // temporary directory is removed.
        let _ = server.await;
    }
    drop(data_dir);
    Ok(exit)
}

fn keep_running_text(info: &ServerInfo) -> String {
    let audit = info
        .audit_file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "AUDIT_FILE".into());
    format!(
        "\nThe dev server keeps running at {url} until you press Ctrl-C (its data directory is removed then).\n\
         In another shell:\n  \
           export IDMINT_ADDR={url}\n  \
           idmint dev token | idmint login --token -\n  \
           idmint whoami\n  \
           idmint creds {ROLE} --scope {SCOPE}\n  \
           idmint dev token --claim repository=acme/other | idmint login --token -   # then creds: denied\n  \
           idmint leases list\n  \
           idmint audit verify {audit}\n",
        url = info.base_url
    )
}

/// What the steps hand each other.
struct Demo {
    anonymous: IdmintClient,
    audit_file: Option<std::path::PathBuf>,
    ci_token: Option<SecretString>,
    session: Option<IdmintClient>,
    lease_id: Option<String>,
}

/// Numbered step failures: which step, and why.
type StepResult = std::result::Result<(), (usize, anyhow::Error)>;

impl Demo {
    fn new(info: &ServerInfo) -> Result<Self> {
        Ok(Self {
            anonymous: IdmintClient::new(&info.base_url, ClientOptions::default())?,
            audit_file: info.audit_file.clone(),
            ci_token: None,
            session: None,
            lease_id: None,
        })
    }

    async fn run_steps(&mut self) -> StepResult {
        let titles = [
            "Get a CI token from the demo IdP (what GitHub Actions gives a job)",
            "Log in with it: idmint verifies the token and returns a session",
            "Ask who we are (whoami)",
            "Get a credential for role demo-api (policy allows acme/app on main)",
            "Exchange the CI token directly for an API token (RFC 8693, no session)",
            "Try the same from another repository: policy denies it",
            "List our leases, then revoke the one from step 4",
            "Verify the audit log and trace the lease back to the login",
        ];
        for (i, title) in titles.iter().enumerate() {
            let n = i + 1;
            emit(&format!("\n[{n}/{STEPS}] {title}\n")).map_err(|e| (n, e))?;
            let result = match n {
                1 => self.ci_token().await,
                2 => self.login().await,
                3 => self.whoami().await,
                4 => self.creds().await,
                5 => self.token_exchange().await,
                6 => self.denied().await,
                7 => self.leases().await,
                _ => self.audit().await,
            };
            result.map_err(|e| (n, e))?;
        }
        Ok(())
    }

    fn session(&self) -> Result<&IdmintClient> {
        self.session
            .as_ref()
            .ok_or_else(|| anyhow!("no session (step 2 did not run)"))
    }

    async fn ci_token(&mut self) -> Result<()> {
        let token = self
            .anonymous
            .demo_token(&ci_token_request(REPOSITORY))
            .await?;
        let claims = unverified_claims(&token)?;
        say(&format!(
            "  got a JWT signed by the demo IdP; its claims:\n{}",
            indent(
                &pick(
                    &claims,
                    &[
                        "iss",
                        "sub",
                        "aud",
                        "repository",
                        "ref",
                        "event_name",
                        "exp"
                    ]
                ),
                6
            )
        ))?;
        self.ci_token = Some(SecretString::new(token));
        Ok(())
    }

    async fn login(&mut self) -> Result<()> {
        let proof = self
            .ci_token
            .as_ref()
            .ok_or_else(|| anyhow!("no CI token (step 1 did not run)"))?;
        let resp = self
            .anonymous
            .login(&LoginRequest {
                method: "oidc".into(),
                token: proof.expose().to_string(),
                auth: None,
                access_token: None,
            })
            .await?;
        say(&format!(
            "  session {} for {} ({}, auth config {:?}), expires {}\n  (the session token itself starts with idm_ and is sent as a Bearer token)",
            resp.token_id,
            resp.identity.subject,
            resp.identity.kind,
            resp.identity.auth,
            UnixTime(resp.expires_at).rfc3339()
        ))?;
        self.session = Some(self.anonymous.with_token(resp.token));
        Ok(())
    }

    async fn whoami(&mut self) -> Result<()> {
        let me = self.session()?.whoami().await?;
        say(&format!(
            "  subject {}\n  issuer  {}\n  verified claims policy can use: {}",
            me.identity.subject,
            me.identity.issuer,
            me.identity
                .attributes
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))?;
        Ok(())
    }

    async fn creds(&mut self) -> Result<()> {
        let req = CredsRequest {
            ttl: Some("5m".into()),
            scopes: Some(vec![SCOPE.into()]),
            audience: Some(AUDIENCE.into()),
            csr: None,
        };
        let resp = self.session()?.creds(ROLE, &req).await?;
        let Credential::OauthToken { access_token, .. } = &resp.credential else {
            anyhow::bail!("role {ROLE} minted something other than a token");
        };
        let claims = unverified_claims(access_token).context("decoding the minted token")?;
        say(&format!(
            "  lease {} for {}s (policy v{}), audit fingerprint {}\n  the minted token's claims:\n{}",
            resp.lease_id,
            resp.ttl_seconds,
            resp.policy_version,
            resp.fingerprint,
            indent(&claims, 6)
        ))?;
        self.lease_id = Some(resp.lease_id);
        Ok(())
    }

    async fn token_exchange(&mut self) -> Result<()> {
        let proof = self
            .ci_token
            .clone()
            .ok_or_else(|| anyhow!("no CI token (step 1 did not run)"))?;
        let mut params = TokenExchangeParams::new(proof, TokenType::Jwt);
        params.audience = Some(AUDIENCE.into());
        params.scopes = vec![SCOPE.into()];
        params.role = Some(ROLE.into());
        let resp = self.anonymous.token_exchange(&params).await?;
        let claims =
            unverified_claims(&resp.access_token).context("decoding the exchanged token")?;
        say(&format!(
            "  {} token, expires in {}s; claims:\n{}",
            resp.token_type,
            resp.expires_in,
            indent(
                &pick(&claims, &["iss", "sub", "aud", "scope", "exp", "jti"]),
                6
            )
        ))?;
        Ok(())
    }

    async fn denied(&mut self) -> Result<()> {
        let other = self
            .anonymous
            .demo_token(&ci_token_request("acme/other"))
            .await?;
        let login = self
            .anonymous
            .login(&LoginRequest {
                method: "oidc".into(),
                token: other,
                auth: None,
                access_token: None,
            })
            .await
            .context(
                "logging in as acme/other (authentication should succeed; only policy denies)",
            )?;
        say(&format!(
            "  logged in as {} (authentication succeeds)",
            login.identity.subject
        ))?;
        let client = self.anonymous.with_token(login.token);
        match client.creds(ROLE, &CredsRequest::default()).await {
            Ok(resp) => bail!("expected a denial, but got lease {}", resp.lease_id),
            Err(e) if e.is_denied() => {
                say(&format!("  denied, as expected: {e}"))?;
                Ok(())
            }
            Err(e) => Err(anyhow::Error::new(e).context("expected a policy denial")),
        }
    }

    async fn leases(&mut self) -> Result<()> {
        let session = self.session()?;
        let list = session.leases(&LeaseQuery::default()).await?;
        let now = UnixTime::now().secs();
        let rows = list
            .leases
            .iter()
            .map(|l| {
                vec![
                    l.id.clone(),
                    l.role.clone(),
                    l.state.clone(),
                    crate::output::time_with_relative(l.expires_at, now),
                ]
            })
            .collect();
        say(&indent_text(
            &list_table(&["ID", "ROLE", "STATE", "EXPIRES"], rows),
            2,
        ))?;
        let id = self
            .lease_id
            .as_deref()
            .ok_or_else(|| anyhow!("no lease (step 4 did not run)"))?;
        if !list.leases.iter().any(|l| l.id == id) {
            bail!("lease {id} from step 4 is not in the list");
        }
        if list.leases.len() > 1 {
            say("  (step 5's token exchange created a lease too)")?;
        }
        let revoked = session.revoke_lease(id).await?;
        say(&format!(
            "  revoked {}: state is now {}",
            revoked.id, revoked.state
        ))?;
        Ok(())
    }

    async fn audit(&mut self) -> Result<()> {
        let file = self
            .audit_file
            .clone()
            .ok_or_else(|| anyhow!("the dev server reported no audit file"))?;
        let report = idmint_audit::verify::verify_file(&file, None)
            .with_context(|| format!("opening {}", file.display()))?;
        if !report.is_ok() {
            bail!(
                "the audit log has problems:\n{}",
                super::audit::report_text(&file, &report)
            );
        }
        say(&format!(
            "  {}: {} events, hash chain intact (`idmint audit verify {}`)",
            file.display(),
            report.events,
            file.display()
        ))?;
        let id = self
            .lease_id
            .as_deref()
            .ok_or_else(|| anyhow!("no lease (step 4 did not run)"))?;
        let events = idmint_audit::trace::trace_file(&file, id)?;
        if events.is_empty() {
            bail!("no audit event mentions lease {id}");
        }
        say(&format!(
            "  trace of lease {id}:\n{}",
            indent_text(&idmint_audit::trace::render(&events), 4)
        ))?;
        Ok(())
    }
}

/// The claims of a GitHub Actions job on `repository`'s main branch.
pub(crate) fn ci_token_request(repository: &str) -> DemoTokenRequest {
    let mut claims = Map::new();
    for (k, v) in [
        ("repository", repository),
        ("repository_owner", "acme"),
        ("ref", GIT_REF),
        ("ref_type", "branch"),
        ("workflow", "deploy"),
        ("event_name", "push"),
        ("actor", "octocat"),
    ] {
        claims.insert(k.into(), Value::String(v.into()));
    }
    DemoTokenRequest {
        subject: Some(format!("repo:{repository}:ref:{GIT_REF}")),
        audience: None,
        claims,
        ttl_seconds: Some(600),
    }
}

fn say(text: &str) -> Result<()> {
    emit(&format!("{}\n", text.trim_end()))
}

/// Only `keys` of a claims object, in that order, for a short display.
fn pick(claims: &Value, keys: &[&str]) -> Value {
    let mut out = Map::new();
    for k in keys {
        if let Some(v) = claims.get(*k) {
            out.insert((*k).to_string(), v.clone());
        }
    }
    Value::Object(out)
}

fn indent(v: &Value, by: usize) -> String {
    let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| json!(null).to_string());
    indent_text(&text, by)
}

fn indent_text(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines()
        .map(|l| {
            if l.trim().is_empty() {
                "\n".to_string()
            } else {
                format!("{pad}{l}\n")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_token_request_looks_like_github_actions() {
        let r = ci_token_request("acme/app");
        assert_eq!(
            r.subject.as_deref(),
            Some("repo:acme/app:ref:refs/heads/main")
        );
        assert_eq!(r.claims["repository"], "acme/app");
        assert_eq!(r.claims["ref"], "refs/heads/main");
        assert_eq!(
            ci_token_request("acme/other").claims["repository"],
            "acme/other"
        );
    }

    #[test]
    fn helpers() {
        let v = json!({"b": 1, "a": 2, "c": 3});
        assert_eq!(pick(&v, &["a", "b", "z"]), json!({"a": 2, "b": 1}));
        assert_eq!(indent_text("x\n\ny", 2), "  x\n\n  y\n");
    }
}
