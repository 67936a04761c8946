//! Framing checks for every request on a kept-alive client connection.
//!
//! hyper accepts shapes that are classic request-smuggling setups (see
//! [`crate::head`]), so the proxy must see each request head before hyper
//! does. With keep-alive, heads follow bodies on the same byte stream, so
//! [`CheckedIo`] sits between the client socket and hyper and tracks the
//! HTTP/1.1 message boundaries itself: it buffers each head until it is
//! complete, checks it ([`check_framing`], size limit, deadline), and only
//! then releases it to hyper; body bytes are passed through while their
//! length (`Content-Length`, or the chunked encoding, parsed strictly) is
//! counted down, so the next head is found exactly where hyper will look
//! for it. If the two parsers ever disagreed, one of them fails and the
//! connection ends: there is no path where hyper parses bytes the proxy
//! did not check as a head.
//!
//! A refused head is never handed to hyper: the wrapper reports end of
//! stream instead, hyper finishes the response in flight and shuts the
//! connection down, and the refusal (`400`, `408`, `431`) is written just
//! before the shutdown. After a `CONNECT` head (outer connections only)
//! the bytes are the tunnel's: the wrapper passes them through untouched;
//! the server closes the connection after any refused `CONNECT`, so no
//! request can follow it unchecked.

use crate::head::{check_framing, HeadError};
use crate::server::{Caller, State};
use bytes::{Buf, BytesMut};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Longest chunk-size line (with extensions) accepted in a chunked body.
const MAX_CHUNK_LINE: usize = 4096;

/// Bytes read from the client per read call.
const READ_CHUNK: usize = 16 * 1024;

/// Where the wrapper is in the client's byte stream.
#[derive(Debug)]
enum Phase {
    /// Collecting a request head (`buf` holds what has arrived).
    Head,
    /// Passing `remaining` bytes of a `Content-Length` body.
    Body { remaining: u64 },
    /// Inside a chunked body.
    Chunked(Chunk),
    /// After `CONNECT`: tunnel bytes, not HTTP.
    Passthrough,
    /// A head was refused: hyper sees end of stream from now on.
    Refused,
}

#[derive(Debug)]
enum Chunk {
    /// Reading a chunk-size line (collected in `line`).
    Size,
    /// Passing chunk data.
    Data { remaining: u64 },
    /// Expecting the CRLF after chunk data (`seen` of its 2 bytes).
    DataEnd { seen: u8 },
    /// Reading trailer lines after the last chunk, `total` bytes so far.
    Trailers { total: usize },
}

/// What the wrapper needs to audit a refusal.
#[derive(Debug, Clone)]
pub(crate) struct RefusalContext {
    pub state: Arc<State>,
    pub caller: Arc<Caller>,
    pub host: String,
    pub port: u16,
}

/// The client stream as hyper sees it; see the module documentation.
pub(crate) struct CheckedIo<S> {
    inner: S,
    phase: Phase,
    /// The head being collected, or a chunk-size/trailer line.
    pending: BytesMut,
    /// Checked bytes hyper has not read yet.
    ready: BytesMut,
    /// Deadline for the head being collected (armed at accept for the
    /// first head, at the first byte for later ones).
    deadline: Option<Pin<Box<Sleep>>>,
    head_timeout: Duration,
    max_head: usize,
    /// `CONNECT` is a tunnel on the proxy's own socket, refused inside an
    /// intercepted connection (it would turn the rest of the stream into
    /// unchecked bytes).
    allow_connect: bool,
    /// The refusal to write before shutting down.
    refusal: Option<Vec<u8>>,
    context: RefusalContext,
}

