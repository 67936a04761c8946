//! End-to-end: real curl and python3 workloads through the in-process
//! proxy to the real HTTPS echo upstream.

use crate::common;

use common::{header_values, CURL_SECRET, PY_SECRET};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_bearer_injected_and_cannot_override_it() {
    let fx = common::start("").await;
    let out = fx
        .curl(&[
            "-H",
            "Authorization: Bearer workload-own-token",
            &fx.url("/v1/chat?x=1"),
        ])
        .await;
    assert_eq!(out.http_code, "200", "{}", out.stderr);
    let seen = fx.seen();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0]["path"], "/v1/chat?x=1");
    assert_eq!(
        header_values(&seen[0], "authorization"),
        vec![format!("Bearer {CURL_SECRET}")],
        "exactly the injected credential must arrive, never the workload's"
    );
    assert!(header_values(&seen[0], "proxy-authorization").is_empty());
    // The echo upstream reflects the request; the workload still cannot
    // read the credential from the response.
    assert!(!out.body.contains(CURL_SECRET), "{}", out.body);
    assert!(
        out.body.contains("Bearer [redacted-by-idmint-proxy]"),
        "{}",
        out.body
    );

    let records = fx
        .audit_until(|r| r["identity"] == "curl-app" && r["decision"] == "allow")
        .await;
    let rec = records
        .iter()
        .find(|r| r["identity"] == "curl-app" && r["decision"] == "allow")
        .unwrap();
    assert_eq!(rec["mode"], "intercept");
    assert_eq!(rec["exe"], "/usr/bin/curl");
    assert_eq!(rec["credential"], "curl-key");
    assert_eq!(rec["status"], 200);
    assert_eq!(rec["path"], "/v1/chat", "the query is never logged");
    assert_eq!(
        rec["credential_fingerprint"].as_str().map(str::len),
        Some(32)
    );
    let audit_text = std::fs::read_to_string(fx.path("audit.jsonl")).unwrap();
    assert!(
        !audit_text.contains(CURL_SECRET),
        "secret leaked into the audit log"
    );
    assert!(!audit_text.contains("workload-own-token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_path_and_method_get_403_naming_the_missing_rule() {
    let fx = common::start("").await;
    let out = fx.curl(&[&fx.url("/admin/users")]).await;
    assert_eq!(out.http_code, "403", "{}", out.stderr);
    assert!(
        out.body.contains("identity `curl-app` may not GET")
            && out.body.contains("path_prefix = \"/admin/users\""),
        "{}",
        out.body
    );
    let out = fx.curl(&["-X", "DELETE", &fx.url("/v1/x")]).await;
    assert_eq!(out.http_code, "403");
    assert!(out.body.contains("methods = [\"DELETE\"]"), "{}", out.body);
    let out = fx.curl(&["--path-as-is", &fx.url("/v1/../admin")]).await;
    assert_eq!(out.http_code, "400", "{}", out.body);
    assert!(
        fx.seen().is_empty(),
        "nothing denied may reach the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_curl_get_different_credentials_and_rules() {
    let fx = common::start("").await;
    let (code, body) = fx.python_get(&fx.url("/py/hello")).await;
    assert_eq!(code, 200, "{body}");
    assert!(
        !body.contains(PY_SECRET),
        "reflected credential must be redacted: {body}"
    );
    let seen = fx.seen();
    assert_eq!(
        header_values(&seen[0], "x-api-key"),
        vec![PY_SECRET.to_string()]
    );
    assert!(
        header_values(&seen[0], "authorization").is_empty(),
        "the workload's own Authorization is stripped"
    );
    // Python may not use curl's path, and curl may not use Python's.
    let (code, body) = fx.python_get(&fx.url("/v1/chat")).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("identity `py-app`"), "{body}");
    let out = fx.curl(&[&fx.url("/py/hello")]).await;
    assert_eq!(out.http_code, "403");
    assert_eq!(fx.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbound_executable_is_denied_with_explanation() {
    let fx = common::start("").await;
    let copy = fx.path("curl-copy");
    std::fs::copy("/usr/bin/curl", &copy).unwrap();
    let out = fx.curl_with(&copy, &[&fx.url("/v1/chat")]).await;
    assert!(!out.status.success());
    assert_eq!(out.connect_code, "403", "{}", out.stderr);
    let records = fx
        .audit_until(|r| r["decision"] == "deny" && r["identity"].is_null())
        .await;
    let rec = records.iter().find(|r| r["identity"].is_null()).unwrap();
    assert!(
        rec["reason"]
            .as_str()
            .is_some_and(|r| r.contains("matches no [[bindings]]") && r.contains("curl-copy")),
        "{rec}"
    );
    assert!(fx.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_without_rule_and_denied_address_are_refused_at_connect() {
    let fx = common::start("").await;
    let out = fx.curl(&["https://127.0.0.1:1/"]).await;
    assert_eq!(out.connect_code, "403", "{}", out.stderr);
    // A rule allows metadata.test, but it resolves into 169.254.0.0/16.
    let out = fx.curl(&["http://metadata.test/latest/"]).await;
    assert_eq!(out.http_code, "403");
    assert!(
        out.body.contains("denied network 169.254.0.0/16"),
        "{}",
        out.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_is_not_injected_over_plain_http() {
    let fx = common::start("").await;
    let url = format!("http://upstream.test:{}/v1/chat", fx.upstream_port);
    let out = fx.curl(&[&url]).await;
    assert_eq!(out.http_code, "403", "{}", out.stderr);
    assert!(out.body.contains("over plain http"), "{}", out.body);
}

async fn raw_exchange(fx: &common::Fixture, request: &[u8]) -> String {
    let mut s = TcpStream::connect(fx.proxy).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_and_oversized_heads_are_refused() {
    let fx = common::start("").await;
    let target = format!("http://upstream.test:{}/", fx.upstream_port);
    let both = format!(
        "POST {target} HTTP/1.1\r\nHost: upstream.test\r\nContent-Length: 4\r\n\
         Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    );
    let reply = raw_exchange(&fx, both.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    let two = format!(
        "POST {target} HTTP/1.1\r\nHost: upstream.test\r\nContent-Length: 4\r\n\
         Content-Length: 4\r\n\r\nabcd"
    );
    let reply = raw_exchange(&fx, two.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    let big = format!(
        "GET {target} HTTP/1.1\r\nHost: upstream.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    let reply = raw_exchange(&fx, big.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    // Inside an intercepted tunnel, the same checks apply (curl sends the
    // duplicate header as given).
    let out = fx
        .curl(&[
            "-H",
            "Content-Length: 0",
            "-H",
            "Content-Length: 0",
            &fx.url("/v1/x"),
        ])
        .await;
    assert_eq!(out.http_code, "400", "{} {}", out.body, out.stderr);
    assert!(fx.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_client_is_cut_off_by_the_header_timeout() {
    let fx = common::start("").await;
    let mut s = TcpStream::connect(fx.proxy).await.unwrap();
    s.write_all(b"GET http://upstream.test/ HTTP/1.1\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut closed_after = None;
    let mut buf = [0u8; 256];
    // Trickle one header byte every 100ms for up to 6s; the proxy's 1s
    // head deadline must end the connection long before that.
    while started.elapsed() < Duration::from_secs(6) {
        if s.write_all(b"X").await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Err(_) => {}
        }
    }
    let closed_after = closed_after.expect("the proxy never cut off the slow client");
    assert!(closed_after < Duration::from_secs(3), "{closed_after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_and_basic_injection_replace_workload_values() {
    let fx = common::start("").await;
    let out = fx
        .curl(&[&fx.url("/q/search?key=workload-guess&q=rust")])
        .await;
    assert_eq!(out.http_code, "200", "{}", out.stderr);
    let out = fx
        .curl(&["-u", "me:my-own-password", &fx.url("/b/x")])
        .await;
    assert_eq!(out.http_code, "200", "{}", out.stderr);
    assert!(
        out.body.contains("[redacted-by-idmint-proxy]"),
        "{}",
        out.body
    );
    let seen = fx.seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert_eq!(
        seen[0]["path"],
        format!("/q/search?q=rust&key={CURL_SECRET}")
    );
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("svc:{CURL_SECRET}"));
    assert_eq!(
        header_values(&seen[1], "authorization"),
        vec![format!("Basic {basic}")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrestricted_destination_is_tunnelled_untouched() {
    // The test harness's rule has no injection and no limits: the proxy
    // relays the TLS bytes, so the client sees the upstream's own
    // certificate (trusted via cert.pem, not the proxy CA).
    let fx = common::start("").await;
    let mut s = TcpStream::connect(fx.proxy).await.unwrap();
    let connect = format!(
        "CONNECT upstream.test:{0} HTTP/1.1\r\nHost: upstream.test:{0}\r\n\r\n",
        fx.upstream_port
    );
    s.write_all(connect.as_bytes()).await.unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).await.unwrap();
    let reply = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // TLS straight through the tunnel, trusting only the upstream's own
    // certificate: proves the proxy did not intercept.
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(fx.path("cert.pem")).unwrap();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("upstream.test").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
        .connect(name, s)
        .await
        .unwrap();
    tls.write_all(b"GET /tunnelled HTTP/1.1\r\nHost: upstream.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.contains("\"path\": \"/tunnelled\""), "{response}");
    drop(tls);
    let records = fx.audit_until(|r| r["mode"] == "tunnel").await;
    let rec = records.iter().find(|r| r["mode"] == "tunnel").unwrap();
    assert_eq!(rec["identity"], "test-harness");
    assert_eq!(rec["decision"], "allow");
    assert!(rec["bytes_up"].as_u64().is_some_and(|n| n > 0), "{rec}");
    assert!(rec["credential"].is_null());
}

/// Days since 1970-01-01 for a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_sigv4_resigns_over_what_the_upstream_receives() {
    use idmint_issuers::aws::{credentials::AwsCredentials, sigv4};
    let fx = common::start("").await;
    let body = "Action=GetCallerIdentity&Version=2011-06-15";
    let out = fx
        .curl(&[
            "-H",
            "Authorization: AWS4-HMAC-SHA256 Credential=WORKLOAD/forged",
            "-H",
            "X-Amz-Security-Token: workload-token",
            "-H",
            "Content-Type: application/x-www-form-urlencoded",
            "--data-binary",
            body,
            &fx.url("/aws/?b=2&a=x%20y"),
        ])
        .await;
    assert_eq!(out.http_code, "200", "{} {}", out.body, out.stderr);
    let seen = fx.seen();
    let req = &seen[0];
    assert_eq!(req["body"], body);
    assert!(header_values(req, "x-amz-security-token").is_empty());
    let auth = header_values(req, "authorization");
    assert_eq!(auth.len(), 1, "{auth:?}");
    assert!(
        auth[0].starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
        "{auth:?}"
    );
    // Recompute the signature over exactly what arrived.
    let amz_date = header_values(req, "x-amz-date").pop().unwrap();
    let n = |r: std::ops::Range<usize>| amz_date[r].parse::<i64>().unwrap();
    let secs = days_from_civil(n(0..4), n(4..6), n(6..8)) * 86400
        + n(9..11) * 3600
        + n(11..13) * 60
        + n(13..15);
    let host = header_values(req, "host").pop().unwrap();
    let expected = sigv4::sign(
        &sigv4::Request {
            method: "POST",
            host: &host,
            path: "/aws/",
            query: &[("b", "2"), ("a", "x y")],
            headers: &[("content-type", "application/x-www-form-urlencoded")],
            payload: sigv4::Payload::Bytes(body.as_bytes()),
        },
        &AwsCredentials::new("AKIDEXAMPLE", common::AWS_SECRET, None, None),
        &sigv4::Scope {
            region: "us-east-1",
            service: "sts",
        },
        idmint_core::UnixTime(secs),
        sigv4::Options::STANDARD,
    );
    assert_eq!(auth[0], expected.authorization);
}
