//! The X.509 pieces shared by CSR checking ([`super::csr`]) and OCSP
//! ([`super::ocsp`]): SubjectPublicKeyInfo, signature verification with
//! ring, and the certificate fields an OCSP check needs.
//!
//! Only the key types idmint accepts are understood: Ed25519, ECDSA P-256
//! and P-384 (uncompressed points) and RSA of at least 2048 bits. Anything
//! else is an error that names what is supported, never a silent fallback.

use super::cert::parse_time;
use super::der::{self, DerError, Tlv};
use thiserror::Error;

/// `1.2.840.113549.1.1.1`, rsaEncryption.
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// `1.2.840.10045.2.1`, id-ecPublicKey.
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// `1.2.840.10045.3.1.7`, secp256r1.
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// `1.3.132.0.34`, secp384r1.
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
/// `1.3.101.112`, Ed25519 (key and signature algorithm).
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
/// `1.2.840.113549.1.1.{11,12,13}`, sha{256,384,512}WithRSAEncryption.
const OID_RSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
const OID_RSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
const OID_RSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
/// `1.2.840.10045.4.3.{2,3}`, ecdsa-with-SHA{256,384}.
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const OID_ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
/// `2.5.29.37`, extKeyUsage.
const OID_EKU: &[u8] = &[0x55, 0x1d, 0x25];
/// `1.3.6.1.5.5.7.1.1`, authorityInfoAccess.
const OID_AIA: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x01];
/// `1.3.6.1.5.5.7.48.1`, id-ad-ocsp.
const OID_AD_OCSP: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01];
/// `1.3.6.1.5.5.7.3.9`, id-kp-OCSPSigning.
pub const OID_KP_OCSP_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x09];

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted (ring's limit), in bits.
pub const MAX_RSA_BITS: usize = 8192;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PkixError {
    #[error(transparent)]
    Der(#[from] DerError),
    #[error(
        "unsupported public key: {0}; use Ed25519, ECDSA P-256/P-384 or RSA (2048 to 8192 bits)"
    )]
    UnsupportedKey(&'static str),
    #[error("the RSA key has {0} bits; at least {MIN_RSA_BITS} are required (generate e.g. `openssl genpkey -algorithm ed25519` or an RSA key of 2048+ bits)")]
    WeakRsa(usize),
    #[error("the RSA key has {0} bits; at most {MAX_RSA_BITS} are supported")]
    HugeRsa(usize),
    #[error("unsupported signature algorithm for a {0} key; use Ed25519, ECDSA with SHA-256/384 or RSA PKCS#1 v1.5 with SHA-256/384/512")]
    UnsupportedSignature(&'static str),
    #[error("the signature does not verify")]
    BadSignature,
}

/// The key types idmint accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Ed25519,
    EcdsaP256,
    EcdsaP384,
    Rsa { bits: usize },
}

impl KeyKind {
    pub fn label(self) -> &'static str {
        match self {
            KeyKind::Ed25519 => "Ed25519",
            KeyKind::EcdsaP256 => "ECDSA P-256",
            KeyKind::EcdsaP384 => "ECDSA P-384",
            KeyKind::Rsa { .. } => "RSA",
        }
    }
}

/// A parsed SubjectPublicKeyInfo.
#[derive(Debug, Clone, Copy)]
pub struct PublicKey<'a> {
    pub kind: KeyKind,
    /// The subjectPublicKey BIT STRING contents (without the unused-bits
    /// octet): what ring verifies with and what OCSP's issuerKeyHash hashes.
    pub key: &'a [u8],
    /// The whole SubjectPublicKeyInfo, DER.
    pub spki: &'a [u8],
}

/// The contents of a BIT STRING that has no unused bits.
pub fn bit_string<'a>(t: &Tlv<'a>) -> Result<&'a [u8], DerError> {
    if t.tag != der::BIT_STRING {
        return Err(DerError("expected a BIT STRING"));
    }
    match t.value.split_first() {
        Some((0, rest)) => Ok(rest),
        _ => Err(DerError("BIT STRING with unused bits")),
    }
}

