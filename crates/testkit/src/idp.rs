//! [`Idp`]: the real OIDC provider (`oidc-provider` on Node), started per
//! test from `testbed/oidc-idp/oidc-idp.mjs`.
//!
//! The IdP listens on a port it picks itself (`PORT=0`) and prints
//! `READY <issuer>`; all its state is in memory, so killing it is the whole
//! teardown. Tokens with per-test claims come from dynamic client
//! registration (`/reg` with `x_claims`) followed by `client_credentials`.

use crate::error::{Result, TestkitError};
use crate::process::{workspace_root, Peer};
use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long the IdP may take to print `READY` (normally 0.4 s).
const START_LIMIT: Duration = Duration::from_secs(30);

/// Options of [`Idp::start_with`].
#[derive(Debug, Clone, Default)]
pub struct IdpOptions {
    /// Token lifetime in seconds (`IDP_TOKEN_TTL`); default 600.
    pub token_ttl: Option<u64>,
    /// Private JWK file (`KEY_FILE`): reused if it exists, else generated
    /// there. Default: a file in the IdP's temp dir, so a restart keeps the
    /// key. Point two starts at different files to rotate the key.
    pub key_file: Option<PathBuf>,
    /// `IDP_CONFIG` contents (clients, users, defaultResource).
    pub config_json: Option<Value>,
    /// Listen on this port instead of a free one.
    pub port: Option<u16>,
}

/// A running OIDC provider. Killed on drop.
pub struct Idp {
    peer: Option<Peer>,
    issuer: String,
    port: u16,
    dir: tempfile::TempDir,
    http: reqwest::Client,
    options: IdpOptions,
}

impl std::fmt::Debug for Idp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idp")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

fn script() -> Result<PathBuf> {
    let dir = workspace_root().join("testbed/oidc-idp");
    if !dir.join("node_modules/oidc-provider").exists() {
        return Err(TestkitError::Missing {
            what: "the IdP's npm dependencies",
            path: dir.join("node_modules"),
            hint: "run `npm ci --no-audit --no-fund` in testbed/oidc-idp (testbed/install-testbed.sh does it)",
        });
    }
    Ok(dir.join("oidc-idp.mjs"))
}

impl Idp {
    /// Start with the defaults (built-in clients, 600 s tokens).
    pub async fn start() -> Result<Self> {
        Self::start_with(IdpOptions::default()).await
    }

