//! Turning HTTP responses (and failures to get one) into results.

use crate::error::ClientError;
use idmint_proto::{ErrorBody, OAuthError};
use reqwest::Url;
use serde::de::DeserializeOwned;

/// Largest response body read into memory. idmint's biggest answers (lease
/// lists, audit traces) stay far below this; anything larger is not a
/// well-behaved idmint server and is refused rather than buffered.
const MAX_BODY_BYTES: usize = 16 << 20;

/// Longest piece of an unexpected body quoted in an error message.
const MAX_SNIPPET_CHARS: usize = 200;

/// A fully read response.
pub(crate) struct RawResponse {
    pub status: u16,
    pub reason: &'static str,
    pub body: Vec<u8>,
    /// `x-request-id`, used when the error body does not carry one.
    pub request_id: Option<String>,
}

impl RawResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Read the whole body, refusing bodies over [`MAX_BODY_BYTES`].
pub(crate) async fn read(
    mut resp: reqwest::Response,
    url: &Url,
) -> Result<RawResponse, ClientError> {
    let status = resp.status();
    let request_id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport_error(url, e))? {
        if body.len().saturating_add(chunk.len()) > MAX_BODY_BYTES {
            return Err(ClientError::Decode(format!(
                "the response from {url} is larger than {MAX_BODY_BYTES} bytes; is --server pointing at an idmint server?"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(RawResponse {
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or(""),
        body,
        request_id,
    })
}

/// A failure to get any response: connect refused, DNS, TLS, timeout.
pub(crate) fn transport_error(url: &Url, e: reqwest::Error) -> ClientError {
    let timed_out = e.is_timeout();
    let detail = error_chain(&e.without_url());
    let what = if timed_out {
        format!("request to {url} timed out")
    } else {
        format!("cannot reach idmint at {url}")
    };
    ClientError::Transport(format!(
        "{what}: {detail}; check --server (or IDMINT_ADDR), --ca-cert for a private CA, and that the server is running"
    ))
}

/// `a: b: c` from an error and its sources, skipping repeats (hyper and
/// reqwest often wrap the same message twice).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

/// Decode a 2xx body, or turn a non-2xx into [`ClientError::Api`].
pub(crate) fn json<T: DeserializeOwned>(raw: &RawResponse, url: &Url) -> Result<T, ClientError> {
    if !raw.is_success() {
        return Err(api_error(raw));
    }
    decode(raw, url)
}

/// Decode a body regardless of status.
pub(crate) fn decode<T: DeserializeOwned>(raw: &RawResponse, url: &Url) -> Result<T, ClientError> {
    serde_json::from_slice(&raw.body).map_err(|e| {
        ClientError::Decode(format!(
            "unexpected response from {url} (HTTP {}): {e}; the server may run a different idmint version",
            raw.status
        ))
    })
}

/// A non-2xx native API answer.
pub(crate) fn api_error(raw: &RawResponse) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(&raw.body) {
        Ok(ErrorBody { error }) => ClientError::Api {
            status: raw.status,
            code: error.code,
            message: error.message,
            request_id: error.request_id.or_else(|| raw.request_id.clone()),
        },
        Err(_) => ClientError::Api {
            status: raw.status,
            code: "unexpected_response".to_string(),
            message: format!(
                "the server answered {} {} without an idmint error body{}",
                raw.status,
                raw.reason,
                snippet(&raw.body)
            ),
            request_id: raw.request_id.clone(),
        },
    }
}

/// A non-2xx `/oauth/token` answer: an RFC 6749 error body, or failing that
/// a native error body (e.g. from a middleware limit).
pub(crate) fn oauth_error(raw: &RawResponse) -> ClientError {
    match serde_json::from_slice::<OAuthError>(&raw.body) {
        Ok(e) => ClientError::OAuth {
            status: raw.status,
            error: e.error,
            description: e.error_description,
        },
        Err(_) => api_error(raw),
    }
}

/// `: <first printable characters of body>`, or nothing for an empty body.
fn snippet(body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_SNIPPET_CHARS)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(status: u16, body: &str) -> RawResponse {
        RawResponse {
            status,
            reason: "Reason",
            body: body.as_bytes().to_vec(),
            request_id: Some("req_hdr".into()),
        }
    }

    #[test]
    fn native_error_body() {
        let e = api_error(&raw(
            403,
            r#"{"error":{"code":"policy_denied","message":"no","request_id":"req_body"}}"#,
        ));
        assert_eq!(
            e,
            ClientError::Api {
                status: 403,
                code: "policy_denied".into(),
                message: "no".into(),
                request_id: Some("req_body".into()),
            }
        );
        // Missing request_id in the body: the header's is used.
        let e = api_error(&raw(
            404,
            r#"{"error":{"code":"not_found","message":"no lease"}}"#,
        ));
        assert!(matches!(e, ClientError::Api { request_id: Some(ref r), .. } if r == "req_hdr"));
    }

    #[test]
    fn foreign_error_body_is_quoted_briefly() {
        let long = format!("<html>\n{}</html>", "x".repeat(1000));
        let e = api_error(&raw(502, &long));
        let ClientError::Api { code, message, .. } = e else {
            panic!("expected Api error, got {e:?}");
        };
        assert_eq!(code, "unexpected_response");
        assert!(
            message.starts_with(
                "the server answered 502 Reason without an idmint error body: <html> x"
            ),
            "{message}"
        );
        assert!(message.len() < 300, "{message}");
    }

    #[test]
    fn oauth_errors() {
        let e = oauth_error(&raw(
            400,
            r#"{"error":"invalid_request","error_description":"missing audience"}"#,
        ));
        assert_eq!(
            e,
            ClientError::OAuth {
                status: 400,
                error: "invalid_request".into(),
                description: Some("missing audience".into()),
            }
        );
        let e = oauth_error(&raw(
            413,
            r#"{"error":{"code":"too_large","message":"body too large"}}"#,
        ));
        assert!(matches!(e, ClientError::Api { status: 413, .. }), "{e:?}");
    }

    #[test]
    fn decode_error_names_url() {
        let url = Url::parse("http://127.0.0.1:1/api/v1/whoami").unwrap();
        let e = json::<idmint_proto::WhoAmI>(&raw(200, "{}"), &url).unwrap_err();
        assert!(
            matches!(e, ClientError::Decode(ref m) if m.contains("http://127.0.0.1:1/api/v1/whoami")),
            "{e:?}"
        );
    }
}
