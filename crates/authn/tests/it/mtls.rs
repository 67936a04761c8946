//! `[[auth.mtls]]` against real certificates generated with rcgen: the
//! happy path and every hostile variant the login must refuse.

use idmint_authn::mtls::{MtlsConfig, MtlsIdentitySource};
use idmint_authn::{MtlsError, MtlsMethods};
use idmint_core::{IdentityKind, Ttl};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SanType, SerialNumber,
};
use rustls::pki_types::CertificateDer;
use std::path::PathBuf;
use time::{Duration, OffsetDateTime};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn no_x509(_: &str) -> Option<String> {
    None
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![]).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = p.self_signed(&key).unwrap();
    Ca { cert, key }
}

fn leaf(
    ca: &Ca,
    sans: Vec<SanType>,
    cn: Option<&str>,
    serial: u64,
    expired: bool,
) -> Vec<CertificateDer<'static>> {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![]).unwrap();
    p.subject_alt_names = sans;
    p.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(cn) = cn {
        p.distinguished_name.push(DnType::CommonName, cn);
    }
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.serial_number = Some(SerialNumber::from(serial));
    let now = OffsetDateTime::now_utc();
    if expired {
        p.not_before = now - Duration::days(2);
        p.not_after = now - Duration::days(1);
    } else {
        p.not_before = now - Duration::minutes(1);
        p.not_after = now + Duration::hours(1);
    }
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    vec![cert.der().clone()]
}

fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap())
}

struct Setup {
    _dir: tempfile::TempDir,
    ca_file: PathBuf,
    dir: PathBuf,
}

fn setup(ca: &Ca) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert.pem()).unwrap();
    Setup {
        dir: dir.path().to_path_buf(),
        _dir: dir,
        ca_file,
    }
}

fn config(s: &Setup, identity: MtlsIdentitySource) -> MtlsConfig {
    MtlsConfig {
        name: "workloads".into(),
        ca_files: vec![s.ca_file.clone()],
        trust_x509_issuers: vec![],
        identity,
        allowed_trust_domains: vec!["prod.example".into()],
        crl_files: vec![],
        session_ttl: Ttl::from_secs(600).unwrap(),
        ocsp: Default::default(),
        ocsp_url: None,
        ocsp_timeout: Ttl::from_secs(3).unwrap(),
        ocsp_max_age: Ttl::from_secs(3600).unwrap(),
    }
}

/// Runs a login (async since OCSP) to completion.
fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn spiffe_methods(ca: &Ca) -> (Setup, MtlsMethods) {
    let s = setup(ca);
    let m = MtlsMethods::load(vec![config(&s, MtlsIdentitySource::Spiffe)], &no_x509).unwrap();
    (s, m)
}

#[test]
fn a_valid_svid_logs_in_with_spiffe_attributes() {
    let ca = ca("workload CA");
    let (_s, methods) = spiffe_methods(&ca);
    let chain = leaf(
        &ca,
        vec![
            uri("spiffe://prod.example/ci/acme-app"),
            SanType::DnsName("app.internal".try_into().unwrap()),
        ],
        None,
        7,
        false,
    );
    let (id, ttl) = block(methods.login(Some(&chain))).unwrap();
    assert_eq!(id.kind, IdentityKind::Mtls);
    assert_eq!(id.subject, "spiffe://prod.example/ci/acme-app");
    assert_eq!(id.issuer, "spiffe://prod.example");
    assert_eq!(
        (id.method.as_str(), id.auth.as_str()),
        ("mtls", "workloads")
    );
    assert_eq!(id.attributes["trust_domain"], "prod.example");
    assert_eq!(id.attributes["spiffe_path"], "/ci/acme-app");
    assert_eq!(
        id.attributes["sans"],
        serde_json::json!(["URI:spiffe://prod.example/ci/acme-app", "DNS:app.internal"])
    );
    assert_eq!(ttl.as_secs(), 600);
    let remaining = id.expires_at.secs() - idmint_core::UnixTime::now().secs();
    assert!((3500..=3600).contains(&remaining), "{remaining}");
}

