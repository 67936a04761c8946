//! Raw HTTP access to a server, for tests that must see exact statuses and
//! error bodies (hostile input, OAuth error codes) rather than what a
//! client library makes of them.

use crate::error::{Result, TestkitError};
use serde_json::Value;
use std::time::{Duration, Instant};

/// One HTTP answer: status, body (JSON when it parses, else `Null`), the
/// raw text and how long it took.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub body: Value,
    pub text: String,
    pub elapsed: Duration,
}

impl ApiResponse {
    /// The error code: `error.code` on the native API, `error` on OAuth.
    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["code"]
            .as_str()
            .or_else(|| self.body["error"].as_str())
    }

    /// The error message: `error.message` (native) or `error_description`
    /// (OAuth).
    pub fn error_message(&self) -> Option<&str> {
        self.body["error"]["message"]
            .as_str()
            .or_else(|| self.body["error_description"].as_str())
    }

    /// A one-line summary for assertion messages.
    pub fn summary(&self) -> String {
        let text: String = self.text.chars().take(600).collect();
        format!("HTTP {} in {:?}: {text}", self.status, self.elapsed)
    }
}

/// An HTTP client bound to one base URL.
#[derive(Debug, Clone)]
pub struct RawApi {
    http: reqwest::Client,
    base: String,
}

impl RawApi {
    pub fn new(base_url: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| TestkitError::http("BUILD", base_url, e))?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_string(),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        method: &'static str,
        path: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<ApiResponse> {
        let url = format!("{}{path}", self.base);
        let started = Instant::now();
        let resp = req
            .send()
            .await
            .map_err(|e| TestkitError::http(method, &url, e))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| TestkitError::http(method, &url, e))?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(ApiResponse {
            status,
            body,
            text,
            elapsed: started.elapsed(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path`, optionally with `Authorization: Bearer`.
    pub async fn get(&self, path: &str, bearer: Option<&str>) -> Result<ApiResponse> {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        self.send("GET", path, req).await
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(
        &self,
        path: &str,
        body: &Value,
        bearer: Option<&str>,
    ) -> Result<ApiResponse> {
        let mut req = self.http.post(self.url(path)).json(body);
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        self.send("POST", path, req).await
    }

    /// `POST path` with a raw body and content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<ApiResponse> {
        let req = self
            .http
            .post(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        self.send("POST", path, req).await
    }

    /// `POST path` with an `application/x-www-form-urlencoded` body.
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Result<ApiResponse> {
        let req = self.http.post(self.url(path)).form(form);
        self.send("POST", path, req).await
    }

    /// `POST path` with no body.
    pub async fn post_empty(&self, path: &str, bearer: Option<&str>) -> Result<ApiResponse> {
        let mut req = self.http.post(self.url(path));
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        self.send("POST", path, req).await
    }

    /// `POST /api/v1/login` with `{"method": "oidc", "token": token}`.
    pub async fn login(&self, token: &str) -> Result<ApiResponse> {
        self.post_json(
            "/api/v1/login",
            &serde_json::json!({"method": "oidc", "token": token}),
            None,
        )
        .await
    }

    /// `POST /api/v1/creds/{role}` with `body`.
    pub async fn creds(&self, session: &str, role: &str, body: &Value) -> Result<ApiResponse> {
        self.post_json(&format!("/api/v1/creds/{role}"), body, Some(session))
            .await
    }
}
