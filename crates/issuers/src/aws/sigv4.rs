//! AWS Signature Version 4, written against AWS's specification
//! ("Create a signed AWS API request") and checked against AWS's published
//! test suite (`get-vanilla`, `post-x-www-form-urlencoded`, …) and against
//! moto with authentication enforced.
//!
//! [`sign`] is a pure function of the request, the credentials, the scope
//! and the time: it returns the headers to add (`Authorization`,
//! `X-Amz-Date`, and `X-Amz-Security-Token` for session credentials) and
//! never sends anything, so any HTTP client (the STS/IAM client here, the
//! egress proxy) can use it.
//!
//! What the caller must keep consistent: the `host` given here must be the
//! `Host` header actually sent (with `:port` when it is not the scheme's
//! default), and every header listed in [`Request::headers`] must be sent
//! with exactly that value.

use super::credentials::AwsCredentials;
use idmint_core::UnixTime;
use ring::{digest, hmac};

/// The SHA-256 of an empty payload, as lowercase hex.
pub const EMPTY_PAYLOAD_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What is signed as the payload.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    /// The body bytes; their SHA-256 is computed here.
    Bytes(&'a [u8]),
    /// A SHA-256 the caller already computed (lowercase hex), e.g. for a
    /// streamed upload.
    Precomputed(&'a str),
    /// `UNSIGNED-PAYLOAD` (S3 only).
    Unsigned,
}

/// The parts of an HTTP request that SigV4 covers.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The `Host` header value: `host` or `host:port`.
    pub host: &'a str,
    /// The path as sent on the wire (already percent-encoded where needed),
    /// starting with `/`.
    pub path: &'a str,
    /// Decoded query parameters, in any order.
    pub query: &'a [(&'a str, &'a str)],
    /// Further headers to sign, e.g. `content-type`. `host`, `x-amz-date`
    /// and `x-amz-security-token` are added by [`sign`].
    pub headers: &'a [(&'a str, &'a str)],
    pub payload: Payload<'a>,
}

/// The credential scope: where the signature is valid.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// e.g. `us-east-1`.
    pub region: &'a str,
    /// e.g. `sts`, `iam`, `s3`.
    pub service: &'a str,
}

/// Service-specific rules.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Percent-encode the (already encoded) path once more, as every
    /// service but S3 requires. S3 signs the path as sent.
    pub encode_path: bool,
    /// Send and sign `x-amz-content-sha256` (required by S3).
    pub content_sha256_header: bool,
}

impl Options {
    /// Every service except S3 (STS, IAM, …).
    pub const STANDARD: Options = Options {
        encode_path: true,
        content_sha256_header: false,
    };
    /// Amazon S3.
    pub const S3: Options = Options {
        encode_path: false,
        content_sha256_header: true,
    };
}

/// The headers to add to the request.
#[derive(Clone, PartialEq, Eq)]
pub struct Signed {
    /// `Authorization`.
    pub authorization: String,
    /// `X-Amz-Date`, e.g. `20150830T123600Z`.
    pub amz_date: String,
    /// `X-Amz-Security-Token`, for session credentials.
    pub security_token: Option<String>,
    /// `X-Amz-Content-Sha256`, when [`Options::content_sha256_header`].
    pub content_sha256: Option<String>,
}

impl std::fmt::Debug for Signed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The signature is not secret, but a session token is.
        f.debug_struct("Signed")
            .field("authorization", &self.authorization)
            .field("amz_date", &self.amz_date)
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

impl Signed {
    /// Every header to add, as `(name, value)`.
    pub fn headers(&self) -> Vec<(&'static str, &str)> {
        let mut out = vec![
            ("authorization", self.authorization.as_str()),
            ("x-amz-date", self.amz_date.as_str()),
        ];
        if let Some(t) = &self.security_token {
            out.push(("x-amz-security-token", t.as_str()));
        }
        if let Some(h) = &self.content_sha256 {
            out.push(("x-amz-content-sha256", h.as_str()));
        }
        out
    }
}