#[test]
fn no_certificate_is_explained() {
    let ca = ca("workload CA");
    let (_s, methods) = spiffe_methods(&ca);
    let e = block(methods.login(None)).unwrap_err();
    assert!(matches!(e, MtlsError::NoCertificate));
    assert!(e.to_string().contains("--cert"), "{e}");
    assert!(matches!(
        block(methods.login(Some(&[]))),
        Err(MtlsError::NoCertificate)
    ));
}

#[test]
fn other_ca_and_expired_certificates_are_untrusted() {
    let ca1 = ca("workload CA");
    let other = ca("evil CA");
    let (_s, methods) = spiffe_methods(&ca1);
    let foreign = leaf(&other, vec![uri("spiffe://prod.example/x")], None, 1, false);
    let e = block(methods.login(Some(&foreign))).unwrap_err();
    assert!(matches!(e, MtlsError::Untrusted(_)), "{e}");
    let expired = leaf(&ca1, vec![uri("spiffe://prod.example/x")], None, 2, true);
    let e = block(methods.login(Some(&expired))).unwrap_err();
    assert!(
        matches!(e, MtlsError::Untrusted(_)) && e.to_string().to_lowercase().contains("expired"),
        "{e}"
    );
}

#[test]
fn hostile_uri_sans_are_refused_with_a_reason() {
    let ca = ca("workload CA");
    let (_s, methods) = spiffe_methods(&ca);
    let two = leaf(
        &ca,
        vec![
            uri("spiffe://prod.example/a"),
            uri("spiffe://prod.example/b"),
        ],
        None,
        3,
        false,
    );
    assert!(matches!(
        block(methods.login(Some(&two))),
        Err(MtlsError::UriSanCount(2))
    ));
    let none = leaf(
        &ca,
        vec![SanType::DnsName("a.example".try_into().unwrap())],
        None,
        4,
        false,
    );
    assert!(matches!(
        block(methods.login(Some(&none))),
        Err(MtlsError::UriSanCount(0))
    ));
    for (i, bad) in [
        "https://prod.example/x",
        "spiffe://prod.example/../x",
        "SPIFFE://prod.example/x",
        "spiffe://prod.example/a%2Fb",
        "spiffe://user@prod.example/x",
        "spiffe://prod.example:443/x",
        "spiffe://prod.example/x?q=1",
        "spiffe://prod.example/x#f",
    ]
    .into_iter()
    .enumerate()
    {
        let chain = leaf(&ca, vec![uri(bad)], None, 100 + i as u64, false);
        let e = block(methods.login(Some(&chain))).unwrap_err();
        assert!(matches!(e, MtlsError::SpiffeId(_)), "{bad}: {e}");
        assert!(e.to_string().contains("not a valid SPIFFE ID"), "{e}");
    }
    let other_td = leaf(&ca, vec![uri("spiffe://staging.example/x")], None, 5, false);
    let e = block(methods.login(Some(&other_td))).unwrap_err();
    assert!(
        matches!(e, MtlsError::TrustDomain(..)) && e.to_string().contains("allowed_trust_domains"),
        "{e}"
    );
}

