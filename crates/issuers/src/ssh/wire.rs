//! The SSH wire encoding (RFC 4251 §5): big-endian integers and
//! length-prefixed strings, which is all certificates and public keys use.
//!
//! The reader never trusts a length: every read is bounds-checked against
//! what is left, so truncated or hostile input is an error, never a panic or
//! a huge allocation.

/// Builds an SSH wire buffer.
#[derive(Debug, Default)]
pub(crate) struct SshWriter(Vec<u8>);

impl SshWriter {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// A `string`: u32 length then the bytes. Lengths beyond u32 cannot
    /// occur for what idmint encodes (all inputs are bounded far below), but
    /// are saturated rather than truncated silently wrong: the decoder then
    /// fails, which is the safe outcome.
    pub(crate) fn string(&mut self, bytes: &[u8]) -> &mut Self {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.0.extend_from_slice(bytes);
        self
    }
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.0
    }
    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

/// Why a wire buffer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated: {wanted} more bytes expected, {left} left")]
    Truncated { wanted: usize, left: usize },
    #[error("{0} unexpected trailing bytes")]
    Trailing(usize),
}

/// Reads an SSH wire buffer front to back.
pub(crate) struct SshReader<'a> {
    rest: &'a [u8],
}

impl<'a> SshReader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { rest: buf }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.rest.len() {
            return Err(WireError::Truncated {
                wanted: n,
                left: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    #[cfg(test)]
    pub(crate) fn u64(&mut self) -> Result<u64, WireError> {
        let hi = u64::from(self.u32()?);
        let lo = u64::from(self.u32()?);
        Ok((hi << 32) | lo)
    }
    pub(crate) fn string(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    /// Fails unless everything was read.
    pub(crate) fn finish(&self) -> Result<(), WireError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing(self.rest.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_bounds() {
        let mut w = SshWriter::default();
        w.u32(7).u64(u64::MAX - 1).string(b"abc").string(b"");
        let buf = w.into_vec();
        let mut r = SshReader::new(&buf);
        assert_eq!(r.u32().unwrap(), 7);
        assert_eq!(r.u64().unwrap(), u64::MAX - 1);
        assert_eq!(r.string().unwrap(), b"abc");
        assert_eq!(r.string().unwrap(), b"");
        r.finish().unwrap();

        // A length far beyond the buffer is an error, not an allocation.
        let mut r = SshReader::new(&[0xff, 0xff, 0xff, 0xff, 1]);
        assert!(matches!(r.string(), Err(WireError::Truncated { .. })));
        let mut r = SshReader::new(&[0, 0]);
        assert!(r.u32().is_err());
        let r = SshReader::new(&[1]);
        assert_eq!(r.finish(), Err(WireError::Trailing(1)));
    }
}
