//! `[[issuer.x509]]`: short-lived X.509-SVIDs signed by a per-issuer CA.
//!
//! The CA key (ECDSA P-256) is generated on first start and sealed in the
//! store like every other key; its self-signed certificate is stored next to
//! it and published as the trust bundle (`GET /api/v1/x509/bundle`). A role
//! names the SPIFFE ID to certify with a template,
//! `x509 = { spiffe_id = "spiffe://prod.example/ci/{claims.repository}" }`;
//! every substituted value must be a valid SPIFFE path segment, so a claim
//! can never add segments, climb with `..` or smuggle %-encoding.
//!
//! The leaf's key: either the caller sends a PKCS#10 CSR (`csr`) and only
//! its public key is certified — after its self-signature is verified, and
//! never with the subject, SANs or extensions it asks for — or the server
//! generates an ECDSA P-256 key pair and returns the private key once
//! (never stored). Certificates are not revocable (no CRL is published for
//! them): they are short-lived, and revoking the lease only ends tracking.

use crate::{IssueError, IssueRequest, Issuer, Minted, PlanRequest};
use idmint_authn::mtls::csr::CsrPublicKey;
use idmint_authn::mtls::pkix::KeyKind;
use idmint_authn::mtls::spiffe::{self, SpiffeId};
use idmint_core::{Identity, RevocationHandle, Role, Secret, X509Template};
use idmint_proto::Credential;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber, SignatureAlgorithm,
    PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256,
};
use serde::Deserialize;
use serde_json::Value;
use zeroize::Zeroizing;

const SERIAL_HANDLE: &str = "x509_serial";
/// Leaves start this long in the past, for clock skew between hosts.
const BACKDATE_SECS: i64 = 60;
const CA_VALIDITY_DAYS: i64 = 3650;

/// One `[[issuer.x509]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct X509IssuerConfig {
    pub name: String,
    /// The trust domain every SVID of this issuer belongs to.
    pub trust_domain: String,
}

impl X509IssuerConfig {
    pub fn validate(&self) -> Result<(), String> {
        spiffe::validate_trust_domain(&self.trust_domain)
            .map_err(|e| format!("[[issuer.x509]] {:?}: trust_domain: {e}", self.name))
    }
}

/// The public key certified in a leaf. rcgen writes the certificate's
/// SubjectPublicKeyInfo from `algorithm()`'s key OIDs (rsaEncryption,
/// id-ecPublicKey + curve, Ed25519) and `der_bytes()`; the signature
/// algorithm parts are not used for a key that only gets certified.
struct LeafPublicKey {
    alg: &'static SignatureAlgorithm,
    key: Vec<u8>,
}

impl LeafPublicKey {
    fn from_csr(csr: &CsrPublicKey) -> Self {
        let alg = match csr.kind {
            KeyKind::Ed25519 => &PKCS_ED25519,
            KeyKind::EcdsaP256 => &PKCS_ECDSA_P256_SHA256,
            KeyKind::EcdsaP384 => &PKCS_ECDSA_P384_SHA384,
            KeyKind::Rsa { .. } => &PKCS_RSA_SHA256,
        };
        Self {
            alg,
            key: csr.key.clone(),
        }
    }
}

impl PublicKeyData for LeafPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.key
    }

    fn algorithm(&self) -> &SignatureAlgorithm {
        self.alg
    }
}

fn rc(e: rcgen::Error) -> IssueError {
    IssueError::Internal(format!("x509: {e}"))
}

fn ca_params(cfg: &X509IssuerConfig) -> Result<CertificateParams, IssueError> {
    let mut p = CertificateParams::new(vec![]).map_err(rc)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "idmint");
    dn.push(DnType::CommonName, format!("idmint x509 CA {}", cfg.name));
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let td = format!("spiffe://{}", cfg.trust_domain);
    p.subject_alt_names = vec![SanType::URI(td.try_into().map_err(rc)?)];
    Ok(p)
}

/// A new CA private key, PKCS#8 DER (to be sealed in the store).
pub fn generate_ca_key() -> Result<Zeroizing<Vec<u8>>, IssueError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rc)?;
    Ok(Zeroizing::new(key.serialize_der()))
}

