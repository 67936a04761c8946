//! Microsoft Entra ID's token endpoint and the Microsoft Graph calls of the
//! `azure` issuer, over one pooled `reqwest` client:
//!
//! ```text
//! POST {authority}/{tenant}/oauth2/v2.0/token        client_credentials (secret or client_assertion)
//! POST {graph}/v1.0/applications/{id}/addPassword     {"passwordCredential": {"displayName", "endDateTime"}}
//! POST {graph}/v1.0/applications/{id}/removePassword  {"keyId"}
//! GET  {graph}/v1.0/applications/{id}?$select=passwordCredentials
//! ```
//!
//! Request and answer shapes are Microsoft's documented ones. Throttling
//! (429) and 5xx are retried with backoff for idempotent calls (and for
//! `addPassword` only when Graph refused it with 429/503, i.e. did not do it).

use idmint_core::{Secret, UnixTime};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::Mutex;

const ATTEMPTS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// A cached Graph token is replaced when less than this remains.
const TOKEN_MARGIN: i64 = 300;
const MAX_BODY: usize = 256 * 1024;

/// `client_credentials` proof: a secret or a signed assertion.
pub enum ClientProof {
    Secret(Secret<String>),
    Assertion(Secret<String>),
}

/// Why a call failed.
#[derive(Debug)]
pub enum GraphError {
    /// The service answered with an error document.
    Service {
        status: u16,
        code: String,
        message: String,
    },
    Unreachable(String),
    Malformed(String),
}

impl GraphError {
    pub fn is_retryable(&self) -> bool {
        match self {
            GraphError::Service { status, .. } => *status == 429 || *status >= 500,
            GraphError::Unreachable(_) => true,
            GraphError::Malformed(_) => false,
        }
    }
}

impl std::fmt::Display for GraphError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GraphError::Service {
                status,
                code,
                message,
            } => write!(f, "{code} (HTTP {status}): {message}"),
            GraphError::Unreachable(e) => write!(f, "no answer: {e}"),
            GraphError::Malformed(e) => write!(f, "unexpected answer: {e}"),
        }
    }
}

impl std::error::Error for GraphError {}

/// A password credential as Graph lists it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordCredential {
    pub key_id: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// A new secret (`secretText` is only ever returned by `addPassword`).
pub struct AddedPassword {
    pub key_id: String,
    pub secret_text: Secret<String>,
}

/// An Entra ID tenant and Graph, with a cached app-only token.
pub struct Graph {
    http: reqwest::Client,
    timeout: Duration,
    /// `https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`.
    token_url: String,
    /// `https://graph.microsoft.com/v1.0`.
    graph_base: String,
    token: Mutex<Option<(Secret<String>, i64)>>,
}

