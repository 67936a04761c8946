//! `idmint login --sso` against the real OIDC provider of the test kit:
//! the browser (authorization code + PKCE, loopback redirect) played by a
//! cookie-jar HTTP client, the device flow approved the same way, a forged
//! `state` and a replayed code refused, and groups visible in `whoami` and
//! usable by Cedar.

use crate::common;

use common::bin;
use idmint_testkit::{Cli, IdmintServer, Idp, OidcSpec, ServerSpec};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a CLI login may take in these tests.
const LOGIN_LIMIT: Duration = Duration::from_secs(60);

/// Admin endpoints for members of the IdP group `admins`.
const GROUP_POLICY: &str = r#"
@id("sso-admins")
permit (principal, action == Action::"admin", resource)
when { principal.kind == "human" && principal.groups.contains("admins") };
"#;

async fn sso_server(idp: &Idp) -> anyhow::Result<IdmintServer> {
    let mut spec = ServerSpec::with_oidc(vec![OidcSpec::new("corp", idp.issuer())
        .preset("human")
        .audiences(&["idmint-cli"])]);
    spec.policies
        .push(("sso.cedar".into(), GROUP_POLICY.into()));
    Ok(IdmintServer::start(bin(), spec).await?)
}

/// A running `idmint login` whose stderr is read line by line.
struct Login {
    child: Child,
    stderr: tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    seen: String,
}

impl Login {
    /// `idmint login --sso [METHOD] --no-browser --login-hint HINT`, and
    /// the authorization URL it prints.
    async fn sso(
        cli: &Cli,
        url: &str,
        method: Option<&str>,
        hint: &str,
    ) -> anyhow::Result<(Self, String)> {
        let mut args = vec!["login", "--sso"];
        args.extend(method);
        args.extend(["--no-browser", "--login-hint", hint, "--server", url]);
        let mut login = Self::spawn(cli, &args)?;
        let auth_url = login.line_starting("http").await?;
        Ok((login, auth_url))
    }

    fn spawn(cli: &Cli, args: &[&str]) -> anyhow::Result<Self> {
        let mut child = Command::new(bin())
            .args(args)
            .env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
            )
            .env("HOME", cli.home())
            .env("XDG_CACHE_HOME", cli.cache_dir())
            .env("XDG_CONFIG_HOME", cli.home().join(".config"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stderr pipe"))?;
        Ok(Self {
            child,
            stderr: BufReader::new(stderr).lines(),
            seen: String::new(),
        })
    }

    /// The first stderr line starting with `prefix` (whole, trimmed).
    async fn line_starting(&mut self, prefix: &str) -> anyhow::Result<String> {
        let read = async {
            while let Some(line) = self.stderr.next_line().await? {
                self.seen.push_str(&line);
                self.seen.push('\n');
                if line.starts_with(prefix) {
                    return Ok(line.trim().to_string());
                }
            }
            anyhow::bail!("the CLI ended without printing {prefix:?}:\n{}", self.seen)
        };
        tokio::time::timeout(LOGIN_LIMIT, read)
            .await
            .map_err(|_| anyhow::anyhow!("no {prefix:?} line in time:\n{}", self.seen))?
    }

    /// Waits for the exit; returns (success, all stderr).
    async fn finish(mut self) -> anyhow::Result<(bool, String)> {
        let mut rest = String::new();
        let drain = async {
            while let Some(line) = self.stderr.next_line().await? {
                rest.push_str(&line);
                rest.push('\n');
            }
            self.child.wait().await
        };
        let status = tokio::time::timeout(LOGIN_LIMIT, drain)
            .await
            .map_err(|_| anyhow::anyhow!("the CLI did not finish:\n{}", self.seen))??;
        Ok((status.success(), format!("{}{rest}", self.seen)))
    }
}

/// The browser: follows the IdP's redirects with a cookie jar until one
/// points at the loopback redirect URI, and returns that URL unvisited.
async fn browse_to_callback(auth_url: &str) -> anyhow::Result<url::Url> {
    let redirect_uri = url::Url::parse(auth_url)?
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| anyhow::anyhow!("no redirect_uri in {auth_url}"))?;
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut url = url::Url::parse(auth_url)?;
    for _ in 0..15 {
        let resp = browser.get(url.clone()).send().await?;
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| {
                anyhow::anyhow!("{url} answered {} without a redirect", resp.status())
            })?;
        let next = url.join(&location)?;
        if next.as_str().starts_with(&redirect_uri) {
            return Ok(next);
        }
        url = next;
    }
    anyhow::bail!("too many redirects from the IdP")
}

/// Delivers a callback URL to the CLI's loopback listener.
async fn deliver(callback: &url::Url) -> anyhow::Result<()> {
    reqwest::Client::new().get(callback.clone()).send().await?;
    Ok(())
}

