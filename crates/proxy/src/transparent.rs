//! The transparent listener: connections redirected to the proxy by
//! iptables/nftables `REDIRECT`, from workloads that were never told about
//! a proxy.
//!
//! The destination is the connection's original address
//! (`SO_ORIGINAL_DST`, kept by conntrack). The host name rules are matched
//! against comes from the client: the TLS ClientHello's SNI, or the `Host`
//! header of a plain HTTP request. A client chooses both, so the name is
//! only believed if the original address is one the name resolves to (the
//! `resolve` table, else DNS): otherwise a workload could send
//! `SNI: api.openai.com` to an address it controls and collect the
//! injected credential. The address must also be outside
//! `denied_networks`. Then the connection takes the same path as after a
//! `CONNECT`: relayed untouched, or intercepted with the local CA, checked
//! and injected request by request; plain HTTP is served like absolute-form
//! requests, kept alive, always to the checked destination.
//!
//! The bytes read to find the SNI or `Host` are replayed ([`Rewind`]), so
//! the TLS handshake or the request continues as if nothing was read.

use crate::audit::AuditRecord;
use crate::forward::Destination;
use crate::head::{read_head, Rewind};
use crate::rules::{plan_connect, ConnectPlan};
use crate::server::{identify, serve, Caller, State};
use bytes::{Bytes, BytesMut};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest ClientHello accepted (post-quantum key shares make them a few
/// KiB; TLS allows a handshake message to span several records).
const MAX_CLIENT_HELLO: usize = 64 * 1024;

/// Why a redirected connection was refused (logged and audited).
#[derive(Debug, thiserror::Error)]
pub enum TransparentError {
    #[error("no original destination (SO_ORIGINAL_DST: {0}); only connections redirected by iptables/nftables REDIRECT belong on transparent_listen")]
    NoOriginalDst(std::io::Error),
    #[error("the connection was addressed to the transparent listener itself, not redirected")]
    NotRedirected,
    #[error("the TLS ClientHello carries no server name (SNI); transparent mode needs it to apply the rules (clients connecting to a bare IP address send none)")]
    NoSni,
    #[error("malformed TLS ClientHello: {0}")]
    BadClientHello(&'static str),
    #[error("the first bytes are neither TLS nor an HTTP/1 request head")]
    UnknownProtocol,
    #[error("the request has no usable Host header")]
    NoHost,
    #[error("{0}")]
    Head(#[from] crate::head::HeadError),
    #[error("{host} resolves to {resolved}, but the connection was addressed to {original}: the name does not belong to that address")]
    AddressMismatch {
        host: String,
        resolved: String,
        original: IpAddr,
    },
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("{0} is inside denied network {1} (denied_networks)")]
    Denied(IpAddr, String),
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The address the client originally connected to.
fn original_dst(stream: &TcpStream) -> std::io::Result<SocketAddr> {
    match stream.local_addr()? {
        SocketAddr::V4(_) => rustix::net::sockopt::ip_original_dst(stream).map(SocketAddr::V4),
        SocketAddr::V6(_) => rustix::net::sockopt::ipv6_original_dst(stream).map(SocketAddr::V6),
    }
    .map_err(std::io::Error::from)
}

fn refuse(
    state: &State,
    caller: Option<&Caller>,
    peer: SocketAddr,
    host: &str,
    port: u16,
    e: &TransparentError,
) {
    tracing::warn!(client = %peer, host, port, error = %e, "transparent connection refused");
    let mut record = match caller {
        Some(c) => c.record("transparent", host, port),
        None => AuditRecord {
            mode: "transparent",
            client: peer.to_string(),
            host: host.to_string(),
            port,
            ..Default::default()
        },
    };
    record.decision = "deny";
    record.reason = Some(e.to_string());
    state.audit.write(record);
}

/// Serve one redirected connection.
pub(crate) async fn handle(state: Arc<State>, mut stream: TcpStream, peer: SocketAddr) {
    let started = Instant::now();
    let _ = stream.set_nodelay(true);
    let original = match original_dst(&stream) {
        Ok(a) => a,
        Err(e) => {
            refuse(
                &state,
                None,
                peer,
                "",
                0,
                &TransparentError::NoOriginalDst(e),
            );
            return;
        }
    };
    let Ok(local) = stream.local_addr() else {
        return;
    };
    if original == local {
        refuse(
            &state,
            None,
            peer,
            "",
            original.port(),
            &TransparentError::NotRedirected,
        );
        return;
    }
    // The client's socket is connected (as far as it knows) to the
    // original address: that is the remote end to look up in /proc.
    let caller = Arc::new(identify(state.clone(), peer, original).await);
    let sniffed =
        tokio::time::timeout(state.config.header_read_timeout, sniff(&state, &mut stream)).await;
    let (prefix, host, tls) = match sniffed {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            refuse(&state, Some(&caller), peer, "", original.port(), &e);
            return;
        }
        Err(_) => {
            let e = crate::head::HeadError::Timeout(state.config.header_read_timeout);
            refuse(&state, Some(&caller), peer, "", original.port(), &e.into());
            return;
        }
    };
    let port = original.port();
    let io = Rewind::new(prefix, stream);
    let Some(identity) = caller.identity.clone() else {
        if tls {
            refuse_unbound(&state, &caller, &host, port);
        } else {
            // Plain HTTP: the router answers each request with the 403
            // that names the binding to add.
            let dest = Destination {
                host,
                port,
                addr: original,
                intercept: true,
                tls: false,
            };
            serve(state, caller, io, Some(dest)).await;
        }
        return;
    };
    let intercept = match plan_connect(&state.config.rules, &identity, &host, port) {
        Ok(ConnectPlan::Tunnel) => false,
        Ok(ConnectPlan::Intercept { .. }) => true,
        Err(denial) => {
            let mut record = caller.record("transparent", &host, port);
            record.decision = "deny";
            record.reason = Some(denial.0.clone());
            record.address = Some(original.to_string());
            state.audit.write(record);
            tracing::warn!(client = %peer, host, port, reason = %denial.0, "transparent connection denied");
            if !tls {
                let _ = write_403(io, &denial.0).await;
            }
            return;
        }
    };
    if let Err(e) = check_address(&state, &host, original).await {
        refuse(&state, Some(&caller), peer, &host, port, &e);
        if !tls {
            let _ = write_403(io, &e.to_string()).await;
        }
        return;
    }
    let dest = Destination {
        host: host.clone(),
        port,
        addr: original,
        intercept,
        tls,
    };
    if !tls {
        // Plain HTTP: every request is checked (and injected where a rule
        // says so) by the router.
        serve(state, caller, io, Some(dest)).await;
        return;
    }
    if intercept {
        let Some(ca) = state.ca.as_ref() else {
            tracing::error!("interception needs ca_cert/ca_key");
            return;
        };
        let config = match ca.server_config(&host) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot mint leaf certificate");
                return;
            }
        };
        crate::tunnel::serve_tls(state, caller, io, dest, config).await;
        return;
    }
    crate::tunnel::relay(state, caller, io, dest, started).await;
}

