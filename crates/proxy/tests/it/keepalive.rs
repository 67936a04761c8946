//! Keep-alive towards clients and pooled upstream connections: several
//! requests over one client connection reach the upstream over one
//! connection, every request is still checked and injected, and a refused
//! request (rule or framing) in the middle of a connection is handled.

use crate::rust_upstream::{self, Upstream};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Frame;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "sk-keepalive-42";
/// The upstream echoes the credential; the proxy redacts it on the way back.
const REDACTED: &str = "[redacted-by-idmint-proxy]";

pub struct ProxyUnderTest {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for ProxyUnderTest {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Start the proxy with rules for the test binary itself (identity
/// `harness`): `/ok/` on the plain upstream (plaintext injection allowed)
/// and on the TLS upstream, both with a bearer credential. `extra` is
/// appended to proxy.toml.
pub async fn start_proxy(plain: &Upstream, tls: &Upstream, extra: &str) -> ProxyUnderTest {
    let dir = tempfile::tempdir().unwrap();
    idmint_proxy::init_ca(&dir.path().join("ca.pem"), &dir.path().join("ca-key.pem")).unwrap();
    std::fs::write(dir.path().join("upstream.pem"), &tls.cert_pem).unwrap();
    let key = dir.path().join("api.key");
    std::fs::write(&key, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = format!(
        r#"
listen = "127.0.0.1:0"
audit_file = "audit.jsonl"
ca_cert = "ca.pem"
ca_key = "ca-key.pem"
upstream_ca_file = ["upstream.pem"]
system_roots = false
header_read_timeout = "2s"
{extra}

[resolve]
"upstream.test" = "127.0.0.1"

[secrets.api]
file = "api.key"

[[bindings]]
identity = "harness"
exe = "{exe}"

[[rules]]
identity = "harness"
host = "upstream.test"
port = {plain}
path_prefix = "/ok/"
plaintext = true
inject = {{ kind = "bearer", secret = "api" }}

[[rules]]
identity = "harness"
host = "upstream.test"
port = {tls}
path_prefix = "/ok/"
inject = {{ kind = "bearer", secret = "api" }}
"#,
        exe = std::env::current_exe().unwrap().display(),
        plain = plain.addr.port(),
        tls = tls.addr.port(),
    );
    std::fs::write(dir.path().join("proxy.toml"), config).unwrap();
    let config = idmint_proxy::ProxyConfig::load(&dir.path().join("proxy.toml")).unwrap();
    let bound = idmint_proxy::Proxy::new(config)
        .unwrap()
        .bind()
        .await
        .unwrap();
    let addr = bound.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.serve_until(async move {
        let _ = stopped.await;
    }));
    ProxyUnderTest {
        dir,
        addr,
        stop: Some(stop),
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

async fn client<I>(io: I) -> SendRequest<Body>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    sender
}

async fn send(sender: &mut SendRequest<Body>, req: Request<Body>) -> (StatusCode, String) {
    sender
        .ready()
        .await
        .expect("the proxy kept the connection open");
    let response = sender.send_request(req).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).to_string())
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header("host", "upstream.test")
        .body(Empty::new().boxed())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_requests_share_one_client_and_one_upstream_connection() {
    let plain = rust_upstream::start("127.0.0.1:0".parse().unwrap(), false).await;
    let tls = rust_upstream::start("127.0.0.1:0".parse().unwrap(), true).await;
    let proxy = start_proxy(&plain, &tls, "").await;
    let base = format!("http://upstream.test:{}", plain.addr.port());
    let mut sender = client(TcpStream::connect(proxy.addr).await.unwrap()).await;

    for i in 0..3 {
        let mut req = get(&format!("{base}/ok/{i}"));
        // The workload's own credential is replaced on every request.
        req.headers_mut()
            .insert("authorization", "Bearer mine".parse().unwrap());
        let (status, body) = send(&mut sender, req).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, format!("/ok/{i} auth=Bearer {REDACTED}"));
    }
    // A request no rule allows, in the middle of the connection: refused,
    // and the connection stays usable.
    let (status, body) = send(&mut sender, get(&format!("{base}/admin"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("may not GET"), "{body}");
    // A chunked body (length unknown to the client library) is framed
    // correctly: the next head is found after it.
    let chunks = chunked(&[b"hello ", b"chunked ", b"world"]);
    let post = Request::post(format!("{base}/ok/upload"))
        .header("host", "upstream.test")
        .body(chunks)
        .unwrap();
    let (status, body) = send(&mut sender, post).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = send(&mut sender, get(&format!("{base}/ok/after"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, format!("/ok/after auth=Bearer {REDACTED}"));

    let seen = plain.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/ok/0", "/ok/1", "/ok/2", "/ok/upload", "/ok/after"],
        "the refused request must not reach the upstream"
    );
    assert_eq!(seen[3].body_len, "hello chunked world".len());
    assert_eq!(seen[3].method, "POST");
    assert!(seen
        .iter()
        .all(|s| s.authorization.as_deref() == Some(&format!("Bearer {SECRET}"))));
    assert_eq!(plain.accepted(), 1, "one pooled upstream connection");
    assert!(!sender.is_closed());
}

/// A body in several frames, without a length: hyper sends it chunked.
struct Frames(std::collections::VecDeque<Bytes>);

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

fn chunked(parts: &[&'static [u8]]) -> Body {
    Frames(parts.iter().map(|p| Bytes::from_static(p)).collect()).boxed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intercepted_tls_keeps_the_tunnel_alive_and_checks_every_request() {
    let plain = rust_upstream::start("127.0.0.1:0".parse().unwrap(), false).await;
    let tls = rust_upstream::start("127.0.0.1:0".parse().unwrap(), true).await;
    let proxy = start_proxy(&plain, &tls, "").await;
    let authority = format!("upstream.test:{}", tls.addr.port());
    let mut outer = client(TcpStream::connect(proxy.addr).await.unwrap()).await;
    outer.ready().await.unwrap();
    let connect = Request::builder()
        .method(Method::CONNECT)
        .uri(&authority)
        .header("host", &authority)
        .body(Empty::new().boxed())
        .unwrap();
    let response = outer.send_request(connect).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let tunnel = hyper::upgrade::on(response).await.unwrap();

    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(proxy.dir.path().join("ca.pem")).unwrap();
    for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("upstream.test").unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, TokioIo::new(tunnel))
        .await
        .unwrap();
    let mut inner = client(stream).await;
    for path in ["/ok/a", "/ok/b"] {
        let (status, body) = send(&mut inner, get(path)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, format!("{path} auth=Bearer {REDACTED}"));
    }
    let (status, body) = send(&mut inner, get("/private/keys")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let post = Request::post("/ok/c")
        .header("host", "upstream.test")
        .body(Full::new(Bytes::from_static(b"0123456789")).boxed())
        .unwrap();
    let (status, body) = send(&mut inner, post).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!inner.is_closed());

    let seen = tls.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["/ok/a", "/ok/b", "/ok/c"]);
    assert_eq!(seen[2].body_len, 10);
    assert!(seen
        .iter()
        .all(|s| s.authorization.as_deref() == Some(&format!("Bearer {SECRET}"))));
    assert_eq!(tls.accepted(), 1, "one pooled upstream TLS connection");
}

/// Write `request` on `stream` and read until the peer closes (or 5s).
async fn exchange_raw(stream: &mut TcpStream, request: &[u8]) -> String {
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_head_after_a_good_request_is_refused_on_the_same_connection() {
    let plain = rust_upstream::start("127.0.0.1:0".parse().unwrap(), false).await;
    let tls = rust_upstream::start("127.0.0.1:0".parse().unwrap(), true).await;
    let proxy = start_proxy(&plain, &tls, "").await;
    let target = format!("http://upstream.test:{}", plain.addr.port());
    // Pipelined: a good request with a body, then a CL+TE request whose
    // "body" hides a third request. Only the first may reach the upstream.
    let request = format!(
        "POST {target}/ok/1 HTTP/1.1\r\nHost: upstream.test\r\nContent-Length: 5\r\n\r\nabcde\
         POST {target}/ok/2 HTTP/1.1\r\nHost: upstream.test\r\nContent-Length: 44\r\n\
         Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET {target}/ok/smuggled HTTP/1.1\r\n\r\n"
    );
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let reply = exchange_raw(&mut stream, request.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let second = reply
        .match_indices("HTTP/1.1 ")
        .nth(1)
        .map(|(i, _)| &reply[i..])
        .unwrap_or_else(|| panic!("no second response: {reply}"));
    assert!(second.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(
        second.contains("both Content-Length and Transfer-Encoding"),
        "{reply}"
    );
    assert_eq!(reply.matches("HTTP/1.1 ").count(), 2, "{reply}");
    let paths: Vec<String> = plain.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/ok/1"]);

    // A bad chunk size mid-connection ends it too, after the good request.
    let request = format!(
        "GET {target}/ok/3 HTTP/1.1\r\nHost: upstream.test\r\n\r\n\
         POST {target}/ok/4 HTTP/1.1\r\nHost: upstream.test\r\nTransfer-Encoding: chunked\r\n\r\n\
         zz\r\nhello\r\n0\r\n\r\n"
    );
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let reply = exchange_raw(&mut stream, request.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let paths: Vec<String> = plain.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/ok/1", "/ok/3"], "{reply}");
    assert!(!reply.contains("/ok/4"), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_second_head_gets_408_and_idle_client_is_kept() {
    let plain = rust_upstream::start("127.0.0.1:0".parse().unwrap(), false).await;
    let tls = rust_upstream::start("127.0.0.1:0".parse().unwrap(), true).await;
    let proxy = start_proxy(&plain, &tls, "").await;
    let target = format!("http://upstream.test:{}", plain.addr.port());
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let first = format!("GET {target}/ok/1 HTTP/1.1\r\nHost: upstream.test\r\n\r\n");
    stream.write_all(first.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = String::new();
    while !got.contains(&format!("auth=Bearer {REDACTED}")) {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed after the first response: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // Idle for longer than header_read_timeout (2s): still open, because
    // the head deadline starts with the head's first byte.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stream
        .write_all(format!("GET {target}/ok/2 HTTP/1.1\r\n").as_bytes())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(6), stream.read_to_end(&mut rest)).await;
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.starts_with("HTTP/1.1 408"), "{rest}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let paths: Vec<String> = plain.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/ok/1"]);
}
