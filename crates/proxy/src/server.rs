//! The listener: accept, identify the caller, serve its requests.
//!
//! Client connections are kept alive (HTTP/1.1): the caller is identified
//! once, at accept, and every request on the connection is then checked
//! against the rules and injected on its own. The proxy checks request
//! framing itself before hyper parses a head, for every head on the
//! connection ([`crate::conn::CheckedIo`]). `CONNECT` turns the connection
//! into a tunnel: relayed untouched, or, when injection or request limits
//! apply, terminated with the local CA and served the same way (keep-alive
//! inside the TLS connection too). Upstream connections are pooled per
//! scheme, host, port and checked address ([`crate::upstream`]).

use crate::audit::{AuditError, AuditLog, AuditRecord};
use crate::bindings::find_binding;
use crate::config::{ConfigError, ProxyConfig};
use crate::conn::{CheckedIo, RefusalContext};
use crate::forward::{forward, Destination};
use crate::peer::{ProcFs, ProcessInfo};
use crate::response::{text, ProxyBody};
use crate::rules::{plan_connect, ConnectPlan};
use crate::tls_ca::{CaError, LocalCa};
use crate::tunnel::{intercept, splice};
use crate::upstream::Upstreams;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("cannot read upstream CA file {path}: {reason}")]
    UpstreamCa {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("no upstream trust roots: set upstream_ca_file or system_roots = true (and install ca-certificates)")]
    NoRoots,
    #[error("cannot read fingerprint key {path}: {source}")]
    FingerprintKey {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a random fingerprint key: {0}")]
    Random(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error(transparent)]
    Creds(#[from] crate::creds::CredSetupError),
}

/// Everything a connection needs, shared by all connections.
pub(crate) struct State {
    pub config: ProxyConfig,
    pub ca: Option<LocalCa>,
    pub upstreams: Upstreams,
    pub audit: AuditLog,
    pub procfs: ProcFs,
    /// Resolves `idmint` and `vault_kv` secrets per request.
    pub creds: crate::creds::CredentialResolver,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("listen", &self.config.listen)
            .finish_non_exhaustive()
    }
}

/// Who is on the other end of a client connection.
#[derive(Debug)]
pub(crate) struct Caller {
    pub client: SocketAddr,
    pub process: Option<ProcessInfo>,
    pub identity: Option<String>,
    /// Why `identity` is `None` (shown in the 403).
    pub unbound_reason: String,
}

impl Caller {
    /// An audit record pre-filled with the caller's facts.
    pub fn record(&self, mode: &'static str, host: &str, port: u16) -> AuditRecord {
        AuditRecord {
            mode,
            identity: self.identity.clone(),
            pid: self.process.as_ref().map(|p| p.pid),
            uid: self.process.as_ref().map(|p| p.uid),
            exe: self.process.as_ref().map(|p| p.exe.display().to_string()),
            client: self.client.to_string(),
            host: host.to_string(),
            port,
            ..Default::default()
        }
    }
}

/// A configured proxy, not yet listening.
#[derive(Debug)]
pub struct Proxy {
    state: Arc<State>,
}

/// A proxy bound to its listening sockets.
#[derive(Debug)]
pub struct BoundProxy {
    state: Arc<State>,
    listener: TcpListener,
    /// `transparent_listen`, for connections redirected by the firewall.
    transparent: Option<TcpListener>,
}