/// Bits of a positive DER INTEGER's magnitude.
fn integer_bits(v: &[u8]) -> usize {
    let v = match v.iter().position(|b| *b != 0) {
        Some(i) => &v[i..],
        None => return 0,
    };
    let lead = v.first().map_or(0, |b| 8 - b.leading_zeros() as usize);
    (v.len() - 1) * 8 + lead
}

/// Parses a SubjectPublicKeyInfo (the whole element, tag included).
pub fn parse_spki(raw: &[u8]) -> Result<PublicKey<'_>, PkixError> {
    let (spki, rest) = der::expect(raw, der::SEQUENCE, "SubjectPublicKeyInfo is not a SEQUENCE")?;
    if !rest.is_empty() {
        return Err(DerError("trailing bytes after SubjectPublicKeyInfo").into());
    }
    let parts = der::children(spki.value)?;
    let [alg, key] = parts.as_slice() else {
        return Err(DerError("SubjectPublicKeyInfo needs algorithm and key").into());
    };
    let alg_parts = der::children(
        der::expect(alg.raw, der::SEQUENCE, "algorithm is not a SEQUENCE")?
            .0
            .value,
    )?;
    let oid = alg_parts
        .first()
        .filter(|t| t.tag == der::OID)
        .ok_or(DerError("algorithm without OID"))?;
    let key = bit_string(key)?;
    let kind = match oid.value {
        OID_ED25519 => {
            if alg_parts.len() != 1 || key.len() != 32 {
                return Err(DerError("Ed25519 key must be 32 bytes without parameters").into());
            }
            KeyKind::Ed25519
        }
        OID_EC => {
            let curve = alg_parts
                .get(1)
                .filter(|t| t.tag == der::OID)
                .ok_or(PkixError::UnsupportedKey("ECDSA key without a named curve"))?;
            let (kind, len) = match curve.value {
                OID_P256 => (KeyKind::EcdsaP256, 65),
                OID_P384 => (KeyKind::EcdsaP384, 97),
                _ => {
                    return Err(PkixError::UnsupportedKey(
                        "ECDSA curve other than P-256/P-384",
                    ))
                }
            };
            if key.len() != len || key.first() != Some(&0x04) {
                return Err(PkixError::UnsupportedKey("ECDSA point is not uncompressed"));
            }
            kind
        }
        OID_RSA => {
            let (seq, rest) = der::expect(key, der::SEQUENCE, "RSAPublicKey is not a SEQUENCE")?;
            if !rest.is_empty() {
                return Err(DerError("trailing bytes after RSAPublicKey").into());
            }
            let ints = der::children(seq.value)?;
            let [n, e] = ints.as_slice() else {
                return Err(DerError("RSAPublicKey needs modulus and exponent").into());
            };
            if n.tag != der::INTEGER || e.tag != der::INTEGER {
                return Err(DerError("RSAPublicKey fields are not INTEGERs").into());
            }
            let bits = integer_bits(n.value);
            if bits < MIN_RSA_BITS {
                return Err(PkixError::WeakRsa(bits));
            }
            if bits > MAX_RSA_BITS {
                return Err(PkixError::HugeRsa(bits));
            }
            KeyKind::Rsa { bits }
        }
        _ => return Err(PkixError::UnsupportedKey("algorithm OID not recognised")),
    };
    Ok(PublicKey {
        kind,
        key,
        spki: spki.raw,
    })
}