/// The self-signed CA certificate for `key_pkcs8`, PEM: created once, at the
/// same time as the key, and stored (it is the published trust bundle).
pub fn create_ca_certificate(
    cfg: &X509IssuerConfig,
    key_pkcs8: &[u8],
) -> Result<String, IssueError> {
    let key = KeyPair::try_from(key_pkcs8).map_err(rc)?;
    let mut p = ca_params(cfg)?;
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::seconds(BACKDATE_SECS);
    p.not_after = now + time::Duration::days(CA_VALIDITY_DAYS);
    Ok(p.self_signed(&key).map_err(rc)?.pem())
}

/// The signing side of an x509 issuer.
pub struct X509Issuer {
    cfg: X509IssuerConfig,
    key: KeyPair,
    /// Same name and key as the published CA certificate: what rcgen needs
    /// to set the leaves' issuer name and authority key identifier.
    issuer_cert: rcgen::Certificate,
    bundle_pem: String,
}

impl X509Issuer {
    pub fn new(
        cfg: X509IssuerConfig,
        key_pkcs8: &[u8],
        bundle_pem: String,
    ) -> Result<Self, IssueError> {
        cfg.validate().map_err(IssueError::Config)?;
        let key = KeyPair::try_from(key_pkcs8).map_err(rc)?;
        let issuer_cert = ca_params(&cfg)?.self_signed(&key).map_err(rc)?;
        Ok(Self {
            cfg,
            key,
            issuer_cert,
            bundle_pem,
        })
    }

    pub fn trust_domain(&self) -> &str {
        &self.cfg.trust_domain
    }

    pub fn bundle_pem(&self) -> &str {
        &self.bundle_pem
    }

    fn template<'r>(&self, role: &'r Role) -> Result<&'r X509Template, String> {
        role.x509.as_ref().ok_or_else(|| {
            "x509 roles need a template: x509 = { spiffe_id = \"spiffe://TD/path/{claims.NAME}\" }".into()
        })
    }

    /// The path part of a template (after `spiffe://TD`), checked.
    fn template_path<'t>(&self, t: &'t X509Template) -> Result<&'t str, String> {
        let prefix = format!("spiffe://{}", self.cfg.trust_domain);
        let path = t
            .spiffe_id
            .strip_prefix(&prefix)
            .filter(|p| p.starts_with('/'))
            .ok_or_else(|| {
                format!(
                    "spiffe_id {:?} must start with {prefix}/ (the issuer's trust_domain)",
                    t.spiffe_id
                )
            })?;
        for seg in path.split('/').skip(1) {
            if seg.contains(['{', '}']) {
                parse_placeholder(seg)?;
            } else {
                spiffe::validate_segment(seg)
                    .map_err(|e| format!("spiffe_id {:?}: {e}", t.spiffe_id))?;
            }
        }
        Ok(path)
    }

    /// The SPIFFE ID a role grants `identity`.
    pub fn render(&self, t: &X509Template, identity: &Identity) -> Result<SpiffeId, String> {
        let path = self.template_path(t)?;
        let mut out = format!("spiffe://{}", self.cfg.trust_domain);
        for seg in path.split('/').skip(1) {
            out.push('/');
            if seg.contains(['{', '}']) {
                let value = placeholder_value(identity, parse_placeholder(seg)?)?;
                spiffe::validate_segment(&value).map_err(|e| {
                    format!("the value {value:?} for {seg} cannot be a SPIFFE path segment: {e}")
                })?;
                out.push_str(&value);
            } else {
                out.push_str(seg);
            }
        }
        SpiffeId::parse(&out).map_err(|e| e.to_string())
    }
}

/// A whole-segment placeholder: `{subject}` or `{claims.NAME}`.
fn parse_placeholder(seg: &str) -> Result<Option<&str>, String> {
    let inner = seg
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .filter(|s| !s.contains(['{', '}']))
        .ok_or_else(|| {
            format!(
                "placeholder {seg:?} must be a whole path segment, e.g. /{{claims.repository}}/"
            )
        })?;
    if inner == "subject" {
        return Ok(None);
    }
    let claim = inner
        .strip_prefix("claims.")
        .filter(|c| {
            !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'))
        })
        .ok_or_else(|| {
            format!("unknown placeholder {seg:?}; use {{subject}} or {{claims.NAME}}")
        })?;
    Ok(Some(claim))
}

