//! The facts idmint reads from a (chain-verified) X.509 certificate: the
//! subject common name, the URI and DNS subject alternative names, and the
//! end of validity.

use super::der::{self, DerError};

/// `2.5.29.17`, subjectAltName.
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];
/// `2.5.4.3`, commonName.
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
/// GeneralName `[2] dNSName` and `[6] uniformResourceIdentifier` (implicit).
const SAN_DNS: u8 = 0x82;
const SAN_URI: u8 = 0x86;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertFacts {
    pub common_name: Option<String>,
    pub uri_sans: Vec<String>,
    pub dns_sans: Vec<String>,
    /// `notAfter` as Unix seconds.
    pub not_after: i64,
    /// The serial number, lowercase hex.
    pub serial_hex: String,
}

impl CertFacts {
    /// Every SAN as `URI:…` / `DNS:…`, for policy attributes and audit.
    pub fn labelled_sans(&self) -> Vec<String> {
        self.uri_sans
            .iter()
            .map(|u| format!("URI:{u}"))
            .chain(self.dns_sans.iter().map(|d| format!("DNS:{d}")))
            .collect()
    }
}

/// Parses the fields idmint needs from a DER certificate.
pub fn parse(cert_der: &[u8]) -> Result<CertFacts, DerError> {
    let (cert, _) = der::expect(cert_der, der::SEQUENCE, "certificate is not a SEQUENCE")?;
    let (tbs, _) = der::expect(
        cert.value,
        der::SEQUENCE,
        "tbsCertificate is not a SEQUENCE",
    )?;
    let mut fields = der::children(tbs.value)?.into_iter().peekable();
    if fields.peek().map(|t| t.tag) == Some(0xa0) {
        fields.next();
    }
    let serial = fields.next().ok_or(DerError("missing serial"))?;
    if serial.tag != der::INTEGER {
        return Err(DerError("serial is not an INTEGER"));
    }
    let _signature = fields
        .next()
        .ok_or(DerError("missing signature algorithm"))?;
    let _issuer = fields.next().ok_or(DerError("missing issuer"))?;
    let validity = fields.next().ok_or(DerError("missing validity"))?;
    let subject = fields.next().ok_or(DerError("missing subject"))?;
    let _spki = fields.next().ok_or(DerError("missing public key"))?;
    let mut facts = CertFacts {
        serial_hex: idmint_core::ids::hex(serial.value),
        ..Default::default()
    };
    let times = der::children(validity.value)?;
    let not_after = times.get(1).ok_or(DerError("validity without notAfter"))?;
    facts.not_after = parse_time(not_after)?;
    facts.common_name = common_name(subject.value)?;
    for field in fields {
        if field.tag != 0xa3 {
            continue;
        }
        let (exts, _) = der::expect(field.value, der::SEQUENCE, "extensions are not a SEQUENCE")?;
        let mut seen_san = false;
        for ext in der::children(exts.value)? {
            let parts = der::children(ext.value)?;
            let (Some(oid), Some(value)) = (parts.first(), parts.last()) else {
                return Err(DerError("empty extension"));
            };
            if oid.tag != der::OID || oid.value != OID_SAN {
                continue;
            }
            if seen_san {
                return Err(DerError("two subjectAltName extensions"));
            }
            seen_san = true;
            if value.tag != der::OCTET_STRING {
                return Err(DerError("subjectAltName value is not an OCTET STRING"));
            }
            let (names, _) =
                der::expect(value.value, der::SEQUENCE, "GeneralNames is not a SEQUENCE")?;
            for name in der::children(names.value)? {
                let text = || {
                    std::str::from_utf8(name.value)
                        .map(str::to_string)
                        .map_err(|_| DerError("SAN is not ASCII"))
                };
                match name.tag {
                    SAN_URI => facts.uri_sans.push(text()?),
                    SAN_DNS => facts.dns_sans.push(text()?),
                    _ => {}
                }
            }
        }
    }
    Ok(facts)
}

fn common_name(name: &[u8]) -> Result<Option<String>, DerError> {
    let mut found = None;
    for rdn in der::children(name)? {
        for atv in der::children(rdn.value)? {
            let parts = der::children(atv.value)?;
            if let (Some(oid), Some(value)) = (parts.first(), parts.get(1)) {
                if oid.tag == der::OID && oid.value == OID_CN {
                    if found.is_some() {
                        return Err(DerError("subject has two common names"));
                    }
                    let s = std::str::from_utf8(value.value)
                        .map_err(|_| DerError("common name is not UTF-8"))?;
                    found = Some(s.to_string());
                }
            }
        }
    }
    Ok(found)
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
pub(crate) fn parse_time(t: &der::Tlv<'_>) -> Result<i64, DerError> {
    let s = std::str::from_utf8(t.value).map_err(|_| DerError("time is not ASCII"))?;
    let digits = s.strip_suffix('Z').ok_or(DerError("time is not UTC (Z)"))?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DerError("time has non-digits"));
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, DerError> {
        digits
            .get(r)
            .and_then(|x| x.parse::<i64>().ok())
            .ok_or(DerError("time too short"))
    };
    let (year, rest) = match (t.tag, digits.len()) {
        (0x17, 12) => {
            let yy = num(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (0x18, 14) => (num(0..4)?, 4),
        _ => return Err(DerError("unsupported time format")),
    };
    let month = num(rest..rest + 2)?;
    let day = num(rest + 2..rest + 4)?;
    let (h, m, sec) = (
        num(rest + 4..rest + 6)?,
        num(rest + 6..rest + 8)?,
        num(rest + 8..rest + 10)?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return Err(DerError("time out of range"));
    }
    Ok(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days_match_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        let t = der::Tlv {
            tag: 0x17,
            value: b"491231235959Z",
            raw: &[],
        };
        assert_eq!(parse_time(&t).unwrap(), 2_524_607_999);
        let g = der::Tlv {
            tag: 0x18,
            value: b"20260101000000Z",
            raw: &[],
        };
        assert_eq!(parse_time(&g).unwrap(), 1_767_225_600);
        let bad = der::Tlv {
            tag: 0x18,
            value: b"20261301000000Z",
            raw: &[],
        };
        assert!(parse_time(&bad).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for input in [&[][..], &[0x30], &[0x30, 0x03, 0x30, 0x01], &[0xff; 40]] {
            assert!(parse(input).is_err());
        }
    }
}