impl<S> std::fmt::Debug for CheckedIo<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedIo")
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl<S> CheckedIo<S> {
    pub(crate) fn new(inner: S, allow_connect: bool, context: RefusalContext) -> Self {
        let head_timeout = context.state.config.header_read_timeout;
        Self {
            inner,
            phase: Phase::Head,
            pending: BytesMut::new(),
            ready: BytesMut::new(),
            deadline: Some(Box::pin(tokio::time::sleep(head_timeout))),
            head_timeout,
            max_head: context.state.config.max_header_bytes,
            allow_connect,
            refusal: None,
            context,
        }
    }

    /// Stop handing bytes to hyper and queue the refusal for `error`.
    fn refuse(&mut self, error: &HeadError) {
        self.phase = Phase::Refused;
        self.deadline = None;
        self.pending.clear();
        let Some(response) = error.response() else {
            return;
        };
        let ctx = &self.context;
        let mut record = ctx.caller.record("request", &ctx.host, ctx.port);
        record.decision = "refused";
        record.reason = Some(error.to_string());
        record.status = response
            .get(9..12)
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse().ok());
        ctx.state.audit.write(record);
        self.refusal = Some(response);
    }

    /// Run `input` through the framing state machine, moving checked bytes
    /// to `ready`. Stops early on a refusal.
    fn process(&mut self, mut input: &[u8]) {
        while !input.is_empty() {
            match &mut self.phase {
                Phase::Refused => return,
                Phase::Passthrough => {
                    self.ready.extend_from_slice(input);
                    return;
                }
                Phase::Head => {
                    if self.pending.is_empty() && self.deadline.is_none() {
                        self.deadline = Some(Box::pin(tokio::time::sleep(self.head_timeout)));
                    }
                    let searched = self.pending.len().saturating_sub(3);
                    self.pending.extend_from_slice(input);
                    input = &[];
                    let Some(end) = find_head_end(self.pending.get(searched..).unwrap_or_default())
                        .map(|e| e + searched)
                    else {
                        if self.pending.len() > self.max_head {
                            self.refuse(&HeadError::TooLarge);
                        }
                        continue;
                    };
                    if end > self.max_head {
                        self.refuse(&HeadError::TooLarge);
                        return;
                    }
                    let head = self.pending.split_to(end);
                    match self.next_phase(&head) {
                        Ok(next) => {
                            self.deadline = None;
                            self.ready.extend_from_slice(&head);
                            self.phase = next;
                            // What followed the head goes through the new
                            // phase.
                            let rest = std::mem::take(&mut self.pending);
                            self.process(&rest);
                            return;
                        }
                        Err(e) => {
                            self.refuse(&e);
                            return;
                        }
                    }
                }
                Phase::Body { remaining } => {
                    let n = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    let (now, rest) = input.split_at(n);
                    self.ready.extend_from_slice(now);
                    input = rest;
                    *remaining -= n as u64;
                    if *remaining == 0 {
                        self.phase = Phase::Head;
                    }
                }
                Phase::Chunked(chunk) => match chunk {
                    Chunk::Data { remaining } => {
                        let n = usize::try_from(*remaining)
                            .unwrap_or(usize::MAX)
                            .min(input.len());
                        let (now, rest) = input.split_at(n);
                        self.ready.extend_from_slice(now);
                        input = rest;
                        *remaining -= n as u64;
                        if *remaining == 0 {
                            *chunk = Chunk::DataEnd { seen: 0 };
                        }
                    }
                    Chunk::DataEnd { seen } => {
                        let expected = if *seen == 0 { b'\r' } else { b'\n' };
                        let Some((&byte, rest)) = input.split_first() else {
                            return;
                        };
                        if byte != expected {
                            self.refuse(&HeadError::Malformed(
                                "chunked body: chunk data not followed by CRLF".into(),
                            ));
                            return;
                        }
                        self.ready.extend_from_slice(&[byte]);
                        input = rest;
                        if *seen == 0 {
                            *seen = 1;
                        } else {
                            *chunk = Chunk::Size;
                        }
                    }
                    Chunk::Size | Chunk::Trailers { .. } => {
                        let Some(lf) = input.iter().position(|b| *b == b'\n') else {
                            self.pending.extend_from_slice(input);
                            input = &[];
                            let limit = match chunk {
                                Chunk::Trailers { total } => self.max_head.saturating_sub(*total),
                                _ => MAX_CHUNK_LINE,
                            };
                            if self.pending.len() > limit {
                                self.refuse(&HeadError::Malformed(
                                    "chunked body: chunk-size or trailer line too long".into(),
                                ));
                            }
                            continue;
                        };
                        let (line_end, rest) = input.split_at(lf + 1);
                        self.pending.extend_from_slice(line_end);
                        input = rest;
                        let line = self.pending.split();
                        let Some(content) = line.strip_suffix(b"\r\n") else {
                            self.refuse(&HeadError::Malformed(
                                "chunked body: line not terminated by CRLF".into(),
                            ));
                            return;
                        };
                        match chunk {
                            Chunk::Size => match parse_chunk_size(content) {
                                Some(0) => *chunk = Chunk::Trailers { total: 0 },
                                Some(size) => *chunk = Chunk::Data { remaining: size },
                                None => {
                                    self.refuse(&HeadError::Malformed(
                                        "chunked body: invalid chunk size".into(),
                                    ));
                                    return;
                                }
                            },
                            Chunk::Trailers { total } => {
                                *total += line.len();
                                if *total > self.max_head {
                                    self.refuse(&HeadError::TooLarge);
                                    return;
                                }
                                if content.is_empty() {
                                    self.phase = Phase::Head;
                                }
                            }
                            _ => {}
                        }
                        self.ready.extend_from_slice(&line);
                    }
                },
            }
        }
    }

    /// Check a complete head and say what follows it.
    fn next_phase(&self, head: &[u8]) -> Result<Phase, HeadError> {
        check_framing(head)?;
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(head)
            .map_err(|e| HeadError::Malformed(format!("malformed request head: {e}")))?;
        if req.method == Some("CONNECT") {
            if !self.allow_connect {
                return Err(HeadError::Malformed(
                    "CONNECT inside an intercepted connection".into(),
                ));
            }
            return Ok(Phase::Passthrough);
        }
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                // check_framing allowed only a single `chunked`.
                return Ok(Phase::Chunked(Chunk::Size));
            }
            if h.name.eq_ignore_ascii_case("content-length") {
                let length = std::str::from_utf8(h.value)
                    .ok()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| HeadError::Malformed("invalid Content-Length".into()))?;
                return Ok(if length == 0 {
                    Phase::Head
                } else {
                    Phase::Body { remaining: length }
                });
            }
        }
        Ok(Phase::Head)
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// `1a;ext=v` → 26. Hex digits (at most 15, so the size fits any length
/// hyper accepts), optional spaces/tabs, optional `;extension`.
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let size = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .map_or(line, |end| line.get(..end).unwrap_or_default());
    if size.is_empty() || size.len() > 15 {
        return None;
    }
    let rest = line.get(size.len()..).unwrap_or_default();
    let rest = rest
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .map_or(&[][..], |p| rest.get(p..).unwrap_or_default());
    if !rest.is_empty() && rest.first() != Some(&b';') {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(size).ok()?, 16).ok()
}

