//! The AWS Query API (STS, IAM) over one pooled `reqwest` client: a form
//! `POST` signed with [`super::sigv4`], an XML answer, AWS's error codes.
//!
//! Retries: a call AWS explicitly refused for load (`Throttling`,
//! `ServiceUnavailable`, …, or HTTP 5xx with such a code) was not carried
//! out, so it is retried with exponential backoff whatever the action. A
//! call that got no answer at all may or may not have happened; it is
//! retried only when the caller marks the action [`Retry::Idempotent`].

use super::credentials::AwsCredentials;
use super::sigv4::{self, uri_encode, Options, Payload, Scope};

/// `application/x-www-form-urlencoded` as the AWS SDKs write it: SigV4's
/// encoding with a space as `+`. The signature covers the bytes either way;
/// servers that re-encode the parsed form to check it (moto) expect `+`.
fn form_encode(s: &str) -> String {
    // `uri_encode` writes a literal `+` as `%2B`, so `+` is unambiguous.
    uri_encode(s, true).replace("%20", "+")
}
use super::xml::{self, Element};
use idmint_core::UnixTime;
use std::time::Duration;

/// Largest answer read (AWS answers are a few KiB).
const MAX_BODY: usize = 1024 * 1024;
/// Attempts for a retryable failure, first one included.
const ATTEMPTS: u32 = 3;
/// Delay before the second attempt; doubled for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// AWS error codes that mean "not done, try again later".
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
    "InternalError",
    "RequestTimeout",
    "IDPCommunicationError",
];

/// Whether a call may be repeated when its outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Repeating it changes nothing (reads, deletes, `AssumeRole`).
    Idempotent,
    /// Repeating it could create a second object (`CreateAccessKey`).
    OnlyWhenRefused,
}

/// One AWS service endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `https://sts.us-east-1.amazonaws.com` (or an override, for moto).
    pub url: String,
    /// The `Host` header reqwest sends for `url`.
    host: String,
    pub region: String,
    /// `sts` or `iam`.
    pub service: &'static str,
    /// The Query API version, e.g. `2011-06-15`.
    pub version: &'static str,
}

impl Endpoint {
    pub fn new(
        url: &str,
        region: &str,
        service: &'static str,
        version: &'static str,
    ) -> Result<Self, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.query().is_some()
            || parsed.fragment().is_some()
            || !parsed.username().is_empty()
            || parsed.path() != "/"
        {
            return Err(format!(
                "{url:?} must be http(s)://host[:port] without path, query or credentials"
            ));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| format!("{url:?} has no host"))?;
        let host = match parsed.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        Ok(Self {
            url: url.trim_end_matches('/').to_string(),
            host,
            region: region.to_string(),
            service,
            version,
        })
    }
}

/// An answer AWS gave with an error document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    pub status: u16,
    /// e.g. `AccessDenied`, `NoSuchEntity`, `Throttling`.
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
}

impl AwsError {
    pub fn is_retryable(&self) -> bool {
        RETRYABLE_CODES.contains(&self.code.as_str())
            || (self.status >= 500 && self.code.is_empty())
    }
}

impl std::fmt::Display for AwsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (HTTP {}): {}", self.code, self.status, self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " [request id {id}]")?;
        }
        Ok(())
    }
}

/// Why a call failed.
#[derive(Debug)]
pub enum CallError {
    /// AWS answered with an error.
    Aws(AwsError),
    /// No answer: connection refused, timeout, TLS failure.
    Unreachable(String),
    /// An answer that is not what the API documents.
    Malformed(String),
}

impl CallError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            CallError::Aws(e) => e.is_retryable(),
            CallError::Unreachable(_) => true,
            CallError::Malformed(_) => false,
        }
    }

    /// The AWS error code, if AWS answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            CallError::Aws(e) => Some(e.code.as_str()),
            _ => None,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Aws(e) => e.fmt(f),
            CallError::Unreachable(e) => write!(f, "no answer: {e}"),
            CallError::Malformed(e) => write!(f, "unexpected answer: {e}"),
        }
    }
}

impl std::error::Error for CallError {}

/// The HTTP client every AWS call of one issuer goes through.
#[derive(Debug, Clone)]
pub struct QueryClient {
    http: reqwest::Client,
    timeout: Duration,
}

