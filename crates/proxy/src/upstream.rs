//! Pooled connections to upstreams.
//!
//! Requests go through hyper-util's pooling client with the proxy's own
//! connector. The pool key is the request URI's scheme and authority, and
//! the proxy puts the **resolved, already-checked address** into that
//! authority's userinfo (`http://127.0.0.1@upstream.test:8080/`): a
//! connection is therefore only reused for the same scheme, host, port and
//! address, and the connector connects to exactly that address, never
//! resolving the name again (a DNS answer that changes to a denied address
//! after the check cannot redirect the connection: DNS rebinding). The
//! userinfo never reaches the upstream: requests are sent in origin form
//! with the proxy's own `Host` header.

use crate::forward::Destination;
use crate::response::ProxyBody;
use hyper::body::Incoming;
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Idle upstream connections kept per (scheme, host, port, address).
/// Enough for a busy workload's concurrency; beyond it connections close
/// when their request is done.
pub const POOL_MAX_IDLE_PER_KEY: usize = 128;

/// How long an idle upstream connection is kept before it is closed.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an upstream connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("internal: upstream URI {0} carries no checked address")]
    NoAddress(String),
    #[error("cannot connect to {addr}: {source}")]
    Tcp { addr: SocketAddr, source: io::Error },
    #[error("timed out connecting to {0}")]
    Timeout(SocketAddr),
    #[error("`{0}` is not a valid TLS server name")]
    ServerName(String),
    #[error("TLS with {host}:{port} failed: {source} (if it uses a private CA, add it to upstream_ca_file)")]
    Tls {
        host: String,
        port: u16,
        source: io::Error,
    },
    #[error("TLS handshake with {0} timed out")]
    TlsTimeout(SocketAddr),
}

/// The pooled client, shared by all client connections.
#[derive(Clone)]
pub(crate) struct Upstreams {
    client: Client<Connector, ProxyBody>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams").finish_non_exhaustive()
    }
}

impl Upstreams {
    pub(crate) fn new(tls: tokio_rustls::TlsConnector, timeout: Duration) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_KEY)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            // The proxy sets Host itself (without the userinfo).
            .set_host(false)
            .build(Connector { tls, timeout });
        Self { client }
    }

    /// Send `req` (origin-form target) to `dest`, over a pooled connection
    /// when one is idle.
    pub(crate) async fn send(
        &self,
        dest: &Destination,
        tls: bool,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, String> {
        let uri = pool_uri(dest, tls, req.uri())?;
        *req.uri_mut() = uri;
        self.client.request(req).await.map_err(|e| {
            // The client's own message is generic ("client error
            // (Connect)"); the cause chain says what failed.
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message = format!("{message}: {cause}");
                source = cause.source();
            }
            message
        })
    }
}

/// `scheme://ADDR@host:port/target`, with ADDR the checked address (IPv6
/// colons written as `-`, which userinfo allows unambiguously).
fn pool_uri(dest: &Destination, tls: bool, target: &Uri) -> Result<Uri, String> {
    let scheme = if tls { "https" } else { "http" };
    let addr = dest.addr.ip().to_string().replace(':', "-");
    let host = if dest.host.contains(':') {
        format!("[{}]", dest.host)
    } else {
        dest.host.clone()
    };
    let path = target.path_and_query().map_or("/", |p| p.as_str());
    format!("{scheme}://{addr}@{host}:{}{path}", dest.port)
        .parse()
        .map_err(|e| format!("bad upstream target: {e}"))
}

/// The address the proxy checked, from the pool URI.
fn checked_addr(uri: &Uri) -> Option<SocketAddr> {
    let authority = uri.authority()?.as_str();
    let (userinfo, _) = authority.split_once('@')?;
    let ip: IpAddr = userinfo.replace('-', ":").parse().ok()?;
    Some(SocketAddr::new(ip, uri.port_u16()?))
}

#[derive(Clone)]
pub(crate) struct Connector {
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<UpstreamStream>;
    type Error = ConnectError;
    type Future =
        Pin<Box<dyn Future<Output = Result<TokioIo<UpstreamStream>, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (tls, timeout) = (self.tls.clone(), self.timeout);
        Box::pin(async move {
            let addr =
                checked_addr(&uri).ok_or_else(|| ConnectError::NoAddress(uri.to_string()))?;
            let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(source)) => return Err(ConnectError::Tcp { addr, source }),
                Err(_) => return Err(ConnectError::Timeout(addr)),
            };
            let _ = tcp.set_nodelay(true);
            if uri.scheme_str() != Some("https") {
                return Ok(TokioIo::new(UpstreamStream::Plain(tcp)));
            }
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = addr.port();
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|_| ConnectError::ServerName(host.clone()))?;
            match tokio::time::timeout(timeout, tls.connect(name, tcp)).await {
                Ok(Ok(s)) => Ok(TokioIo::new(UpstreamStream::Tls(Box::new(s)))),
                Ok(Err(source)) => Err(ConnectError::Tls { host, port, source }),
                Err(_) => Err(ConnectError::TlsTimeout(addr)),
            }
        })
    }
}

/// A plain or TLS connection to an upstream.
pub(crate) enum UpstreamStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Connection for UpstreamStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(host: &str, addr: &str) -> Destination {
        Destination {
            host: host.into(),
            port: 8443,
            addr: addr.parse().unwrap(),
            intercept: true,
            tls: true,
        }
    }

    #[test]
    fn pool_uri_carries_the_checked_address() {
        let target: Uri = "/v1/x?y=1".parse().unwrap();
        for (host, addr) in [
            ("api.test", "10.1.2.3:8443"),
            ("api.test", "[2001:db8::1]:8443"),
            ("::1", "[::1]:8443"),
            ("api.test", "[::ffff:10.0.0.1]:8443"),
        ] {
            let d = dest(host, addr);
            let uri = pool_uri(&d, true, &target).unwrap();
            assert_eq!(checked_addr(&uri), Some(d.addr), "{uri}");
            assert_eq!(uri.path_and_query().unwrap().as_str(), "/v1/x?y=1");
            assert_eq!(uri.scheme_str(), Some("https"));
        }
        let d = dest("api.test", "10.1.2.3:8443");
        let other = dest("api.test", "10.1.2.4:8443");
        assert_ne!(
            pool_uri(&d, true, &target).unwrap().authority(),
            pool_uri(&other, true, &target).unwrap().authority(),
            "a different address must be a different pool key"
        );
        assert_eq!(checked_addr(&"http://api.test:80/".parse().unwrap()), None);
    }
}
