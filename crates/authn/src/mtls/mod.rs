//! `[[auth.mtls]]`: a workload proves who it is with the client certificate
//! of its TLS connection.
//!
//! The listener asks for a client certificate but does not require one (so
//! OIDC and AppRole logins keep working on the same port) and refuses at the
//! handshake any certificate that no configured method trusts, that has
//! expired or that a configured CRL revokes. `POST /api/v1/auth/mtls/login`
//! then re-verifies the chain against each method's own CAs (a method only
//! accepts its CAs, not the union), and builds the identity from the leaf:
//! its SPIFFE ID (exactly one URI SAN, strictly parsed, trust domain
//! allowed) or its subject (common name, else first DNS SAN).
//!
//! Revocation: CRL files (checked at the handshake and at login) and,
//! per method, OCSP queries at login (`ocsp = "prefer" | "require"`, see
//! [`ocsp`]).

pub mod cert;
pub mod csr;
pub mod der;
pub mod ocsp;
pub mod pkix;
pub mod spiffe;

use cert::CertFacts;
use idmint_core::{Identity, IdentityKind, Ttl, UnixTime};
use ocsp::{OcspChecker, OcspMode, OcspStatus};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use serde::Deserialize;
use spiffe::{SpiffeId, SpiffeIdError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// Where the identity of a certificate comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MtlsIdentitySource {
    /// The single URI SAN, a SPIFFE ID (X.509-SVID).
    #[default]
    Spiffe,
    /// The subject common name, else the first DNS SAN.
    Subject,
}

/// One `[[auth.mtls]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtlsConfig {
    pub name: String,
    /// PEM files with the CA certificates this method trusts.
    #[serde(default)]
    pub ca_files: Vec<PathBuf>,
    /// Names of `[[issuer.x509]]` issuers whose CA this method trusts: the
    /// bootstrap story (OIDC proof → SVID from idmint → mTLS to idmint).
    #[serde(default)]
    pub trust_x509_issuers: Vec<String>,
    #[serde(default)]
    pub identity: MtlsIdentitySource,
    /// For `identity = "spiffe"`: the trust domains accepted (required).
    #[serde(default)]
    pub allowed_trust_domains: Vec<String>,
    /// PEM CRLs, checked for the leaf; every CA of the method needs one.
    #[serde(default)]
    pub crl_files: Vec<PathBuf>,
    /// Session lifetime (never beyond the certificate's `notAfter`).
    #[serde(default = "default_session_ttl")]
    pub session_ttl: Ttl,
    /// OCSP check of the client certificate at login: `off` (default),
    /// `prefer` (revoked is refused, no answer is let through with a note)
    /// or `require` (only a verified `good` answer is let through).
    #[serde(default)]
    pub ocsp: OcspMode,
    /// Responder URL used instead of the certificate's authorityInfoAccess.
    #[serde(default)]
    pub ocsp_url: Option<String>,
    /// Bound on one OCSP request (connect + answer).
    #[serde(default = "default_ocsp_timeout")]
    pub ocsp_timeout: Ttl,
    /// Oldest `thisUpdate` accepted when the responder does not echo the
    /// nonce (pre-produced responses).
    #[serde(default = "default_ocsp_max_age")]
    pub ocsp_max_age: Ttl,
}

fn default_session_ttl() -> Ttl {
    Ttl::clamped(300)
}

fn default_ocsp_timeout() -> Ttl {
    Ttl::clamped(3)
}

fn default_ocsp_max_age() -> Ttl {
    Ttl::clamped(3600)
}

impl MtlsConfig {
    /// Checks that do not touch the file system.
    pub fn validate(&self) -> Result<(), MtlsError> {
        let bad = |m: String| {
            Err(MtlsError::Config(format!(
                "[[auth.mtls]] {:?}: {m}",
                self.name
            )))
        };
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad("name must be non-empty [A-Za-z0-9_-]".into());
        }
        if self.ca_files.is_empty() && self.trust_x509_issuers.is_empty() {
            return bad("set ca_files (PEM files of trusted client CAs) and/or trust_x509_issuers (names of [[issuer.x509]])".into());
        }
        if self.identity == MtlsIdentitySource::Spiffe && self.allowed_trust_domains.is_empty() {
            return bad(
                "identity = \"spiffe\" needs allowed_trust_domains, e.g. [\"prod.example\"]".into(),
            );
        }
        for td in &self.allowed_trust_domains {
            if let Err(e) = spiffe::validate_trust_domain(td) {
                return bad(format!("allowed_trust_domains {td:?}: {e}"));
            }
        }
        if let Some(u) = &self.ocsp_url {
            if self.ocsp == OcspMode::Off {
                return bad(
                    "ocsp_url is set but ocsp = \"off\"; set ocsp = \"prefer\" or \"require\""
                        .into(),
                );
            }
            match url::Url::parse(u) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                _ => return bad(format!("ocsp_url {u:?} is not an http(s) URL")),
            }
        }
        if self.ocsp_timeout.as_secs() > 60 {
            return bad("ocsp_timeout is at most 60s (a login waits for it)".into());
        }
        Ok(())
    }
}

