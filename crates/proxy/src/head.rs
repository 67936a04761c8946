//! Reading a request head ourselves before hyper sees it.
//!
//! hyper accepts a request carrying both `Content-Length` and
//! `Transfer-Encoding` (it drops the length) and merges duplicate equal
//! `Content-Length` headers. A proxy that forwards such a request to an
//! upstream that frames it differently is the classic request-smuggling
//! setup, so the proxy refuses both with 400. The head is read under one
//! deadline for the whole head (a slowloris client trickling bytes is cut
//! off) and a byte limit (431). The bytes read are then replayed to hyper
//! through [`Rewind`].

use bytes::{Bytes, BytesMut};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

const MAX_HEADERS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("the client closed the connection")]
    Closed,
    #[error("request headers not received within {0:?}")]
    Timeout(Duration),
    #[error("request headers exceed the limit")]
    TooLarge,
    #[error("{0}")]
    Malformed(String),
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

impl HeadError {
    /// The response to send before closing, if any.
    pub fn response(&self) -> Option<Vec<u8>> {
        let (status, body) = match self {
            HeadError::TooLarge => ("431 Request Header Fields Too Large", self.to_string()),
            HeadError::Malformed(why) => ("400 Bad Request", format!("refused: {why}")),
            HeadError::Timeout(_) => ("408 Request Timeout", self.to_string()),
            HeadError::Closed | HeadError::Io(_) => return None,
        };
        let body = format!("idmint proxy: {body}\n");
        Some(
            format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    }
}

/// Read one request head (up to the blank line) within `timeout` and
/// `max_bytes`, and check its framing headers. Returns every byte read
/// (possibly including the start of the body).
pub async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    max_bytes: usize,
    timeout: Duration,
) -> Result<Bytes, HeadError> {
    let read = async {
        let mut buf = BytesMut::with_capacity(4096);
        loop {
            if let Some(end) = find_head_end(&buf) {
                check_framing(buf.get(..end).unwrap_or_default())?;
                return Ok(buf.freeze());
            }
            if buf.len() > max_bytes {
                return Err(HeadError::TooLarge);
            }
            let n = stream.read_buf(&mut buf).await?;
            if n == 0 {
                return Err(HeadError::Closed);
            }
        }
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(r) => r,
        Err(_) => Err(HeadError::Timeout(timeout)),
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Refuse two `Content-Length` headers, `Content-Length` together with
/// `Transfer-Encoding`, and any transfer coding other than plain `chunked`.
pub fn check_framing(head: &[u8]) -> Result<(), HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(HeadError::Malformed("incomplete request head".into()))
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => return Err(HeadError::Malformed(format!("malformed request head: {e}"))),
    }
    let mut content_lengths = 0;
    let mut transfer_encodings = 0;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            content_lengths += 1;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encodings += 1;
            if !h.value.eq_ignore_ascii_case(b"chunked") {
                return Err(HeadError::Malformed(
                    "Transfer-Encoding other than `chunked` is refused".into(),
                ));
            }
        }
    }
    if content_lengths > 1 {
        return Err(HeadError::Malformed("more than one Content-Length".into()));
    }
    if content_lengths > 0 && transfer_encodings > 0 {
        return Err(HeadError::Malformed(
            "both Content-Length and Transfer-Encoding".into(),
        ));
    }
    if transfer_encodings > 1 {
        return Err(HeadError::Malformed(
            "more than one Transfer-Encoding".into(),
        ));
    }
    Ok(())
}

/// A stream that first yields `prefix`, then reads from `inner`.
#[derive(Debug)]
pub struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    pub fn new(prefix: Bytes, inner: S) -> Self {
        Self { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let chunk = self.prefix.split_to(n);
            buf.put_slice(&chunk);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_checks() {
        assert!(check_framing(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").is_ok());
        assert!(check_framing(
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"
        )
        .is_err());
        assert!(check_framing(
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .is_err());
        assert!(check_framing(b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n").is_err());
        assert!(check_framing(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").is_ok());
    }

    #[tokio::test]
    async fn head_limit_and_rewind() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(5000));
        let mut r = big.as_bytes();
        assert!(matches!(
            read_head(&mut r, 1024, Duration::from_secs(1)).await,
            Err(HeadError::TooLarge)
        ));
        let mut r: &[u8] = b"GET / HTTP/1.1\r\n\r\nBODY";
        let head = read_head(&mut r, 1024, Duration::from_secs(1))
            .await
            .unwrap();
        let mut rw = Rewind::new(head, r);
        let mut all = Vec::new();
        rw.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"GET / HTTP/1.1\r\n\r\nBODY");
    }
}
