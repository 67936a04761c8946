//! A minimal client of OpenBao's HTTP API for setting the server up (not
//! for load: the generator builds its own requests).

use crate::error::{BenchError, Result};
use crate::http::{Connection, Outgoing, JSON};
use hyper::Method;
use idmint_core::Secret;
use serde_json::Value;
use std::net::SocketAddr;

/// One keep-alive connection to `/v1/…`, with an optional token.
pub struct BaoApi {
    conn: Connection,
    token: Option<Secret<String>>,
}

impl BaoApi {
    pub async fn connect(addr: SocketAddr, token: Option<Secret<String>>) -> Result<Self> {
        Ok(Self {
            conn: Connection::open(addr).await?,
            token,
        })
    }

    /// `method /v1/<path>` with `body` as JSON; the parsed answer (`null`
    /// for 204). A non-2xx answer is an error naming the path and quoting
    /// OpenBao's `errors`.
    pub async fn call(&mut self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let request = self.request(method.clone(), path, body)?;
        let answer = self.conn.send(request, true).await?;
        if !(200..300).contains(&answer.status) {
            return Err(BenchError::openbao(
                format!("{method} /v1/{path}"),
                format!(
                    "HTTP {}: {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                        .chars()
                        .take(500)
                        .collect::<String>()
                ),
            ));
        }
        if answer.body.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&answer.body)?)
    }

    /// `POST /v1/<path>` with `body`.
    pub async fn write(&mut self, path: &str, body: Value) -> Result<Value> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// The status of `GET /v1/<path>` (for `sys/health`, whose status
    /// code is the answer).
    pub async fn status(&mut self, path: &str) -> Result<u16> {
        let request = self.request(Method::GET, path, None)?;
        Ok(self.conn.send(request, false).await?.status)
    }

    fn request(&self, method: Method, path: &str, body: Option<Value>) -> Result<Outgoing> {
        let path = format!("/v1/{path}");
        let mut request = match body {
            Some(b) => Outgoing::post(path, JSON, serde_json::to_string(&b)?),
            None => Outgoing::get(path),
        }
        .with_method(method);
        if let Some(token) = &self.token {
            // OpenBao accepts the token as a bearer token as well as in
            // `X-Vault-Token`.
            request = request.with_bearer(token.expose().clone());
        }
        Ok(request)
    }
}