#[derive(Debug, Error)]
pub enum MtlsError {
    #[error("{0}")]
    Config(String),
    #[error("no client certificate on this TLS connection: connect with a certificate issued by a CA of an [[auth.mtls]] method (e.g. curl --cert svid.pem --key key.pem)")]
    NoCertificate,
    #[error("the client certificate is not trusted by any [[auth.mtls]] method: {0}")]
    Untrusted(String),
    #[error("the client certificate cannot be read: {0}")]
    Malformed(#[from] der::DerError),
    #[error(
        "identity = \"spiffe\" needs exactly one URI SAN in the client certificate; it has {0}"
    )]
    UriSanCount(usize),
    #[error("the client certificate's URI SAN is not a valid SPIFFE ID: {0}")]
    SpiffeId(#[from] SpiffeIdError),
    #[error("trust domain {0:?} is not in allowed_trust_domains of [[auth.mtls]] {1:?}")]
    TrustDomain(String, String),
    #[error("identity = \"subject\" needs a common name or a DNS SAN in the client certificate")]
    NoSubject,
    #[error("the client certificate is revoked (OCSP, revoked at {at}, reason: {reason})")]
    Revoked { at: String, reason: String },
    #[error("[[auth.mtls]] {method:?} requires an OCSP answer and none could be had: {message}")]
    OcspUnavailable { method: String, message: String },
}

impl MtlsError {
    pub fn code(&self) -> &'static str {
        match self {
            MtlsError::Config(_) => "mtls_misconfigured",
            MtlsError::NoCertificate => "client_certificate_required",
            MtlsError::Untrusted(_) => "client_certificate_untrusted",
            MtlsError::Revoked { .. } => "client_certificate_revoked",
            MtlsError::OcspUnavailable { .. } => "ocsp_unavailable",
            _ => "client_certificate_invalid",
        }
    }
}

/// One configured method, with its CA set and CRLs loaded.
pub struct MtlsMethod {
    config: MtlsConfig,
    roots: Arc<RootCertStore>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    verifier: Arc<dyn ClientCertVerifier>,
    /// The method's CA certificates, DER: where OCSP finds the leaf's issuer.
    ca_ders: Vec<CertificateDer<'static>>,
    ocsp: Option<OcspChecker>,
}

impl std::fmt::Debug for MtlsMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtlsMethod")
            .field("name", &self.config.name)
            .finish()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, MtlsError> {
    std::fs::read(path)
        .map_err(|e| MtlsError::Config(format!("{}: cannot read {what}: {e}", path.display())))
}

