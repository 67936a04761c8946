//! One allowed request to its upstream: check the rule, rewrite headers,
//! inject the credential, send, relay the response.

use crate::inject::is_hop_by_hop;
use crate::response::{text, ProxyBody};
use crate::rules::{allow_request, has_dot_segments};
use crate::server::{Caller, State};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, HOST,
};
use hyper::{Request, Response, StatusCode, Uri, Version};
use std::net::SocketAddr;
use std::time::Instant;

/// Responses up to this size (with a Content-Length, not content-encoded)
/// are scanned for a reflected credential; larger or streamed ones are
/// relayed as they come.
const MAX_REDACTED_BODY_BYTES: u64 = 1024 * 1024;

/// Largest body buffered for SigV4 re-signing.
const MAX_SIGNED_BODY_BYTES: usize = 10 * 1024 * 1024;

/// Where a request goes, decided before any request byte is forwarded.
#[derive(Debug, Clone)]
pub struct Destination {
    /// As the client named it (lower case); rules match on it.
    pub host: String,
    pub port: u16,
    /// The resolved address actually connected to (already checked
    /// against `denied_networks`).
    pub addr: SocketAddr,
    /// Whether some rule for this destination needs to see requests.
    pub intercept: bool,
    /// Whether requests go to the upstream over TLS (intercepted `CONNECT`
    /// or transparent TLS) rather than plain HTTP.
    pub tls: bool,
}