/// Sign `req` with `creds` for `scope` at `time`.
pub fn sign(
    req: &Request<'_>,
    creds: &AwsCredentials,
    scope: &Scope<'_>,
    time: UnixTime,
    opts: Options,
) -> Signed {
    let amz_date = amz_date(time);
    let date = amz_date.get(..8).unwrap_or_default().to_string();
    let payload_hash = match req.payload {
        Payload::Bytes(b) => hex(digest::digest(&digest::SHA256, b).as_ref()),
        Payload::Precomputed(h) => h.to_ascii_lowercase(),
        Payload::Unsigned => "UNSIGNED-PAYLOAD".to_string(),
    };
    let security_token = creds.session_token().map(str::to_string);

    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), canonical_header_value(v)))
        .collect();
    headers.push(("host".into(), canonical_header_value(req.host)));
    headers.push(("x-amz-date".into(), amz_date.clone()));
    if let Some(t) = &security_token {
        headers.push(("x-amz-security-token".into(), canonical_header_value(t)));
    }
    if opts.content_sha256_header {
        headers.push(("x-amz-content-sha256".into(), payload_hash.clone()));
    }
    // Sort by name, stable so repeated headers keep their order, then join
    // repeated names with commas as the specification says.
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let mut merged: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        match merged.last_mut() {
            Some((last, joined)) if *last == name => {
                joined.push(',');
                joined.push_str(&value);
            }
            _ => merged.push((name, value)),
        }
    }
    let signed_headers = merged
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_headers: String = merged.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();

    let canonical_request = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        req.method.to_ascii_uppercase(),
        canonical_path(req.path, opts.encode_path),
        canonical_query(req.query),
    );
    let credential_scope = format!("{date}/{}/{}/aws4_request", scope.region, scope.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{credential_scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical_request.as_bytes()).as_ref())
    );
    let key = signing_key(
        creds.secret_access_key(),
        &date,
        scope.region,
        scope.service,
    );
    let signature = hex(hmac::sign(&key, string_to_sign.as_bytes()).as_ref());
    Signed {
        authorization: format!(
            "AWS4-HMAC-SHA256 Credential={}/{credential_scope}, SignedHeaders={signed_headers}, Signature={signature}",
            creds.access_key_id()
        ),
        amz_date,
        security_token,
        content_sha256: opts.content_sha256_header.then_some(payload_hash),
    }
}

/// `YYYYMMDDTHHMMSSZ` in UTC.
pub fn amz_date(time: UnixTime) -> String {
    // `2015-08-30T12:36:00Z` without the separators.
    time.rfc3339()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect()
}

/// The derived key: HMAC chain over date, region, service, `aws4_request`.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> hmac::Key {
    let mut k = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, format!("AWS4{secret}").as_bytes()),
        date.as_bytes(),
    );
    for part in [region, service, "aws4_request"] {
        k = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, k.as_ref()),
            part.as_bytes(),
        );
    }
    hmac::Key::new(hmac::HMAC_SHA256, k.as_ref())
}

/// Trimmed, with runs of spaces collapsed to one (outside quotes too: AWS
/// does not special-case them).
fn canonical_header_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut space = false;
    for c in v.trim().chars() {
        if c == ' ' {
            if !space {
                out.push(' ');
            }
            space = true;
        } else {
            out.push(c);
            space = false;
        }
    }
    out
}

fn canonical_path(path: &str, encode: bool) -> String {
    if path.is_empty() {
        return "/".into();
    }
    if !encode {
        return path.to_string();
    }
    path.split('/')
        .map(|seg| uri_encode(seg, false))
        .collect::<Vec<_>>()
        .join("/")
}