impl MtlsMethod {
    /// Loads the method; `x509_bundle` gives the CA PEM of an
    /// `[[issuer.x509]]` named in `trust_x509_issuers`.
    pub fn load(
        config: MtlsConfig,
        x509_bundle: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, MtlsError> {
        config.validate()?;
        let mut roots = RootCertStore::empty();
        let mut ca_ders = vec![];
        for issuer in &config.trust_x509_issuers {
            let pem = x509_bundle(issuer).ok_or_else(|| {
                MtlsError::Config(format!(
                    "[[auth.mtls]] {:?}: trust_x509_issuers names {issuer:?}, which is not an [[issuer.x509]]",
                    config.name
                ))
            })?;
            for cert in rustls_pemfile::certs(&mut pem.as_bytes()) {
                let cert =
                    cert.map_err(|e| MtlsError::Config(format!("x509 issuer {issuer:?}: {e}")))?;
                ca_ders.push(cert.clone());
                roots
                    .add(cert)
                    .map_err(|e| MtlsError::Config(format!("x509 issuer {issuer:?}: {e}")))?;
            }
        }
        for path in &config.ca_files {
            let pem = read_pem(path, "CA certificates")?;
            let mut n = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| {
                    MtlsError::Config(format!("{}: not a PEM certificate: {e}", path.display()))
                })?;
                ca_ders.push(cert.clone());
                roots.add(cert).map_err(|e| {
                    MtlsError::Config(format!(
                        "{}: not a usable CA certificate: {e}",
                        path.display()
                    ))
                })?;
                n += 1;
            }
            if n == 0 {
                return Err(MtlsError::Config(format!(
                    "{}: no certificate in the PEM file",
                    path.display()
                )));
            }
        }
        let mut crls = vec![];
        for path in &config.crl_files {
            let pem = read_pem(path, "CRL")?;
            let before = crls.len();
            for crl in rustls_pemfile::crls(&mut pem.as_slice()) {
                crls.push(crl.map_err(|e| {
                    MtlsError::Config(format!("{}: not a PEM CRL: {e}", path.display()))
                })?);
            }
            if crls.len() == before {
                return Err(MtlsError::Config(format!(
                    "{}: no X509 CRL in the PEM file",
                    path.display()
                )));
            }
        }
        let roots = Arc::new(roots);
        let mut builder = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .only_check_end_entity_revocation();
        if !crls.is_empty() {
            builder = builder.with_crls(crls.clone());
        }
        let verifier = builder
            .build()
            .map_err(|e| MtlsError::Config(format!("[[auth.mtls]] {:?}: {e}", config.name)))?;
        let ocsp = match config.ocsp {
            OcspMode::Off => None,
            OcspMode::Prefer | OcspMode::Require => Some(
                OcspChecker::new(
                    config.ocsp_url.clone(),
                    config.ocsp_timeout.as_duration(),
                    config.ocsp_max_age.as_duration(),
                )
                .map_err(|e| MtlsError::Config(format!("[[auth.mtls]] {:?}: {e}", config.name)))?,
            ),
        };
        Ok(Self {
            config,
            roots,
            crls,
            verifier,
            ca_ders,
            ocsp,
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn session_ttl(&self) -> Ttl {
        self.config.session_ttl
    }

    /// Verifies `chain` (leaf first) against this method's CAs and CRLs.
    fn verify_chain(&self, chain: &[CertificateDer<'static>]) -> Result<(), MtlsError> {
        let (leaf, intermediates) = chain.split_first().ok_or(MtlsError::NoCertificate)?;
        self.verifier
            .verify_client_cert(leaf, intermediates, rustls::pki_types::UnixTime::now())
            .map(|_| ())
            .map_err(|e| MtlsError::Untrusted(e.to_string()))
    }

    /// The identity of a chain this method verified.
    fn identity(&self, leaf: &[u8]) -> Result<Identity, MtlsError> {
        let facts = cert::parse(leaf)?;
        let mut attributes = serde_json::Map::new();
        attributes.insert("sans".into(), facts.labelled_sans().into());
        attributes.insert("serial".into(), facts.serial_hex.clone().into());
        let (subject, issuer) = match self.config.identity {
            MtlsIdentitySource::Spiffe => {
                let id = self.spiffe_id(&facts)?;
                attributes.insert("trust_domain".into(), id.trust_domain().into());
                attributes.insert("spiffe_path".into(), id.path().into());
                (id.to_string(), format!("spiffe://{}", id.trust_domain()))
            }
            MtlsIdentitySource::Subject => {
                let subject = facts
                    .common_name
                    .clone()
                    .or_else(|| facts.dns_sans.first().cloned())
                    .filter(|s| !s.is_empty())
                    .ok_or(MtlsError::NoSubject)?;
                (subject, format!("mtls:{}", self.config.name))
            }
        };
        if let Some(cn) = &facts.common_name {
            attributes.insert("cn".into(), cn.clone().into());
        }
        Ok(Identity {
            kind: IdentityKind::Mtls,
            subject,
            issuer,
            method: "mtls".into(),
            auth: self.config.name.clone(),
            attributes,
            proof_id: idmint_core::ids::hex(
                ring::digest::digest(&ring::digest::SHA256, leaf).as_ref(),
            ),
            expires_at: UnixTime(facts.not_after),
        })
    }

    /// The OCSP step of a login, for a chain this method verified: refuses
    /// a revoked certificate, and — per `ocsp` — refuses or notes in the
    /// identity (`ocsp_status`, `ocsp_note`) a certificate whose status
    /// could not be established.
    async fn check_ocsp(
        &self,
        chain: &[CertificateDer<'static>],
        identity: &mut Identity,
    ) -> Result<(), MtlsError> {
        let Some(checker) = &self.ocsp else {
            return Ok(());
        };
        let leaf = chain.first().ok_or(MtlsError::NoCertificate)?;
        let outcome = match self.issuer_of(leaf, chain.get(1..).unwrap_or_default()) {
            Some(issuer) => checker
                .check(leaf, issuer, UnixTime::now().secs())
                .await
                .map_err(|e| e.to_string()),
            None => Err(ocsp::OcspError::NoIssuer.to_string()),
        };
        let note = match outcome {
            Ok(answer) => match answer.status {
                OcspStatus::Good => {
                    identity
                        .attributes
                        .insert("ocsp_status".into(), "good".into());
                    return Ok(());
                }
                OcspStatus::Revoked { revoked_at, reason } => {
                    return Err(MtlsError::Revoked {
                        at: UnixTime(revoked_at).rfc3339(),
                        reason: reason.unwrap_or("not given").to_string(),
                    });
                }
                OcspStatus::Unknown => {
                    "the OCSP responder does not know this certificate".to_string()
                }
            },
            Err(message) => message,
        };
        if self.config.ocsp == OcspMode::Require {
            return Err(MtlsError::OcspUnavailable {
                method: self.config.name.clone(),
                message: note,
            });
        }
        tracing::warn!(method = %self.config.name, subject = %identity.subject, note = %note, "mTLS login without OCSP status (ocsp = \"prefer\")");
        identity
            .attributes
            .insert("ocsp_status".into(), "unchecked".into());
        identity.attributes.insert("ocsp_note".into(), note.into());
        Ok(())
    }

    /// The certificate that issued `leaf`: from the presented chain, else
    /// from the method's CAs (matched by name, confirmed by signature).
    fn issuer_of<'c>(
        &'c self,
        leaf: &[u8],
        presented: &'c [CertificateDer<'static>],
    ) -> Option<&'c [u8]> {
        let leaf = pkix::Cert::parse(leaf).ok()?;
        presented
            .iter()
            .chain(self.ca_ders.iter())
            .map(|c| c.as_ref())
            .find(|c| {
                pkix::Cert::parse(c)
                    .is_ok_and(|ca| ca.subject == leaf.issuer && leaf.verify_signed_by(&ca).is_ok())
            })
    }

    fn spiffe_id(&self, facts: &CertFacts) -> Result<SpiffeId, MtlsError> {
        let [uri] = facts.uri_sans.as_slice() else {
            return Err(MtlsError::UriSanCount(facts.uri_sans.len()));
        };
        let id = SpiffeId::parse(uri)?;
        if !self
            .config
            .allowed_trust_domains
            .iter()
            .any(|t| t == id.trust_domain())
        {
            return Err(MtlsError::TrustDomain(
                id.trust_domain().to_string(),
                self.config.name.clone(),
            ));
        }
        Ok(id)
    }
}

/// All `[[auth.mtls]]` methods, in configuration order.
#[derive(Debug, Default)]
pub struct MtlsMethods {
    methods: Vec<MtlsMethod>,
}

impl MtlsMethods {
    /// See [`MtlsMethod::load`] for `x509_bundle`.
    pub fn load(
        configs: Vec<MtlsConfig>,
        x509_bundle: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, MtlsError> {
        let methods = configs
            .into_iter()
            .map(|c| MtlsMethod::load(c, x509_bundle))
            .collect::<Result<_, _>>()?;
        Ok(Self { methods })
    }

    pub fn is_empty(&self) -> bool {
        self.methods.is_empty()
    }

    /// The listener's verifier: any CA of any method, client certificates
    /// optional (other login methods share the listener). `None` when no
    /// method is configured: the server then does not ask for certificates.
    pub fn listener_verifier(&self) -> Result<Option<Arc<dyn ClientCertVerifier>>, MtlsError> {
        if self.methods.is_empty() {
            return Ok(None);
        }
        let mut roots = RootCertStore::empty();
        let mut crls = vec![];
        for m in &self.methods {
            roots.roots.extend(m.roots.roots.iter().cloned());
            crls.extend(m.crls.iter().cloned());
        }
        let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .allow_unauthenticated()
            .only_check_end_entity_revocation()
            // A CA without CRL (another method's) is not "unknown revoked";
            // each method re-checks its own CRLs strictly at login.
            .allow_unknown_revocation_status();
        if !crls.is_empty() {
            builder = builder.with_crls(crls);
        }
        builder
            .build()
            .map(Some)
            .map_err(|e| MtlsError::Config(format!("[[auth.mtls]]: {e}")))
    }

    /// Logs in with the client certificate chain of a connection: the
    /// first method whose CAs verify the chain decides the identity, and
    /// checks OCSP when that method asks for it.
    pub async fn login(
        &self,
        chain: Option<&[CertificateDer<'static>]>,
    ) -> Result<(Identity, Ttl), MtlsError> {
        let chain = chain
            .filter(|c| !c.is_empty())
            .ok_or(MtlsError::NoCertificate)?;
        let mut last = MtlsError::Untrusted("no [[auth.mtls]] method is configured".into());
        for m in &self.methods {
            match m.verify_chain(chain) {
                Ok(()) => {
                    let leaf = chain.first().ok_or(MtlsError::NoCertificate)?;
                    let mut identity = m.identity(leaf)?;
                    m.check_ocsp(chain, &mut identity).await?;
                    return Ok((identity, m.session_ttl()));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}