    pub async fn start_with(options: IdpOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("idmint-idp-")
            .tempdir()
            .map_err(|e| TestkitError::io("creating the IdP temp dir", e))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| TestkitError::http("BUILD", "-", e))?;
        let mut idp = Self {
            peer: None,
            issuer: String::new(),
            port: options.port.unwrap_or(0),
            dir,
            http,
            options,
        };
        idp.spawn().await?;
        Ok(idp)
    }

    async fn spawn(&mut self) -> Result<()> {
        let script = script()?;
        let key_file = self
            .options
            .key_file
            .clone()
            .unwrap_or_else(|| self.dir.path().join("key.jwk.json"));
        let stderr_log = self.dir.path().join("idp.stderr.log");
        let stdout_log = self.dir.path().join("idp.stdout.log");
        let mut cmd = Command::new("node");
        cmd.arg(&script)
            .env("PORT", self.port.to_string())
            .env("HOST", "127.0.0.1")
            .env("KEY_FILE", &key_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(
                std::fs::File::create(&stderr_log).map_err(|e| {
                    TestkitError::io(format!("creating {}", stderr_log.display()), e)
                })?,
            );
        if let Some(ttl) = self.options.token_ttl {
            cmd.env("IDP_TOKEN_TTL", ttl.to_string());
        }
        if let Some(cfg) = &self.options.config_json {
            let path = self.dir.path().join("idp-config.json");
            let text = serde_json::to_vec_pretty(cfg).map_err(|e| TestkitError::Render {
                what: "IDP_CONFIG",
                message: e.to_string(),
            })?;
            std::fs::write(&path, text)
                .map_err(|e| TestkitError::io(format!("writing {}", path.display()), e))?;
            cmd.env("IDP_CONFIG", &path);
        }
        let mut child = cmd.spawn().map_err(|e| {
            TestkitError::io(
                "starting `node` for the OIDC IdP (is Node.js installed?)",
                e,
            )
        })?;
        let stdout = child.stdout.take();
        let mut peer = Peer::new(
            "oidc-idp (node)",
            child,
            vec![stdout_log.clone(), stderr_log],
        );

        // A thread reads stdout: the READY line goes to the test, the rest
        // to a log file (an unread pipe would eventually block the IdP).
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<String>();
        if let Some(out) = stdout {
            std::thread::spawn(move || {
                let mut log = std::fs::File::create(&stdout_log).ok();
                let mut ready_tx = Some(ready_tx);
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if let Some(log) = log.as_mut() {
                        let _ = writeln!(log, "{line}");
                    }
                    if let Some(issuer) = line.strip_prefix("READY ") {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(issuer.trim().to_string());
                        }
                    }
                }
            });
        }
        let issuer = match tokio::time::timeout(START_LIMIT, ready_rx).await {
            Ok(Ok(issuer)) => issuer,
            Ok(Err(_)) => {
                // stdout closed without READY: the IdP died.
                let _ = peer.kill();
                return Err(TestkitError::EarlyExit {
                    peer: peer.name().to_string(),
                    status: "exited before printing READY".into(),
                    log_tail: peer.log_tail(40),
                });
            }
            Err(_) => {
                return Err(TestkitError::Timeout {
                    what: "the OIDC IdP to print READY".into(),
                    waited_ms: START_LIMIT.as_millis(),
                    detail: peer.log_tail(40),
                })
            }
        };
        let port = url_port(&issuer).ok_or_else(|| TestkitError::Protocol {
            peer: "oidc-idp".into(),
            message: format!("READY line has no port: {issuer:?}"),
        })?;
        self.issuer = issuer;
        self.port = port;
        self.peer = Some(peer);
        Ok(())
    }

    /// `http://127.0.0.1:<port>`: the tokens' `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kill the IdP (an outage). [`Self::restart_same_port`] brings it back.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut p) = self.peer.take() {
            p.kill()?;
        }
        Ok(())
    }

    /// Start again on the same port (same issuer URL), with new options —
    /// e.g. another `key_file` to rotate the signing key. The port is kept
    /// whatever `options.port` says.
    pub async fn restart_same_port(&mut self, options: IdpOptions) -> Result<()> {
        self.kill()?;
        self.options = IdpOptions {
            port: Some(self.port),
            ..options
        };
        self.spawn().await
    }

    /// The IdP's output so far, for diagnostics.
    pub fn log_tail(&self, lines: usize) -> String {
        self.peer
            .as_ref()
            .map(|p| p.log_tail(lines))
            .unwrap_or_default()
    }

    /// Register a client (open dynamic registration) with `metadata` and
    /// return `(client_id, client_secret)`.
    pub async fn register_client(&self, metadata: &Value) -> Result<(String, String)> {
        let url = format!("{}/reg", self.issuer);
        let resp = self
            .http
            .post(&url)
            .json(metadata)
            .send()
            .await
            .map_err(|e| TestkitError::http("POST", &url, e))?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .map_err(|e| TestkitError::http("POST", &url, e))?;
        if !status.is_success() {
            return Err(TestkitError::http(
                "POST",
                &url,
                format!("{status}: {body}"),
            ));
        }
        match (body["client_id"].as_str(), body["client_secret"].as_str()) {
            (Some(id), Some(secret)) => Ok((id.to_string(), secret.to_string())),
            _ => Err(TestkitError::Protocol {
                peer: "oidc-idp".into(),
                message: format!("registration answer without client_id/client_secret: {body}"),
            }),
        }
    }

    /// `client_credentials` for a registered client; `audience` becomes the
    /// token's `aud` (sent as `resource=urn:aud:<audience>`).
    pub async fn client_credentials(
        &self,
        client_id: &str,
        client_secret: &str,
        audience: &str,
    ) -> Result<String> {
        let url = format!("{}/token", self.issuer);
        let resource = format!("urn:aud:{audience}");
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", client_secret),
            ("resource", resource.as_str()),
        ];
        let resp = self
            .http
            .post(&url)
            .form(&form)
            .send()
            .await
            .map_err(|e| TestkitError::http("POST", &url, e))?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .map_err(|e| TestkitError::http("POST", &url, e))?;
        if !status.is_success() {
            return Err(TestkitError::http(
                "POST",
                &url,
                format!("{status}: {body}"),
            ));
        }
        body["access_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| TestkitError::Protocol {
                peer: "oidc-idp".into(),
                message: format!("token answer without access_token: {body}"),
            })
    }

    async fn token_with_style(
        &self,
        style: Option<&str>,
        audience: &str,
        claims: &Value,
    ) -> Result<String> {
        let mut metadata = json!({
            "grant_types": ["client_credentials"],
            "response_types": [],
            "redirect_uris": [],
            "token_endpoint_auth_method": "client_secret_post",
            "x_claims": claims,
        });
        if let (Some(style), Some(obj)) = (style, metadata.as_object_mut()) {
            obj.insert("x_token_style".into(), Value::String(style.into()));
        }
        let (id, secret) = self.register_client(&metadata).await?;
        self.client_credentials(&id, &secret, audience).await
    }

    /// A GitHub-Actions-shaped token (`typ: JWT`, `sub =
    /// repo:<repository>:ref:<ref>` unless `claims.sub` is set) carrying
    /// exactly `claims` besides the registered ones. Use
    /// [`Idp::github_claims`] for a complete claim set.
    pub async fn github_token(&self, audience: &str, claims: &Value) -> Result<String> {
        self.token_with_style(Some("github"), audience, claims)
            .await
    }

    /// An RFC 9068 access token (`typ: at+jwt`, `sub = client_id`,
    /// `client_id`, `scope`) with `claims` merged in — the shape of GitLab's
    /// and most IdPs' machine tokens.
    pub async fn gitlab_style_token(&self, audience: &str, claims: &Value) -> Result<String> {
        self.token_with_style(None, audience, claims).await
    }

    /// The complete claim set of a GitHub Actions job token of `acme/app`
    /// on `refs/heads/main` (push, environment `production`), with
    /// `overrides` (an object) applied on top.
    pub fn github_claims(overrides: &Value) -> Value {
        let mut claims = json!({
            "repository": "acme/app",
            "repository_owner": "acme",
            "repository_id": "4242",
            "repository_owner_id": "42",
            "ref": "refs/heads/main",
            "ref_type": "branch",
            "sha": "0123456789abcdef0123456789abcdef01234567",
            "workflow": "release",
            "workflow_ref": "acme/app/.github/workflows/release.yml@refs/heads/main",
            "job_workflow_ref": "acme/app/.github/workflows/release.yml@refs/heads/main",
            "actor": "octocat",
            "actor_id": "1",
            "event_name": "push",
            "run_id": "1001",
            "run_number": "7",
            "run_attempt": "1",
            "environment": "production",
            "repository_visibility": "private",
            "runner_environment": "github-hosted",
        });
        merge(&mut claims, overrides);
        claims
    }

    /// Environment variables that make a process look like a GitHub Actions
    /// job with `permissions: id-token: write`, served by this IdP's fake
    /// runner endpoint with the built-in `ci-job` client.
    pub fn actions_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "ACTIONS_ID_TOKEN_REQUEST_URL".into(),
                format!("{}/actions/id-token?api-version=2.0", self.issuer),
            ),
            (
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN".into(),
                "ci-job:ci-job-secret".into(),
            ),
        ]
    }
}

