//! OCSP (RFC 6960) status checks of client certificates at mTLS login.
//!
//! The request is built by hand (it is a few nested DER elements): one
//! SHA-1 CertID for the leaf and a fresh 16-byte nonce (RFC 8954). The
//! response is accepted only when
//!
//! * it is a `successful` basic response,
//! * its signature verifies with the key of the leaf's issuer, or with a
//!   responder certificate that the same issuer signed, that carries
//!   `id-kp-OCSPSigning` and is within its validity (a *delegated*
//!   responder; RFC 6960 §4.2.2.2) — a response signed by anything else,
//!   even a CA that other methods trust, is refused,
//! * it answers for exactly our CertID,
//! * it is fresh: the nonce we sent comes back, or — for responders that
//!   pre-produce responses and drop nonces — `thisUpdate` is no older than
//!   `ocsp_max_age`; `thisUpdate` is never in the future and `nextUpdate`,
//!   when present, has not passed (both with 5 minutes of clock skew).
//!
//! Good and revoked answers that carry `nextUpdate` are cached per
//! certificate until then (capped at a day), so a busy workload does not
//! query the responder at every login; nonce-checked answers without
//! `nextUpdate` are not cached.

use super::der::{self, DerError, Tlv};
use super::pkix::{self, Cert};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use thiserror::Error;

/// `1.3.14.3.2.26`, SHA-1 (the CertID hash every responder supports).
const OID_SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
/// `1.3.6.1.5.5.7.48.1.1`, id-pkix-ocsp-basic.
const OID_OCSP_BASIC: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];
/// `1.3.6.1.5.5.7.48.1.2`, id-pkix-ocsp-nonce.
const OID_OCSP_NONCE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02];
const ENUMERATED: u8 = 0x0a;
const GENERALIZED_TIME: u8 = 0x18;
/// Clock skew tolerated between idmint and the responder.
const SKEW_SECS: i64 = 300;
/// Longest time an answer is cached, whatever its `nextUpdate`.
const MAX_CACHE_SECS: i64 = 86_400;
/// Cached answers kept at most (expired ones are dropped first).
const MAX_CACHE_ENTRIES: usize = 10_000;
/// Largest response body read from a responder.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// `ocsp = "off" | "prefer" | "require"` of an `[[auth.mtls]]` method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OcspMode {
    /// No OCSP check (CRL files, if any, still apply).
    #[default]
    Off,
    /// Check; a revoked certificate is refused, but an unreachable
    /// responder or an `unknown` answer lets the login through with a note
    /// in the audited identity (`ocsp_status = "unchecked"`).
    Prefer,
    /// Check; only a verified `good` answer lets the login through.
    Require,
}

/// What the responder said about the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OcspStatus {
    Good,
    Revoked {
        /// Unix seconds.
        revoked_at: i64,
        /// The CRLReason, when the responder gave one.
        reason: Option<&'static str>,
    },
    /// The responder does not know the certificate.
    Unknown,
}

/// A verified answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcspAnswer {
    pub status: OcspStatus,
    /// True when served from the cache (no request was sent).
    pub cached: bool,
}

/// Why no verified answer could be had.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum OcspError {
    #[error("no OCSP responder: the certificate has no OCSP URL in authorityInfoAccess and [[auth.mtls]] sets no ocsp_url")]
    NoResponder,
    #[error(
        "the issuer of the client certificate is not among the method's CAs or the presented chain"
    )]
    NoIssuer,
    #[error("the client certificate cannot be read for OCSP: {0}")]
    Certificate(String),
    #[error("OCSP responder {url} unreachable: {message}")]
    Unreachable { url: String, message: String },
    #[error("OCSP responder {url} answered {message}")]
    Refused { url: String, message: String },
    #[error("OCSP response from {url} rejected: {message}")]
    Invalid { url: String, message: String },
}

