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

/// Runs `script` with bash in `dir` and fails the test with its output if
/// it fails: certificates and CSRs here are made by the real openssl CLI.
fn sh(dir: &Path, script: &str) {
    let out = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .output()
        .expect("bash and openssl are installed");
    assert!(
        out.status.success(),
        "{script}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

/// A server with an OIDC method, an x509 issuer and an mTLS method that
/// trusts it; returns it and a session token for `acme/release`.
async fn svid_server() -> (Server, String) {
    let idp = idmint_testkit::TestJwks::start().await.unwrap();
    let roles = r#"[[role]]
name = "ci-svid"
issuer = "svid"
max_ttl = "10m"
x509 = { spiffe_id = "spiffe://prod.example/ci/{claims.repository_owner}/{claims.workflow}" }
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
    let r = http(&server, None)
        .post(format!("{}/api/v1/login", server.base))
        .json(&json!({ "method": "oidc", "token": idp.valid_token().unwrap() }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_string();
    // The IdP must outlive the login only; the session is idmint's.
    drop(idp);
    (server, token)
}

/// CSR mode: openssl-made CSRs of every supported key type get a
/// certificate for their key with the role's identity — whatever names or
/// CA flag the CSR asks for — and no private key comes back. Hostile CSRs
/// are refused with a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_svids_from_openssl_csrs() {
    let (server, token) = svid_server().await;
    let d = server.dir.path();
    // Each CSR asks for a foreign SPIFFE ID, a DNS name and CA:TRUE.
    let wishes = "-subj '/CN=evil/O=evil' -addext 'subjectAltName=URI:spiffe://prod.example/admin,DNS:evil.example' -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign'";
    sh(
        d,
        &format!(
            "openssl genpkey -algorithm ed25519 -out k-ed25519.key
             openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out k-p256.key
             openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out k-p384.key
             openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out k-rsa2048.key
             openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out k-rsa1024.key
             for k in ed25519 p256 p384 rsa2048 rsa1024; do
               openssl req -new -key k-$k.key {wishes} -out $k.csr
               openssl req -in $k.csr -pubkey -noout > $k.csr-pub.pem
             done"
        ),
    );
    std::fs::write(d.join("bundle.pem"), {
        let (_, c) = post(&server, "/api/v1/creds/ci-svid", &token, json!({})).await;
        c["credential"]["bundle_pem"].as_str().unwrap().to_string()
    })
    .unwrap();

    for k in ["ed25519", "p256", "p384", "rsa2048"] {
        let csr = read(d, &format!("{k}.csr"));
        let (status, creds) = post(
            &server,
            "/api/v1/creds/ci-svid",
            &token,
            json!({ "ttl": "5m", "csr": csr }),
        )
        .await;
        assert_eq!(status, 200, "{k}: {creds}");
        let c = &creds["credential"];
        assert!(c.get("private_key_pem").is_none(), "{k}: {creds}");
        assert_eq!(c["spiffe_id"], "spiffe://prod.example/ci/acme/release");
        let cert = c["certificate_pem"].as_str().unwrap();
        std::fs::write(d.join(format!("{k}.pem")), cert).unwrap();
        // The certificate's key is the CSR's key.
        sh(
            d,
            &format!("openssl x509 -in {k}.pem -pubkey -noout > {k}.cert-pub.pem && cmp {k}.cert-pub.pem {k}.csr-pub.pem"),
        );
        let text = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(d.join(format!("{k}.pem")))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.contains("URI:spiffe://prod.example/ci/acme/release") && text.contains("CA:FALSE"),
            "{k}: {text}"
        );
        for wish in [
            "evil",
            "spiffe://prod.example/admin",
            "CA:TRUE",
            "Certificate Sign",
        ] {
            assert!(
                !text.contains(wish),
                "{k}: the CSR's {wish:?} leaked into\n{text}"
            );
        }
        let out = std::process::Command::new("openssl")
            .args(["verify", "-x509_strict", "-purpose", "sslclient", "-CAfile"])
            .arg(d.join("bundle.pem"))
            .arg(d.join(format!("{k}.pem")))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{k}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The client's own key and the issued certificate log in over mTLS.
        let identity = format!("{cert}{}", read(d, &format!("k-{k}.key")));
        let (status, body) = login(&server, Some(&identity)).await.unwrap();
        assert_eq!(status, 200, "{k}: {body}");
        assert_eq!(
            body["identity"]["subject"],
            "spiffe://prod.example/ci/acme/release"
        );
    }

    // Hostile CSRs: each is refused with 400 invalid_csr and a reason.
    let good = read(d, "p256.csr");
    // A bad self-signature: one byte of the signed subject changed.
    sh(d, "openssl req -in p256.csr -outform DER -out p256.der");
    let mut der = std::fs::read(d.join("p256.der")).unwrap();
    let at = der.windows(4).position(|w| w == b"evil").unwrap();
    der[at] = b'E';
    std::fs::write(d.join("tampered.der"), der).unwrap();
    sh(
        d,
        "openssl req -inform DER -in tampered.der -out tampered.csr",
    );
    // A huge CSR: thousands of SANs (under the body limit, over the CSR's).
    let many: Vec<String> = (0..1500).map(|i| format!("DNS:h{i}.example")).collect();
    std::fs::write(
        d.join("many.cnf"),
        format!(
            "[req]\ndistinguished_name=dn\nreq_extensions=ext\n[dn]\n[ext]\nsubjectAltName={}\n",
            many.join(",")
        ),
    )
    .unwrap();
    sh(
        d,
        "openssl req -new -key k-p256.key -subj /O=x -config many.cnf -out huge.csr",
    );
    let garbage_b64 = "-----BEGIN CERTIFICATE REQUEST-----\nMIIBAAAAAAAAAAAA\n-----END CERTIFICATE REQUEST-----\n";
    for (what, csr, needle) in [
        (
            "bad signature",
            read(d, "tampered.csr"),
            "self-signature does not verify",
        ),
        ("RSA-1024", read(d, "rsa1024.csr"), "1024 bits"),
        (
            "garbage PEM",
            garbage_b64.to_string(),
            "not a valid PKCS#10",
        ),
        ("not PEM", "hello".to_string(), "not PEM"),
        ("a certificate", read(d, "p256.pem"), "not PEM"),
        ("two CSRs", format!("{good}{good}"), "2 PEM blocks"),
        ("huge", read(d, "huge.csr"), "at most 16384"),
    ] {
        let (status, body) = post(
            &server,
            "/api/v1/creds/ci-svid",
            &token,
            json!({ "csr": csr }),
        )
        .await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["error"]["code"], "invalid_csr", "{what}: {body}");
        let msg = body["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{what}: {body}");
    }
    // Every refusal is audited with its reason.
    let audit = read(d, "audit.jsonl");
    assert!(
        audit.contains("invalid_csr") && audit.contains("1024 bits"),
        "{audit}"
    );
}

/// A child process killed when the test ends, pass or fail.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `openssl ocsp` as a responder on `port` and waits (polling its
/// log with a deadline) until it listens. A TCP probe would not do: the
/// responder serves one connection at a time and waits on an idle one.
async fn ocsp_responder(dir: &Path, port: u16, signer: &str) -> Child {
    let log_path = dir.join(format!("ocsp-{port}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let child = std::process::Command::new("openssl")
        .args(["ocsp", "-index", "index.txt", "-port", &port.to_string()])
        .args([
            "-rsigner",
            &format!("{signer}.pem"),
            "-rkey",
            &format!("{signer}.key"),
        ])
        .args(["-CA", "ca.pem", "-nmin", "5", "-ignore_err"])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("openssl is installed");
    let child = Child(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .contains("waiting for OCSP client connections")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "openssl ocsp did not start on {port}: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    child
}

/// The OCSP test PKI, all made by openssl: a CA, a delegated responder
/// (extendedKeyUsage OCSPSigning, issued by the CA), a rogue responder
/// (same name as the CA, self-signed), and client SVIDs 1001 (good), 1002
/// (revoked, keyCompromise) and 1003 (good) whose AIA points at `port`.
fn ocsp_pki(d: &Path, port: u16) {
    sh(
        d,
        &format!(
            r#"openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
openssl req -x509 -new -key ca.key -subj "/CN=OCSP test CA" -days 2 -out ca.pem \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out responder.key
openssl req -new -key responder.key -subj "/CN=OCSP responder" -out responder.csr
printf 'extendedKeyUsage=OCSPSigning\nbasicConstraints=CA:FALSE\n' > responder.ext
openssl x509 -req -in responder.csr -CA ca.pem -CAkey ca.key -set_serial 0x2000 -days 2 \
  -extfile responder.ext -out responder.pem
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout rogue.key \
  -subj "/CN=OCSP test CA" -addext "extendedKeyUsage=OCSPSigning" -days 2 -out rogue.pem
for n in 1001 1002 1003; do
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out c$n.key
  openssl req -new -key c$n.key -subj "/O=test/CN=c$n" -out c$n.csr
  printf "subjectAltName=URI:spiffe://prod.example/w/$n\nextendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\nauthorityInfoAccess=OCSP;URI:http://127.0.0.1:{port}\n" > c$n.ext
  openssl x509 -req -in c$n.csr -CA ca.pem -CAkey ca.key -set_serial 0x$n -days 1 -extfile c$n.ext -out c$n.pem
  cat c$n.pem c$n.key > c$n.identity
done
printf 'V\t301231235959Z\t\t1001\tunknown\t/O=test/CN=c1001\nR\t301231235959Z\t240101000000Z,keyCompromise\t1002\tunknown\t/O=test/CN=c1002\nV\t301231235959Z\t\t1003\tunknown\t/O=test/CN=c1003\n' > index.txt
printf 'unique_subject = no\n' > index.txt.attr"#
        ),
    );
}

async fn whoami(server: &Server, token: &str) -> Value {
    http(server, None)
        .get(format!("{}/api/v1/whoami", server.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// OCSP at mTLS login against a real `openssl ocsp` responder: good,
/// revoked (401, audited with the reason), cached while the responder is
/// down, unknown-status with the responder down (`require` refuses,
/// `prefer` lets through with a note), and a response signed by a rogue
/// responder (refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocsp_checks_against_a_real_openssl_responder() {
    let pki = tempfile::tempdir().unwrap();
    let p = pki.path();
    let port = free_port();
    ocsp_pki(p, port);
    let ca_pem = read(p, "ca.pem");
    let method = |mode: &str, url: Option<String>| {
        let url = url
            .map(|u| format!("ocsp_url = \"{u}\"\n"))
            .unwrap_or_default();
        format!(
            "[[auth.mtls]]\nname = \"workloads\"\nca_files = [\"clients-ca.pem\"]\nallowed_trust_domains = [\"prod.example\"]\nocsp = \"{mode}\"\nocsp_timeout = \"2s\"\n{url}"
        )
    };
    let setup = |d: &Path| std::fs::write(d.join("clients-ca.pem"), &ca_pem).unwrap();
    let require = start_server(setup, &method("require", None)).await;
    let responder = ocsp_responder(p, port, "responder").await;

    // Good: a session whose identity says so.
    let (status, body) = login(&require, Some(&read(p, "c1001.identity")))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let who = whoami(&require, body["token"].as_str().unwrap()).await;
    assert_eq!(
        who["identity"]["attributes"]["ocsp_status"], "good",
        "{who}"
    );

    // Revoked: 401 with the reason, and audited.
    let (status, body) = login(&require, Some(&read(p, "c1002.identity")))
        .await
        .unwrap();
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["error"]["code"], "client_certificate_revoked",
        "{body}"
    );
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("keyCompromise") && msg.contains("2024-01-01"),
        "{body}"
    );
    let audit = read(require.dir.path(), "audit.jsonl");
    assert!(
        audit.contains("client_certificate_revoked") && audit.contains("keyCompromise"),
        "{audit}"
    );

    // The responder goes down. 1001's answer is cached until nextUpdate
    // (-nmin 5); 1003 was never asked about: `require` refuses it.
    drop(responder);
    let (status, body) = login(&require, Some(&read(p, "c1001.identity")))
        .await
        .unwrap();
    assert_eq!(status, 200, "cached answer: {body}");
    let (status, body) = login(&require, Some(&read(p, "c1003.identity")))
        .await
        .unwrap();
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "ocsp_unavailable", "{body}");
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("unreachable") && msg.contains(&port.to_string()),
        "{body}"
    );

    // `prefer` with the responder down: let through, noted in the identity
    // and so in the audited login.
    let prefer = start_server(setup, &method("prefer", None)).await;
    let (status, body) = login(&prefer, Some(&read(p, "c1003.identity")))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let who = whoami(&prefer, body["token"].as_str().unwrap()).await;
    let attrs = &who["identity"]["attributes"];
    assert_eq!(attrs["ocsp_status"], "unchecked", "{who}");
    assert!(
        attrs["ocsp_note"]
            .as_str()
            .unwrap_or_default()
            .contains("unreachable"),
        "{who}"
    );
    let audit = read(prefer.dir.path(), "audit.jsonl");
    assert!(audit.contains("\"ocsp_status\":\"unchecked\""), "{audit}");

    // A rogue responder (self-signed, same name as the CA, OCSPSigning) on
    // the configured ocsp_url: its answers are not trusted.
    let rogue_port = free_port();
    let _rogue = ocsp_responder(p, rogue_port, "rogue").await;
    let rogue = start_server(
        setup,
        &method("require", Some(format!("http://127.0.0.1:{rogue_port}"))),
    )
    .await;
    let (status, body) = login(&rogue, Some(&read(p, "c1001.identity")))
        .await
        .unwrap();
    assert_eq!(status, 401, "{body}");
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("signature is not trusted"), "{body}");
}