impl<S: AsyncRead + Unpin> AsyncRead for CheckedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(this.ready.get(..n).unwrap_or_default());
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            match this.phase {
                Phase::Refused => return Poll::Ready(Ok(())),
                Phase::Passthrough => return Pin::new(&mut this.inner).poll_read(cx, buf),
                _ => {}
            }
            let mut scratch = [0u8; READ_CHUNK];
            let mut read = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => {
                    if matches!(this.phase, Phase::Head) {
                        if let Some(deadline) = this.deadline.as_mut() {
                            if deadline.as_mut().poll(cx).is_ready() {
                                let timeout = this.head_timeout;
                                this.refuse(&HeadError::Timeout(timeout));
                                return Poll::Ready(Ok(()));
                            }
                        }
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let filled = read.filled();
                    if filled.is_empty() {
                        // The client closed its side: end of stream for hyper.
                        return Poll::Ready(Ok(()));
                    }
                    let filled = filled.to_vec();
                    this.process(&filled);
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CheckedIo<S> {
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
        let this = &mut *self;
        // hyper shuts down only after the response in flight is written, so
        // the refusal lands after it, as the answer to the refused head.
        while let Some(refusal) = this.refusal.as_mut() {
            if refusal.is_empty() {
                this.refusal = None;
                break;
            }
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, refusal))?;
            if n == 0 {
                this.refusal = None;
                break;
            }
            refusal.drain(..n);
        }
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"1a"), Some(26));
        assert_eq!(parse_chunk_size(b"1A;name=value"), Some(26));
        assert_eq!(parse_chunk_size(b"0 ; x"), Some(0));
        assert_eq!(parse_chunk_size(b""), None);
        assert_eq!(parse_chunk_size(b"x"), None);
        assert_eq!(parse_chunk_size(b"1 2"), None);
        assert_eq!(parse_chunk_size(b"-1"), None);
        assert_eq!(parse_chunk_size(b"1000000000000000"), None);
    }
}