fn refuse_unbound(state: &State, caller: &Caller, host: &str, port: u16) {
    let mut record = caller.record("transparent", host, port);
    record.decision = "deny";
    record.reason = Some(caller.unbound_reason.clone());
    state.audit.write(record);
    tracing::warn!(host, port, reason = %caller.unbound_reason, "transparent connection denied");
}

async fn write_403(mut io: Rewind<TcpStream>, reason: &str) -> std::io::Result<()> {
    let body = format!("idmint proxy: denied: {reason}\n");
    let response = format!(
        "HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    io.write_all(response.as_bytes()).await?;
    io.shutdown().await
}

/// Require `original` to be an address `host` resolves to, outside the
/// denied networks.
async fn check_address(
    state: &State,
    host: &str,
    original: SocketAddr,
) -> Result<(), TransparentError> {
    let ip = original.ip();
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    if let Some(net) = state.config.denied_networks.iter().find(|n| n.contains(ip)) {
        return Err(TransparentError::Denied(ip, net.to_string()));
    }
    let resolved: Vec<IpAddr> = if let Some(ip) = state.config.resolve.get(host) {
        vec![*ip]
    } else if let Ok(literal) = host.parse::<IpAddr>() {
        vec![literal]
    } else {
        tokio::net::lookup_host((host, original.port()))
            .await
            .map_err(|e| TransparentError::Resolve {
                host: host.to_string(),
                reason: e.to_string(),
            })?
            .map(|a| a.ip())
            .collect()
    };
    if resolved.iter().any(|r| canonical(*r) == canonical(ip)) {
        return Ok(());
    }
    Err(TransparentError::AddressMismatch {
        host: host.to_string(),
        resolved: resolved
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        original: ip,
    })
}

/// Read enough of the connection to name the host: the ClientHello's SNI
/// (TLS) or the first request's `Host` (plain HTTP). Returns the bytes
/// read, the host (lower case, no trailing dot) and whether it is TLS.
async fn sniff(
    state: &State,
    stream: &mut TcpStream,
) -> Result<(Bytes, String, bool), TransparentError> {
    let mut buf = BytesMut::with_capacity(4096);
    while buf.is_empty() {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(crate::head::HeadError::Closed.into());
        }
    }
    if buf.first() == Some(&0x16) {
        loop {
            match client_hello_sni(&buf) {
                Ok(Some(name)) => return Ok((buf.freeze(), normalize(&name), true)),
                Ok(None) => return Err(TransparentError::NoSni),
                Err(Incomplete::More) => {
                    if buf.len() > MAX_CLIENT_HELLO {
                        return Err(TransparentError::BadClientHello("larger than 64 KiB"));
                    }
                    if stream.read_buf(&mut buf).await? == 0 {
                        return Err(TransparentError::BadClientHello("truncated"));
                    }
                }
                Err(Incomplete::Bad(why)) => return Err(TransparentError::BadClientHello(why)),
            }
        }
    }
    if !buf.first().is_some_and(u8::is_ascii_uppercase) {
        return Err(TransparentError::UnknownProtocol);
    }
    // Plain HTTP: read the head under the same limits as everywhere.
    let rest = read_head(
        &mut Rewind::new(buf.freeze(), &mut *stream),
        state.config.max_header_bytes,
        state.config.header_read_timeout,
    )
    .await?;
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(&rest)
        .map_err(|_| TransparentError::UnknownProtocol)?;
    let host = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.parse::<hyper::http::uri::Authority>().ok())
        .map(|a| normalize(a.host()))
        .filter(|h| !h.is_empty())
        .ok_or(TransparentError::NoHost)?;
    Ok((rest, host, false))
}