fn upstream_connector(config: &ProxyConfig) -> Result<tokio_rustls::TlsConnector, ProxyError> {
    let mut roots = rustls::RootCertStore::empty();
    let mut files = config.upstream_ca_files.clone();
    let system = std::path::PathBuf::from("/etc/ssl/certs/ca-certificates.crt");
    if config.system_roots && system.exists() {
        files.push(system);
    }
    for path in &files {
        let pem = std::fs::read(path).map_err(|e| ProxyError::UpstreamCa {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let mut found = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| ProxyError::UpstreamCa {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            // Bundles may hold certificates rustls cannot use; skip those.
            if roots.add(cert).is_ok() {
                found += 1;
            }
        }
        if found == 0 {
            return Err(ProxyError::UpstreamCa {
                path: path.clone(),
                reason: "no PEM certificate in the file".into(),
            });
        }
    }
    if roots.is_empty() {
        return Err(ProxyError::NoRoots);
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ProxyError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(tls)))
}

fn fingerprint_key(config: &ProxyConfig) -> Result<zeroize::Zeroizing<Vec<u8>>, ProxyError> {
    match &config.fingerprint_key_file {
        Some(path) => std::fs::read(path)
            .map(zeroize::Zeroizing::new)
            .map_err(|source| ProxyError::FingerprintKey {
                path: path.clone(),
                source,
            }),
        None => {
            let mut key = zeroize::Zeroizing::new(vec![0u8; 32]);
            idmint_core::ids::random_bytes(&mut key)
                .map_err(|e| ProxyError::Random(e.to_string()))?;
            Ok(key)
        }
    }
}

impl Proxy {
    /// Load the CA, upstream trust roots and audit file named in `config`.
    pub fn new(config: ProxyConfig) -> Result<Self, ProxyError> {
        let ca = match &config.ca {
            Some(paths) => Some(LocalCa::load(&paths.cert, &paths.key)?),
            None => None,
        };
        let upstreams = Upstreams::new(upstream_connector(&config)?, config.upstream_timeout);
        let audit = AuditLog::open(&config.audit_file, &fingerprint_key(&config)?)?;
        let creds = crate::creds::CredentialResolver::new(&config)?;
        Ok(Self {
            state: Arc::new(State {
                config,
                ca,
                upstreams,
                audit,
                procfs: ProcFs::default(),
                creds,
            }),
        })
    }

    /// Bind the configured `listen` (and `transparent_listen`) addresses
    /// (port 0 picks a free port).
    pub async fn bind(self) -> Result<BoundProxy, ProxyError> {
        let addr = self.state.config.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ProxyError::Listen { addr, source })?;
        let transparent = match self.state.config.transparent_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ProxyError::Listen { addr, source })?,
            ),
            None => None,
        };
        Ok(BoundProxy {
            state: self.state,
            listener,
            transparent,
        })
    }
}

impl BoundProxy {
    /// The address actually listened on.
    pub fn local_addr(&self) -> Result<SocketAddr, ProxyError> {
        let addr = self.state.config.listen;
        self.listener
            .local_addr()
            .map_err(|source| ProxyError::Listen { addr, source })
    }

    /// The transparent listener's address, if `transparent_listen` is set.
    pub fn transparent_addr(&self) -> Result<Option<SocketAddr>, ProxyError> {
        let (Some(listener), Some(addr)) =
            (&self.transparent, self.state.config.transparent_listen)
        else {
            return Ok(None);
        };
        listener
            .local_addr()
            .map(Some)
            .map_err(|source| ProxyError::Listen { addr, source })
    }

    /// Serve until `shutdown` completes. Connections in flight are left
    /// to finish on their own tasks.
    pub async fn serve_until(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let state = self.state.clone();
                        tokio::spawn(handle_connection(state, stream, peer));
                    }
                    Err(e) => accept_failed(e).await,
                },
                // accept() is cancel-safe: a fresh future per iteration.
                accepted = accept_if(self.transparent.as_ref()) => match accepted {
                    Ok((stream, peer)) => {
                        let state = self.state.clone();
                        tokio::spawn(crate::transparent::handle(state, stream, peer));
                    }
                    Err(e) => accept_failed(e).await,
                },
            }
        }
    }
}