/// Everything needed to ask one responder about one certificate.
struct Query {
    url: String,
    /// The DER CertID: cache key and what the answer must match.
    cert_id: Vec<u8>,
    name_hash: Vec<u8>,
    key_hash: Vec<u8>,
    serial: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Cached {
    status: OcspStatus,
    until: i64,
}

/// The OCSP client of one `[[auth.mtls]]` method.
pub struct OcspChecker {
    url_override: Option<String>,
    max_age_secs: i64,
    http: reqwest::Client,
    cache: Mutex<HashMap<Vec<u8>, Cached>>,
}

impl std::fmt::Debug for OcspChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcspChecker")
            .field("url_override", &self.url_override)
            .finish()
    }
}

impl OcspChecker {
    /// `url_override` replaces the certificate's AIA URL; `timeout` bounds
    /// each whole request; `max_age` is the oldest `thisUpdate` accepted
    /// when the responder does not echo the nonce.
    pub fn new(
        url_override: Option<String>,
        timeout: Duration,
        max_age: Duration,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            // Many responders (openssl's among them) answer one request per
            // connection: never reuse one.
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| format!("cannot build the OCSP HTTP client: {e}"))?;
        Ok(Self {
            url_override,
            max_age_secs: i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
            http,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The status of `leaf` (DER), issued by `issuer` (DER), at `now` (Unix
    /// seconds).
    pub async fn check(
        &self,
        leaf: &[u8],
        issuer: &[u8],
        now: i64,
    ) -> Result<OcspAnswer, OcspError> {
        let q = self.query(leaf, issuer)?;
        if let Some(hit) = self.cached(&q.cert_id, now) {
            return Ok(OcspAnswer {
                status: hit,
                cached: true,
            });
        }
        let mut nonce = [0u8; 16];
        idmint_core::ids::random_bytes(&mut nonce).map_err(|e| OcspError::Unreachable {
            url: q.url.clone(),
            message: format!("no randomness for the nonce: {e}"),
        })?;
        let body = self.post(&q.url, request_der(&q.cert_id, &nonce)).await?;
        let issuer_cert = Cert::parse(issuer).map_err(|e| OcspError::Certificate(e.to_string()))?;
        let parsed = parse_response(&body, &issuer_cert, &q, &nonce, now, self.max_age_secs)
            .map_err(|message| match message {
                ResponseError::Refused(message) => OcspError::Refused {
                    url: q.url.clone(),
                    message,
                },
                ResponseError::Invalid(message) => OcspError::Invalid {
                    url: q.url.clone(),
                    message,
                },
            })?;
        if let (Some(next), OcspStatus::Good | OcspStatus::Revoked { .. }) =
            (parsed.next_update, &parsed.status)
        {
            self.remember(
                q.cert_id,
                parsed.status.clone(),
                next.min(now + MAX_CACHE_SECS),
            );
        }
        Ok(OcspAnswer {
            status: parsed.status,
            cached: false,
        })
    }

    fn query(&self, leaf: &[u8], issuer: &[u8]) -> Result<Query, OcspError> {
        let cert_err = |e: DerError| OcspError::Certificate(e.to_string());
        let leaf = Cert::parse(leaf).map_err(cert_err)?;
        let issuer = Cert::parse(issuer).map_err(cert_err)?;
        let url = match &self.url_override {
            Some(u) => u.clone(),
            None => leaf
                .ocsp_urls
                .iter()
                .find(|u| u.starts_with("http://") || u.starts_with("https://"))
                .cloned()
                .ok_or(OcspError::NoResponder)?,
        };
        let sha1 = |b: &[u8]| {
            ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, b)
                .as_ref()
                .to_vec()
        };
        let name_hash = sha1(issuer.subject);
        let issuer_spki = der::children(
            der::expect(
                issuer.spki,
                der::SEQUENCE,
                "SubjectPublicKeyInfo is not a SEQUENCE",
            )
            .map_err(cert_err)?
            .0
            .value,
        )
        .map_err(cert_err)?;
        let key_bits = issuer_spki
            .get(1)
            .ok_or(DerError("SubjectPublicKeyInfo without key"))
            .and_then(|k| pkix::bit_string(k))
            .map_err(cert_err)?;
        let key_hash = sha1(key_bits);
        let cert_id = tlv(
            der::SEQUENCE,
            &[
                tlv(
                    der::SEQUENCE,
                    &[tlv(der::OID, &[OID_SHA1.to_vec()]), vec![0x05, 0x00]],
                ),
                tlv(der::OCTET_STRING, std::slice::from_ref(&name_hash)),
                tlv(der::OCTET_STRING, std::slice::from_ref(&key_hash)),
                tlv(der::INTEGER, &[leaf.serial.to_vec()]),
            ],
        );
        Ok(Query {
            url,
            cert_id,
            name_hash,
            key_hash,
            serial: leaf.serial.to_vec(),
        })
    }

    fn cached(&self, cert_id: &[u8], now: i64) -> Option<OcspStatus> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(cert_id)
            .filter(|c| c.until > now)
            .map(|c| c.status.clone())
    }

    fn remember(&self, cert_id: Vec<u8>, status: OcspStatus, until: i64) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHE_ENTRIES {
            let now = idmint_core::UnixTime::now().secs();
            cache.retain(|_, c| c.until > now);
        }
        if cache.len() < MAX_CACHE_ENTRIES {
            cache.insert(cert_id, Cached { status, until });
        }
    }