#[test]
fn a_revoked_certificate_is_refused() {
    let ca = ca("workload CA");
    let s = setup(&ca);
    let now = OffsetDateTime::now_utc();
    let crl = CertificateRevocationListParams {
        this_update: now - Duration::minutes(1),
        next_update: now + Duration::days(1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from(66u64),
            revocation_time: now - Duration::minutes(1),
            reason_code: None,
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca.cert, &ca.key)
    .unwrap();
    let crl_file = s.dir.join("ca.crl.pem");
    std::fs::write(&crl_file, crl.pem().unwrap()).unwrap();
    let mut cfg = config(&s, MtlsIdentitySource::Spiffe);
    cfg.crl_files = vec![crl_file];
    let methods = MtlsMethods::load(vec![cfg], &no_x509).unwrap();
    assert!(methods.listener_verifier().unwrap().is_some());
    let revoked = leaf(&ca, vec![uri("spiffe://prod.example/x")], None, 66, false);
    let e = block(methods.login(Some(&revoked))).unwrap_err();
    assert!(e.to_string().to_lowercase().contains("revoked"), "{e}");
    let fine = leaf(&ca, vec![uri("spiffe://prod.example/x")], None, 67, false);
    assert!(block(methods.login(Some(&fine))).is_ok());
}

#[test]
fn subject_identity_uses_the_common_name_then_dns() {
    let ca = ca("workload CA");
    let s = setup(&ca);
    let methods =
        MtlsMethods::load(vec![config(&s, MtlsIdentitySource::Subject)], &no_x509).unwrap();
    let chain = leaf(
        &ca,
        vec![SanType::DnsName("db.internal".try_into().unwrap())],
        Some("billing-worker"),
        9,
        false,
    );
    let (id, _) = block(methods.login(Some(&chain))).unwrap();
    assert_eq!(
        (id.subject.as_str(), id.issuer.as_str()),
        ("billing-worker", "mtls:workloads")
    );
    let dns_only = leaf(
        &ca,
        vec![SanType::DnsName("db.internal".try_into().unwrap())],
        None,
        10,
        false,
    );
    assert_eq!(
        block(methods.login(Some(&dns_only))).unwrap().0.subject,
        "db.internal"
    );
    let nothing = leaf(&ca, vec![], None, 11, false);
    assert!(matches!(
        block(methods.login(Some(&nothing))),
        Err(MtlsError::NoSubject)
    ));
}

#[test]
fn config_errors_say_what_to_fix() {
    let ca = ca("workload CA");
    let s = setup(&ca);
    let mut c = config(&s, MtlsIdentitySource::Spiffe);
    c.allowed_trust_domains.clear();
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("allowed_trust_domains"));
    c.allowed_trust_domains = vec!["Prod.Example".into()];
    assert!(c.validate().is_err());
    let mut c = config(&s, MtlsIdentitySource::Spiffe);
    c.ca_files = vec![s.dir.join("missing.pem")];
    let e = MtlsMethods::load(vec![c], &no_x509)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing.pem") && e.contains("cannot read"),
        "{e}"
    );
    assert!(MtlsMethods::load(vec![], &no_x509)
        .unwrap()
        .listener_verifier()
        .unwrap()
        .is_none());

    // OCSP keys.
    let mut c = config(&s, MtlsIdentitySource::Spiffe);
    c.ocsp_url = Some("http://127.0.0.1:9/".into());
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("ocsp = \"off\""), "{e}");
    c.ocsp = idmint_authn::mtls::ocsp::OcspMode::Require;
    c.validate().unwrap();
    c.ocsp_url = Some("ldap://ocsp.example".into());
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("not an http(s) URL"), "{e}");
    c.ocsp_url = None;
    c.ocsp_timeout = Ttl::from_secs(61).unwrap();
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("ocsp_timeout"));
    let parsed: MtlsConfig = toml::from_str(
        "name = \"w\"\nca_files = [\"ca.pem\"]\nidentity = \"subject\"\nocsp = \"prefer\"\nocsp_url = \"http://ocsp.example/\"\nocsp_timeout = \"2s\"\nocsp_max_age = \"10m\"\n",
    )
    .unwrap();
    assert_eq!(parsed.ocsp, idmint_authn::mtls::ocsp::OcspMode::Prefer);
    assert_eq!(parsed.ocsp_max_age.as_secs(), 600);
    assert!(toml::from_str::<MtlsConfig>("name = \"w\"\nocsp = \"sometimes\"\n").is_err());
}
