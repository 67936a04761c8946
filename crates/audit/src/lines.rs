//! Reading a log line by line with bounded memory.
//!
//! Logs can be many gigabytes and may be damaged: a corrupted file could
//! contain one "line" of arbitrary length. Lines longer than
//! [`MAX_LINE_BYTES`] are reported as too long and skipped instead of being
//! buffered.

use std::io::{self, BufRead};

/// No event idmint writes comes near this; anything longer is damage.
pub(crate) const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// What [`LineReader::next_into`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LineInfo {
    /// 1-based line number.
    pub number: usize,
    /// False for a final line without a newline (a torn write).
    pub terminated: bool,
    /// The line exceeded [`MAX_LINE_BYTES`]; the buffer is empty.
    pub too_long: bool,
}

pub(crate) struct LineReader<R> {
    inner: R,
    line_no: usize,
    max_len: usize,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R) -> Self {
        Self::with_max_len(inner, MAX_LINE_BYTES)
    }

    pub fn with_max_len(inner: R, max_len: usize) -> Self {
        Self {
            inner,
            line_no: 0,
            max_len,
        }
    }

    /// Lines returned so far.
    pub fn lines_read(&self) -> usize {
        self.line_no
    }

    /// Reads the next line (without its newline) into `buf`. `Ok(None)` at
    /// end of input.
    pub fn next_into(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<LineInfo>> {
        buf.clear();
        let info = self.append_next(buf)?;
        if info.is_some_and(|i| i.too_long) {
            buf.shrink_to(0);
        }
        Ok(info)
    }

    /// Like [`LineReader::next_into`], but appends the line to what `buf`
    /// already holds (so several lines can share one buffer without a
    /// second copy). A too-long line leaves `buf` as it was.
    pub fn append_next(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<LineInfo>> {
        let start = buf.len();
        let mut too_long = false;
        let mut any = false;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                if !any {
                    return Ok(None);
                }
                self.line_no += 1;
                return Ok(Some(LineInfo {
                    number: self.line_no,
                    terminated: false,
                    too_long,
                }));
            }
            any = true;
            // memchr: several bytes per instruction; a byte loop here was
            // a sixth of `audit verify`'s time.
            let newline = memchr::memchr(b'\n', available);
            let (chunk, consumed) = match newline {
                Some(i) => (available.split_at(i).0, i + 1),
                None => (available, available.len()),
            };
            if !too_long {
                if buf.len() - start + chunk.len() > self.max_len {
                    too_long = true;
                    buf.truncate(start);
                } else {
                    buf.extend_from_slice(chunk);
                }
            }
            self.inner.consume(consumed);
            if newline.is_some() {
                self.line_no += 1;
                return Ok(Some(LineInfo {
                    number: self.line_no,
                    terminated: true,
                    too_long,
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_bounds() {
        let data = b"ab\n\ncdefgh\nxyz".to_vec();
        // Tiny buffer so lines span several fill_buf calls.
        let mut r = LineReader::with_max_len(io::BufReader::with_capacity(2, &data[..]), 4);
        let mut buf = Vec::new();
        let l = r.next_into(&mut buf).unwrap().unwrap();
        assert_eq!(
            (l.number, l.terminated, l.too_long, &buf[..]),
            (1, true, false, &b"ab"[..])
        );
        let l = r.next_into(&mut buf).unwrap().unwrap();
        assert_eq!((l.number, buf.is_empty()), (2, true));
        let l = r.next_into(&mut buf).unwrap().unwrap();
        assert_eq!((l.number, l.too_long, buf.is_empty()), (3, true, true));
        let l = r.next_into(&mut buf).unwrap().unwrap();
        assert_eq!((l.number, l.terminated, &buf[..]), (4, false, &b"xyz"[..]));
        assert!(r.next_into(&mut buf).unwrap().is_none());
    }

    #[test]
    fn append_keeps_earlier_lines() {
        let data = b"ab\ncdefgh\nxyz\n".to_vec();
        let mut r = LineReader::with_max_len(io::BufReader::with_capacity(2, &data[..]), 4);
        let mut buf = b"x".to_vec();
        let l = r.append_next(&mut buf).unwrap().unwrap();
        assert_eq!((l.number, l.too_long, &buf[..]), (1, false, &b"xab"[..]));
        let l = r.append_next(&mut buf).unwrap().unwrap();
        assert_eq!((l.number, l.too_long, &buf[..]), (2, true, &b"xab"[..]));
        let l = r.append_next(&mut buf).unwrap().unwrap();
        assert_eq!((l.number, l.too_long, &buf[..]), (3, false, &b"xabxyz"[..]));
        assert!(r.append_next(&mut buf).unwrap().is_none());
    }
}
