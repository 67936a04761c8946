//! A minimal, strict DER reader: just enough to walk X.509 certificates and
//! PKCS#10 requests. It never allocates and never panics on hostile input;
//! every malformed length or truncated value is an error.
//!
//! Signature and chain validation are *not* done here (webpki/ring do
//! that); this reader only extracts fields from bytes already verified.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("malformed DER: {0}")]
pub struct DerError(pub &'static str);

pub const SEQUENCE: u8 = 0x30;
pub const SET: u8 = 0x31;
pub const INTEGER: u8 = 0x02;
pub const BIT_STRING: u8 = 0x03;
pub const OCTET_STRING: u8 = 0x04;
pub const OID: u8 = 0x06;
pub const BOOLEAN: u8 = 0x01;

/// One tag-length-value element.
#[derive(Debug, Clone, Copy)]
pub struct Tlv<'a> {
    pub tag: u8,
    /// The contents (without tag and length).
    pub value: &'a [u8],
    /// The whole element, tag and length included.
    pub raw: &'a [u8],
}

/// Reads one element from the front of `input`; returns it and the rest.
pub fn read(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), DerError> {
    let (&tag, rest) = input.split_first().ok_or(DerError("unexpected end"))?;
    if tag & 0x1f == 0x1f {
        return Err(DerError("high tag numbers are not supported"));
    }
    let (&first, rest) = rest.split_first().ok_or(DerError("missing length"))?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err(DerError("unsupported length encoding"));
        }
        let bytes = rest.get(..n).ok_or(DerError("truncated length"))?;
        if bytes.first() == Some(&0) {
            return Err(DerError("non-minimal length"));
        }
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        if len < 0x80 {
            return Err(DerError("non-minimal length"));
        }
        (len, rest.get(n..).ok_or(DerError("truncated length"))?)
    };
    let value = rest.get(..len).ok_or(DerError("truncated value"))?;
    let rest = rest.get(len..).ok_or(DerError("truncated value"))?;
    let header = input.len() - rest.len() - len;
    let raw = input
        .get(..header + len)
        .ok_or(DerError("truncated value"))?;
    Ok((Tlv { tag, value, raw }, rest))
}

/// Reads one element that must have `tag`.
pub fn expect<'a>(
    input: &'a [u8],
    tag: u8,
    what: &'static str,
) -> Result<(Tlv<'a>, &'a [u8]), DerError> {
    let (tlv, rest) = read(input)?;
    if tlv.tag != tag {
        return Err(DerError(what));
    }
    Ok((tlv, rest))
}

/// Every element of a constructed value, in order.
pub fn children(mut input: &[u8]) -> Result<Vec<Tlv<'_>>, DerError> {
    let mut out = vec![];
    while !input.is_empty() {
        let (tlv, rest) = read(input)?;
        out.push(tlv);
        input = rest;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_lengths_and_refuses_truncation() {
        let (t, rest) = read(&[0x04, 0x02, 0xaa, 0xbb, 0x01]).unwrap();
        assert_eq!((t.tag, t.value, rest), (4, &[0xaa, 0xbb][..], &[1u8][..]));
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([0u8; 0x80]);
        assert_eq!(read(&long).unwrap().0.value.len(), 0x80);
        assert!(read(&[0x04, 0x81, 0x05, 1, 2]).is_err());
        assert!(read(&[0x04, 0x05, 1]).is_err());
        assert!(
            read(&[0x04, 0x81, 0x05, 1, 2, 3, 4, 5]).is_err(),
            "non-minimal"
        );
        assert!(read(&[0x04, 0x85, 1, 1, 1, 1, 1]).is_err());
        assert!(read(&[]).is_err());
        assert!(expect(&[0x02, 0x00], SEQUENCE, "want seq").is_err());
    }
}
