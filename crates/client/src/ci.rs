//! Finding the OIDC token a CI system gives a job, so that `idmint login`
//! needs no flags in CI.
//!
//! Checked in this order (the first hit wins):
//! 1. **GitHub Actions**: `ACTIONS_ID_TOKEN_REQUEST_URL` and
//!    `ACTIONS_ID_TOKEN_REQUEST_TOKEN` (present when the workflow has
//!    `permissions: id-token: write`). The token is fetched with
//!    `GET $URL&audience=AUD`, `Authorization: Bearer $REQUEST_TOKEN`, and
//!    read from the JSON answer's `value`.
//! 2. **GitLab CI**: `IDMINT_ID_TOKEN` (define it in the job with
//!    `id_tokens: IDMINT_ID_TOKEN: aud: idmint`), else the legacy
//!    `CI_JOB_JWT_V2`.
//! 3. **Kubernetes**: a projected service account token at
//!    `$IDMINT_K8S_TOKEN_PATH` (or `/var/run/secrets/tokens/idmint`), then the
//!    pod's default token at
//!    `/var/run/secrets/kubernetes.io/serviceaccount/token`.
//!
//! Environment and file system are reached through [`CiEnvironment`] so that
//! the detection logic is tested without touching the real process state.

use crate::response::error_chain;
use crate::secret::SecretString;
use crate::USER_AGENT;
use reqwest::Url;
use serde::Deserialize;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the Kubernetes projected token is mounted unless
/// `IDMINT_K8S_TOKEN_PATH` says otherwise.
pub const DEFAULT_K8S_PROJECTED_TOKEN: &str = "/var/run/secrets/tokens/idmint";
/// The pod's default service account token (audience: the API server).
pub const K8S_SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Largest token file read. JWTs are a few KB; a bigger file is not one.
const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;

/// How long to wait for GitHub's token service.
const GITHUB_TIMEOUT: Duration = Duration::from_secs(30);

/// The process environment and file system, as far as detection needs them.
pub trait CiEnvironment {
    /// An environment variable; `None` when unset or not valid UTF-8.
    fn var(&self, name: &str) -> Option<String>;
    /// A whole (small) file.
    fn read_file(&self, path: &Path) -> io::Result<String>;
}

/// The real environment of this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnvironment;

impl CiEnvironment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        use std::io::Read;
        let mut text = String::new();
        std::fs::File::open(path)?
            .take(MAX_TOKEN_FILE_BYTES)
            .read_to_string(&mut text)?;
        Ok(text)
    }
}

/// A token found in the environment.
#[derive(Debug, Clone)]
pub struct DetectedToken {
    /// Where it came from, for messages: e.g. `github-actions`.
    pub source: &'static str,
    pub token: SecretString,
}

#[derive(Debug, thiserror::Error)]
pub enum CiError {
    /// Nothing found; `checked` says what was looked at, one line each.
    #[error(
        "no CI identity token found. Checked:\n  - {}\nPass a token with --token-file FILE or --token - (stdin).",
        .checked.join("\n  - ")
    )]
    NotFound { checked: Vec<String> },
    /// In GitHub Actions, but the token request failed. Not silently skipped:
    /// falling through to another source would hide the real problem.
    #[error("GitHub Actions ID token request to {url} failed: {message}")]
    GitHub { url: String, message: String },
    /// The HTTP client for the GitHub request could not be set up.
    #[error("cannot set up an HTTP client for CI token detection: {0}")]
    HttpClient(String),
}

/// Detect a token using the real environment and a fresh HTTP client.
pub async fn detect(audience: &str) -> Result<DetectedToken, CiError> {
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(USER_AGENT)
        .timeout(GITHUB_TIMEOUT)
        .build()
        .map_err(|e| CiError::HttpClient(error_chain(&e)))?;
    detect_with(&ProcessEnvironment, &http, audience).await
}

