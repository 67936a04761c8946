//! AWS IAM login on the server (`POST /api/v1/auth/aws-iam/login`): check
//! the presented signed `GetCallerIdentity` request
//! ([`idmint_authn::AwsIamAuth::check`]), forward it to the configured STS
//! endpoint, and bind the ARN STS answers with.
//!
//! STS is the only judge of the signature: a tampered request fails there
//! (401 here). STS being unreachable or answering 5xx is idmint's problem,
//! not the caller's (503 naming STS). Every outcome is audited.

use crate::error::ApiError;
use crate::routes::login::{login_event, login_failed, start_session};
use crate::state::AppState;
use axum::http::StatusCode;
use base64::Engine;
use idmint_authn::{AwsIamAuth, AwsIamError};
use idmint_core::session::SessionClaims;
use idmint_core::{RequestId, Secret, UnixTime};
use idmint_proto::aws_iam::AwsIamLoginRequest;
use std::net::IpAddr;
use std::time::Duration;

/// How long one STS call may take.
const STS_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest STS answer read.
const MAX_STS_ANSWER: usize = 64 * 1024;

/// Every `[[auth.aws_iam]]` and the HTTP client that talks to STS.
pub struct AwsIamLogins {
    methods: Vec<AwsIamAuth>,
    http: reqwest::Client,
}

impl AwsIamLogins {
    pub fn new(methods: Vec<AwsIamAuth>) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(STS_TIMEOUT)
            .timeout(STS_TIMEOUT)
            // STS never redirects; following one would send the signed
            // request (and any session token) to another host.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the STS HTTP client: {e}"))?;
        Ok(Self { methods, http })
    }

    fn by_name(&self, name: &str) -> Option<&AwsIamAuth> {
        self.methods.iter().find(|m| m.name() == name)
    }
}

fn refusal(e: &AwsIamError) -> ApiError {
    let status = match e {
        AwsIamError::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
        AwsIamError::ReplayFull(_) => StatusCode::TOO_MANY_REQUESTS,
        e if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
        AwsIamError::Method(_)
        | AwsIamError::Body
        | AwsIamError::Malformed(_)
        | AwsIamError::UnknownAuth(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::UNAUTHORIZED,
    };
    ApiError::new(status, e.code(), e.to_string())
}

/// Logs in with a signed `GetCallerIdentity` request from `source`.
pub async fn login(
    state: &AppState,
    rid: &RequestId,
    source: IpAddr,
    req: AwsIamLoginRequest,
) -> Result<(Secret<String>, SessionClaims), ApiError> {
    let mut event = login_event(rid, source);
    event.detail = Some(serde_json::json!({
        "aws_iam": req.auth.chars().take(64).collect::<String>(),
    }));
    let fail =
        |event, e: AwsIamError| async move { login_failed(state, rid, event, refusal(&e)).await };
    let Some(method) = state.aws_iam.by_name(&req.auth) else {
        let e = AwsIamError::UnknownAuth(req.auth.chars().take(64).collect());
        return Err(fail(event, e).await);
    };
    let body = match base64::engine::general_purpose::STANDARD.decode(req.body.as_bytes()) {
        Ok(b) => b,
        Err(e) => {
            let e = AwsIamError::Malformed(format!("body is not standard base64: {e}"));
            return Err(fail(event, e).await);
        }
    };
    let now = UnixTime::now();
    let checked = match method.check(&req.method, &req.url, &req.headers, &body, now) {
        Ok(c) => c,
        Err(e) => return Err(fail(event, e).await),
    };
    if let Some(serde_json::Value::Object(d)) = &mut event.detail {
        d.insert("access_key_id".into(), checked.access_key_id.clone().into());
    }
    let arn = match call_sts(&state.aws_iam.http, &checked, body).await {
        Ok(a) => a,
        Err(e) => return Err(fail(event, e).await),
    };
    if let Some(serde_json::Value::Object(d)) = &mut event.detail {
        d.insert("arn".into(), arn.clone().into());
    }
    let identity = match method.identity(&arn, now) {
        Ok(i) => i,
        Err(e) => return Err(fail(event, e).await),
    };
    let ttl = method.config().session_ttl;
    start_session(state, rid, event, identity, ttl).await
}

/// Sends the checked request to STS; returns the caller's ARN.
async fn call_sts(
    http: &reqwest::Client,
    checked: &idmint_authn::aws_iam::CheckedRequest,
    body: Vec<u8>,
) -> Result<String, AwsIamError> {
    let mut req = http.post(&checked.url).body(body);
    for (name, value) in &checked.headers {
        req = req.header(name.as_str(), value.as_str());
    }
    let resp = req.send().await.map_err(|e| {
        AwsIamError::StsUnavailable(format!("no answer from STS at {}: {e}", checked.url))
    })?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(|e| {
        AwsIamError::StsUnavailable(format!("reading STS's answer from {}: {e}", checked.url))
    })?;
    let text = String::from_utf8_lossy(bytes.get(..MAX_STS_ANSWER).unwrap_or(&bytes)).into_owned();
    let parsed = idmint_issuers::aws::xml::parse(&text);
    if (200..300).contains(&status) {
        let root = parsed.map_err(|e| AwsIamError::StsMalformed(format!("HTTP {status}: {e}")))?;
        return root
            .find("Arn")
            .map(|a| a.text.trim().to_string())
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                AwsIamError::StsMalformed("no Arn in GetCallerIdentity's answer".into())
            });
    }
    let code = parsed
        .as_ref()
        .ok()
        .and_then(|r| r.find("Code").map(|c| c.text.trim().to_string()))
        .unwrap_or_default();
    let message: String = parsed
        .as_ref()
        .ok()
        .and_then(|r| r.find("Message").map(|c| c.text.trim().to_string()))
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect();
    if status >= 500 || status == 429 || code == "Throttling" {
        return Err(AwsIamError::StsUnavailable(format!(
            "STS at {} answered HTTP {status} {code}",
            checked.url
        )));
    }
    Err(AwsIamError::StsRefused(format!(
        "{code} (HTTP {status}): {message}"
    )))
}
