//! PKCS#10 certificate signing requests, for X.509-SVIDs whose private key
//! never leaves the client (`POST /api/v1/creds/{role}` with `csr`).
//!
//! A CSR is used for exactly one thing: its public key, after its
//! self-signature proved that the requester holds the matching private key.
//! Everything else the CSR asks for (subject, SANs, basicConstraints, key
//! usages, any extension request) is ignored: those come from the role and
//! the caller's verified identity, never from the requester's wishes.

use super::der::{self, DerError};
use super::pkix::{self, KeyKind, PkixError};
use thiserror::Error;

/// Largest CSR accepted, PEM text. An RSA-8192 request with a long subject
/// stays well under this; anything larger is not a CSR idmint would use.
pub const MAX_CSR_PEM_BYTES: usize = 16 * 1024;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CsrError {
    #[error("the CSR is {0} bytes; at most {MAX_CSR_PEM_BYTES} are accepted")]
    TooLarge(usize),
    #[error("the CSR is not PEM with a -----BEGIN CERTIFICATE REQUEST----- block: {0}")]
    NotPem(String),
    #[error("the CSR holds {0} PEM blocks; send exactly one CERTIFICATE REQUEST")]
    BlockCount(usize),
    #[error("the CSR is not a valid PKCS#10 request: {0}")]
    Malformed(#[from] DerError),
    #[error("the CSR's public key cannot be used: {0}")]
    Key(PkixError),
    #[error("the CSR's self-signature does not verify: the request was altered or was not signed with the private key of its public key ({0})")]
    Signature(PkixError),
}

/// The public key of a CSR whose self-signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrPublicKey {
    pub kind: KeyKind,
    /// The subjectPublicKey BIT STRING contents.
    pub key: Vec<u8>,
    /// The whole SubjectPublicKeyInfo, DER.
    pub spki_der: Vec<u8>,
}

/// Parses a PEM CSR, checks its self-signature and returns only its key.
pub fn public_key_from_pem(pem: &str) -> Result<CsrPublicKey, CsrError> {
    if pem.len() > MAX_CSR_PEM_BYTES {
        return Err(CsrError::TooLarge(pem.len()));
    }
    let mut blocks = vec![];
    for item in rustls_pemfile::read_all(&mut pem.as_bytes()) {
        match item.map_err(|e| CsrError::NotPem(format!("{e:?}")))? {
            rustls_pemfile::Item::Csr(der) => blocks.push(der),
            _ => {
                return Err(CsrError::NotPem(
                    "found a PEM block other than CERTIFICATE REQUEST".into(),
                ))
            }
        }
    }
    match blocks.as_slice() {
        [one] => public_key_from_der(one.as_ref()),
        [] => Err(CsrError::NotPem(
            "no CERTIFICATE REQUEST block found".into(),
        )),
        more => Err(CsrError::BlockCount(more.len())),
    }
}

/// [`public_key_from_pem`] for DER.
pub fn public_key_from_der(csr: &[u8]) -> Result<CsrPublicKey, CsrError> {
    let (req, rest) = der::expect(csr, der::SEQUENCE, "CertificationRequest is not a SEQUENCE")?;
    if !rest.is_empty() {
        return Err(DerError("trailing bytes after the CSR").into());
    }
    let parts = der::children(req.value)?;
    let [info, alg, sig] = parts.as_slice() else {
        return Err(DerError("CertificationRequest needs info, algorithm and signature").into());
    };
    if info.tag != der::SEQUENCE {
        return Err(DerError("certificationRequestInfo is not a SEQUENCE").into());
    }
    let fields = der::children(info.value)?;
    let [version, _subject, spki, ..] = fields.as_slice() else {
        return Err(DerError("certificationRequestInfo is too short").into());
    };
    if version.tag != der::INTEGER || version.value != [0] {
        return Err(DerError("CSR version is not v1 (0)").into());
    }
    let key = pkix::parse_spki(spki.raw).map_err(CsrError::Key)?;
    let signature = pkix::bit_string(sig)?;
    pkix::verify(&key, alg, info.raw, signature).map_err(CsrError::Signature)?;
    Ok(CsrPublicKey {
        kind: key.kind,
        key: key.key.to_vec(),
        spki_der: key.spki.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(alg: &'static rcgen::SignatureAlgorithm) -> (rcgen::KeyPair, String) {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let p = rcgen::CertificateParams::new(vec!["evil.example".into()]).unwrap();
        let pem = p.serialize_request(&key).unwrap().pem().unwrap();
        (key, pem)
    }

    #[test]
    fn rcgen_csrs_yield_their_key() {
        for (alg, kind) in [
            (&rcgen::PKCS_ED25519, KeyKind::Ed25519),
            (&rcgen::PKCS_ECDSA_P256_SHA256, KeyKind::EcdsaP256),
            (&rcgen::PKCS_ECDSA_P384_SHA384, KeyKind::EcdsaP384),
        ] {
            let (key, pem) = csr(alg);
            let k = public_key_from_pem(&pem).unwrap();
            assert_eq!(k.kind, kind);
            assert_eq!(k.key, key.public_key_raw());
            assert_eq!(k.spki_der, key.public_key_der());
        }
    }

    #[test]
    fn hostile_csrs_are_refused() {
        let (_, pem) = csr(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert!(matches!(
            public_key_from_pem(&"A".repeat(MAX_CSR_PEM_BYTES + 1)),
            Err(CsrError::TooLarge(_))
        ));
        assert!(matches!(
            public_key_from_pem("hello"),
            Err(CsrError::NotPem(_))
        ));
        assert!(matches!(
            public_key_from_pem(&format!("{pem}{pem}")),
            Err(CsrError::BlockCount(2))
        ));
        // Flip a byte inside the signed info (the subject's DNS name): the
        // self-signature no longer verifies.
        let der = rustls_pemfile::csr(&mut pem.as_bytes()).unwrap();
        let mut bytes = der.unwrap().as_ref().to_vec();
        let at = bytes.windows(4).position(|w| w == b"evil").unwrap();
        bytes[at] = b'E';
        assert!(matches!(
            public_key_from_der(&bytes),
            Err(CsrError::Signature(PkixError::BadSignature))
        ));
        for garbage in [
            &[][..],
            &[0x30, 0x00],
            &[0x30, 0x03, 0x02, 0x01, 0x00],
            &[0xff; 64],
        ] {
            assert!(public_key_from_der(garbage).is_err());
        }
    }
}