fn normalize(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

#[derive(Debug, PartialEq)]
enum Incomplete {
    More,
    Bad(&'static str),
}

/// The `host_name` of the SNI extension of the ClientHello in `data` (TLS
/// records from the start of the connection); `Ok(None)` if it has none.
fn client_hello_sni(data: &[u8]) -> Result<Option<String>, Incomplete> {
    // Reassemble the handshake message from as many records as it spans.
    let mut handshake = Vec::new();
    let mut records = data;
    let message = loop {
        let Some(header) = records.get(..5) else {
            return Err(Incomplete::More);
        };
        if header[0] != 0x16 {
            return Err(Incomplete::Bad("not a handshake record"));
        }
        if header[1] != 3 {
            return Err(Incomplete::Bad("unknown record version"));
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > 16384 + 2048 {
            return Err(Incomplete::Bad("bad record length"));
        }
        let Some(fragment) = records.get(5..5 + len) else {
            return Err(Incomplete::More);
        };
        handshake.extend_from_slice(fragment);
        records = records.get(5 + len..).unwrap_or_default();
        if handshake.len() >= 4 {
            if handshake[0] != 1 {
                return Err(Incomplete::Bad(
                    "the first handshake message is not a ClientHello",
                ));
            }
            let body = usize::from(handshake[1]) << 16
                | usize::from(handshake[2]) << 8
                | usize::from(handshake[3]);
            if body > MAX_CLIENT_HELLO {
                return Err(Incomplete::Bad("ClientHello too large"));
            }
            if handshake.len() >= 4 + body {
                break handshake.get(4..4 + body).unwrap_or_default().to_vec();
            }
        }
    };
    let mut r = Reader(&message);
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    let n = r.u8()?;
    r.take(n.into())?; // session id
    let n = r.u16()?;
    r.take(n.into())?; // cipher suites
    let n = r.u8()?;
    r.take(n.into())?; // compression methods
    if r.0.is_empty() {
        return Ok(None); // no extensions at all
    }
    let n = r.u16()?;
    let mut ext = Reader(r.take(n.into())?);
    while !ext.0.is_empty() {
        let kind = ext.u16()?;
        let len = ext.u16()?;
        let data = ext.take(len.into())?;
        if kind != 0 {
            continue;
        }
        let mut sni = Reader(data);
        let list = sni.u16()?;
        let mut list = Reader(sni.take(list.into())?);
        while !list.0.is_empty() {
            let name_type = list.u8()?;
            let len = list.u16()?;
            let name = list.take(len.into())?;
            if name_type == 0 {
                let name =
                    std::str::from_utf8(name).map_err(|_| Incomplete::Bad("SNI is not UTF-8"))?;
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
                {
                    return Err(Incomplete::Bad("SNI is not a DNS name"));
                }
                return Ok(Some(name.to_string()));
            }
        }
        return Ok(None);
    }
    Ok(None)
}

/// Bounds-checked reading of a complete ClientHello.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Incomplete> {
        let (head, rest) = (self.0.get(..n), self.0.get(n..));
        match (head, rest) {
            (Some(h), Some(r)) => {
                self.0 = r;
                Ok(h)
            }
            _ => Err(Incomplete::Bad(
                "field runs past the end of the ClientHello",
            )),
        }
    }
    fn u8(&mut self) -> Result<u8, Incomplete> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Incomplete> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real ClientHello from rustls for `name` (or none for an IP).
    fn hello(name: &str) -> Vec<u8> {
        let mut roots = rustls::RootCertStore::empty();
        let _ = &mut roots;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let server = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), server).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn sni_is_read_from_a_real_client_hello() {
        let data = hello("api.example.com");
        assert_eq!(client_hello_sni(&data), Ok(Some("api.example.com".into())));
        // Every strict prefix asks for more bytes.
        for cut in [0, 3, 5, 40, data.len() - 1] {
            assert_eq!(
                client_hello_sni(&data[..cut]),
                Err(Incomplete::More),
                "{cut}"
            );
        }
        // rustls sends no SNI for an IP address.
        assert_eq!(client_hello_sni(&hello("10.0.0.1")), Ok(None));
    }

    #[test]
    fn hostile_client_hellos_are_refused() {
        let mut data = hello("api.example.com");
        data[5] = 2; // ServerHello instead of ClientHello
        assert!(matches!(client_hello_sni(&data), Err(Incomplete::Bad(_))));
        let mut data = hello("api.example.com");
        data[0] = 0x17;
        assert!(matches!(client_hello_sni(&data), Err(Incomplete::Bad(_))));
        // A handshake length claiming more than the record carries, with
        // the record ending the data: wait for more, bounded by the caller.
        let mut data = hello("api.example.com");
        data[7] = 0xff;
        assert!(client_hello_sni(&data).is_err());
        // Garbage extension lengths never read out of bounds.
        let data = hello("api.example.com");
        for i in 5..data.len() {
            let mut d = data.clone();
            d[i] ^= 0xff;
            let _ = client_hello_sni(&d);
        }
    }
}