impl Destination {
    fn host_header(&self, tls: bool) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if tls { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Copy end-to-end headers only: drop hop-by-hop headers and any header
/// the `Connection` header names.
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if !is_hop_by_hop(name) && !named.contains(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Check, rewrite and send one request; always returns a response (errors
/// become 4xx/5xx with an explanation) and writes one audit record.
/// Response header naming the proxy's audit record of the request.
pub const REQUEST_ID_HEADER: &str = "x-idmint-proxy-request-id";

/// A fresh `prx_…` id. Falls back to a time-based id if the system RNG
/// fails: the id is a correlation handle, not a secret.
fn proxy_request_id() -> String {
    let body = idmint_core::ids::random_hex(16).unwrap_or_else(|_| {
        format!(
            "{:032x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        )
    });
    format!("prx_{body}")
}

/// Forwards one request and stamps the response (whatever its outcome)
/// with the id of its audit record.
pub(crate) async fn forward(
    state: &State,
    caller: &Caller,
    identity: &str,
    dest: Destination,
    req: Request<Incoming>,
    mode: &'static str,
    started: Instant,
) -> Response<ProxyBody> {
    let request_id = proxy_request_id();
    let mut response = forward_request(
        state,
        caller,
        identity,
        dest,
        req,
        mode,
        started,
        &request_id,
    )
    .await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}

#[allow(clippy::too_many_arguments)] // the wrapper above is the interface
async fn forward_request(
    state: &State,
    caller: &Caller,
    identity: &str,
    dest: Destination,
    req: Request<Incoming>,
    mode: &'static str,
    started: Instant,
    request_id: &str,
) -> Response<ProxyBody> {
    let tls = dest.tls;
    let method = req.method().as_str().to_string();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let mut record = caller.record(mode, &dest.host, dest.port);
    record.request_id = Some(request_id.to_string());
    record.address = Some(dest.addr.to_string());
    record.method = Some(method.clone());
    record.path = Some(
        path_and_query
            .split_once('?')
            .map_or(path_and_query.as_str(), |(p, _)| p)
            .to_string(),
    );
    let finish = |mut record: crate::audit::AuditRecord,
                  decision: &'static str,
                  reason: Option<String>,
                  status: StatusCode| {
        record.decision = decision;
        record.reason = reason;
        record.status = Some(status.as_u16());
        record.latency_ms = started.elapsed().as_millis();
        state.audit.write(record);
    };

    if has_dot_segments(&path_and_query) {
        let reason = "the path contains `.` or `..` segments, which could escape a path \
                      prefix rule; send a normalised path"
            .to_string();
        finish(
            record,
            "deny",
            Some(reason.clone()),
            StatusCode::BAD_REQUEST,
        );
        return text(
            StatusCode::BAD_REQUEST,
            &format!("idmint proxy: {reason}\n"),
        );
    }
    let rule = match allow_request(
        &state.config.rules,
        identity,
        &dest.host,
        dest.port,
        &method,
        &path_and_query,
    ) {
        Ok(rule) => rule,
        Err(denial) => {
            finish(
                record,
                "deny",
                Some(denial.0.clone()),
                StatusCode::FORBIDDEN,
            );
            return text(
                StatusCode::FORBIDDEN,
                &format!("idmint proxy: denied: {}\n", denial.0),
            );
        }
    };
    if let Some(inj) = &rule.inject {
        if !tls && !rule.plaintext {
            let reason = format!(
                "refusing to send credential `{}` over plain http to {}:{}; use https:// (the \
                 proxy injects after intercepting TLS) or set plaintext = true on the rule",
                inj.secret_name(),
                dest.host,
                dest.port
            );
            finish(record, "deny", Some(reason.clone()), StatusCode::FORBIDDEN);
            return text(
                StatusCode::FORBIDDEN,
                &format!("idmint proxy: denied: {reason}\n"),
            );
        }
    }
    // Minted and KV secrets are resolved per request (from the cache
    // unless due for refresh); failing to obtain one fails closed.
    let resolved = match &rule.inject {
        Some(inj) => {
            record.credential = Some(inj.secret_name().to_string());
            record.credential_source = Some(inj.secret().source.kind());
            match state
                .creds
                .resolve(inj, identity, caller.process.as_ref())
                .await
            {
                Ok(r) => Some(r),
                Err(e) => {
                    let status =
                        StatusCode::from_u16(e.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                    let reason = format!(
                        "credential `{}` ({}) is unavailable: {e}",
                        inj.secret_name(),
                        inj.secret().source.kind()
                    );
                    let decision = if e.transient { "error" } else { "deny" };
                    finish(record, decision, Some(reason.clone()), status);
                    return text(status, &format!("idmint proxy: {reason}\n"));
                }
            }
        }
        None => None,
    };

    let (parts, body) = req.into_parts();
    let mut headers = end_to_end(&parts.headers);
    let host_header = dest.host_header(tls);
    match HeaderValue::from_str(&host_header) {
        Ok(v) => {
            headers.insert(HOST, v);
        }
        Err(_) => return text(StatusCode::BAD_REQUEST, "idmint proxy: bad host\n"),
    }
    let mut target = path_and_query.clone();
    let mut body: ProxyBody = body.boxed();
    if let (Some(inj), Some(cred)) = (&rule.inject, &resolved) {
        let injected = if inj.needs_body() {
            // SigV4 covers the body's hash: buffer it (bounded).
            match Limited::new(body, MAX_SIGNED_BODY_BYTES).collect().await {
                Ok(collected) => {
                    let bytes = collected.to_bytes();
                    headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                    let signed = inj.sign_aws(
                        cred,
                        &mut headers,
                        &method,
                        &host_header,
                        &path_and_query,
                        &bytes,
                    );
                    body = Full::new(bytes).map_err(|never| match never {}).boxed();
                    signed
                }
                Err(_) => {
                    let reason = format!(
                        "the request body is larger than {MAX_SIGNED_BODY_BYTES} bytes, the \
                         limit for SigV4 re-signing (or could not be read)"
                    );
                    finish(
                        record,
                        "deny",
                        Some(reason.clone()),
                        StatusCode::PAYLOAD_TOO_LARGE,
                    );
                    return text(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &format!("idmint proxy: {reason}\n"),
                    );
                }
            }
        } else {
            inj.apply(cred, &mut headers, &path_and_query)
                .map(|t| target = t)
        };
        if let Err(e) = injected {
            finish(
                record,
                "error",
                Some(e.to_string()),
                StatusCode::BAD_GATEWAY,
            );
            return text(StatusCode::BAD_GATEWAY, &format!("idmint proxy: {e}\n"));
        }
        record.credential_fingerprint = Some(state.audit.fingerprint(cred.secret_text()));
        record.lease_id = cred.lease_id.clone();
    }
    let Ok(uri) = target.parse::<Uri>() else {
        finish(
            record,
            "deny",
            Some("bad request target".into()),
            StatusCode::BAD_REQUEST,
        );
        return text(
            StatusCode::BAD_REQUEST,
            "idmint proxy: bad request target\n",
        );
    };
    record.bytes_up = content_length(&headers);
    let mut upstream_req = Request::new(body);
    *upstream_req.method_mut() = parts.method;
    *upstream_req.uri_mut() = uri;
    *upstream_req.version_mut() = Version::HTTP_11;
    *upstream_req.headers_mut() = headers;

    let response = match state.upstreams.send(&dest, tls, upstream_req).await {
        // A 101 would make hyper hand the client connection over unchecked;
        // the proxy never asks for an upgrade (Upgrade is hop-by-hop).
        Ok(r) if r.status() == StatusCode::SWITCHING_PROTOCOLS => {
            let reason =
                "the upstream switched protocols, which the proxy does not relay".to_string();
            finish(
                record,
                "error",
                Some(reason.clone()),
                StatusCode::BAD_GATEWAY,
            );
            return text(
                StatusCode::BAD_GATEWAY,
                &format!("idmint proxy: {reason}\n"),
            );
        }
        Ok(r) => r,
        Err(reason) => {
            finish(
                record,
                "error",
                Some(reason.clone()),
                StatusCode::BAD_GATEWAY,
            );
            return text(
                StatusCode::BAD_GATEWAY,
                &format!("idmint proxy: {reason}\n"),
            );
        }
    };
    let (mut parts, body) = response.into_parts();
    let mut headers = end_to_end(&parts.headers);
    let mut body: ProxyBody = body.boxed();
    if let (Some(inj), Some(cred)) = (&rule.inject, &resolved) {
        // An upstream that reflects the credential (an echo endpoint, a
        // verbose error page) must not hand it to the workload.
        let needles = inj.reflections(cred);
        let reflecting: Vec<HeaderName> = headers
            .iter()
            .filter(|(_, v)| {
                v.to_str()
                    .is_ok_and(|v| needles.iter().any(|n| v.contains(n.as_str())))
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in reflecting {
            headers.remove(&name);
        }
        let small = content_length(&headers).is_some_and(|n| n <= MAX_REDACTED_BODY_BYTES);
        if small && !headers.contains_key(CONTENT_ENCODING) {
            match Limited::new(body, MAX_REDACTED_BODY_BYTES as usize)
                .collect()
                .await
            {
                Ok(collected) => {
                    let redacted = redact(collected.to_bytes().to_vec(), &needles);
                    headers.insert(CONTENT_LENGTH, HeaderValue::from(redacted.len()));
                    body = Full::new(Bytes::from(redacted))
                        .map_err(|never| match never {})
                        .boxed();
                }
                Err(e) => {
                    let reason = format!("reading the upstream response failed: {e}");
                    finish(
                        record,
                        "error",
                        Some(reason.clone()),
                        StatusCode::BAD_GATEWAY,
                    );
                    return text(
                        StatusCode::BAD_GATEWAY,
                        &format!("idmint proxy: {reason}\n"),
                    );
                }
            }
        }
    }
    record.bytes_down = content_length(&headers);
    parts.headers = headers;
    finish(record, "allow", None, parts.status);
    Response::from_parts(parts, body)
}

/// What replaces a reflected credential in a response body.
const REDACTED: &[u8] = b"[redacted-by-idmint-proxy]";

/// Replace every occurrence of each needle in `body`.
fn redact(mut body: Vec<u8>, needles: &[String]) -> Vec<u8> {
    for needle in needles
        .iter()
        .map(String::as_bytes)
        .filter(|n| !n.is_empty())
    {
        let mut out = Vec::with_capacity(body.len());
        let mut rest = body.as_slice();
        while let Some(pos) = rest.windows(needle.len()).position(|w| w == needle) {
            out.extend_from_slice(rest.get(..pos).unwrap_or_default());
            out.extend_from_slice(REDACTED);
            rest = rest.get(pos + needle.len()..).unwrap_or_default();
        }
        out.extend_from_slice(rest);
        body = out;
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_replaces_every_occurrence() {
        let out = redact(b"a SECRET b SECRETSECRET".to_vec(), &["SECRET".into()]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a [redacted-by-idmint-proxy] b [redacted-by-idmint-proxy][redacted-by-idmint-proxy]"
        );
    }
}
