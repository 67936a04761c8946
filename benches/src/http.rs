//! One keep-alive HTTP/1.1 connection, driven by raw hyper.
//!
//! No pooling client sits between the generator and the socket: each load
//! task owns exactly one connection and sends its requests one after the
//! other, so "concurrency N" means N connections with one request in flight
//! each, and the generator's own overhead stays small and measurable.

use crate::error::{BenchError, Result};
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::pin::Pin;

pub const JSON: &str = "application/json";
pub const FORM: &str = "application/x-www-form-urlencoded";

/// A request the load generator sends: method, path, optional bearer token
/// and body. The `Host` header is filled in by [`Connection::send`].
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub method: Method,
    pub path: Cow<'static, str>,
    pub content_type: Option<&'static str>,
    pub bearer: Option<String>,
    pub body: String,
}

impl Outgoing {
    pub fn get(path: impl Into<Cow<'static, str>>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            content_type: None,
            bearer: None,
            body: String::new(),
        }
    }

    pub fn post(
        path: impl Into<Cow<'static, str>>,
        content_type: &'static str,
        body: String,
    ) -> Self {
        Self {
            method: Method::POST,
            path: path.into(),
            content_type: Some(content_type),
            bearer: None,
            body,
        }
    }

    /// The same request with another method (`PUT` for OpenBao's
    /// `sys/leases/revoke`).
    pub fn with_method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    pub fn with_bearer(mut self, token: String) -> Self {
        self.bearer = Some(token);
        self
    }
}

/// The status and (when asked for) the body of a response.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// An open HTTP/1.1 connection to the server.
pub struct Connection {
    sender: SendRequest<String>,
    host: String,
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| BenchError::http(format!("connect to {addr}"), e))?;
        // Small request/response pairs: Nagle would add up to 40 ms.
        stream
            .set_nodelay(true)
            .map_err(|e| BenchError::http(format!("TCP_NODELAY on {addr}"), e))?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake::<_, String>(TokioIo::new(stream))
                .await
                .map_err(|e| BenchError::http(format!("HTTP/1.1 handshake with {addr}"), e))?;
        // The connection future does the actual IO; it ends when the sender
        // is dropped or the server closes the connection.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            sender,
            host: addr.to_string(),
        })
    }

    /// Sends `req` and reads the whole response. The body is kept only when
    /// `keep_body` (the load loop discards it, but must still read it to
    /// reuse the connection).
    pub async fn send(&mut self, req: Outgoing, keep_body: bool) -> Result<Answer> {
        let Outgoing {
            method,
            path,
            content_type,
            bearer,
            body,
        } = req;
        let what = || format!("{method} {path}");
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(path.as_ref())
            .header(HOST, self.host.as_str());
        if let Some(ct) = content_type {
            builder = builder.header(CONTENT_TYPE, ct);
        }
        if let Some(token) = &bearer {
            builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = builder
            .body(body)
            .map_err(|e| BenchError::http(what(), e))?;
        self.sender
            .ready()
            .await
            .map_err(|e| BenchError::http(what(), e))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| BenchError::http(what(), e))?;
        let status = response.status().as_u16();
        let body = read_body(response.into_body(), keep_body)
            .await
            .map_err(|e| BenchError::http(what(), e))?;
        Ok(Answer { status, body })
    }
}

/// Reads every frame of `body`; returns the data when `keep`.
async fn read_body(mut body: Incoming, keep: bool) -> std::result::Result<Vec<u8>, hyper::Error> {
    let mut out = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if let Ok(data) = frame?.into_data() {
            if keep {
                out.extend_from_slice(&data);
            }
        }
    }
    Ok(out)
}
