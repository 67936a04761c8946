//! `[[auth.mtls]]` end to end on a real TLS listener: certificates from
//! rcgen, the server in process, reqwest (rustls) as the client.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use serde_json::Value;
use time::{Duration, OffsetDateTime};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
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

/// A client certificate + key as one PEM (what `reqwest::Identity` reads).
fn client(ca: &Ca, uris: &[&str], serial: u64, expired: bool) -> String {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![]).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.subject_alt_names = uris
        .iter()
        .map(|u| SanType::URI((*u).try_into().unwrap()))
        .collect();
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.serial_number = Some(SerialNumber::from(serial));
    let now = OffsetDateTime::now_utc();
    (p.not_before, p.not_after) = if expired {
        (now - Duration::days(2), now - Duration::days(1))
    } else {
        (now - Duration::minutes(1), now + Duration::hours(1))
    };
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    format!("{}{}", cert.pem(), key.serialize_pem())
}

struct Server {
    base: String,
    server_ca_pem: String,
    _dir: tempfile::TempDir,
}

async fn start(client_ca: &Ca, revoked_serial: u64) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server_ca = ca("server CA");
    let server_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = p
        .signed_by(&server_key, &server_ca.cert, &server_ca.key)
        .unwrap();
    let write = |name: &str, text: &str| std::fs::write(d.join(name), text).unwrap();
    write("server.pem", &server_cert.pem());
    write("server.key", &server_key.serialize_pem());
    write("clients-ca.pem", &client_ca.cert.pem());
    let now = OffsetDateTime::now_utc();
    let crl = CertificateRevocationListParams {
        this_update: now - Duration::minutes(1),
        next_update: now + Duration::days(1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from(revoked_serial),
            revocation_time: now - Duration::minutes(1),
            reason_code: None,
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&client_ca.cert, &client_ca.key)
    .unwrap();
    write("clients.crl", &crl.pem().unwrap());
    std::fs::create_dir(d.join("policy")).unwrap();
    write("policy/roles.toml", "");
    write(
        "policy/admin.cedar",
        "permit(principal, action == Action::\"admin\", resource) when { principal.subject == \"nobody\" };\n",
    );
    write("root.key", &"ab".repeat(32));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(d.join("root.key"), mode).unwrap();
    }
    write(
        "idmint.toml",
        r#"policy_dir = "policy"
[server]
listen = "127.0.0.1:0"
tls = { cert = "server.pem", key = "server.key" }
[storage]
sqlite = { path = "idmint.db" }
[seal]
key_file = "root.key"
[audit]
file = { path = "audit.jsonl" }
[[auth.mtls]]
name = "workloads"
ca_files = ["clients-ca.pem"]
allowed_trust_domains = ["prod.example"]
crl_files = ["clients.crl"]
session_ttl = "10m"
"#,
    );
    let (tx, rx) = tokio::sync::oneshot::channel();
    let opts = idmint_server::ServeOptions {
        config: Some(d.join("idmint.toml")),
        ..Default::default()
    };
    tokio::spawn(async move {
        if let Err(e) = idmint_server::serve(opts, Some(tx)).await {
            eprintln!("server stopped: {e}");
        }
    });
    let info = rx.await.expect("server did not start; see stderr");
    Server {
        base: format!("https://localhost:{}", info.addr.port()),
        server_ca_pem: server_ca.cert.pem(),
        _dir: dir,
    }
}

fn http(server: &Server, identity: Option<&str>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(server.server_ca_pem.as_bytes()).unwrap());
    if let Some(pem) = identity {
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

async fn login(server: &Server, identity: Option<&str>) -> Result<(u16, Value), reqwest::Error> {
    let r = http(server, identity)
        .post(format!("{}/api/v1/auth/mtls/login", server.base))
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_login_end_to_end_and_hostile_certificates() {
    let clients = ca("workload CA");
    let server = start(&clients, 66).await;

    // A valid SVID: a session whose identity is the SPIFFE ID.
    let good = client(&clients, &["spiffe://prod.example/ci/acme-app"], 7, false);
    let (status, body) = login(&server, Some(&good)).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    assert_eq!(body["identity"]["kind"], "mtls", "{body}");
    assert_eq!(body["identity"]["subject"], "spiffe://prod.example/ci/acme-app");
    let who: Value = http(&server, None)
        .get(format!("{}/api/v1/whoami", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(who["identity"]["subject"], "spiffe://prod.example/ci/acme-app", "{who}");
    assert_eq!(who["identity"]["attributes"]["trust_domain"], "prod.example", "{who}");

    // Other login methods keep working without a certificate; the mtls
    // login explains what is missing.
    let (status, body) = login(&server, None).await.unwrap();
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "client_certificate_required", "{body}");
    let health = http(&server, None)
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success());

    // Refused at the handshake: a foreign CA, an expired or revoked cert.
    let evil = ca("evil CA");
    for (what, pem) in [
        ("foreign CA", client(&evil, &["spiffe://prod.example/x"], 8, false)),
        ("expired", client(&clients, &["spiffe://prod.example/x"], 9, true)),
        ("revoked", client(&clients, &["spiffe://prod.example/x"], 66, false)),
    ] {
        let r = login(&server, Some(&pem)).await;
        assert!(r.is_err(), "{what}: the handshake should fail, got {r:?}");
    }

    // Chain fine, SANs hostile: refused at login with the reason.
    for (sans, needle) in [
        (&["spiffe://prod.example/a", "spiffe://prod.example/b"][..], "exactly one URI SAN"),
        (&["spiffe://prod.example/../x"][..], "\"..\""),
        (&["spiffe://prod.example/a%2Fb"][..], "%-encoding"),
        (&["spiffe://other.example/x"][..], "allowed_trust_domains"),
    ] {
        let pem = client(&clients, sans, 10, false);
        let (status, body) = login(&server, Some(&pem)).await.unwrap();
        assert_eq!(status, 401, "{sans:?}: {body}");
        let msg = body["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{sans:?}: {body}");
    }
}