/// Verifies `signature` over `message` by `key`, with the algorithm named by
/// the AlgorithmIdentifier `alg` (the whole element).
pub fn verify(
    key: &PublicKey<'_>,
    alg: &Tlv<'_>,
    message: &[u8],
    signature: &[u8],
) -> Result<(), PkixError> {
    use ring::signature as s;
    if alg.tag != der::SEQUENCE {
        return Err(DerError("signature algorithm is not a SEQUENCE").into());
    }
    let parts = der::children(alg.value)?;
    let oid = parts
        .first()
        .filter(|t| t.tag == der::OID)
        .ok_or(DerError("signature algorithm without OID"))?;
    let unsupported = || PkixError::UnsupportedSignature(key.kind.label());
    let algorithm: &'static dyn s::VerificationAlgorithm = match (oid.value, key.kind) {
        (OID_ED25519, KeyKind::Ed25519) => &s::ED25519,
        (OID_ECDSA_SHA256, KeyKind::EcdsaP256) => &s::ECDSA_P256_SHA256_ASN1,
        (OID_ECDSA_SHA384, KeyKind::EcdsaP256) => &s::ECDSA_P256_SHA384_ASN1,
        (OID_ECDSA_SHA256, KeyKind::EcdsaP384) => &s::ECDSA_P384_SHA256_ASN1,
        (OID_ECDSA_SHA384, KeyKind::EcdsaP384) => &s::ECDSA_P384_SHA384_ASN1,
        (OID_RSA_SHA256, KeyKind::Rsa { .. }) => &s::RSA_PKCS1_2048_8192_SHA256,
        (OID_RSA_SHA384, KeyKind::Rsa { .. }) => &s::RSA_PKCS1_2048_8192_SHA384,
        (OID_RSA_SHA512, KeyKind::Rsa { .. }) => &s::RSA_PKCS1_2048_8192_SHA512,
        _ => return Err(unsupported()),
    };
    s::UnparsedPublicKey::new(algorithm, key.key)
        .verify(message, signature)
        .map_err(|_| PkixError::BadSignature)
}

/// The fields of a certificate that OCSP needs. Borrowed from the DER.
#[derive(Debug, Clone)]
pub struct Cert<'a> {
    /// tbsCertificate, the whole element: what the signature covers.
    pub tbs: &'a [u8],
    pub signature_algorithm: Tlv<'a>,
    pub signature: &'a [u8],
    /// The serial INTEGER's contents.
    pub serial: &'a [u8],
    /// issuer and subject Names, whole elements.
    pub issuer: &'a [u8],
    pub subject: &'a [u8],
    /// SubjectPublicKeyInfo, whole element (parse with [`parse_spki`]).
    pub spki: &'a [u8],
    pub not_before: i64,
    pub not_after: i64,
    /// extKeyUsage purposes (OID contents); empty when absent.
    pub eku: Vec<&'a [u8]>,
    /// OCSP responder URLs from authorityInfoAccess.
    pub ocsp_urls: Vec<String>,
}

