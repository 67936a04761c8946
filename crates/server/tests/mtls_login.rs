//! `[[auth.mtls]]` end to end on a real TLS listener: certificates from
//! rcgen, the server in process, reqwest (rustls) as the client.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use serde_json::{json, Value};
use std::path::Path;
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
    dir: tempfile::TempDir,
}

/// Starts a TLS server in process. `setup` writes extra files into the
/// server's directory; `tail` is appended to `idmint.toml`.
async fn start_server(setup: impl FnOnce(&Path), tail: &str) -> Server {
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
    setup(d);
    write(
        "idmint.toml",
        &format!(
            r#"policy_dir = "policy"
[server]
listen = "127.0.0.1:0"
tls = {{ cert = "server.pem", key = "server.key" }}
[storage]
sqlite = {{ path = "idmint.db" }}
[seal]
key_file = "root.key"
[audit]
file = {{ path = "audit.jsonl" }}
{tail}"#
        ),
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
        dir,
    }
}

async fn start(client_ca: &Ca, revoked_serial: u64) -> Server {
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
    let ca_pem = client_ca.cert.pem();
    start_server(
        |d| {
            std::fs::write(d.join("clients-ca.pem"), ca_pem).unwrap();
            std::fs::write(d.join("clients.crl"), crl.pem().unwrap()).unwrap();
        },
        r#"[[auth.mtls]]
name = "workloads"
ca_files = ["clients-ca.pem"]
allowed_trust_domains = ["prod.example"]
crl_files = ["clients.crl"]
session_ttl = "10m"
"#,
    )
    .await
}