/// Shallow-merge the members of object `overrides` into object `base`.
pub fn merge(base: &mut Value, overrides: &Value) {
    if let (Some(b), Some(o)) = (base.as_object_mut(), overrides.as_object()) {
        for (k, v) in o {
            b.insert(k.clone(), v.clone());
        }
    }
}

/// Remove `names` from a JSON object (for "missing claim" cases).
pub fn without(mut value: Value, names: &[&str]) -> Value {
    if let Some(obj) = value.as_object_mut() {
        for n in names {
            obj.shift_remove(*n);
        }
    }
    value
}

/// An empty JSON object, for "no overrides".
pub fn no_overrides() -> Value {
    Value::Object(Map::new())
}

fn url_port(url: &str) -> Option<u16> {
    url.rsplit(':').next()?.trim_end_matches('/').parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jws::decode_segment;

    #[tokio::test]
    async fn github_and_gitlab_style_tokens_carry_the_claims() {
        let idp = Idp::start().await.unwrap();
        assert!(idp.issuer().starts_with("http://127.0.0.1:"));
        let t = idp
            .github_token(
                "idmint",
                &Idp::github_claims(&json!({"environment": "staging"})),
            )
            .await
            .unwrap();
        let (h, c) = (
            decode_segment(&t, 0).unwrap(),
            decode_segment(&t, 1).unwrap(),
        );
        assert_eq!(h["typ"], "JWT");
        assert_eq!(c["aud"], "idmint");
        assert_eq!(c["iss"], idp.issuer());
        assert_eq!(c["environment"], "staging");
        assert_eq!(c["sub"], "repo:acme/app:ref:refs/heads/main");
        assert!(c.get("client_id").is_none());

        let t = idp
            .gitlab_style_token("idmint", &json!({"namespace_path": "platform"}))
            .await
            .unwrap();
        let (h, c) = (
            decode_segment(&t, 0).unwrap(),
            decode_segment(&t, 1).unwrap(),
        );
        assert_eq!(h["typ"], "at+jwt");
        assert_eq!(c["namespace_path"], "platform");
        assert_eq!(c["sub"], c["client_id"]);
    }

    #[tokio::test]
    async fn restart_on_the_same_port_can_rotate_the_key() {
        let mut idp = Idp::start().await.unwrap();
        let issuer = idp.issuer().to_string();
        let kid = |t: &str| decode_segment(t, 0).unwrap()["kid"].clone();
        let first = kid(&idp
            .github_token("idmint", &Idp::github_claims(&no_overrides()))
            .await
            .unwrap());
        let other_key = idp.dir.path().join("other.jwk.json");
        idp.restart_same_port(IdpOptions {
            key_file: Some(other_key),
            ..Default::default()
        })
        .await
        .unwrap();
        assert_eq!(idp.issuer(), issuer);
        let second = kid(&idp
            .github_token("idmint", &Idp::github_claims(&no_overrides()))
            .await
            .unwrap());
        assert_ne!(first, second);
    }

    #[test]
    fn helpers() {
        assert_eq!(url_port("http://127.0.0.1:4123"), Some(4123));
        let v = without(json!({"a": 1, "b": 2}), &["a"]);
        assert_eq!(v, json!({"b": 2}));
        let mut base = json!({"a": 1});
        merge(&mut base, &json!({"a": 2, "c": 3}));
        assert_eq!(base, json!({"a": 2, "c": 3}));
    }
}
