//! The agent's side of the HTTP protocol with the server.
//!
//! The agent always calls out (hosts sit behind NAT and firewalls). Every
//! request except enrollment is signed with the [`AgentKey`]; the grants
//! request long-polls so a new grant reaches the host within a round trip.

use crate::error::{AgentError, Result};
use crate::signing::AgentKey;
use idmint_core::UnixTime;
use idmint_proto::ssh::{AgentEvent, AgentEventAck, AgentGrants, EnrollRequest, EnrollResponse};
use serde::de::DeserializeOwned;
use std::path::Path;
use std::time::Duration;

pub const ENROLL_PATH: &str = "/api/v1/agent/enroll";
pub const GRANTS_PATH: &str = "/api/v1/agent/grants";
pub const EVENTS_PATH: &str = "/api/v1/agent/events";
pub const ATTEST_PATH: &str = "/api/v1/agent/attest";
pub const CREDS_PATH: &str = "/api/v1/creds";

/// Longest error body quoted in an error message.
const MAX_ERROR_BODY: usize = 500;
/// Time allowed for connecting and for requests other than the long poll.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Extra time the long poll may take beyond its `wait`.
const LONG_POLL_SLACK: Duration = Duration::from_secs(15);

/// A connection to one idmint server.
#[derive(Debug, Clone)]
pub struct ServerLink {
    base: String,
    http: reqwest::Client,
}

impl ServerLink {
    /// `server` is the base URL (`https://idmint.example:8443`);
    /// `ca_cert`, an extra PEM CA to trust for its TLS certificate.
    pub fn new(server: &str, ca_cert: Option<&Path>) -> Result<Self> {
        let parsed = url::Url::parse(server)
            .map_err(|e| AgentError::Config(format!("server URL {server:?} is invalid: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(AgentError::Config(format!(
                "server URL {server:?} must start with https:// (or http:// on loopback for development)"
            )));
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("idmint-agent/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path)
                .map_err(|e| AgentError::io("reading the CA certificate", path, e))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                AgentError::Config(format!("{}: not a PEM certificate: {e}", path.display()))
            })? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| AgentError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            base: server.trim_end_matches('/').to_string(),
            http,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `POST /api/v1/agent/enroll`: trade the single-use join token for a
    /// host certificate and the user CA.
    pub async fn enroll(&self, request: &EnrollRequest) -> Result<EnrollResponse> {
        let url = format!("{}{ENROLL_PATH}", self.base);
        let body = serde_json::to_vec(request)
            .map_err(|e| AgentError::Config(format!("cannot encode the enrollment: {e}")))?;
        self.post_json(&url, body, None).await
    }

    /// `GET /api/v1/agent/grants?since=R&wait=S`: the full desired state,
    /// as soon as its revision passes `since` or after `wait`.
    pub async fn grants(
        &self,
        key: &AgentKey,
        host: &str,
        since: u64,
        wait: Duration,
    ) -> Result<AgentGrants> {
        let path = format!("{GRANTS_PATH}?since={since}&wait={}", wait.as_secs());
        let url = format!("{}{path}", self.base);
        let auth = key.authorization(host, "GET", &path, b"", UnixTime::now().secs())?;
        let response = self
            .http
            .get(&url)
            .timeout(wait + LONG_POLL_SLACK)
            .header(reqwest::header::AUTHORIZATION, auth)
            .send()
            .await
            .map_err(|e| transport_error("GET", &url, &e))?;
        decode("GET", &url, response).await
    }

    /// `POST /api/v1/agent/events`: report one event.
    pub async fn post_event(
        &self,
        key: &AgentKey,
        host: &str,
        event: &AgentEvent,
    ) -> Result<AgentEventAck> {
        let url = format!("{}{EVENTS_PATH}", self.base);
        let body = serde_json::to_vec(event)
            .map_err(|e| AgentError::Config(format!("cannot encode an event: {e}")))?;
        let auth = key.authorization(host, "POST", EVENTS_PATH, &body, UnixTime::now().secs())?;
        self.post_json(&url, body, Some(auth)).await
    }

    /// `POST /api/v1/agent/attest`: this host vouches for a local process
    /// (facts read from its own `/proc`); the server maps it to an identity
    /// with its `[[auth.unix]]` bindings and answers with a session for it.
    /// Used by `idmint proxy` to obtain credentials on a workload's behalf.
    pub async fn attest(
        &self,
        key: &AgentKey,
        host: &str,
        request: &idmint_proto::unix::AttestLoginRequest,
    ) -> Result<idmint_proto::LoginResponse> {
        let url = format!("{}{ATTEST_PATH}", self.base);
        let body = serde_json::to_vec(request)
            .map_err(|e| AgentError::Config(format!("cannot encode the attestation: {e}")))?;
        let auth = key.authorization(host, "POST", ATTEST_PATH, &body, UnixTime::now().secs())?;
        self.post_json(&url, body, Some(auth)).await
    }

    /// `POST /api/v1/creds/{role}` with a session token from
    /// [`ServerLink::attest`] (`Authorization: Bearer`).
    pub async fn creds(
        &self,
        session_token: &str,
        role: &str,
        request: &idmint_proto::CredsRequest,
    ) -> Result<idmint_proto::CredsResponse> {
        let url = format!("{}{CREDS_PATH}/{role}", self.base);
        let body = serde_json::to_vec(request)
            .map_err(|e| AgentError::Config(format!("cannot encode the request: {e}")))?;
        self.post_json(&url, body, Some(format!("Bearer {session_token}")))
            .await
    }

    /// POST an already encoded JSON `body` (signed requests carry
    /// `authorization`, computed over exactly these bytes) and decode the
    /// answer.
    async fn post_json<T: DeserializeOwned>(
        &self,
        url: &str,
        body: Vec<u8>,
        authorization: Option<String>,
    ) -> Result<T> {
        let mut request = self
            .http
            .post(url)
            .timeout(REQUEST_TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(auth) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, auth);
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error("POST", url, &e))?;
        decode("POST", url, response).await
    }
}

fn transport_error(method: &'static str, url: &str, e: &reqwest::Error) -> AgentError {
    // reqwest's Display omits the cause chain ("error sending request").
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    AgentError::Http {
        method,
        url: url.to_string(),
        message,
    }
}

async fn decode<T: DeserializeOwned>(
    method: &'static str,
    url: &str,
    response: reqwest::Response,
) -> Result<T> {
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| transport_error(method, url, &e))?;
    if !status.is_success() {
        let mut message = String::from_utf8_lossy(&bytes).into_owned();
        if message.len() > MAX_ERROR_BODY {
            let mut cut = MAX_ERROR_BODY;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        return Err(AgentError::Server {
            method,
            url: url.to_string(),
            status: status.as_u16(),
            message,
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| AgentError::Http {
        method,
        url: url.to_string(),
        message: format!("unexpected response body: {e}"),
    })
}