/// Sorted by encoded name, then encoded value.
fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, true), uri_encode(v, true)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// SigV4 URI encoding: everything but `A-Za-z0-9-_.~` as `%XX` (uppercase
/// hex, UTF-8 bytes); `/` too when `encode_slash`. Also the encoding of a
/// form body for the Query API, so that the body sent is the body signed.
pub fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (b == b'/' && !encode_slash)
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    idmint_core::ids::hex(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AWS SigV4 test suite's credentials and time (2015-08-30T12:36:00Z).
    fn suite_creds() -> AwsCredentials {
        AwsCredentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
        )
    }
    const SUITE_TIME: UnixTime = UnixTime(1_440_938_160);
    const SCOPE: Scope<'static> = Scope {
        region: "us-east-1",
        service: "service",
    };
    const PREFIX: &str =
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, ";

    fn suite(req: Request<'_>) -> String {
        sign(&req, &suite_creds(), &SCOPE, SUITE_TIME, Options::STANDARD).authorization
    }

    fn get(path: &'static str, query: &'static [(&'static str, &'static str)]) -> Request<'static> {
        Request {
            method: "GET",
            host: "example.amazonaws.com",
            path,
            query,
            headers: &[],
            payload: Payload::Bytes(b""),
        }
    }

    #[test]
    fn aws_test_suite_get_vanilla() {
        assert_eq!(amz_date(SUITE_TIME), "20150830T123600Z");
        assert_eq!(
            suite(get("/", &[])),
            format!("{PREFIX}SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
        );
    }

    #[test]
    fn aws_test_suite_get_vanilla_query_order_key_case() {
        let a = suite(get("/", &[("Param2", "value2"), ("Param1", "value1")]));
        assert_eq!(
            a,
            format!("{PREFIX}SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500")
        );
    }

    #[test]
    fn aws_test_suite_post_x_www_form_urlencoded() {
        let a = suite(Request {
            method: "POST",
            host: "example.amazonaws.com",
            path: "/",
            query: &[],
            headers: &[("Content-Type", "application/x-www-form-urlencoded")],
            payload: Payload::Bytes(b"Param1=value1"),
        });
        assert_eq!(
            a,
            format!("{PREFIX}SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a")
        );
    }

    #[test]
    fn session_token_and_s3_headers_are_signed() {
        let creds = AwsCredentials::new("AKIDEXAMPLE", "secret", Some("tok en".into()), None);
        let s = sign(&get("/", &[]), &creds, &SCOPE, SUITE_TIME, Options::S3);
        assert!(
            s.authorization.contains(
                "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"
            ),
            "{}",
            s.authorization
        );
        assert_eq!(s.content_sha256.as_deref(), Some(EMPTY_PAYLOAD_SHA256));
        let names: Vec<&str> = s.headers().iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "authorization",
                "x-amz-date",
                "x-amz-security-token",
                "x-amz-content-sha256"
            ]
        );
        assert!(!format!("{s:?}").contains("tok en"));
        // A different token is a different signature.
        let other = AwsCredentials::new("AKIDEXAMPLE", "secret", Some("other".into()), None);
        assert_ne!(
            sign(&get("/", &[]), &other, &SCOPE, SUITE_TIME, Options::S3).authorization,
            s.authorization
        );
    }

    #[test]
    fn canonical_pieces() {
        assert_eq!(canonical_header_value("  a   b  c "), "a b c");
        assert_eq!(canonical_path("/ሴ", true), "/%E1%88%B4");
        assert_eq!(canonical_path("/a%20b", true), "/a%2520b");
        assert_eq!(canonical_path("/a%20b", false), "/a%20b");
        assert_eq!(canonical_path("", true), "/");
        assert_eq!(
            canonical_query(&[("b", "2"), ("a", "x y/z"), ("A", "=")]),
            "A=%3D&a=x%20y%2Fz&b=2"
        );
        assert_eq!(uri_encode("a+b~c", true), "a%2Bb~c");
    }
}
