//! `POST /api/v1/auth/unix/login` over the server's Unix socket.
//!
//! reqwest cannot speak HTTP over a Unix socket, so this one call uses
//! hyper directly on a tokio `UnixStream`. The server identifies the caller
//! from the socket itself (`SO_PEERCRED` and `/proc`), so the request body
//! carries no secret — only which `[[auth.unix]]` to use.

use crate::error::ClientError;
use crate::response::{api_error, RawResponse};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use idmint_proto::unix::UnixLoginRequest;
use idmint_proto::LoginResponse;
use std::path::Path;
use std::time::Duration;

/// Path of the login route on the socket.
pub const UNIX_LOGIN_PATH: &str = "/api/v1/auth/unix/login";
/// Default socket path (`[server] unix_socket` in the docs' examples).
pub const DEFAULT_SOCKET: &str = "/run/idmint/idmint.sock";
/// The whole exchange (connect, request, answer) takes at most this long.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read (a login response is well under 16 KiB).
const MAX_ANSWER: usize = 1 << 20;

fn transport(socket: &Path, what: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Transport(format!(
        "{what} idmint's Unix socket {}: {e}; check --socket (or IDMINT_SOCKET) and that the server runs with [server] unix_socket",
        socket.display()
    ))
}

/// Log in as the calling process over the Unix socket at `socket`.
pub async fn unix_login(
    socket: &Path,
    req: &UnixLoginRequest,
) -> Result<LoginResponse, ClientError> {
    tokio::time::timeout(TIMEOUT, exchange(socket, req))
        .await
        .map_err(|_| transport(socket, "no answer within 30s from", "timed out"))?
}

async fn exchange(socket: &Path, req: &UnixLoginRequest) -> Result<LoginResponse, ClientError> {
    let body = serde_json::to_vec(req)
        .map_err(|e| ClientError::InvalidArgument(format!("cannot encode the request: {e}")))?;
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| transport(socket, "cannot connect to", e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| transport(socket, "HTTP handshake failed on", e))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = hyper::Request::post(UNIX_LOGIN_PATH)
        .header(hyper::header::HOST, "localhost")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, crate::USER_AGENT)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| ClientError::InvalidArgument(format!("cannot build the request: {e}")))?;
    let resp = sender
        .send_request(request)
        .await
        .map_err(|e| transport(socket, "the request failed on", e))?;
    let status = resp.status();
    let request_id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = Limited::new(resp.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| transport(socket, "cannot read the answer from", e))?
        .to_bytes();
    driver.abort();
    let raw = RawResponse {
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or(""),
        body: body.to_vec(),
        request_id,
    };
    if !raw.is_success() {
        return Err(api_error(&raw));
    }
    serde_json::from_slice(&raw.body).map_err(|e| {
        ClientError::Decode(format!(
            "unexpected answer on {} (HTTP {}): {e}; is this an idmint socket of the same version?",
            socket.display(),
            raw.status
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot server on a real Unix socket answering `answer`.
    async fn serve_once(answer: &'static str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            // Read until the JSON body ({…}) has arrived.
            while !got.ends_with(b"}") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            let text = String::from_utf8_lossy(&got).to_string();
            assert!(
                text.starts_with("POST /api/v1/auth/unix/login HTTP/1.1\r\n"),
                "{text}"
            );
            assert!(text.ends_with("{\"auth\":\"local\"}"), "{text}");
            s.write_all(answer.as_bytes()).await.unwrap();
        });
        (dir, path)
    }

    #[tokio::test]
    async fn api_errors_come_back_with_their_code() {
        let body = r#"{"error":{"code":"no_matching_binding","message":"no binding"}}"#;
        let answer: &'static str = Box::leak(
            format!(
                "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\nx-request-id: req_9\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_boxed_str(),
        );
        let (_dir, path) = serve_once(answer).await;
        let req = UnixLoginRequest {
            auth: Some("local".into()),
        };
        let e = unix_login(&path, &req).await.unwrap_err();
        assert_eq!(e.status(), Some(403));
        assert!(e.is_denied());
        assert!(e.to_string().contains("no_matching_binding"), "{e}");
        assert!(e.to_string().contains("req_9"), "{e}");
    }

    #[tokio::test]
    async fn a_missing_socket_names_the_path() {
        let e = unix_login(
            Path::new("/nonexistent/idmint.sock"),
            &UnixLoginRequest::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, ClientError::Transport(_)));
        assert!(e.to_string().contains("/nonexistent/idmint.sock"), "{e}");
    }
}