impl<'a> Cert<'a> {
    pub fn parse(cert_der: &'a [u8]) -> Result<Self, DerError> {
        let (cert, rest) = der::expect(cert_der, der::SEQUENCE, "certificate is not a SEQUENCE")?;
        if !rest.is_empty() {
            return Err(DerError("trailing bytes after the certificate"));
        }
        let parts = der::children(cert.value)?;
        let [tbs, sig_alg, sig] = parts.as_slice() else {
            return Err(DerError(
                "certificate needs tbsCertificate, algorithm, signature",
            ));
        };
        if tbs.tag != der::SEQUENCE {
            return Err(DerError("tbsCertificate is not a SEQUENCE"));
        }
        let mut fields = der::children(tbs.value)?.into_iter().peekable();
        if fields.peek().map(|t| t.tag) == Some(0xa0) {
            fields.next();
        }
        let mut next = |what: &'static str| fields.next().ok_or(DerError(what));
        let serial = next("missing serial")?;
        let _alg = next("missing signature algorithm")?;
        let issuer = next("missing issuer")?;
        let validity = next("missing validity")?;
        let subject = next("missing subject")?;
        let spki = next("missing public key")?;
        if serial.tag != der::INTEGER || issuer.tag != der::SEQUENCE || subject.tag != der::SEQUENCE
        {
            return Err(DerError("malformed serial or names"));
        }
        let times = der::children(validity.value)?;
        let [nb, na] = times.as_slice() else {
            return Err(DerError("validity needs notBefore and notAfter"));
        };
        let mut out = Cert {
            tbs: tbs.raw,
            signature_algorithm: *sig_alg,
            signature: bit_string(sig)?,
            serial: serial.value,
            issuer: issuer.raw,
            subject: subject.raw,
            spki: spki.raw,
            not_before: parse_time(nb)?,
            not_after: parse_time(na)?,
            eku: vec![],
            ocsp_urls: vec![],
        };
        for field in fields {
            if field.tag != 0xa3 {
                continue;
            }
            let (exts, _) =
                der::expect(field.value, der::SEQUENCE, "extensions are not a SEQUENCE")?;
            for ext in der::children(exts.value)? {
                let parts = der::children(ext.value)?;
                let (Some(oid), Some(value)) = (parts.first(), parts.last()) else {
                    return Err(DerError("empty extension"));
                };
                if value.tag != der::OCTET_STRING {
                    return Err(DerError("extension value is not an OCTET STRING"));
                }
                match oid.value {
                    OID_EKU => {
                        let (seq, _) = der::expect(
                            value.value,
                            der::SEQUENCE,
                            "extKeyUsage is not a SEQUENCE",
                        )?;
                        for p in der::children(seq.value)? {
                            if p.tag != der::OID {
                                return Err(DerError("extKeyUsage entry is not an OID"));
                            }
                            out.eku.push(p.value);
                        }
                    }
                    OID_AIA => {
                        let (seq, _) = der::expect(
                            value.value,
                            der::SEQUENCE,
                            "authorityInfoAccess is not a SEQUENCE",
                        )?;
                        for ad in der::children(seq.value)? {
                            let parts = der::children(ad.value)?;
                            if let [method, location] = parts.as_slice() {
                                // [6] uniformResourceIdentifier, IMPLICIT IA5String.
                                if method.value == OID_AD_OCSP && location.tag == 0x86 {
                                    let url = std::str::from_utf8(location.value)
                                        .map_err(|_| DerError("OCSP URL is not ASCII"))?;
                                    out.ocsp_urls.push(url.to_string());
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    /// Verifies this certificate's signature with `issuer`'s key.
    pub fn verify_signed_by(&self, issuer: &Cert<'_>) -> Result<(), PkixError> {
        let key = parse_spki(issuer.spki)?;
        verify(&key, &self.signature_algorithm, self.tbs, self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_bits_counts_the_magnitude() {
        assert_eq!(integer_bits(&[0x00, 0x80]), 8);
        assert_eq!(integer_bits(&[0x01, 0x00]), 9);
        assert_eq!(integer_bits(&[0x00]), 0);
        let mut n = vec![0x00, 0xc1];
        n.extend([0u8; 255]);
        assert_eq!(integer_bits(&n), 2048);
    }

    #[test]
    fn rcgen_keys_parse_and_signatures_verify() {
        for alg in [
            &rcgen::PKCS_ED25519,
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
        ] {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let mut p = rcgen::CertificateParams::new(vec!["a.example".into()]).unwrap();
            p.is_ca = rcgen::IsCa::ExplicitNoCa;
            let cert = p.self_signed(&key).unwrap();
            let c = Cert::parse(cert.der()).unwrap();
            c.verify_signed_by(&c).unwrap();
            let spki = parse_spki(c.spki).unwrap();
            assert_eq!(spki.key, key.public_key_raw());
            // One flipped bit in the signed bytes: refused.
            let mut tbs = c.tbs.to_vec();
            let last = tbs.len() - 1;
            tbs[last] ^= 1;
            assert_eq!(
                verify(&spki, &c.signature_algorithm, &tbs, c.signature),
                Err(PkixError::BadSignature)
            );
        }
    }

    #[test]
    fn hostile_spki_is_refused_without_panicking() {
        assert!(parse_spki(&[]).is_err());
        assert!(parse_spki(&[0x30, 0x00]).is_err());
        // id-ecPublicKey on an unknown curve (1.2.3).
        let spki = [
            0x30, 0x14, 0x30, 0x0e, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x03, 0x2a, 0x03, 0x04, 0x03, 0x02, 0x00, 0x04,
        ];
        assert_eq!(
            parse_spki(&spki[..]).unwrap_err(),
            PkixError::UnsupportedKey("ECDSA curve other than P-256/P-384")
        );
    }
}
