//! [`AwsTap`]: an HTTP relay between idmint and moto that records every
//! AWS Query API call (action and form parameters) and can freeze one
//! action: the call is carried out at moto, then its answer is withheld,
//! so a test can kill idmint at exactly that point (a crash after
//! `CreateAccessKey` and before the lease is activated).
//!
//! Headers (the `Host` idmint signed included) and body are relayed
//! unchanged, so moto checks idmint's SigV4 signature as if it were called
//! directly.

use crate::error::{Result, TestkitError};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// One recorded call: the form parameters, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TappedCall {
    pub action: String,
    pub params: BTreeMap<String, String>,
}

#[derive(Default)]
struct State {
    calls: Vec<TappedCall>,
    freeze: Option<String>,
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    state: Mutex<State>,
    frozen: Notify,
}

/// A recording relay to `upstream`; stops when dropped.
pub struct AwsTap {
    endpoint: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AwsTap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `a=b&c=%20d` decoded (`+` as space, as forms do).
fn decode_form(body: &str) -> BTreeMap<String, String> {
    let decode = |s: &str| -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            match b {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = bytes
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok());
                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(v) => {
                            out.push(v);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                _ => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

impl AwsTap {
    /// Start relaying to `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| TestkitError::io("binding the AWS tap", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| TestkitError::io("reading the AWS tap's address", e))?
            .port();
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| TestkitError::http("BUILD", upstream, e))?,
            state: Mutex::new(State::default()),
            frozen: Notify::new(),
        });
        let s = shared.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let s = s.clone();
                async move { relay(s, method, uri, headers, body).await }
            },
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            shared,
            task,
        })
    }

    /// The relay's URL, to configure as idmint's AWS endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<TappedCall> {
        lock(&self.shared.state).calls.clone()
    }

    /// The calls of `action` so far.
    pub fn calls_of(&self, action: &str) -> Vec<TappedCall> {
        self.calls()
            .into_iter()
            .filter(|c| c.action == action)
            .collect()
    }

    /// From now on, carry out `action` at moto but never answer it.
    pub fn freeze_after(&self, action: &str) {
        lock(&self.shared.state).freeze = Some(action.to_string());
    }

    /// Wait until a frozen call has been carried out.
    pub async fn wait_frozen(&self, limit: std::time::Duration) -> Result<()> {
        tokio::time::timeout(limit, self.shared.frozen.notified())
            .await
            .map_err(|_| TestkitError::Timeout {
                what: "the frozen AWS call".into(),
                waited_ms: limit.as_millis(),
                detail: String::new(),
            })
    }
}

async fn relay(
    s: Arc<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, Bytes) {
    let params = decode_form(&String::from_utf8_lossy(&body));
    let action = params.get("Action").cloned().unwrap_or_default();
    lock(&s.state).calls.push(TappedCall {
        action: action.clone(),
        params,
    });
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut req = s
        .http
        .request(method, format!("{}{path}", s.upstream))
        .body(body);
    for (name, value) in &headers {
        if name != "content-length" && name != "connection" {
            req = req.header(name, value);
        }
    }
    let answer = match req.send().await {
        Ok(r) => {
            let status = r.status();
            let mut h = HeaderMap::new();
            if let Some(ct) = r.headers().get("content-type") {
                h.insert("content-type", ct.clone());
            }
            let bytes = r.bytes().await.unwrap_or_default();
            (status, h, bytes)
        }
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            HeaderMap::new(),
            Bytes::from(e.to_string()),
        ),
    };
    let freeze = lock(&s.state).freeze.as_deref() == Some(action.as_str());
    if freeze {
        s.frozen.notify_one();
        // Never answer: the caller is killed while waiting.
        std::future::pending::<()>().await;
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_decoded() {
        let p = decode_form("Action=AssumeRole&Policy=%7B%22a%22%3A1%7D&Tags.member.1.Value=a+b&x");
        assert_eq!(p["Action"], "AssumeRole");
        assert_eq!(p["Policy"], "{\"a\":1}");
        assert_eq!(p["Tags.member.1.Value"], "a b");
        assert_eq!(p["x"], "");
    }
}