fn with_param(u: &url::Url, key: &str, value: &str) -> url::Url {
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == key {
                value.to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    let mut out = u.clone();
    out.query_pairs_mut().clear().extend_pairs(pairs);
    out
}

fn param(u: &url::Url, key: &str) -> Option<String> {
    u.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

async fn whoami(cli: &Cli, url: &str) -> anyhow::Result<serde_json::Value> {
    let out = cli
        .run(&["whoami", "--server", url, "--output", "json"])
        .await?;
    anyhow::ensure!(out.success(), "{}", out.summary());
    Ok(out.json()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_flow_logs_in_with_groups_and_refuses_forged_state_and_code_replay(
) -> anyhow::Result<()> {
    let idp = Idp::start().await?;
    let server = sso_server(&idp).await?;
    let url = server.base_url();

    // The server advertises the human method.
    let methods = server.client()?.sso_methods().await?;
    assert_eq!(methods.methods.len(), 1);
    assert_eq!(methods.methods[0].client_id, "idmint-cli");

    // alice signs in through the browser flow.
    let alice = Cli::new(bin())?;
    let (login, auth_url) = Login::sso(&alice, &url, None, "alice").await?;
    let auth = url::Url::parse(&auth_url).map_err(|e| anyhow::anyhow!("{e}: {auth_url:?}"))?;
    assert_eq!(
        param(&auth, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(param(&auth, "nonce").is_some() && param(&auth, "state").is_some());
    assert!(param(&auth, "redirect_uri").is_some_and(|r| r.starts_with("http://127.0.0.1:")));
    let callback = browse_to_callback(&auth_url).await?;
    deliver(&callback).await?;
    let (ok, log) = login.finish().await?;
    assert!(ok, "{log}");
    let me = whoami(&alice, &url).await?;
    assert_eq!(me["identity"]["kind"], "human", "{me}");
    assert_eq!(me["identity"]["subject"], "alice", "{me}");
    assert_eq!(me["identity"]["auth"], "corp", "{me}");
    assert_eq!(
        me["identity"]["attributes"]["groups"],
        serde_json::json!(["admins", "dev"]),
        "{me}"
    );
    let ttl = me["expires_at"].as_i64().unwrap_or(0) - me["issued_at"].as_i64().unwrap_or(0);
    assert!(
        ttl > 0 && ttl <= 900,
        "a person's session defaults to at most 15 min: {ttl}s"
    );
    // Groups are Cedar attributes: alice (admins) may list every lease.
    let out = alice
        .run(&["leases", "list", "--all", "--server", &url])
        .await?;
    assert!(out.success(), "{}", out.summary());

    // A forged state on the redirect is refused and nothing is cached.
    let mallory = Cli::new(bin())?;
    let (login, auth_url) = Login::sso(&mallory, &url, None, "bob").await?;
    let callback_b = browse_to_callback(&auth_url).await?;
    deliver(&with_param(&callback_b, "state", "forged-state")).await?;
    let (ok, log) = login.finish().await?;
    assert!(!ok, "a forged state must fail the login:\n{log}");
    assert!(log.contains("different `state`"), "{log}");
    let out = mallory.run(&["whoami", "--server", &url]).await?;
    assert!(
        !out.success(),
        "no session after a refused login: {}",
        out.summary()
    );

    // Replaying alice's (already redeemed) code into a new login, even with
    // that login's own state, is refused by the IdP and by the CLI.
    let (login, auth_url) = Login::sso(&mallory, &url, None, "bob").await?;
    let fresh_state = param(&url::Url::parse(&auth_url)?, "state").unwrap_or_default();
    let redirect = param(&url::Url::parse(&auth_url)?, "redirect_uri").unwrap_or_default();
    let old_code = param(&callback, "code").unwrap_or_default();
    let mut replay = url::Url::parse(&redirect)?;
    replay
        .query_pairs_mut()
        .append_pair("code", &old_code)
        .append_pair("state", &fresh_state);
    deliver(&replay).await?;
    let (ok, log) = login.finish().await?;
    assert!(!ok, "a replayed code must fail the login:\n{log}");
    assert!(log.contains("refused the authorization code"), "{log}");

    // bob (group dev only) signs in and is not an admin.
    let bob = Cli::new(bin())?;
    let (login, auth_url) = Login::sso(&bob, &url, Some("corp"), "bob").await?;
    deliver(&browse_to_callback(&auth_url).await?).await?;
    let (ok, log) = login.finish().await?;
    assert!(ok, "{log}");
    let me = whoami(&bob, &url).await?;
    assert_eq!(
        me["identity"]["attributes"]["groups"],
        serde_json::json!(["dev"]),
        "{me}"
    );
    let out = bob
        .run(&["leases", "list", "--all", "--server", &url])
        .await?;
    assert!(!out.success(), "bob is not in admins: {}", out.summary());
    Ok(())
}

/// Acts as the person approving a device code in a browser (the test
/// IdP's form: scrape `xsrf`, submit the code, confirm).
async fn approve_device(verification_uri_complete: &str) -> anyhow::Result<()> {
    let uri = url::Url::parse(verification_uri_complete)?;
    let user_code =
        param(&uri, "user_code").ok_or_else(|| anyhow::anyhow!("no user_code in {uri}"))?;
    let device = uri.join("/device")?;
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let xsrf_of = |page: &str| -> anyhow::Result<String> {
        let marker = "name=\"xsrf\" value=\"";
        let start = page
            .find(marker)
            .map(|i| i + marker.len())
            .ok_or_else(|| anyhow::anyhow!("no xsrf field in the device page"))?;
        let rest = page.get(start..).unwrap_or("");
        Ok(rest.split('"').next().unwrap_or("").to_string())
    };
    let page = browser.get(uri.clone()).send().await?.text().await?;
    let xsrf = xsrf_of(&page)?;
    let page = browser
        .post(device.clone())
        .form(&[("xsrf", xsrf.as_str()), ("user_code", user_code.as_str())])
        .send()
        .await?
        .text()
        .await?;
    let xsrf = xsrf_of(&page)?;
    let mut resp = browser
        .post(device.clone())
        .form(&[
            ("xsrf", xsrf.as_str()),
            ("user_code", user_code.as_str()),
            ("confirm", "yes"),
        ])
        .send()
        .await?;
    let mut at = device;
    for _ in 0..10 {
        let Some(location) = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string)
        else {
            break;
        };
        at = at.join(&location)?;
        resp = browser.get(at.clone()).send().await?;
    }
    let page = resp.text().await?;
    anyhow::ensure!(
        page.contains("Sign-in Success"),
        "the device approval did not finish: {page}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_flow_logs_in_after_approval() -> anyhow::Result<()> {
    let idp = Idp::start().await?;
    let server = sso_server(&idp).await?;
    let url = server.base_url();
    let carol = Cli::new(bin())?;
    // No --sso: the device flag alone selects SSO.
    let mut login = Login::spawn(
        &carol,
        &[
            "login",
            "--device",
            "--login-hint",
            "carol",
            "--server",
            &url,
        ],
    )?;
    let line = login.line_starting("or open:").await?;
    let complete = line.trim_start_matches("or open:").trim().to_string();
    approve_device(&complete).await?;
    let (ok, log) = login.finish().await?;
    assert!(ok, "{log}");
    assert!(log.contains("enter the code"), "{log}");
    let me = whoami(&carol, &url).await?;
    assert_eq!(me["identity"]["subject"], "carol", "{me}");
    assert_eq!(me["identity"]["kind"], "human", "{me}");
    assert_eq!(
        me["identity"]["attributes"]["groups"],
        serde_json::json!([]),
        "{me}"
    );
    Ok(())
}

/// An IdP whose access tokens carry no audience: `oidc-provider` then
/// keeps scope claims (`groups`) out of the ID token and serves them from
/// userinfo only, as many real IdPs do.
async fn userinfo_only_idp() -> anyhow::Result<Idp> {
    Ok(Idp::start_with(idmint_testkit::IdpOptions {
        config_json: Some(serde_json::json!({ "defaultResource": "" })),
        ..Default::default()
    })
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_come_from_userinfo_when_the_id_token_has_none() -> anyhow::Result<()> {
    let idp = userinfo_only_idp().await?;
    let mut spec = ServerSpec::with_oidc(vec![OidcSpec::new("corp", idp.issuer())
        .preset("human")
        .audiences(&["idmint-cli"])
        .set("userinfo_groups", true)]);
    spec.policies
        .push(("sso.cedar".into(), GROUP_POLICY.into()));
    let server = IdmintServer::start(bin(), spec).await?;
    let url = server.base_url();

    for (who, admin) in [("alice", true), ("bob", false)] {
        let cli = Cli::new(bin())?;
        let (login, auth_url) = Login::sso(&cli, &url, None, who).await?;
        let callback = browse_to_callback(&auth_url).await?;
        deliver(&callback).await?;
        let (ok, log) = login.finish().await?;
        assert!(ok, "{log}");
        let me = whoami(&cli, &url).await?;
        let want = if admin {
            serde_json::json!(["admins", "dev"])
        } else {
            serde_json::json!(["dev"])
        };
        assert_eq!(me["identity"]["attributes"]["groups"], want, "{me}");
        // The userinfo groups decide in Cedar: only `admins` list all leases.
        let out = cli
            .run(&["leases", "list", "--all", "--server", &url])
            .await?;
        assert_eq!(out.success(), admin, "{who}: {}", out.summary());
    }
    // The login events say where the groups came from, and the ID token
    // really had none (otherwise userinfo would not have been asked).
    let events = server.audit_events()?;
    for who in ["alice", "bob"] {
        assert!(
            events.iter().any(|e| e["event"] == "login"
                && e["identity"]["subject"] == who
                && e["detail"]["groups_source"] == "userinfo"),
            "{who}'s login took its groups from userinfo"
        );
    }
    Ok(())
}