impl Graph {
    pub fn new(
        authority: &str,
        tenant: &str,
        graph: &str,
        timeout: Duration,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .pool_max_idle_per_host(8)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            http,
            timeout,
            token_url: format!(
                "{}/{tenant}/oauth2/v2.0/token",
                authority.trim_end_matches('/')
            ),
            graph_base: format!("{}/v1.0", graph.trim_end_matches('/')),
            token: Mutex::new(None),
        })
    }

    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    fn unreachable(&self, e: &reqwest::Error) -> GraphError {
        if e.is_timeout() {
            return GraphError::Unreachable(format!("no answer within {:?}", self.timeout));
        }
        GraphError::Unreachable(crate::error::error_chain(e))
    }

    /// Send (with retries) and return status and JSON body (`Null` when empty).
    async fn send(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
        idempotent: bool,
    ) -> Result<(StatusCode, Value), GraphError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let result = async {
                let resp = build().send().await.map_err(|e| self.unreachable(&e))?;
                let status = resp.status();
                let bytes = resp.bytes().await.map_err(|e| self.unreachable(&e))?;
                let body = bytes.get(..MAX_BODY).unwrap_or(&bytes);
                let value: Value = if body.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(body).unwrap_or_else(|_| {
                        Value::String(String::from_utf8_lossy(body).chars().take(300).collect())
                    })
                };
                if status.is_success() {
                    return Ok((status, value));
                }
                // Graph: {"error": {"code", "message"}}; token endpoint:
                // {"error": "invalid_client", "error_description"}.
                let (code, message) = match &value["error"] {
                    Value::Object(o) => (
                        o.get("code")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        o.get("message")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    ),
                    Value::String(code) => (
                        code.clone(),
                        value["error_description"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    ),
                    _ => (
                        String::new(),
                        value.as_str().unwrap_or_default().to_string(),
                    ),
                };
                Err(GraphError::Service {
                    status: status.as_u16(),
                    code,
                    message: message.chars().take(500).collect(),
                })
            }
            .await;
            let again = match &result {
                Err(e @ GraphError::Service { .. }) => e.is_retryable(),
                Err(GraphError::Unreachable(_)) => idempotent,
                _ => false,
            };
            if !again || attempt >= ATTEMPTS {
                return result;
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
            attempt += 1;
        }
    }

    /// An access token for `scope` by client credentials.
    pub async fn client_credentials(
        &self,
        client_id: &str,
        proof: &ClientProof,
        scope: &str,
    ) -> Result<(Secret<String>, i64), GraphError> {
        let build = || {
            let mut form: Vec<(&str, &str)> = vec![
                ("client_id", client_id),
                ("scope", scope),
                ("grant_type", "client_credentials"),
            ];
            match proof {
                ClientProof::Secret(s) => form.push(("client_secret", s.expose())),
                ClientProof::Assertion(a) => {
                    form.push((
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ));
                    form.push(("client_assertion", a.expose()));
                }
            }
            self.http.post(&self.token_url).form(&form)
        };
        let (_, body) = self.send(build, true).await?;
        let token = body["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| GraphError::Malformed("token answer without access_token".into()))?;
        let expires_in = body["expires_in"].as_i64().unwrap_or(300);
        Ok((
            Secret::new(token.to_string()),
            UnixTime::now().secs() + expires_in,
        ))
    }

    /// idmint's own Graph token, cached; `proof` is called when a new one
    /// is needed (a client assertion must be fresh).
    pub async fn admin_token(
        &self,
        client_id: &str,
        proof: impl FnOnce() -> Result<ClientProof, String>,
    ) -> Result<Secret<String>, GraphError> {
        let mut cached = self.token.lock().await;
        let now = UnixTime::now().secs();
        if let Some((t, exp)) = cached.as_ref() {
            if *exp - TOKEN_MARGIN > now {
                return Ok(t.clone());
            }
        }
        let proof = proof().map_err(GraphError::Malformed)?;
        let (token, exp) = self
            .client_credentials(client_id, &proof, "https://graph.microsoft.com/.default")
            .await?;
        *cached = Some((token.clone(), exp));
        Ok(token)
    }

    fn app_url(&self, object_id: &str, action: &str) -> String {
        format!(
            "{}/applications/{}{action}",
            self.graph_base,
            crate::target::uri::percent_encode(object_id)
        )
    }

    /// `addPassword`; not repeated when the outcome is unknown (revocation
    /// finds a secret by its display name either way).
    pub async fn add_password(
        &self,
        token: &Secret<String>,
        object_id: &str,
        display_name: &str,
        end: UnixTime,
    ) -> Result<AddedPassword, GraphError> {
        let url = self.app_url(object_id, "/addPassword");
        let body = json!({"passwordCredential": {"displayName": display_name, "endDateTime": end.rfc3339()}});
        let (_, v) = self
            .send(
                || self.http.post(&url).bearer_auth(token.expose()).json(&body),
                false,
            )
            .await?;
        let key_id = v["keyId"].as_str().unwrap_or_default().to_string();
        let secret = v["secretText"].as_str().unwrap_or_default().to_string();
        if key_id.is_empty() || secret.is_empty() {
            return Err(GraphError::Malformed(
                "addPassword answer without keyId/secretText".into(),
            ));
        }
        Ok(AddedPassword {
            key_id,
            secret_text: Secret::new(secret),
        })
    }

    /// The application's password credentials; `None` if the application
    /// does not exist.
    pub async fn passwords(
        &self,
        token: &Secret<String>,
        object_id: &str,
    ) -> Result<Option<Vec<PasswordCredential>>, GraphError> {
        let url = self.app_url(object_id, "?$select=passwordCredentials");
        match self
            .send(|| self.http.get(&url).bearer_auth(token.expose()), true)
            .await
        {
            Ok((_, v)) => serde_json::from_value(v["passwordCredentials"].clone())
                .map(Some)
                .map_err(|e| GraphError::Malformed(format!("passwordCredentials: {e}"))),
            Err(GraphError::Service { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `removePassword`; a secret (or application) already gone is success.
    pub async fn remove_password(
        &self,
        token: &Secret<String>,
        object_id: &str,
        key_id: &str,
    ) -> Result<(), GraphError> {
        let url = self.app_url(object_id, "/removePassword");
        let body = json!({"keyId": key_id});
        match self
            .send(
                || self.http.post(&url).bearer_auth(token.expose()).json(&body),
                true,
            )
            .await
        {
            Ok(_) | Err(GraphError::Service { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