fn http(server: &Server, identity: Option<&str>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(server.server_ca_pem.as_bytes()).unwrap(),
        );
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
    assert_eq!(
        body["identity"]["subject"],
        "spiffe://prod.example/ci/acme-app"
    );
    let who: Value = http(&server, None)
        .get(format!("{}/api/v1/whoami", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        who["identity"]["subject"], "spiffe://prod.example/ci/acme-app",
        "{who}"
    );
    assert_eq!(
        who["identity"]["attributes"]["trust_domain"], "prod.example",
        "{who}"
    );

    // Other login methods keep working without a certificate; the mtls
    // login explains what is missing.
    let (status, body) = login(&server, None).await.unwrap();
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["error"]["code"], "client_certificate_required",
        "{body}"
    );
    let health = http(&server, None)
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success());

    // Refused at the handshake: a foreign CA, an expired or revoked cert.
    let evil = ca("evil CA");
    for (what, pem) in [
        (
            "foreign CA",
            client(&evil, &["spiffe://prod.example/x"], 8, false),
        ),
        (
            "expired",
            client(&clients, &["spiffe://prod.example/x"], 9, true),
        ),
        (
            "revoked",
            client(&clients, &["spiffe://prod.example/x"], 66, false),
        ),
    ] {
        let r = login(&server, Some(&pem)).await;
        assert!(r.is_err(), "{what}: the handshake should fail, got {r:?}");
    }

    // Chain fine, SANs hostile: refused at login with the reason.
    for (sans, needle) in [
        (
            &["spiffe://prod.example/a", "spiffe://prod.example/b"][..],
            "exactly one URI SAN",
        ),
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

async fn post(server: &Server, path: &str, token: &str, body: Value) -> (u16, Value) {
    let r = http(server, None)
        .post(format!("{}{path}", server.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The bootstrap story: an OIDC proof buys an X.509-SVID, and the SVID
/// then logs in over mTLS to the same server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_proof_then_svid_then_mtls_login() {
    let idp = idmint_testkit::TestJwks::start().await.unwrap();
    let roles = r#"[[role]]
name = "ci-svid"
issuer = "svid"
max_ttl = "10m"
x509 = { spiffe_id = "spiffe://prod.example/ci/{claims.repository_owner}/{claims.workflow}", dns = ["app.internal"] }

[[role]]
name = "whole-repo"
issuer = "svid"
max_ttl = "10m"
x509 = { spiffe_id = "spiffe://prod.example/ci/{claims.repository}" }
"#;
    let cedar = "permit(principal, action == Action::\"issue\", resource) when { principal has repository_owner && principal.repository_owner == \"acme\" };\n";
    let server = start_server(
        |d| {
            std::fs::write(d.join("policy/roles.toml"), roles).unwrap();
            std::fs::write(d.join("policy/ci.cedar"), cedar).unwrap();
        },
        &format!(
            r#"[[auth.oidc]]
name = "ci"
issuer = "{}"
audiences = ["idmint"]
allow_insecure_http = true
[[issuer.x509]]
name = "svid"
trust_domain = "prod.example"
[[auth.mtls]]
name = "svids"
trust_x509_issuers = ["svid"]
allowed_trust_domains = ["prod.example"]
"#,
            idp.issuer()
        ),
    )
    .await;

    // 1. OIDC proof → session.
    let r = http(&server, None)
        .post(format!("{}/api/v1/login", server.base))
        .json(&json!({ "method": "oidc", "token": idp.valid_token().unwrap() }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let oidc: Value = r.json().await.unwrap();
    let token = oidc["token"].as_str().unwrap().to_string();

    // 2. Session → SVID.
    let (status, creds) = post(
        &server,
        "/api/v1/creds/ci-svid",
        &token,
        json!({ "ttl": "5m" }),
    )
    .await;
    assert_eq!(status, 200, "{creds}");
    let c = &creds["credential"];
    assert_eq!(c["type"], "x509_svid", "{creds}");
    assert_eq!(c["spiffe_id"], "spiffe://prod.example/ci/acme/release");
    let cert_pem = c["certificate_pem"].as_str().unwrap();
    let key_pem = c["private_key_pem"].as_str().unwrap();
    let bundle_pem = c["bundle_pem"].as_str().unwrap();

    // The bundle endpoint publishes the same CA.
    let bundles: Value = http(&server, None)
        .get(format!("{}/api/v1/x509/bundle", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bundles["bundles"][0]["trust_domain"], "prod.example");
    assert_eq!(bundles["bundles"][0]["bundle_pem"], bundle_pem);

    // openssl agrees the SVID chains to the bundle, for client and server use.
    let d = server.dir.path();
    std::fs::write(d.join("svid.pem"), cert_pem).unwrap();
    std::fs::write(d.join("bundle.pem"), bundle_pem).unwrap();
    for purpose in ["sslclient", "sslserver"] {
        let out = std::process::Command::new("openssl")
            .args(["verify", "-x509_strict", "-purpose", purpose, "-CAfile"])
            .arg(d.join("bundle.pem"))
            .arg(d.join("svid.pem"))
            .output()
            .expect("openssl is installed");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(": OK"),
            "{purpose}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(d.join("svid.pem"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("URI:spiffe://prod.example/ci/acme/release")
            && text.contains("DNS:app.internal"),
        "{text}"
    );
    assert!(
        text.contains("TLS Web Client Authentication")
            && text.contains("TLS Web Server Authentication"),
        "{text}"
    );
    assert!(
        text.contains("CA:FALSE") && text.contains("Digital Signature"),
        "{text}"
    );

    // 3. SVID → mTLS login to the same server (rustls verifies it against
    // the bundle during the handshake).
    let (status, body) = login(&server, Some(&format!("{cert_pem}{key_pem}")))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["identity"]["kind"], "mtls");
    assert_eq!(
        body["identity"]["subject"],
        "spiffe://prod.example/ci/acme/release"
    );
    assert!(body["expires_at"].as_i64().unwrap() <= oidc["expires_at"].as_i64().unwrap() + 600);

    // A claim that is not one path segment ("acme/app") is refused.
    let (status, body) = post(&server, "/api/v1/creds/whole-repo", &token, json!({})).await;
    assert!(status >= 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("SPIFFE path segment"),
        "{body}"
    );
}
