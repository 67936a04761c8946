//! Scenario `proxy`: the latency the egress proxy adds, and its throughput,
//! against a direct request to the same local upstream, with nginx (a
//! reverse proxy doing the same header injection over kept-alive upstream
//! connections) side by side as the well-known reference.
//!
//! Everything runs on this machine: a small hyper upstream (plain HTTP and
//! TLS, `200` with a 2-byte body), `idmint-proxy` in process on its own
//! runtime (2 worker threads; the caller is identified through `/proc`
//! once per connection, as in production), and `nginx` as a child process
//! with a generated configuration (2 workers). Each client connection is
//! opened once and kept alive; for HTTPS through idmint it is a `CONNECT`
//! tunnel that idmint intercepts with its local CA to inject the bearer
//! token; for HTTPS through nginx the client speaks TLS to nginx, which
//! speaks TLS to the upstream. The added latency is the proxied percentile
//! minus the direct one at the same concurrency.

use crate::error::{BenchError, Result};
use crate::report::Table;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// The credential injected by both proxies.
const TOKEN: &str = "bench-proxy-token-0123456789";

/// Which path a measured request takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    Direct,
    Idmint,
    Nginx,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Via::Direct => "direct",
            Via::Idmint => "idmint proxy",
            Via::Nginx => "nginx",
        }
    }
}

/// One measured run.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyRow {
    pub scheme: &'static str,
    pub via: Via,
    pub concurrency: usize,
    pub requests: u64,
    pub errors: u64,
    pub req_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Proxied minus direct, same scheme and concurrency.
    pub added_p50_us: Option<f64>,
    pub added_p99_us: Option<f64>,
    /// Proxied throughput as a share of direct.
    pub throughput_vs_direct: Option<f64>,
}

/// Settings of the scenario.
#[derive(Debug, Clone)]
pub struct ProxyBenchArgs {
    pub duration: Duration,
    pub warmup: Duration,
    pub concurrency: Vec<usize>,
    pub nginx: Option<PathBuf>,
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |e| BenchError::io(what, e)
}

fn fail(what: impl std::fmt::Display) -> BenchError {
    BenchError::io(
        "the proxy scenario",
        std::io::Error::other(what.to_string()),
    )
}

/// A runtime of its own for a server in this process, so it does not share
/// the load generator's threads. Dropped without waiting (the bench's own
/// runtime is async context, where a blocking drop is not allowed).
struct Background(Option<tokio::runtime::Runtime>);

impl Background {
    fn new(name: &str, threads: usize) -> Result<Self> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(name)
            .enable_all()
            .build()
            .map(|rt| Self(Some(rt)))
            .map_err(io("starting a server runtime"))
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime> {
        self.0
            .as_ref()
            .ok_or_else(|| fail("runtime already stopped"))
    }

    /// Run `f` to completion on this runtime from a plain thread (the
    /// caller may itself be inside a runtime).
    fn block_on<F>(&self, f: F) -> Result<F::Output>
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        let rt = self.runtime()?;
        std::thread::scope(|s| s.spawn(|| rt.block_on(f)).join())
            .map_err(|_| fail("a server setup thread panicked"))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The local upstream: plain and TLS listeners on one runtime thread.
struct Upstream {
    plain: SocketAddr,
    tls: SocketAddr,
    _runtime: Background,
}

fn tls_server_config(cert: &rcgen::CertifiedKey) -> Result<Arc<rustls::ServerConfig>> {
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(fail)?
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .map_err(fail)?;
    Ok(Arc::new(config))
}

fn start_upstream(cert: &rcgen::CertifiedKey) -> Result<Upstream> {
    let runtime = Background::new("bench-upstream", 1)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_server_config(cert)?);
    let (plain, tls) = runtime
        .block_on(async {
            let plain = TcpListener::bind("127.0.0.1:0").await?;
            let tls = TcpListener::bind("127.0.0.1:0").await?;
            Ok::<_, std::io::Error>((plain, tls))
        })?
        .map_err(io("binding the upstream"))?;
    let addrs = (
        plain.local_addr().map_err(io("upstream address"))?,
        tls.local_addr().map_err(io("upstream address"))?,
    );
    runtime.runtime()?.spawn(serve_upstream(plain, None));
    runtime
        .runtime()?
        .spawn(serve_upstream(tls, Some(acceptor)));
    Ok(Upstream {
        plain: addrs.0,
        tls: addrs.1,
        _runtime: runtime,
    })
}