/// Detect a token in `env`; `http` is used only for GitHub Actions and
/// `audience` only there (other systems fix the audience in job config).
pub async fn detect_with(
    env: &dyn CiEnvironment,
    http: &reqwest::Client,
    audience: &str,
) -> Result<DetectedToken, CiError> {
    let mut checked = Vec::new();

    let var = |name: &str| env.var(name).filter(|v| !v.trim().is_empty());
    match (
        var("ACTIONS_ID_TOKEN_REQUEST_URL"),
        var("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
    ) {
        (Some(url), Some(request_token)) => {
            let token = github_token(http, &url, &SecretString::new(request_token), audience).await?;
            return Ok(DetectedToken {
                source: "github-actions",
                token,
            });
        }
        (None, None) => checked.push(
            "GitHub Actions: ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN not set (the workflow needs `permissions: id-token: write`)".to_string(),
        ),
        (url, _) => checked.push(format!(
            "GitHub Actions: only ACTIONS_ID_TOKEN_REQUEST_{} is set; both are needed",
            if url.is_some() { "URL" } else { "TOKEN" }
        )),
    }

    if let Some(t) = var("IDMINT_ID_TOKEN") {
        return Ok(DetectedToken {
            source: "gitlab-ci (IDMINT_ID_TOKEN)",
            token: SecretString::new(t.trim().to_string()),
        });
    }
    if let Some(t) = var("CI_JOB_JWT_V2") {
        return Ok(DetectedToken {
            source: "gitlab-ci (CI_JOB_JWT_V2)",
            token: SecretString::new(t.trim().to_string()),
        });
    }
    checked.push(
        "GitLab CI: IDMINT_ID_TOKEN and CI_JOB_JWT_V2 not set (add `id_tokens: IDMINT_ID_TOKEN: aud: idmint` to the job)".to_string(),
    );

    let projected = var("IDMINT_K8S_TOKEN_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_K8S_PROJECTED_TOKEN));
    for (path, source) in [
        (projected, "kubernetes (projected token)"),
        (
            PathBuf::from(K8S_SERVICE_ACCOUNT_TOKEN),
            "kubernetes (service account token)",
        ),
    ] {
        match env.read_file(&path) {
            Ok(text) if !text.trim().is_empty() => {
                return Ok(DetectedToken {
                    source,
                    token: SecretString::new(text.trim().to_string()),
                });
            }
            Ok(_) => checked.push(format!("Kubernetes: {} is empty", path.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                checked.push(format!("Kubernetes: {} does not exist", path.display()))
            }
            Err(e) => checked.push(format!("Kubernetes: {} is unreadable: {e}", path.display())),
        }
    }

    Err(CiError::NotFound { checked })
}

/// Ask GitHub's token service for an ID token with `audience`.
async fn github_token(
    http: &reqwest::Client,
    request_url: &str,
    request_token: &SecretString,
    audience: &str,
) -> Result<SecretString, CiError> {
    #[derive(Deserialize)]
    struct GitHubTokenResponse {
        value: String,
    }
    let mut url = Url::parse(request_url).map_err(|e| CiError::GitHub {
        url: "ACTIONS_ID_TOKEN_REQUEST_URL".into(),
        message: format!("not a valid URL: {e}"),
    })?;
    // Shown without its query: it is not secret, but it is long and noisy.
    let shown = format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.path()
    );
    let fail = |message: String| CiError::GitHub {
        url: shown.clone(),
        message,
    };
    url.query_pairs_mut().append_pair("audience", audience);
    let resp = http
        .get(url)
        .bearer_auth(request_token.expose())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| fail(error_chain(&e.without_url())))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| fail(error_chain(&e.without_url())))?;
    if !status.is_success() {
        let excerpt: String = String::from_utf8_lossy(&body).chars().take(200).collect();
        return Err(fail(format!("HTTP {status}: {}", excerpt.trim())));
    }
    let parsed: GitHubTokenResponse = serde_json::from_slice(&body)
        .map_err(|e| fail(format!("the answer has no token (`value`): {e}")))?;
    if parsed.value.trim().is_empty() {
        return Err(fail("the answer's `value` is empty".into()));
    }
    Ok(SecretString::new(parsed.value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::{Canned, TestServer};
    use std::collections::HashMap;

    /// An environment made of a map of variables and a map of files.
    #[derive(Default)]
    struct FakeEnvironment {
        vars: HashMap<String, String>,
        files: HashMap<PathBuf, io::Result<String>>,
    }

    impl FakeEnvironment {
        fn var(mut self, k: &str, v: &str) -> Self {
            self.vars.insert(k.into(), v.into());
            self
        }
        fn file(mut self, p: &str, r: io::Result<String>) -> Self {
            self.files.insert(p.into(), r);
            self
        }
    }

    impl CiEnvironment for FakeEnvironment {
        fn var(&self, name: &str) -> Option<String> {
            self.vars.get(name).cloned()
        }
        fn read_file(&self, path: &Path) -> io::Result<String> {
            match self.files.get(path) {
                Some(Ok(s)) => Ok(s.clone()),
                Some(Err(e)) => Err(io::Error::new(e.kind(), e.to_string())),
                None => Err(io::ErrorKind::NotFound.into()),
            }
        }
    }

    async fn detect(env: &FakeEnvironment) -> Result<DetectedToken, CiError> {
        detect_with(env, &reqwest::Client::new(), "idmint").await
    }

    #[tokio::test]
    async fn github_actions_requests_token_with_audience_and_bearer() {
        let server = TestServer::start(vec![Canned::json(
            200,
            r#"{"count":1,"value":"gh.jwt.token"}"#,
        )])
        .await;
        let env = FakeEnvironment::default()
            .var(
                "ACTIONS_ID_TOKEN_REQUEST_URL",
                &format!("{}/actions/id-token?api-version=2.0", server.base_url()),
            )
            .var("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-secret")
            // GitHub wins over the others.
            .var("IDMINT_ID_TOKEN", "gitlab.jwt");
        let t = detect_with(&env, &reqwest::Client::new(), "https://idmint.example")
            .await
            .unwrap();
        assert_eq!(
            (t.source, t.token.expose()),
            ("github-actions", "gh.jwt.token")
        );

        let reqs = server.requests().await;
        assert_eq!(reqs.len(), 1);
        let r = &reqs[0];
        assert_eq!(r.method, "GET");
        assert_eq!(
            r.target,
            "/actions/id-token?api-version=2.0&audience=https%3A%2F%2Fidmint.example"
        );
        assert_eq!(r.header("authorization"), Some("Bearer runner-secret"));
    }

    #[tokio::test]
    async fn github_failure_is_reported_not_skipped() {
        let server = TestServer::start(vec![Canned::json(
            403,
            r#"{"message":"no id-token permission"}"#,
        )])
        .await;
        let env = FakeEnvironment::default()
            .var(
                "ACTIONS_ID_TOKEN_REQUEST_URL",
                &format!("{}/t?x=1", server.base_url()),
            )
            .var("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-secret")
            .var("CI_JOB_JWT_V2", "legacy");
        let e = detect(&env).await.unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, CiError::GitHub { .. }), "{e:?}");
        assert!(
            msg.contains("HTTP 403") && msg.contains("no id-token permission"),
            "{msg}"
        );
        assert!(!msg.contains("runner-secret"), "{msg}");

        let server = TestServer::start(vec![Canned::json(200, r#"{"count":0}"#)]).await;
        let env = FakeEnvironment::default()
            .var(
                "ACTIONS_ID_TOKEN_REQUEST_URL",
                &format!("{}/t?x=1", server.base_url()),
            )
            .var("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-secret");
        let e = detect(&env).await.unwrap_err();
        assert!(e.to_string().contains("`value`"), "{e}");
    }

    #[tokio::test]
    async fn gitlab_prefers_idmint_id_token_over_legacy() {
        let env = FakeEnvironment::default()
            .var("IDMINT_ID_TOKEN", " gl.jwt\n")
            .var("CI_JOB_JWT_V2", "legacy.jwt");
        let t = detect(&env).await.unwrap();
        assert_eq!(
            (t.source, t.token.expose()),
            ("gitlab-ci (IDMINT_ID_TOKEN)", "gl.jwt")
        );

        let env = FakeEnvironment::default()
            .var("CI_JOB_JWT_V2", "legacy.jwt")
            .var("IDMINT_ID_TOKEN", "");
        let t = detect(&env).await.unwrap();
        assert_eq!(
            (t.source, t.token.expose()),
            ("gitlab-ci (CI_JOB_JWT_V2)", "legacy.jwt")
        );
    }

    #[tokio::test]
    async fn kubernetes_projected_then_service_account() {
        let env = FakeEnvironment::default()
            .file(DEFAULT_K8S_PROJECTED_TOKEN, Ok("k8s.projected\n".into()))
            .file(K8S_SERVICE_ACCOUNT_TOKEN, Ok("k8s.sa".into()));
        let t = detect(&env).await.unwrap();
        assert_eq!(
            (t.source, t.token.expose()),
            ("kubernetes (projected token)", "k8s.projected")
        );

        let env = FakeEnvironment::default()
            .var("IDMINT_K8S_TOKEN_PATH", "/custom/token")
            .file("/custom/token", Ok("k8s.custom".into()))
            .file(DEFAULT_K8S_PROJECTED_TOKEN, Ok("k8s.projected".into()));
        assert_eq!(detect(&env).await.unwrap().token.expose(), "k8s.custom");

        let env = FakeEnvironment::default()
            .file(DEFAULT_K8S_PROJECTED_TOKEN, Ok("  \n".into()))
            .file(K8S_SERVICE_ACCOUNT_TOKEN, Ok("k8s.sa".into()));
        let t = detect(&env).await.unwrap();
        assert_eq!(
            (t.source, t.token.expose()),
            ("kubernetes (service account token)", "k8s.sa")
        );
    }

    #[tokio::test]
    async fn nothing_found_lists_everything_checked() {
        let env = FakeEnvironment::default()
            .var("ACTIONS_ID_TOKEN_REQUEST_URL", "https://x")
            .file(
                K8S_SERVICE_ACCOUNT_TOKEN,
                Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "permission denied",
                )),
            );
        let e = detect(&env).await.unwrap_err();
        let CiError::NotFound { checked } = &e else {
            panic!("expected NotFound, got {e:?}");
        };
        assert_eq!(checked.len(), 4, "{checked:?}");
        assert!(
            checked[0].contains("only ACTIONS_ID_TOKEN_REQUEST_URL is set"),
            "{checked:?}"
        );
        assert!(checked[1].contains("IDMINT_ID_TOKEN"), "{checked:?}");
        assert!(
            checked[2].contains(DEFAULT_K8S_PROJECTED_TOKEN)
                && checked[2].contains("does not exist")
        );
        assert!(checked[3].contains("unreadable"), "{checked:?}");
        assert!(e.to_string().contains("--token-file"), "{e}");
    }
}
