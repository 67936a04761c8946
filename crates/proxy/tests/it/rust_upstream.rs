//! A real upstream for the keep-alive and transparent-mode tests: a hyper
//! HTTP/1.1 server (plain or TLS with a self-signed certificate for
//! `upstream.test`) that counts the TCP connections it accepted and
//! records every request's path and `Authorization` header. Each response
//! body is `<path> auth=<authorization or ->`.

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body_len: usize,
}

pub struct Upstream {
    pub addr: SocketAddr,
    /// PEM of the self-signed certificate (TLS upstreams).
    pub cert_pem: String,
    accepted: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Start the upstream on `bind` (port 0 for any); TLS when `tls`.
pub async fn start(bind: SocketAddr, tls: bool) -> Upstream {
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec![
        "upstream.test".to_string(),
        "localhost".to_string(),
    ])
    .unwrap();
    let cert_pem = certified.cert.pem();
    let acceptor = tls.then(|| {
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    let accepted = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (accepted2, seen2) = (accepted.clone(), seen.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            accepted2.fetch_add(1, Ordering::SeqCst);
            let seen = seen2.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let method = req.method().to_string();
                        let path = req
                            .uri()
                            .path_and_query()
                            .map_or("/".to_string(), |p| p.to_string());
                        let authorization = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        // Only complete requests count as seen.
                        let Ok(body) = body else {
                            return Ok(Response::new(Full::new(Bytes::new())));
                        };
                        let body_len = body.len();
                        let text =
                            format!("{path} auth={}", authorization.as_deref().unwrap_or("-"));
                        if let Ok(mut s) = seen.lock() {
                            s.push(Seen {
                                method,
                                path,
                                authorization,
                                body_len,
                            });
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                    }
                });
                let builder = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(stream).await {
                            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                    None => {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
            });
        }
    });
    Upstream {
        addr,
        cert_pem,
        accepted,
        seen,
        task,
    }
}
