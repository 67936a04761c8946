//! After `CONNECT`: relay bytes untouched, or terminate TLS and serve the
//! requests inside.

use crate::forward::Destination;
use crate::server::{serve, Caller, State};
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Relay the tunnel to `upstream` and audit the byte counts at the end.
pub(crate) async fn splice(
    state: Arc<State>,
    caller: Arc<Caller>,
    req: Request<Incoming>,
    dest: Destination,
    mut upstream: TcpStream,
    started: Instant,
) {
    let mut record = caller.record("tunnel", &dest.host, dest.port);
    record.address = Some(dest.addr.to_string());
    match hyper::upgrade::on(req).await {
        Ok(upgraded) => {
            let mut client = TokioIo::new(upgraded);
            match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                Ok((up, down)) => {
                    record.decision = "allow";
                    record.bytes_up = Some(up);
                    record.bytes_down = Some(down);
                }
                Err(e) => {
                    record.decision = "allow";
                    record.reason = Some(format!("tunnel ended with an error: {e}"));
                }
            }
        }
        Err(e) => {
            record.decision = "error";
            record.reason = Some(format!("CONNECT upgrade failed: {e}"));
        }
    }
    record.status = Some(200);
    record.latency_ms = started.elapsed().as_millis();
    state.audit.write(record);
}

/// Terminate the client's TLS with a leaf for the destination host, then
/// serve the request inside. Boxed: it re-enters the request router, and
/// the boxed future breaks that type cycle.
pub(crate) fn intercept(
    state: Arc<State>,
    caller: Arc<Caller>,
    req: Request<Incoming>,
    dest: Destination,
    tls: Arc<rustls::ServerConfig>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "CONNECT upgrade failed");
                return;
            }
        };
        serve_tls(state, caller, TokioIo::new(upgraded), dest, tls).await;
    })
}

/// Terminate the client's TLS on `io` with `tls` (a leaf for the
/// destination host), then serve the requests inside, kept alive.
pub(crate) async fn serve_tls<S>(
    state: Arc<State>,
    caller: Arc<Caller>,
    io: S,
    dest: Destination,
    tls: Arc<rustls::ServerConfig>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let handshake = acceptor.accept(io);
    let stream = match tokio::time::timeout(state.config.header_read_timeout, handshake).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            // Typically: the client does not trust the proxy CA.
            let mut record = caller.record("intercept", &dest.host, dest.port);
            record.decision = "error";
            record.reason = Some(format!("client TLS handshake failed: {e}"));
            state.audit.write(record);
            return;
        }
        Err(_) => return,
    };
    serve(state, caller, stream, Some(dest)).await;
}

/// Relay a transparent connection (already checked) to its destination
/// untouched and audit the byte counts at the end.
pub(crate) async fn relay<S>(
    state: Arc<State>,
    caller: Arc<Caller>,
    mut client: S,
    dest: Destination,
    started: Instant,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut record = caller.record("tunnel", &dest.host, dest.port);
    record.address = Some(dest.addr.to_string());
    match tokio::time::timeout(state.config.upstream_timeout, TcpStream::connect(dest.addr)).await {
        Ok(Ok(mut upstream)) => {
            match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                Ok((up, down)) => {
                    record.decision = "allow";
                    record.bytes_up = Some(up);
                    record.bytes_down = Some(down);
                }
                Err(e) => {
                    record.decision = "allow";
                    record.reason = Some(format!("tunnel ended with an error: {e}"));
                }
            }
        }
        Ok(Err(e)) => {
            record.decision = "error";
            record.reason = Some(format!("cannot connect to {}: {e}", dest.addr));
        }
        Err(_) => {
            record.decision = "error";
            record.reason = Some(format!("timed out connecting to {}", dest.addr));
        }
    }
    record.latency_ms = started.elapsed().as_millis();
    state.audit.write(record);
}
