//! The RabbitMQ management HTTP API as idmint's admin user sees it.
//!
//! One `reqwest` client per target keeps a small pool of keep-alive
//! connections; every call is bounded by the target's timeout (connect and
//! whole request). The admin password is held sealed-in-memory
//! ([`Secret`]) and swapped after a rotation.

use crate::target::uri::percent_encode;
use idmint_core::Secret;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

/// The broker's answer: status and (bounded) body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// The broker's `reason` (or the body), short enough for a message.
    pub(crate) fn reason(&self) -> String {
        let reason = serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|v| {
                v.get("reason").map(|r| {
                    r.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| r.to_string())
                })
            })
            .unwrap_or_else(|| self.body.clone());
        reason.chars().take(300).collect()
    }
}

/// Why a call got no answer at all.
#[derive(Debug)]
pub(crate) struct Unreachable(pub(crate) reqwest::Error);

/// An authenticated client of one broker's management API.
pub(crate) struct ManagementApi {
    /// `scheme://host:port[/prefix]`, without a trailing slash.
    base: String,
    http: reqwest::Client,
    admin_user: String,
    admin_password: RwLock<Secret<String>>,
}

/// Longest response body kept (error reasons, user objects).
const MAX_BODY: usize = 64 * 1024;

impl ManagementApi {
    /// No I/O: connections are opened on first use.
    pub(crate) fn new(
        base: String,
        admin_user: String,
        admin_password: Secret<String>,
        timeout: Duration,
        pool_size: usize,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .pool_max_idle_per_host(pool_size)
            // The API never redirects; following one could leak the basic
            // auth header to another host.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            base,
            http,
            admin_user,
            admin_password: RwLock::new(admin_password),
        })
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// Call `path` (starting with `/api/`, segments already encoded) as the
    /// admin user.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, Unreachable> {
        let password = self
            .admin_password
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        self.call_as(&self.admin_user, &password, method, path, body)
            .await
    }

    /// Call `path` with explicit credentials (to probe a password).
    pub(crate) async fn call_as(
        &self,
        user: &str,
        password: &Secret<String>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, Unreachable> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(user, Some(password.expose()));
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(Unreachable)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(Unreachable)?;
        let body = String::from_utf8_lossy(bytes.get(..MAX_BODY).unwrap_or(&bytes)).into_owned();
        Ok(Answer { status, body })
    }

    /// Use `password` for every call from now on.
    pub(crate) fn use_password(&self, password: Secret<String>) {
        *self
            .admin_password
            .write()
            .unwrap_or_else(PoisonError::into_inner) = password;
    }
}

/// Percent-encode one URL path segment (see [`percent_encode`]), so a
/// vhost or user name can never add a path segment, a query or a fragment.
/// The default vhost `/` becomes `%2F`. A whole segment `.` or `..` would
/// still be a dot segment (URL parsers resolve it, also as `%2E`), so the
/// callers refuse those names.
pub(crate) fn encode_segment(s: &str) -> String {
    percent_encode(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cannot_escape_their_place() {
        assert_eq!(encode_segment("/"), "%2F");
        assert_eq!(
            encode_segment("../users/admin?x#y"),
            "..%2Fusers%2Fadmin%3Fx%23y"
        );
        assert_eq!(encode_segment("é %"), "%C3%A9%20%25");
        assert_eq!(encode_segment("app-1.x_~"), "app-1.x_~");
    }

    #[test]
    fn reasons_are_extracted_and_bounded() {
        let a = Answer {
            status: StatusCode::BAD_REQUEST,
            body: r#"{"error":"bad_request","reason":"vhost_or_user_not_found"}"#.into(),
        };
        assert_eq!(a.reason(), "vhost_or_user_not_found");
        let a = Answer {
            status: StatusCode::BAD_REQUEST,
            body: r#"{"error":"bad_request","reason":["invalid_regexp",[40]]}"#.into(),
        };
        assert!(a.reason().contains("invalid_regexp"));
        let a = Answer {
            status: StatusCode::BAD_GATEWAY,
            body: "x".repeat(1000),
        };
        assert_eq!(a.reason().len(), 300);
    }
}