    async fn post(&self, url: &str, body: Vec<u8>) -> Result<Vec<u8>, OcspError> {
        let unreachable = |message: String| OcspError::Unreachable {
            url: url.to_string(),
            message,
        };
        let mut resp = self
            .http
            .post(url)
            .header("content-type", "application/ocsp-request")
            .body(body)
            .send()
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(OcspError::Refused {
                url: url.to_string(),
                message: format!("HTTP {}", resp.status()),
            });
        }
        let mut out = vec![];
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| unreachable(error_chain(&e)))?
        {
            if out.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(OcspError::Invalid {
                    url: url.to_string(),
                    message: format!("the response is larger than {MAX_RESPONSE_BYTES} bytes"),
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// One DER element from its already-encoded parts.
fn tlv(tag: u8, parts: &[Vec<u8>]) -> Vec<u8> {
    let len: usize = parts.iter().map(Vec::len).sum();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// `OCSPRequest { tbsRequest { requestList { Request { certID } },
/// requestExtensions [2] { nonce } } }`.
fn request_der(cert_id: &[u8], nonce: &[u8]) -> Vec<u8> {
    let nonce_ext = tlv(
        der::SEQUENCE,
        &[
            tlv(der::OID, &[OID_OCSP_NONCE.to_vec()]),
            tlv(
                der::OCTET_STRING,
                &[tlv(der::OCTET_STRING, &[nonce.to_vec()])],
            ),
        ],
    );
    let request_list = tlv(der::SEQUENCE, &[tlv(der::SEQUENCE, &[cert_id.to_vec()])]);
    let exts = tlv(0xa2, &[tlv(der::SEQUENCE, &[nonce_ext])]);
    tlv(der::SEQUENCE, &[tlv(der::SEQUENCE, &[request_list, exts])])
}

#[derive(Debug)]
enum ResponseError {
    /// The responder answered, but not with a status (tryLater, …).
    Refused(String),
    /// The bytes are not a response we may trust.
    Invalid(String),
}

impl From<DerError> for ResponseError {
    fn from(e: DerError) -> Self {
        ResponseError::Invalid(e.to_string())
    }
}

#[derive(Debug)]
struct Parsed {
    status: OcspStatus,
    next_update: Option<i64>,
}

fn invalid(m: impl Into<String>) -> ResponseError {
    ResponseError::Invalid(m.into())
}

fn crl_reason(code: &[u8]) -> Option<&'static str> {
    Some(match code {
        [0] => "unspecified",
        [1] => "keyCompromise",
        [2] => "cACompromise",
        [3] => "affiliationChanged",
        [4] => "superseded",
        [5] => "cessationOfOperation",
        [6] => "certificateHold",
        [8] => "removeFromCRL",
        [9] => "privilegeWithdrawn",
        [10] => "aACompromise",
        _ => return None,
    })
}

fn parse_response(
    body: &[u8],
    issuer: &Cert<'_>,
    q: &Query,
    nonce: &[u8],
    now: i64,
    max_age: i64,
) -> Result<Parsed, ResponseError> {
    let (resp, rest) = der::expect(body, der::SEQUENCE, "OCSPResponse is not a SEQUENCE")?;
    if !rest.is_empty() {
        return Err(invalid("trailing bytes after the OCSPResponse"));
    }
    let parts = der::children(resp.value)?;
    let status = parts
        .first()
        .filter(|t| t.tag == ENUMERATED)
        .ok_or_else(|| invalid("responseStatus missing"))?;
    match status.value {
        [0] => {}
        [1] => return Err(ResponseError::Refused("malformedRequest".into())),
        [2] => return Err(ResponseError::Refused("internalError".into())),
        [3] => return Err(ResponseError::Refused("tryLater".into())),
        [5] => return Err(ResponseError::Refused("sigRequired".into())),
        [6] => return Err(ResponseError::Refused("unauthorized".into())),
        _ => return Err(invalid("unknown responseStatus")),
    }
    let bytes = parts
        .get(1)
        .filter(|t| t.tag == 0xa0)
        .ok_or_else(|| invalid("successful response without responseBytes"))?;
    let (rb, _) = der::expect(
        bytes.value,
        der::SEQUENCE,
        "ResponseBytes is not a SEQUENCE",
    )?;
    let rb = der::children(rb.value)?;
    let [rtype, rbody] = rb.as_slice() else {
        return Err(invalid("ResponseBytes needs type and response"));
    };
    if rtype.tag != der::OID || rtype.value != OID_OCSP_BASIC || rbody.tag != der::OCTET_STRING {
        return Err(invalid("not a basic OCSP response"));
    }
    let (basic, _) = der::expect(
        rbody.value,
        der::SEQUENCE,
        "BasicOCSPResponse is not a SEQUENCE",
    )?;
    let bparts = der::children(basic.value)?;
    let (tbs, alg, sig) = match bparts.as_slice() {
        [tbs, alg, sig, ..] => (tbs, alg, pkix::bit_string(sig)?),
        _ => return Err(invalid("BasicOCSPResponse is too short")),
    };
    let certs: Vec<Tlv<'_>> = match bparts.get(3) {
        Some(c) if c.tag == 0xa0 => {
            let (seq, _) = der::expect(c.value, der::SEQUENCE, "certs is not a SEQUENCE")?;
            der::children(seq.value)?
        }
        _ => vec![],
    };
    verify_signer(issuer, tbs, alg, sig, &certs, now)?;

    // ResponseData ::= SEQUENCE { version [0] DEFAULT, responderID,
    // producedAt, responses, responseExtensions [1] OPTIONAL }
    if tbs.tag != der::SEQUENCE {
        return Err(invalid("ResponseData is not a SEQUENCE"));
    }
    let mut fields = der::children(tbs.value)?.into_iter().peekable();
    if fields.peek().map(|t| t.tag) == Some(0xa0) {
        fields.next();
    }
    let _responder_id = fields
        .next()
        .ok_or_else(|| invalid("responderID missing"))?;
    let _produced_at = fields.next().ok_or_else(|| invalid("producedAt missing"))?;
    let responses = fields
        .next()
        .filter(|t| t.tag == der::SEQUENCE)
        .ok_or_else(|| invalid("responses missing"))?;
    let mut nonce_seen = None;
    if let Some(exts) = fields.next().filter(|t| t.tag == 0xa1) {
        let (seq, _) = der::expect(
            exts.value,
            der::SEQUENCE,
            "responseExtensions is not a SEQUENCE",
        )?;
        for ext in der::children(seq.value)? {
            let p = der::children(ext.value)?;
            if let (Some(oid), Some(value)) = (p.first(), p.last()) {
                if oid.value == OID_OCSP_NONCE && value.tag == der::OCTET_STRING {
                    nonce_seen = Some(value.value);
                }
            }
        }
    }
    let fresh_by_nonce = match nonce_seen {
        None => false,
        // RFC 8954 wraps the nonce in an OCTET STRING; some old
        // responders put the bare bytes.
        Some(v) => {
            let wrapped = tlv(der::OCTET_STRING, &[nonce.to_vec()]);
            if v != wrapped.as_slice() && v != nonce {
                return Err(invalid(
                    "the nonce does not match the request (a replayed response?)",
                ));
            }
            true
        }
    };

    let mut found = None;
    for single in der::children(responses.value)? {
        let sp = der::children(single.value)?;
        let (Some(id), Some(status), Some(this)) = (sp.first(), sp.get(1), sp.get(2)) else {
            return Err(invalid("SingleResponse is too short"));
        };
        if !cert_id_matches(id, q)? {
            continue;
        }
        if found.is_some() {
            return Err(invalid("two answers for the same certificate"));
        }
        found = Some((*status, *this, sp.get(3).copied()));
    }
    let (status, this, next) =
        found.ok_or_else(|| invalid("the response does not answer for this certificate"))?;
    if this.tag != GENERALIZED_TIME {
        return Err(invalid("thisUpdate is not a GeneralizedTime"));
    }
    let this_update = super::cert::parse_time(&this)?;
    let next_update = match next.filter(|t| t.tag == 0xa0) {
        Some(n) => {
            let (t, _) = der::expect(
                n.value,
                GENERALIZED_TIME,
                "nextUpdate is not a GeneralizedTime",
            )?;
            Some(super::cert::parse_time(&t)?)
        }
        None => None,
    };
    if this_update > now + SKEW_SECS {
        return Err(invalid("thisUpdate is in the future"));
    }
    if let Some(n) = next_update {
        if n < now - SKEW_SECS {
            return Err(invalid("the response is stale: nextUpdate has passed"));
        }
    }
    if !fresh_by_nonce && now - this_update > max_age {
        return Err(invalid(format!(
            "the response does not echo the nonce and its thisUpdate is {}s old (ocsp_max_age is {max_age}s)",
            now - this_update
        )));
    }
    let status = match status.tag {
        0x80 => OcspStatus::Good,
        0x82 => OcspStatus::Unknown,
        0xa1 => {
            let info = der::children(status.value)?;
            let at = info
                .first()
                .filter(|t| t.tag == GENERALIZED_TIME)
                .ok_or_else(|| invalid("revocationTime missing"))?;
            let reason = match info.get(1).filter(|t| t.tag == 0xa0) {
                Some(r) => {
                    let (e, _) =
                        der::expect(r.value, ENUMERATED, "revocationReason is not ENUMERATED")?;
                    crl_reason(e.value)
                }
                None => None,
            };
            OcspStatus::Revoked {
                revoked_at: super::cert::parse_time(at)?,
                reason,
            }
        }
        _ => return Err(invalid("unknown certStatus")),
    };
    Ok(Parsed {
        status,
        next_update,
    })
}

fn cert_id_matches(id: &Tlv<'_>, q: &Query) -> Result<bool, ResponseError> {
    if id.tag != der::SEQUENCE {
        return Err(invalid("CertID is not a SEQUENCE"));
    }
    let p = der::children(id.value)?;
    let [alg, name, key, serial] = p.as_slice() else {
        return Err(invalid("CertID needs four fields"));
    };
    let alg_oid = der::children(alg.value)?
        .first()
        .map(|t| t.value.to_vec())
        .unwrap_or_default();
    Ok(alg_oid == OID_SHA1
        && name.value == q.name_hash
        && key.value == q.key_hash
        && serial.value == q.serial)
}

/// The response must be signed by the issuer itself or by a delegated
/// responder the issuer certified for OCSP signing.
fn verify_signer(
    issuer: &Cert<'_>,
    tbs: &Tlv<'_>,
    alg: &Tlv<'_>,
    sig: &[u8],
    certs: &[Tlv<'_>],
    now: i64,
) -> Result<(), ResponseError> {
    let issuer_key = pkix::parse_spki(issuer.spki).map_err(|e| invalid(e.to_string()))?;
    if pkix::verify(&issuer_key, alg, tbs.raw, sig).is_ok() {
        return Ok(());
    }
    let mut why = "it is signed neither by the client certificate's issuer nor by a responder certificate included in the response".to_string();
    for c in certs {
        let Ok(responder) = Cert::parse(c.raw) else {
            continue;
        };
        if responder.issuer != issuer.subject || responder.verify_signed_by(issuer).is_err() {
            why = "its responder certificate was not issued by the client certificate's issuer"
                .into();
            continue;
        }
        if !responder.eku.contains(&pkix::OID_KP_OCSP_SIGNING) {
            why = "its responder certificate lacks extendedKeyUsage id-kp-OCSPSigning".into();
            continue;
        }
        if responder.not_before > now + SKEW_SECS || responder.not_after < now - SKEW_SECS {
            why = "its responder certificate is outside its validity".into();
            continue;
        }
        let key = pkix::parse_spki(responder.spki).map_err(|e| invalid(e.to_string()))?;
        if pkix::verify(&key, alg, tbs.raw, sig).is_ok() {
            return Ok(());
        }
        why = "the signature does not verify with its responder certificate".into();
    }
    Err(invalid(format!(
        "the response signature is not trusted: {why}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_lengths_are_minimal_der() {
        assert_eq!(tlv(0x04, &[vec![1, 2]]), vec![0x04, 0x02, 1, 2]);
        let long = tlv(0x04, &[vec![0; 0x80]]);
        assert_eq!(&long[..3], &[0x04, 0x81, 0x80]);
        let longer = tlv(0x04, &[vec![0; 0x1234]]);
        assert_eq!(&longer[..4], &[0x04, 0x82, 0x12, 0x34]);
        // What we write, our reader reads back.
        let (t, rest) = der::read(&longer).unwrap();
        assert_eq!((t.value.len(), rest.len()), (0x1234, 0));
    }

    #[test]
    fn the_request_is_well_formed() {
        let cert_id = tlv(der::SEQUENCE, &[vec![0x05, 0x00]]);
        let req = request_der(&cert_id, &[7; 16]);
        let (outer, rest) = der::expect(&req, der::SEQUENCE, "x").unwrap();
        assert!(rest.is_empty());
        let (tbs, _) = der::expect(outer.value, der::SEQUENCE, "x").unwrap();
        let parts = der::children(tbs.value).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].tag, 0xa2);
        assert!(req.windows(16).any(|w| w == [7; 16]));
    }

    #[test]
    fn hostile_responses_are_errors() {
        let q = Query {
            url: "http://x".into(),
            cert_id: vec![],
            name_hash: vec![],
            key_hash: vec![],
            serial: vec![1],
        };
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(vec![])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let issuer = Cert::parse(ca.der()).unwrap();
        for body in [
            &[][..],
            &[0x30, 0x03, 0x0a, 0x01, 0x00],
            &[0x30, 0x03, 0x0a, 0x01, 0x03],
            &[0x30, 0x03, 0x0a, 0x01, 0x09],
            &[0xff; 32],
        ] {
            assert!(parse_response(body, &issuer, &q, &[0; 16], 0, 60).is_err());
        }
        assert!(matches!(
            parse_response(&[0x30, 0x03, 0x0a, 0x01, 0x03], &issuer, &q, &[0; 16], 0, 60),
            Err(ResponseError::Refused(m)) if m == "tryLater"
        ));
    }
}