/// Accept on `listener`, or never when there is none.
async fn accept_if(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// EMFILE and friends: back off briefly instead of spinning.
async fn accept_failed(e: std::io::Error) {
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

pub(crate) async fn identify(state: Arc<State>, peer: SocketAddr, local: SocketAddr) -> Caller {
    let found = tokio::task::spawn_blocking(move || {
        let mut process = state.procfs.identify(peer, local)?;
        let identity = find_binding(&state.config.bindings, &process, || {
            state.procfs.exe_sha256(&process)
        })?
        .map(|b| b.identity.clone());
        if identity.is_some() && state.config.uses_idmint() {
            // Attestations to the idmint server carry the hash (cached per
            // binary by ProcFs); a failure surfaces when one is needed.
            process.exe_sha256 = state.procfs.exe_sha256(&process).ok();
        }
        Ok::<_, crate::peer::PeerError>((process, identity))
    })
    .await;
    match found {
        Ok(Ok((process, Some(identity)))) => Caller {
            client: peer,
            process: Some(process),
            identity: Some(identity),
            unbound_reason: String::new(),
        },
        Ok(Ok((process, None))) => {
            Caller {
                client: peer,
                unbound_reason: format!(
                "process {} ({}, uid {}, cgroup {}) matches no [[bindings]] entry; add one, e.g. \
                 identity = \"NAME\", exe = \"{}\"",
                process.pid,
                process.exe.display(),
                process.uid,
                if process.cgroup.is_empty() { "-" } else { &process.cgroup },
                process.exe.display()
            ),
                process: Some(process),
                identity: None,
            }
        }
        Ok(Err(e)) => Caller {
            client: peer,
            process: None,
            identity: None,
            unbound_reason: format!("the calling process could not be identified: {e}"),
        },
        Err(e) => Caller {
            client: peer,
            process: None,
            identity: None,
            unbound_reason: format!("the calling process could not be identified: {e}"),
        },
    }
}

/// How long a kept-alive client connection may sit idle between requests
/// (from the end of one response to the end of the next request head).
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

async fn handle_connection(state: Arc<State>, stream: TcpStream, peer: SocketAddr) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let caller = Arc::new(identify(state.clone(), peer, local).await);
    serve(state, caller, stream, None).await;
}

/// Serve the requests of one client connection (kept alive). `inner` is
/// the destination of an intercepted tunnel (requests are then origin-form
/// and go there), `None` for the proxy's own socket.
pub(crate) async fn serve<S>(
    state: Arc<State>,
    caller: Arc<Caller>,
    io: S,
    inner: Option<Destination>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (host, port) = inner
        .as_ref()
        .map_or((String::new(), 0), |d| (d.host.clone(), d.port));
    let outer = inner.is_none();
    let head_timeout = state.config.header_read_timeout;
    let context = RefusalContext {
        state: state.clone(),
        caller: caller.clone(),
        host,
        port,
    };
    let io = TokioIo::new(CheckedIo::new(io, outer, context));
    let service = service_fn(move |req: Request<Incoming>| {
        let (state, caller, inner) = (state.clone(), caller.clone(), inner.clone());
        async move {
            let is_connect = req.method() == Method::CONNECT;
            let mut response = route(state, caller, inner, req).await;
            if is_connect && !response.status().is_success() {
                // After a CONNECT head the checked stream passes bytes
                // through (they would be the tunnel's): a refused CONNECT
                // must end the connection so nothing is parsed unchecked.
                response.headers_mut().insert(
                    hyper::header::CONNECTION,
                    hyper::header::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(true)
        // A refused head is reported to hyper as end of stream; hyper must
        // still finish the response in flight before closing.
        .half_close(true)
        .timer(TokioTimer::new())
        // hyper's header timer starts when the connection goes idle: it is
        // the keep-alive idle limit. The per-head deadline
        // (header_read_timeout) is enforced by CheckedIo, with a 408.
        .header_read_timeout(CLIENT_IDLE_TIMEOUT.max(head_timeout + Duration::from_secs(1)));
    let result = if outer {
        builder.serve_connection(io, service).with_upgrades().await
    } else {
        builder.serve_connection(io, service).await
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

async fn route(
    state: Arc<State>,
    caller: Arc<Caller>,
    inner: Option<Destination>,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let Some(identity) = caller.identity.clone() else {
        let (host, port) = target_of(&req, inner.as_ref());
        let mut record = caller.record("request", &host, port);
        record.decision = "deny";
        record.reason = Some(caller.unbound_reason.clone());
        record.method = Some(req.method().to_string());
        record.status = Some(403);
        record.latency_ms = started.elapsed().as_millis();
        state.audit.write(record);
        return text(
            StatusCode::FORBIDDEN,
            &format!("idmint proxy: denied: {}\n", caller.unbound_reason),
        );
    };
    if let Some(dest) = inner {
        let mode = if dest.tls { "intercept" } else { "forward" };
        return forward(&state, &caller, &identity, dest, req, mode, started).await;
    }
    if req.method() == Method::CONNECT {
        return connect(state, caller, identity, req, started).await;
    }
    let uri = req.uri();
    match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(authority)) => {
            let host = normalize_host(authority.host());
            let port = authority.port_u16().unwrap_or(80);
            match resolve_allowed(&state, &caller, &identity, &host, port, "forward", started).await
            {
                Ok(dest) => {
                    forward(&state, &caller, &identity, dest, req, "forward", started).await
                }
                Err(response) => response,
            }
        }
        (Some(_), Some(_)) => text(
            StatusCode::BAD_REQUEST,
            "idmint proxy: only http:// URLs are forwarded directly; for https:// the client \
             must use CONNECT (set HTTPS_PROXY)\n",
        ),
        _ => text(
            StatusCode::BAD_REQUEST,
            "idmint proxy: this is a forward proxy: send absolute-form requests (http_proxy) \
             or CONNECT (HTTPS_PROXY)\n",
        ),
    }
}

fn target_of(req: &Request<Incoming>, inner: Option<&Destination>) -> (String, u16) {
    if let Some(d) = inner {
        return (d.host.clone(), d.port);
    }
    req.uri().authority().map_or((String::new(), 0), |a| {
        (normalize_host(a.host()), a.port_u16().unwrap_or(0))
    })
}

/// Lower-case, without the brackets of an IPv6 literal.
fn normalize_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// Find the address for `host` (the `resolve` override first), refusing
/// addresses in `denied_networks` whatever the rules say.
async fn resolve(state: &State, host: &str, port: u16) -> Result<SocketAddr, String> {
    let ip: IpAddr = if let Some(ip) = state.config.resolve.get(host) {
        *ip
    } else if let Ok(ip) = host.parse::<IpAddr>() {
        ip
    } else {
        tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .next()
            .map(|a| a.ip())
            .ok_or_else(|| format!("{host} has no address"))?
    };
    if let Some(net) = state.config.denied_networks.iter().find(|n| n.contains(ip)) {
        return Err(format!(
            "{host} resolves to {ip}, inside denied network {net} (denied_networks)"
        ));
    }
    Ok(SocketAddr::new(ip, port))
}

/// Check that some rule allows this identity to reach `host:port`, and
/// resolve it; on refusal, the 403 (already audited).
async fn resolve_allowed(
    state: &State,
    caller: &Caller,
    identity: &str,
    host: &str,
    port: u16,
    mode: &'static str,
    started: Instant,
) -> Result<Destination, Response<ProxyBody>> {
    let deny = |reason: String, status: StatusCode| {
        let mut record = caller.record(mode, host, port);
        record.decision = "deny";
        record.reason = Some(reason.clone());
        record.status = Some(status.as_u16());
        record.latency_ms = started.elapsed().as_millis();
        state.audit.write(record);
        text(status, &format!("idmint proxy: denied: {reason}\n"))
    };
    let intercept = match plan_connect(&state.config.rules, identity, host, port) {
        Ok(ConnectPlan::Tunnel) => false,
        Ok(ConnectPlan::Intercept { .. }) => true,
        Err(denial) => return Err(deny(denial.0, StatusCode::FORBIDDEN)),
    };
    let addr = resolve(state, host, port)
        .await
        .map_err(|reason| deny(reason, StatusCode::FORBIDDEN))?;
    Ok(Destination {
        host: host.to_string(),
        port,
        addr,
        intercept,
        tls: false,
    })
}

async fn connect(
    state: Arc<State>,
    caller: Arc<Caller>,
    identity: String,
    req: Request<Incoming>,
    started: Instant,
) -> Response<ProxyBody> {
    let Some(authority) = req.uri().authority() else {
        return text(
            StatusCode::BAD_REQUEST,
            "idmint proxy: CONNECT needs host:port\n",
        );
    };
    let host = normalize_host(authority.host());
    let Some(port) = authority.port_u16() else {
        return text(
            StatusCode::BAD_REQUEST,
            "idmint proxy: CONNECT needs host:port\n",
        );
    };
    let dest =
        match resolve_allowed(&state, &caller, &identity, &host, port, "connect", started).await {
            Ok(dest) => Destination { tls: true, ..dest },
            Err(response) => return response,
        };
    if dest.intercept {
        let Some(ca) = state.ca.as_ref() else {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "idmint proxy: interception needs ca_cert/ca_key\n",
            );
        };
        let tls = match ca.server_config(&host) {
            Ok(tls) => tls,
            Err(e) => {
                tracing::error!(error = %e, "cannot mint leaf certificate");
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("idmint proxy: {e}\n"),
                );
            }
        };
        tokio::spawn(intercept(state.clone(), caller, req, dest, tls));
        return text(StatusCode::OK, "");
    }
    let upstream =
        match tokio::time::timeout(state.config.upstream_timeout, TcpStream::connect(dest.addr))
            .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return text(
                    StatusCode::BAD_GATEWAY,
                    &format!("idmint proxy: cannot connect to {host}:{port}: {e}\n"),
                )
            }
            Err(_) => {
                return text(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!("idmint proxy: timed out connecting to {host}:{port}\n"),
                )
            }
        };
    tokio::spawn(splice(state, caller, req, dest, upstream, started));
    text(StatusCode::OK, "")
}