impl QueryClient {
    /// No I/O. `timeout` bounds connect and each whole attempt.
    pub fn new(timeout: Duration, pool_size: usize) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .pool_max_idle_per_host(pool_size)
            // AWS APIs never redirect; a redirect could send the signed
            // request (and its session token) elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { http, timeout })
    }

    /// Call `action` with `params`, signed with `creds` (`None`: unsigned,
    /// as `AssumeRoleWithWebIdentity` is). Returns the answer's root.
    pub async fn call(
        &self,
        endpoint: &Endpoint,
        creds: Option<&AwsCredentials>,
        action: &str,
        params: &[(&str, String)],
        retry: Retry,
    ) -> Result<Element, CallError> {
        let mut body = format!(
            "Action={}&Version={}",
            form_encode(action),
            form_encode(endpoint.version)
        );
        for (k, v) in params {
            body.push('&');
            body.push_str(&form_encode(k));
            body.push('=');
            body.push_str(&form_encode(v));
        }
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let result = self.attempt(endpoint, creds, &body).await;
            let again = match &result {
                Err(CallError::Aws(e)) => e.is_retryable(),
                Err(CallError::Unreachable(_)) => retry == Retry::Idempotent,
                _ => false,
            };
            if !again || attempt >= ATTEMPTS {
                return result;
            }
            tracing::debug!(action, attempt, error = %result.as_ref().err().map(|e| e.to_string()).unwrap_or_default(), "retrying AWS call");
            tokio::time::sleep(backoff).await;
            backoff *= 2;
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        endpoint: &Endpoint,
        creds: Option<&AwsCredentials>,
        body: &str,
    ) -> Result<Element, CallError> {
        const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";
        let mut req = self
            .http
            .post(format!("{}/", endpoint.url))
            .header("content-type", CONTENT_TYPE)
            .body(body.to_string());
        if let Some(creds) = creds {
            let signed = sigv4::sign(
                &sigv4::Request {
                    method: "POST",
                    host: &endpoint.host,
                    path: "/",
                    query: &[],
                    headers: &[("content-type", CONTENT_TYPE)],
                    payload: Payload::Bytes(body.as_bytes()),
                },
                creds,
                &Scope {
                    region: &endpoint.region,
                    service: endpoint.service,
                },
                UnixTime::now(),
                Options::STANDARD,
            );
            for (name, value) in signed.headers() {
                req = req.header(name, value);
            }
        }
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(&e))?;
        let text = String::from_utf8_lossy(bytes.get(..MAX_BODY).unwrap_or(&bytes)).into_owned();
        let parsed = xml::parse(&text);
        if (200..300).contains(&status) {
            return parsed.map_err(|e| CallError::Malformed(format!("HTTP {status}: {e}")));
        }
        Err(CallError::Aws(match parsed {
            Ok(root) => AwsError {
                status,
                code: root
                    .find("Code")
                    .map(|e| e.text.trim().to_string())
                    .unwrap_or_default(),
                message: root
                    .find("Message")
                    .map(|e| e.text.trim().chars().take(500).collect())
                    .unwrap_or_default(),
                request_id: root.find("RequestId").map(|e| e.text.trim().to_string()),
            },
            Err(_) => AwsError {
                status,
                code: String::new(),
                message: text.chars().take(300).collect(),
                request_id: None,
            },
        }))
    }

    fn unreachable(&self, e: &reqwest::Error) -> CallError {
        if e.is_timeout() {
            return CallError::Unreachable(format!("no answer within {:?}", self.timeout));
        }
        CallError::Unreachable(crate::error::error_chain(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server answering every request with `answers[min(n, last)]`
    /// (status, body); returns its URL and the request counter.
    async fn canned(answers: Vec<(u16, &'static str)>) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let (status, body) = answers[n.min(answers.len() - 1)];
                let mut buf = vec![0u8; 65536];
                let _ = sock.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            }
        });
        (url, count)
    }

    const THROTTLED: &str = "<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>";
    const DENIED: &str = "<ErrorResponse><Error><Code>AccessDenied</Code><Message>no</Message></Error><RequestId>r</RequestId></ErrorResponse>";
    const OK: &str = "<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>arn:aws:iam::1:user/x</Arn></GetCallerIdentityResult></GetCallerIdentityResponse>";

    #[tokio::test]
    async fn throttling_is_retried_and_access_denied_is_not() {
        let creds = AwsCredentials::new("AKIA", "s", None, None);
        let client = QueryClient::new(Duration::from_secs(2), 1).unwrap();
        let (url, count) = canned(vec![(400, THROTTLED), (400, THROTTLED), (200, OK)]).await;
        let ep = Endpoint::new(&url, "us-east-1", "sts", "2011-06-15").unwrap();
        let root = client
            .call(
                &ep,
                Some(&creds),
                "GetCallerIdentity",
                &[],
                Retry::OnlyWhenRefused,
            )
            .await
            .unwrap();
        assert_eq!(
            root.text_at(&["GetCallerIdentityResult", "Arn"]),
            Some("arn:aws:iam::1:user/x")
        );
        assert_eq!(count.load(Ordering::SeqCst), 3);

        let (url, count) = canned(vec![(503, THROTTLED)]).await;
        let ep = Endpoint::new(&url, "us-east-1", "sts", "2011-06-15").unwrap();
        let e = client
            .call(
                &ep,
                Some(&creds),
                "GetCallerIdentity",
                &[],
                Retry::Idempotent,
            )
            .await
            .unwrap_err();
        assert!(e.is_retryable() && e.code() == Some("Throttling"), "{e}");
        assert_eq!(count.load(Ordering::SeqCst), ATTEMPTS as usize);

        let (url, count) = canned(vec![(403, DENIED)]).await;
        let ep = Endpoint::new(&url, "us-east-1", "sts", "2011-06-15").unwrap();
        let e = client
            .call(&ep, Some(&creds), "AssumeRole", &[], Retry::Idempotent)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("AccessDenied"));
        assert!(!e.is_retryable());
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn unknown_outcomes_are_retried_only_when_idempotent() {
        let creds = AwsCredentials::new("AKIA", "s", None, None);
        let client = QueryClient::new(Duration::from_millis(300), 1).unwrap();
        // Nothing listens on port 9 of loopback: connection refused.
        let ep = Endpoint::new("http://127.0.0.1:9", "us-east-1", "iam", "2010-05-08").unwrap();
        let e = client
            .call(
                &ep,
                Some(&creds),
                "CreateAccessKey",
                &[],
                Retry::OnlyWhenRefused,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(e, CallError::Unreachable(_)) && e.is_retryable(),
            "{e}"
        );
    }

    #[test]
    fn endpoints_and_errors() {
        let e = Endpoint::new("http://127.0.0.1:5000/", "us-east-1", "sts", "2011-06-15").unwrap();
        assert_eq!(
            (e.url.as_str(), e.host.as_str()),
            ("http://127.0.0.1:5000", "127.0.0.1:5000")
        );
        let e = Endpoint::new(
            "https://sts.eu-west-1.amazonaws.com",
            "eu-west-1",
            "sts",
            "v",
        )
        .unwrap();
        assert_eq!(e.host, "sts.eu-west-1.amazonaws.com");
        for bad in [
            "ftp://x",
            "http://x/path",
            "http://u:p@x",
            "http://x?a=1",
            "nope",
        ] {
            assert!(Endpoint::new(bad, "r", "sts", "v").is_err(), "{bad}");
        }
        let throttled = AwsError {
            status: 400,
            code: "Throttling".into(),
            message: "Rate exceeded".into(),
            request_id: None,
        };
        assert!(throttled.is_retryable());
        let denied = AwsError {
            status: 403,
            code: "AccessDenied".into(),
            message: "no".into(),
            request_id: Some("r1".into()),
        };
        assert!(!denied.is_retryable());
        assert_eq!(
            denied.to_string(),
            "AccessDenied (HTTP 403): no [request id r1]"
        );
        assert!(CallError::Unreachable("x".into()).is_retryable());
        assert_eq!(CallError::Aws(denied).code(), Some("AccessDenied"));
        assert_eq!(form_encode("a b+c/d"), "a+b%2Bc%2Fd");
    }
}