fn placeholder_value(identity: &Identity, claim: Option<&str>) -> Result<String, String> {
    let Some(path) = claim else {
        return Ok(identity.subject.clone());
    };
    let mut parts = path.split('.');
    let first = parts.next().unwrap_or_default();
    let mut v = identity
        .attributes
        .get(first)
        .ok_or_else(|| format!("the caller's identity has no claim {path:?}"))?;
    for p in parts {
        v = v
            .get(p)
            .ok_or_else(|| format!("the caller's identity has no claim {path:?}"))?;
    }
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(format!("claim {path:?} is not a string or number")),
    }
}

fn valid_dns(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

#[async_trait::async_trait]
impl Issuer for X509Issuer {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn kind(&self) -> &'static str {
        "x509"
    }

    fn mints_externally(&self) -> bool {
        false
    }

    fn validate_role(&self, role: &Role) -> Result<(), String> {
        let t = self.template(role)?;
        self.template_path(t)?;
        if let Some(bad) = t.dns.iter().find(|d| !valid_dns(d)) {
            return Err(format!("dns {bad:?} is not a lowercase DNS name"));
        }
        Ok(())
    }

    fn plan(&self, _plan: &PlanRequest<'_>) -> Result<RevocationHandle, IssueError> {
        let mut serial = [0u8; 16];
        idmint_core::ids::random_bytes(&mut serial)
            .map_err(|e| IssueError::Internal(e.to_string()))?;
        // Positive and never a leading zero byte: 16 octets in DER as-is.
        serial[0] = (serial[0] & 0x7f) | 0x40;
        Ok(RevocationHandle {
            kind: SERIAL_HANDLE.into(),
            value: idmint_core::ids::hex(&serial),
        })
    }

    async fn issue(&self, req: &IssueRequest<'_>) -> Result<Minted, IssueError> {
        if req.revocation.kind != SERIAL_HANDLE {
            return Err(IssueError::Internal(format!(
                "revocation handle of kind {:?} given to the x509 issuer",
                req.revocation.kind
            )));
        }
        let serial = decode_hex(&req.revocation.value)
            .ok_or_else(|| IssueError::Internal("planned serial is not hex".into()))?;
        let expires_at = req.credential_expiry("the certificate could be issued")?;
        let t = self.template(req.role).map_err(IssueError::Config)?;
        let id = self.render(t, req.identity).map_err(IssueError::Config)?;
        // With a CSR only its (verified) public key is used; otherwise a key
        // pair is generated here and its private key returned once.
        let (public_key, private_key_pem) = match req.csr {
            Some(csr) => (LeafPublicKey::from_csr(csr), None),
            None => {
                let k = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rc)?;
                let public = LeafPublicKey {
                    alg: &PKCS_ECDSA_P256_SHA256,
                    key: k.public_key_raw().to_vec(),
                };
                (public, Some(k.serialize_pem()))
            }
        };
        let mut p = CertificateParams::new(vec![]).map_err(rc)?;
        // A non-empty subject: RFC 5280 requires a critical SAN otherwise,
        // which rcgen does not emit (and strict verifiers then refuse).
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "idmint");
        p.distinguished_name = dn;
        p.subject_alt_names = vec![SanType::URI(id.to_string().try_into().map_err(rc)?)];
        for d in &t.dns {
            p.subject_alt_names
                .push(SanType::DnsName(d.clone().try_into().map_err(rc)?));
        }
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        p.serial_number = Some(SerialNumber::from_slice(&serial));
        let ts = |s: i64| {
            time::OffsetDateTime::from_unix_timestamp(s)
                .map_err(|e| IssueError::Internal(e.to_string()))
        };
        p.not_before = ts(req.now.secs() - BACKDATE_SECS)?;
        p.not_after = ts(expires_at.secs())?;
        let cert = p
            .signed_by(&public_key, &self.issuer_cert, &self.key)
            .map_err(rc)?;
        Ok(Minted {
            credential: Credential::X509Svid {
                certificate_pem: cert.pem(),
                chain_pem: String::new(),
                bundle_pem: self.bundle_pem.clone(),
                spiffe_id: id.to_string(),
                serial: req.revocation.value.clone(),
                private_key_pem,
            },
            expires_at,
            secret_material: Secret::new(cert.der().to_vec()),
        })
    }

    async fn revoke(&self, handle: &RevocationHandle) -> Result<(), IssueError> {
        tracing::debug!(issuer = %self.cfg.name, serial = %handle.value, "x509 lease revoked; the certificate stays valid until notAfter");
        Ok(())
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use idmint_core::{IdentityKind, UnixTime};

    fn issuer() -> X509Issuer {
        let cfg = X509IssuerConfig {
            name: "svid".into(),
            trust_domain: "prod.example".into(),
        };
        let key = generate_ca_key().unwrap();
        let pem = create_ca_certificate(&cfg, &key).unwrap();
        X509Issuer::new(cfg, &key, pem).unwrap()
    }

    fn identity(repo: &str) -> Identity {
        let mut attributes = serde_json::Map::new();
        attributes.insert("repository".into(), repo.into());
        attributes.insert("run".into(), serde_json::json!({ "id": 42 }));
        Identity {
            kind: IdentityKind::Ci,
            subject: "repo-acme".into(),
            issuer: "https://idp".into(),
            method: "oidc".into(),
            auth: "ci".into(),
            attributes,
            proof_id: "p".into(),
            expires_at: UnixTime(i64::MAX),
        }
    }

    fn template(id: &str) -> X509Template {
        X509Template {
            spiffe_id: id.into(),
            dns: vec![],
        }
    }

    #[test]
    fn renders_whole_segment_placeholders() {
        let i = issuer();
        let t = template("spiffe://prod.example/ci/{claims.repository}/{claims.run.id}/{subject}");
        let id = i.render(&t, &identity("app")).unwrap();
        assert_eq!(id.to_string(), "spiffe://prod.example/ci/app/42/repo-acme");
    }

    #[test]
    fn claim_values_cannot_escape_their_segment() {
        let i = issuer();
        let t = template("spiffe://prod.example/ci/{claims.repository}");
        for hostile in ["acme/app", "..", ".", "a%2Fb", "", "a?b", "A#b"] {
            let e = i.render(&t, &identity(hostile)).unwrap_err();
            assert!(e.contains("SPIFFE path segment"), "{hostile:?}: {e}");
        }
    }

    #[test]
    fn templates_are_checked_at_load() {
        let i = issuer();
        for (bad, needle) in [
            ("spiffe://other.example/x", "trust_domain"),
            ("spiffe://prod.example", "must start with"),
            ("spiffe://prod.example/a/../b", "\"..\""),
            (
                "spiffe://prod.example/ci-{claims.repo}",
                "whole path segment",
            ),
            ("spiffe://prod.example/{claims.}", "unknown placeholder"),
            ("spiffe://prod.example/{env}", "unknown placeholder"),
        ] {
            let e = i.template_path(&template(bad)).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
        let mut role: Role = toml::from_str(
            "name = \"r\"\nissuer = \"svid\"\nmax_ttl = \"5m\"\nx509 = { spiffe_id = \"spiffe://prod.example/ci\", dns = [\"Bad_Name\"] }\n",
        )
        .unwrap();
        assert!(i.validate_role(&role).unwrap_err().contains("DNS"));
        role.x509 = None;
        assert!(i.validate_role(&role).unwrap_err().contains("template"));
    }

    #[test]
    fn trust_domain_and_serials_are_validated() {
        let cfg = X509IssuerConfig {
            name: "svid".into(),
            trust_domain: "Bad".into(),
        };
        assert!(cfg.validate().unwrap_err().contains("trust_domain"));
        assert_eq!(decode_hex("0aff"), Some(vec![0x0a, 0xff]));
        assert_eq!(decode_hex("0g"), None);
    }
}
