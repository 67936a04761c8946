//! The loopback redirect listener (RFC 8252 §7.3): `127.0.0.1:<random
//! port>/callback`, one request that matters, then gone.

use anyhow::{bail, Context, Result};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Path of the redirect URI.
const CALLBACK_PATH: &str = "/callback";
/// Largest request head read; a redirect is one short GET line.
const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// How long one connection may take to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

const DONE_PAGE: &str = "<!doctype html><title>idmint</title><p>Signed in. You can close this window and return to the terminal.</p>";

pub struct Listener {
    listener: TcpListener,
    port: u16,
}

/// What the IdP sent back on the redirect.
#[derive(Debug, Default)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

impl Listener {
    pub async fn bind() -> Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("opening the loopback port for the sign-in redirect")?;
        let port = listener
            .local_addr()
            .context("reading the loopback port")?
            .port();
        Ok(Self { listener, port })
    }

    pub fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}{CALLBACK_PATH}", self.port)
    }

    /// Waits for the redirect to `/callback` (other requests, e.g. a
    /// browser's favicon fetch, get a 404 and are ignored).
    pub async fn wait(self, limit: Duration) -> Result<Callback> {
        tokio::time::timeout(limit, self.accept_callback())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "no sign-in redirect arrived within {}s; run `idmint login --sso` again (or use --device on a machine without a browser)",
                    limit.as_secs()
                )
            })?
    }

    async fn accept_callback(&self) -> Result<Callback> {
        loop {
            let (mut stream, _) = self
                .listener
                .accept()
                .await
                .context("accepting the sign-in redirect")?;
            let Ok(Ok(target)) =
                tokio::time::timeout(REQUEST_TIMEOUT, read_target(&mut stream)).await
            else {
                continue;
            };
            let Ok(url) = url::Url::parse(&format!("http://127.0.0.1{target}")) else {
                respond(&mut stream, "400 Bad Request", "bad request").await;
                continue;
            };
            if url.path() != CALLBACK_PATH {
                respond(&mut stream, "404 Not Found", "not found").await;
                continue;
            }
            let mut cb = Callback::default();
            for (k, v) in url.query_pairs() {
                let slot = match k.as_ref() {
                    "code" => &mut cb.code,
                    "state" => &mut cb.state,
                    "error" => &mut cb.error,
                    "error_description" => &mut cb.error_description,
                    _ => continue,
                };
                *slot = Some(v.into_owned());
            }
            respond(&mut stream, "200 OK", DONE_PAGE).await;
            return Ok(cb);
        }
    }
}

/// The request target of `GET <target> HTTP/1.1`.
async fn read_target(stream: &mut tokio::net::TcpStream) -> Result<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > MAX_REQUEST_BYTES {
            bail!("request head too large");
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
    }
    let head = String::from_utf8_lossy(&buf);
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    match (parts.next(), parts.next()) {
        (Some("GET"), Some(target)) if target.starts_with('/') => Ok(target.to_string()),
        _ => bail!("not a GET request"),
    }
}

async fn respond(stream: &mut tokio::net::TcpStream, status: &str, body: &str) {
    let resp = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // The browser may have gone; the login result does not depend on it.
    let _ = stream.write_all(resp.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn takes_the_callback_and_ignores_other_paths() {
        let l = Listener::bind().await.unwrap();
        let uri = l.redirect_uri();
        let base = uri.trim_end_matches(CALLBACK_PATH).to_string();
        let waiter = tokio::spawn(l.wait(Duration::from_secs(10)));
        let http = reqwest::Client::new();
        let r = http
            .get(format!("{base}/favicon.ico"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let r = http
            .get(format!("{uri}?code=c%201&state=s&extra=x"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let cb = waiter.await.unwrap().unwrap();
        assert_eq!(cb.code.as_deref(), Some("c 1"));
        assert_eq!(cb.state.as_deref(), Some("s"));
        assert!(cb.error.is_none());
    }

    #[tokio::test]
    async fn gives_up_after_the_limit() {
        let l = Listener::bind().await.unwrap();
        let e = l.wait(Duration::from_millis(50)).await.unwrap_err();
        assert!(e.to_string().contains("no sign-in redirect"), "{e}");
    }
}