async fn serve_upstream(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                    // 200 only when the credential arrived: a proxy that did not
                    // inject is counted as errors, not as fast.
                    let ok = req
                        .headers()
                        .get("authorization")
                        .is_some_and(|v| v.as_bytes() == format!("Bearer {TOKEN}").as_bytes());
                    let mut response =
                        Response::new(http_body_util::Full::new(Bytes::from_static(b"ok")));
                    if !ok {
                        *response.status_mut() = StatusCode::UNAUTHORIZED;
                    }
                    Ok::<_, std::convert::Infallible>(response)
                });
            let builder = hyper::server::conn::http1::Builder::new();
            match tls {
                Some(acceptor) => {
                    if let Ok(s) = acceptor.accept(stream).await {
                        let _ = builder.serve_connection(TokioIo::new(s), service).await;
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
}

/// idmint's proxy in this process, on its own runtime.
struct IdmintProxy {
    addr: SocketAddr,
    ca_pem: Vec<u8>,
    _runtime: Background,
    _dir: tempfile::TempDir,
}

fn start_idmint(upstream: &Upstream, upstream_cert_pem: &str) -> Result<IdmintProxy> {
    let dir = tempfile::tempdir().map_err(io("creating a temp dir"))?;
    let d = dir.path();
    idmint_proxy::init_ca(&d.join("ca.pem"), &d.join("ca-key.pem")).map_err(fail)?;
    std::fs::write(d.join("upstream.pem"), upstream_cert_pem)
        .map_err(io("writing upstream.pem"))?;
    let key = d.join("token");
    std::fs::write(&key, TOKEN).map_err(io("writing the token"))?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
        .map_err(io("chmod token"))?;
    let exe = std::env::current_exe().map_err(io("locating this executable"))?;
    let config = format!(
        r#"listen = "127.0.0.1:0"
audit_file = "audit.jsonl"
ca_cert = "ca.pem"
ca_key = "ca-key.pem"
upstream_ca_file = ["upstream.pem"]
system_roots = false

[resolve]
"upstream.test" = "127.0.0.1"

[secrets.token]
file = "token"

[[bindings]]
identity = "bench"
exe = "{exe}"

[[rules]]
identity = "bench"
host = "upstream.test"
port = {plain}
plaintext = true
inject = {{ kind = "bearer", secret = "token" }}

[[rules]]
identity = "bench"
host = "upstream.test"
port = {tls}
inject = {{ kind = "bearer", secret = "token" }}
"#,
        exe = exe.display(),
        plain = upstream.plain.port(),
        tls = upstream.tls.port(),
    );
    std::fs::write(d.join("proxy.toml"), config).map_err(io("writing proxy.toml"))?;
    let config = idmint_proxy::ProxyConfig::load(&d.join("proxy.toml")).map_err(fail)?;
    let runtime = Background::new("idmint-proxy", 2)?;
    let bound = runtime
        .block_on(async { idmint_proxy::Proxy::new(config)?.bind().await })?
        .map_err(fail)?;
    let addr = bound.local_addr().map_err(fail)?;
    runtime
        .runtime()?
        .spawn(bound.serve_until(std::future::pending()));
    let ca_pem = std::fs::read(d.join("ca.pem")).map_err(io("reading ca.pem"))?;
    Ok(IdmintProxy {
        addr,
        ca_pem,
        _runtime: runtime,
        _dir: dir,
    })
}

/// nginx as a child process; killed on drop.
struct Nginx {
    plain: SocketAddr,
    tls: SocketAddr,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    l.local_addr().map_err(io("finding a free port"))
}

fn start_nginx(bin: &Path, upstream: &Upstream, cert: &rcgen::CertifiedKey) -> Result<Nginx> {
    let dir = tempfile::tempdir().map_err(io("creating a temp dir"))?;
    let d = dir.path();
    std::fs::create_dir_all(d.join("logs")).map_err(io("nginx logs dir"))?;
    std::fs::write(d.join("cert.pem"), cert.cert.pem()).map_err(io("nginx cert"))?;
    std::fs::write(d.join("key.pem"), cert.key_pair.serialize_pem()).map_err(io("nginx key"))?;
    let (plain, tls) = (free_port()?, free_port()?);
    let config = format!(
        r#"worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    upstream plain_up {{ server {up_plain}; keepalive 128; }}
    upstream tls_up {{ server {up_tls}; keepalive 128; }}
    server {{
        listen {plain};
        location / {{
            proxy_pass http://plain_up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host upstream.test;
            proxy_set_header Authorization "Bearer {TOKEN}";
        }}
    }}
    server {{
        listen {tls} ssl;
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        location / {{
            proxy_pass https://tls_up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host upstream.test;
            proxy_set_header Authorization "Bearer {TOKEN}";
            proxy_ssl_server_name on;
            proxy_ssl_name upstream.test;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {d}/cert.pem;
            proxy_ssl_session_reuse on;
        }}
    }}
}}
"#,
        d = d.display(),
        up_plain = upstream.plain,
        up_tls = upstream.tls,
    );
    std::fs::write(d.join("nginx.conf"), config).map_err(io("writing nginx.conf"))?;
    let child = std::process::Command::new(bin)
        .arg("-p")
        .arg(d)
        .args(["-c", "nginx.conf", "-g", "daemon off;"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(io("starting nginx"))?;
    let nginx = Nginx {
        plain,
        tls,
        child,
        _dir: dir,
    };
    // Wait (with a deadline) until both listeners accept.
    let deadline = Instant::now() + Duration::from_secs(10);
    for addr in [plain, tls] {
        while std::net::TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(d_log(&nginx)).unwrap_or_default();
                return Err(fail(format!("nginx did not listen on {addr}: {log}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(nginx)
}

fn d_log(n: &Nginx) -> PathBuf {
    n._dir.path().join("logs/error.log")
}

fn client_tls(roots_pem: &[&[u8]]) -> Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in roots_pem {
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            roots.add(cert.map_err(fail)?).map_err(fail)?;
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(fail)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

type Sender = SendRequest<Empty<Bytes>>;

/// How one client connection reaches the upstream.
#[derive(Clone)]
struct Route {
    /// Where the TCP connection goes.
    connect: SocketAddr,
    /// `CONNECT` this authority first (HTTPS through idmint).
    tunnel: Option<String>,
    /// TLS on the connection (after the tunnel, if any).
    tls: Option<tokio_rustls::TlsConnector>,
    /// The request target: absolute-form for plain HTTP through idmint.
    target: String,
    /// Add the credential ourselves (direct requests).
    authorization: bool,
}

async fn handshake<I>(io: I, upgrades: bool) -> Result<Sender>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(fail)?;
    tokio::spawn(async move {
        if upgrades {
            let _ = conn.with_upgrades().await;
        } else {
            let _ = conn.await;
        }
    });
    Ok(sender)
}

async fn open(route: &Route) -> Result<Sender> {
    let tcp = TcpStream::connect(route.connect)
        .await
        .map_err(io("connecting"))?;
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::try_from("upstream.test").map_err(fail)?;
    match (&route.tunnel, &route.tls) {
        (None, None) => handshake(tcp, false).await,
        (None, Some(tls)) => {
            let s = tls.connect(name, tcp).await.map_err(io("TLS"))?;
            handshake(s, false).await
        }
        (Some(authority), tls) => {
            let mut outer = handshake(tcp, true).await?;
            let req = Request::builder()
                .method(Method::CONNECT)
                .uri(authority.as_str())
                .header("host", authority.as_str())
                .body(Empty::new())
                .map_err(fail)?;
            let response = outer.send_request(req).await.map_err(fail)?;
            if response.status() != StatusCode::OK {
                return Err(fail(format!("CONNECT answered {}", response.status())));
            }
            let upgraded = hyper::upgrade::on(response).await.map_err(fail)?;
            let tls = tls.as_ref().ok_or_else(|| fail("tunnel without TLS"))?;
            let s = tls
                .connect(name, TokioIo::new(upgraded))
                .await
                .map_err(io("TLS in the tunnel"))?;
            handshake(s, false).await
        }
    }
}

struct Measured {
    hist: Histogram<u64>,
    ok: u64,
    errors: u64,
    elapsed: Duration,
}

/// `concurrency` kept-alive connections sending back to back; latencies
/// after `warmup` are recorded (microseconds).
async fn measure(
    route: &Route,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> Result<Measured> {
    let mut senders = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        senders.push(open(route).await?);
    }
    let start = Instant::now();
    let record_from = start + warmup;
    let end = record_from + duration;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(concurrency);
    for mut sender in senders {
        let route = route.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).ok();
            let (mut ok, mut errors) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                let mut req = Request::get(route.target.as_str()).header("host", "upstream.test");
                if route.authorization {
                    req = req.header("authorization", format!("Bearer {TOKEN}"));
                }
                let Ok(req) = req.body(Empty::new()) else {
                    errors += 1;
                    break;
                };
                let sent = Instant::now();
                if sender.ready().await.is_err() {
                    errors += 1;
                    break;
                }
                let good = match sender.send_request(req).await {
                    Ok(response) => {
                        let status = response.status();
                        response.into_body().collect().await.is_ok() && status == StatusCode::OK
                    }
                    Err(_) => false,
                };
                let done = Instant::now();
                if sent >= record_from && done <= end {
                    if good {
                        ok += 1;
                        if let Some(h) = hist.as_mut() {
                            let _ = h.record(done.duration_since(sent).as_micros() as u64);
                        }
                    } else {
                        errors += 1;
                    }
                }
            }
            (hist, ok, errors)
        }));
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(fail)?;
    let (mut ok, mut errors) = (0, 0);
    for t in tasks {
        let (hist, o, e) = t.await.map_err(fail)?;
        if let Some(h) = hist {
            total.add(h).map_err(fail)?;
        }
        ok += o;
        errors += e;
    }
    stop.store(true, Ordering::Relaxed);
    Ok(Measured {
        hist: total,
        ok,
        errors,
        elapsed: duration,
    })
}

/// Run every (scheme, path, concurrency) combination and return the rows
/// (with added latency and throughput share filled in).
pub async fn run(args: &ProxyBenchArgs) -> Result<Vec<ProxyRow>> {
    let cert =
        rcgen::generate_simple_self_signed(vec!["upstream.test".to_string()]).map_err(fail)?;
    let cert_pem = cert.cert.pem();
    let upstream = start_upstream(&cert)?;
    let idmint = start_idmint(&upstream, &cert_pem)?;
    let nginx = match &args.nginx {
        Some(bin) => Some(start_nginx(bin, &upstream, &cert)?),
        None => None,
    };
    let upstream_tls = client_tls(&[cert_pem.as_bytes()])?;
    let proxy_tls = client_tls(&[&idmint.ca_pem])?;
    let mut routes: Vec<(&'static str, Via, Route)> = vec![
        (
            "http",
            Via::Direct,
            Route {
                connect: upstream.plain,
                tunnel: None,
                tls: None,
                target: "/bench".into(),
                authorization: true,
            },
        ),
        (
            "http",
            Via::Idmint,
            Route {
                connect: idmint.addr,
                tunnel: None,
                tls: None,
                target: format!("http://upstream.test:{}/bench", upstream.plain.port()),
                authorization: false,
            },
        ),
        (
            "https",
            Via::Direct,
            Route {
                connect: upstream.tls,
                tunnel: None,
                tls: Some(upstream_tls.clone()),
                target: "/bench".into(),
                authorization: true,
            },
        ),
        (
            "https",
            Via::Idmint,
            Route {
                connect: idmint.addr,
                tunnel: Some(format!("upstream.test:{}", upstream.tls.port())),
                tls: Some(proxy_tls),
                target: "/bench".into(),
                authorization: false,
            },
        ),
    ];
    if let Some(n) = &nginx {
        routes.push((
            "http",
            Via::Nginx,
            Route {
                connect: n.plain,
                tunnel: None,
                tls: None,
                target: "/bench".into(),
                authorization: false,
            },
        ));
        routes.push((
            "https",
            Via::Nginx,
            Route {
                connect: n.tls,
                tunnel: None,
                tls: Some(upstream_tls),
                target: "/bench".into(),
                authorization: false,
            },
        ));
    }
    routes.sort_by_key(|(scheme, via, _)| (*scheme, *via as u8));
    let mut rows = Vec::new();
    for &concurrency in &args.concurrency {
        for (scheme, via, route) in &routes {
            eprintln!(
                "proxy: {scheme} via {} at {concurrency} connections",
                via.as_str()
            );
            let m = measure(route, concurrency, args.warmup, args.duration).await?;
            let secs = m.elapsed.as_secs_f64();
            rows.push(ProxyRow {
                scheme,
                via: *via,
                concurrency,
                requests: m.ok,
                errors: m.errors,
                req_per_s: m.ok as f64 / secs,
                p50_us: m.hist.value_at_quantile(0.5) as f64,
                p99_us: m.hist.value_at_quantile(0.99) as f64,
                added_p50_us: None,
                added_p99_us: None,
                throughput_vs_direct: None,
            });
        }
    }
    fill_added(&mut rows);
    Ok(rows)
}

fn fill_added(rows: &mut [ProxyRow]) {
    let direct: Vec<ProxyRow> = rows
        .iter()
        .filter(|r| r.via == Via::Direct)
        .cloned()
        .collect();
    for row in rows.iter_mut().filter(|r| r.via != Via::Direct) {
        if let Some(d) = direct
            .iter()
            .find(|d| d.scheme == row.scheme && d.concurrency == row.concurrency)
        {
            row.added_p50_us = Some(row.p50_us - d.p50_us);
            row.added_p99_us = Some(row.p99_us - d.p99_us);
            if d.req_per_s > 0.0 {
                row.throughput_vs_direct = Some(row.req_per_s / d.req_per_s);
            }
        }
    }
}

/// The rows as the other scenarios print them.
pub fn table(rows: &[ProxyRow]) -> String {
    let mut t = Table::new(&[
        "scheme",
        "via",
        "conc",
        "req/s",
        "p50 µs",
        "p99 µs",
        "added p50 µs",
        "added p99 µs",
        "vs direct",
        "errors",
    ]);
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.0}"));
    for r in rows {
        t.row(vec![
            r.scheme.to_string(),
            r.via.as_str().to_string(),
            r.concurrency.to_string(),
            format!("{:.0}", r.req_per_s),
            format!("{:.0}", r.p50_us),
            format!("{:.0}", r.p99_us),
            opt(r.added_p50_us),
            opt(r.added_p99_us),
            r.throughput_vs_direct
                .map_or(String::new(), |v| format!("{:.0} %", v * 100.0)),
            r.errors.to_string(),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(scheme: &'static str, via: Via, rate: f64, p50: f64) -> ProxyRow {
        ProxyRow {
            scheme,
            via,
            concurrency: 64,
            requests: 1,
            errors: 0,
            req_per_s: rate,
            p50_us: p50,
            p99_us: p50 * 2.0,
            added_p50_us: None,
            added_p99_us: None,
            throughput_vs_direct: None,
        }
    }

    #[test]
    fn added_latency_is_against_direct_of_the_same_scheme() {
        let mut rows = vec![
            row("http", Via::Direct, 1000.0, 100.0),
            row("https", Via::Direct, 500.0, 300.0),
            row("http", Via::Idmint, 800.0, 150.0),
            row("https", Via::Nginx, 250.0, 400.0),
        ];
        fill_added(&mut rows);
        assert_eq!(rows[2].added_p50_us, Some(50.0));
        assert_eq!(rows[2].added_p99_us, Some(100.0));
        assert_eq!(rows[2].throughput_vs_direct, Some(0.8));
        assert_eq!(rows[3].added_p50_us, Some(100.0));
        assert_eq!(rows[3].throughput_vs_direct, Some(0.5));
        assert_eq!(rows[0].added_p50_us, None);
    }
}
