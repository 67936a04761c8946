//! AWS IAM login: the caller proves its AWS principal by presenting a
//! SigV4-signed `sts:GetCallerIdentity` request, which idmint forwards to
//! STS; STS checks the signature and names the principal.
//!
//! This module holds everything that needs no network:
//! - [`AwsIamConfig`]: one `[[auth.aws_iam]]` table;
//! - [`AwsIamAuth::check`]: decides whether a presented request may be
//!   forwarded at all. It is strict because idmint sends it on: the URL must
//!   be the configured STS endpoint (never a caller-chosen host: SSRF), the
//!   body exactly `Action=GetCallerIdentity&Version=2011-06-15`, the
//!   `X-Idmint-Server-Id` header present, equal to `server_id` **and**
//!   covered by the signature (so a request signed for another audience
//!   cannot be replayed here), `X-Amz-Date` within `max_skew`, the
//!   credential scope this endpoint's region and `sts`, and the signature
//!   never seen before (replay cache, bounded, fails closed when full);
//! - [`AwsIamAuth::identity`]: turns the ARN STS returned into an
//!   [`Identity`] (kind `aws_iam`) if it matches `bound_arns`.
//!
//! Invariant: nothing here trusts a value the caller sent except through
//! STS's verdict; the ARN comes only from STS's answer.

use crate::replay::{ReplayCache, ReplayRefusal};
use idmint_core::{Identity, IdentityKind, Ttl, UnixTime};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// `Identity::method` of AWS IAM logins.
pub const AWS_IAM_METHOD: &str = "aws_iam";
/// `Identity::issuer` of AWS IAM identities: STS vouched for them.
pub const AWS_IAM_ISSUER: &str = "aws:sts";
pub use idmint_proto::aws_iam::{GET_CALLER_IDENTITY_BODY, SERVER_ID_HEADER};
/// Remembered signatures at most; at the cap new logins are refused.
const REPLAY_CAPACITY: usize = 100_000;
/// Headers accepted at most, and the longest value: bounds work on input.
const MAX_HEADERS: usize = 32;
const MAX_HEADER_VALUE: usize = 8 * 1024;

/// One `[[auth.aws_iam]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsIamConfig {
    /// Name of this method: `auth` in the login request and in the identity.
    pub name: String,
    /// The region whose STS endpoint callers sign for.
    #[serde(default = "default_region")]
    pub region: String,
    /// STS endpoint; default `https://sts.{region}.amazonaws.com`. Only
    /// this URL is ever called.
    #[serde(default)]
    pub sts_endpoint: Option<String>,
    /// Value the `X-Idmint-Server-Id` header must carry (signed), e.g. the
    /// server's public URL. Required: without it a `GetCallerIdentity`
    /// request signed for any other service would log in here.
    pub server_id: String,
    /// Caller ARN patterns allowed to log in; `*` matches any run of
    /// characters except `/`. Assumed-role sessions are matched in their
    /// normalised form `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
    pub bound_arns: Vec<String>,
    /// Largest accepted difference between `X-Amz-Date` and idmint's clock.
    #[serde(default = "default_max_skew")]
    pub max_skew: Ttl,
    /// Lifetime of the session a login yields.
    #[serde(default = "default_session_ttl")]
    pub session_ttl: Ttl,
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_max_skew() -> Ttl {
    Ttl::clamped(300)
}
fn default_session_ttl() -> Ttl {
    Ttl::clamped(900)
}

/// Why an AWS IAM login was refused. The message is safe to show the caller
/// (it names what was wrong with *their* request, never a secret).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AwsIamError {
    #[error("{0}")]
    Config(String),
    #[error("no [[auth.aws_iam]] named {0:?} in idmint.toml")]
    UnknownAuth(String),
    #[error("the signed request must be a POST, not {0:?}")]
    Method(String),
    #[error("the signed request is for {found:?}, but this server only forwards to its configured STS endpoint {expected:?}; sign for that endpoint (`--aws-region`/`sts_endpoint`)")]
    WrongEndpoint { found: String, expected: String },
    #[error("the body must be exactly {GET_CALLER_IDENTITY_BODY:?}")]
    Body,
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("the X-Idmint-Server-Id header is missing; sign it with the value {0:?}")]
    ServerIdMissing(String),
    #[error("X-Idmint-Server-Id is {found:?}, but this server expects {expected:?}")]
    ServerIdMismatch { found: String, expected: String },
    #[error("X-Idmint-Server-Id is not in SignedHeaders: it must be covered by the signature")]
    ServerIdUnsigned,
    #[error("the signature's credential scope is {found:?}; it must be region {region:?}, service \"sts\"")]
    WrongScope { found: String, region: String },
    #[error("X-Amz-Date {date} is {skew}s away from the server's clock (max {max}s); check the client's clock")]
    Skew { date: String, skew: i64, max: u64 },
    #[error("this signed request was already used; sign a new one for every login")]
    Replayed,
    #[error("too many recent AWS IAM logins to remember ({0}); retry shortly")]
    ReplayFull(usize),
    #[error("STS refused the signature: {0}")]
    StsRefused(String),
    #[error("STS is unavailable: {0}")]
    StsUnavailable(String),
    #[error("STS returned an unexpected answer: {0}")]
    StsMalformed(String),
    #[error("ARN {0:?} is not a caller ARN idmint understands")]
    BadArn(String),
    #[error("{arn} is not allowed by bound_arns of [[auth.aws_iam]] {auth:?}")]
    NotBound { arn: String, auth: String },
}

impl AwsIamError {
    /// Stable code for the audit log and the native API.
    pub fn code(&self) -> &'static str {
        match self {
            AwsIamError::Config(_) => "invalid_config",
            AwsIamError::UnknownAuth(_) => "unknown_auth",
            AwsIamError::Method(_)
            | AwsIamError::Body
            | AwsIamError::Malformed(_)
            | AwsIamError::WrongScope { .. } => "invalid_aws_request",
            AwsIamError::WrongEndpoint { .. } => "wrong_sts_endpoint",
            AwsIamError::ServerIdMissing(_)
            | AwsIamError::ServerIdMismatch { .. }
            | AwsIamError::ServerIdUnsigned => "server_id_invalid",
            AwsIamError::Skew { .. } => "clock_skew",
            AwsIamError::Replayed => "replayed",
            AwsIamError::ReplayFull(_) => "rate_limited",
            AwsIamError::StsRefused(_) => "sts_refused",
            AwsIamError::StsUnavailable(_) | AwsIamError::StsMalformed(_) => "sts_unavailable",
            AwsIamError::BadArn(_) | AwsIamError::NotBound { .. } => "arn_not_bound",
        }
    }

    /// Whether the failure is idmint's or STS's, not the caller's (503).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            AwsIamError::StsUnavailable(_)
                | AwsIamError::StsMalformed(_)
                | AwsIamError::ReplayFull(_)
        )
    }
}

/// What [`AwsIamAuth::check`] lets through: exactly what is sent to STS.
#[derive(Debug, Clone)]
pub struct CheckedRequest {
    /// The configured endpoint URL (not the caller's string).
    pub url: String,
    /// Headers to send, lowercase names; `host` is left to the HTTP client,
    /// which derives it from `url` (equal to the signed one by the check).
    pub headers: Vec<(String, String)>,
    /// The access key id in the credential scope (for the audit log).
    pub access_key_id: String,
}

/// A parsed `[[auth.aws_iam]]`, ready to check requests.
pub struct AwsIamAuth {
    config: AwsIamConfig,
    /// `https://host[:port]` of STS, without trailing slash.
    endpoint: String,
    /// `host[:port]`, as a signed `Host` header must read.
    host: String,
    replay: ReplayCache,
}

impl std::fmt::Debug for AwsIamAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsIamAuth")
            .field("name", &self.config.name)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl AwsIamConfig {
    /// The STS URL this method forwards to.
    pub fn endpoint_url(&self) -> String {
        self.sts_endpoint
            .clone()
            .unwrap_or_else(|| format!("https://sts.{}.amazonaws.com", self.region))
    }

    /// Checks that the table makes sense; the message names the field.
    pub fn validate(&self) -> Result<(), AwsIamError> {
        AwsIamAuth::new(self.clone()).map(|_| ())
    }
}

impl AwsIamAuth {
    pub fn new(config: AwsIamConfig) -> Result<Self, AwsIamError> {
        let bad = |m: String| {
            Err(AwsIamError::Config(format!(
                "[[auth.aws_iam]] {:?}: {m}",
                config.name
            )))
        };
        let name_ok = !config.name.is_empty()
            && config.name.len() <= 64
            && config
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !name_ok {
            return bad("name must be 1-64 characters of A-Z a-z 0-9 - _ .".into());
        }
        if config.server_id.trim().is_empty() || config.server_id.len() > 256 {
            return bad("server_id must be 1-256 characters (e.g. the server's public URL)".into());
        }
        if config.bound_arns.is_empty() {
            return bad("bound_arns must list at least one ARN pattern".into());
        }
        if let Some(p) = config.bound_arns.iter().find(|p| !p.starts_with("arn:")) {
            return bad(format!("bound_arns entry {p:?} must start with \"arn:\""));
        }
        let text = config.endpoint_url();
        let url = match url::Url::parse(&text) {
            Ok(u) => u,
            Err(e) => return bad(format!("sts_endpoint {text:?} is not a URL: {e}")),
        };
        let host = match url.host_str() {
            Some(h) if matches!(url.scheme(), "http" | "https") && url.path() == "/" => {
                match url.port() {
                    Some(p) => format!("{h}:{p}"),
                    None => h.to_string(),
                }
            }
            _ => {
                return bad(format!(
                    "sts_endpoint {text:?} must be http(s)://host[:port]"
                ))
            }
        };
        let endpoint = format!("{}://{host}", url.scheme());
        Ok(Self {
            config,
            endpoint,
            host,
            replay: ReplayCache::new(REPLAY_CAPACITY),
        })
    }

    pub fn config(&self) -> &AwsIamConfig {
        &self.config
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Checks a presented request (see the module doc) and records its
    /// signature so that it logs in at most once. `headers` are as sent by
    /// the caller (any case); `body` is the decoded body.
    pub fn check(
        &self,
        method: &str,
        url: &str,
        headers: &BTreeMap<String, String>,
        body: &[u8],
        now: UnixTime,
    ) -> Result<CheckedRequest, AwsIamError> {
        if method != "POST" {
            return Err(AwsIamError::Method(truncate(method, 16)));
        }
        let presented = url::Url::parse(url)
            .map_err(|e| AwsIamError::Malformed(format!("url {:?}: {e}", truncate(url, 200))))?;
        let presented_host = match (presented.host_str(), presented.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => String::new(),
        };
        let same = presented.scheme() == self.endpoint.split("://").next().unwrap_or_default()
            && presented_host.eq_ignore_ascii_case(&self.host)
            && presented.path() == "/"
            && presented.query().is_none()
            && presented.username().is_empty();
        if !same {
            return Err(AwsIamError::WrongEndpoint {
                found: truncate(url, 200),
                expected: format!("{}/", self.endpoint),
            });
        }
        if body != GET_CALLER_IDENTITY_BODY.as_bytes() {
            return Err(AwsIamError::Body);
        }
        let headers = lowercase_headers(headers)?;
        let header = |n: &str| headers.get(n).map(String::as_str);
        if let Some(h) = header("host") {
            if !h.eq_ignore_ascii_case(&self.host) {
                return Err(AwsIamError::WrongEndpoint {
                    found: format!("Host: {}", truncate(h, 200)),
                    expected: self.host.clone(),
                });
            }
        }
        let server_id = header(SERVER_ID_HEADER)
            .ok_or_else(|| AwsIamError::ServerIdMissing(self.config.server_id.clone()))?;
        if server_id != self.config.server_id {
            return Err(AwsIamError::ServerIdMismatch {
                found: truncate(server_id, 256),
                expected: self.config.server_id.clone(),
            });
        }
        let auth = Authorization::parse(
            header("authorization")
                .ok_or_else(|| AwsIamError::Malformed("no Authorization header".into()))?,
        )?;
        if !auth.signed_headers.iter().any(|h| h == SERVER_ID_HEADER) {
            return Err(AwsIamError::ServerIdUnsigned);
        }
        for required in ["host", "x-amz-date"] {
            if !auth.signed_headers.iter().any(|h| h == required) {
                return Err(AwsIamError::Malformed(format!(
                    "{required} must be in SignedHeaders"
                )));
            }
        }
        if auth.region != self.config.region || auth.service != "sts" {
            return Err(AwsIamError::WrongScope {
                found: format!("{}/{}", auth.region, auth.service),
                region: self.config.region.clone(),
            });
        }
        let date_text = header("x-amz-date")
            .ok_or_else(|| AwsIamError::Malformed("no X-Amz-Date header".into()))?;
        let date = parse_amz_date(date_text).ok_or_else(|| {
            AwsIamError::Malformed(format!(
                "X-Amz-Date {:?} is not YYYYMMDDTHHMMSSZ",
                truncate(date_text, 32)
            ))
        })?;
        let max = self.config.max_skew.as_secs();
        let skew = date.secs() - now.secs();
        if skew.unsigned_abs() > max {
            return Err(AwsIamError::Skew {
                date: date_text.to_string(),
                skew,
                max,
            });
        }
        // Every signed header must be sent, or STS would not see what was
        // signed; unsigned headers are dropped (they prove nothing).
        let mut forward = Vec::with_capacity(auth.signed_headers.len() + 1);
        for name in &auth.signed_headers {
            if name == "host" {
                continue;
            }
            let value = header(name).ok_or_else(|| {
                AwsIamError::Malformed(format!("signed header {name:?} is not in the request"))
            })?;
            forward.push((name.clone(), value.to_string()));
        }
        if let Some(a) = header("authorization") {
            forward.push(("authorization".into(), a.to_string()));
        }
        if !auth.signed_headers.iter().any(|h| h == "content-type") {
            if let Some(ct) = header("content-type") {
                forward.push(("content-type".into(), ct.to_string()));
            }
        }
        // Accepting a request remembers it for as long as it could pass the
        // skew check, so it logs in once even if STS is slow.
        let until = date.plus(Duration::from_secs(max));
        self.replay
            .check_and_record(&self.config.name, &auth.signature, until, now)
            .map_err(|r| match r {
                ReplayRefusal::Replayed => AwsIamError::Replayed,
                ReplayRefusal::Full { capacity } => AwsIamError::ReplayFull(capacity),
            })?;
        Ok(CheckedRequest {
            url: format!("{}/", self.endpoint),
            headers: forward,
            access_key_id: auth.access_key_id,
        })
    }

    /// The identity of the caller STS named (`arn`, `account`), if the ARN
    /// is allowed by `bound_arns`.
    pub fn identity(&self, arn: &str, now: UnixTime) -> Result<Identity, AwsIamError> {
        let caller = CallerArn::parse(arn)?;
        if !self
            .config
            .bound_arns
            .iter()
            .any(|p| arn_matches(p, &caller.normalised))
        {
            return Err(AwsIamError::NotBound {
                arn: caller.normalised,
                auth: self.config.name.clone(),
            });
        }
        let mut attributes = Map::new();
        attributes.insert("arn".into(), Value::String(caller.normalised.clone()));
        attributes.insert("account".into(), Value::String(caller.account.clone()));
        if let Some(r) = &caller.role {
            attributes.insert("role".into(), Value::String(r.clone()));
        }
        if let Some(s) = &caller.session {
            attributes.insert("session".into(), Value::String(s.clone()));
        }
        if let Some(u) = &caller.user {
            attributes.insert("user".into(), Value::String(u.clone()));
        }
        Ok(Identity {
            kind: IdentityKind::AwsIam,
            subject: caller.normalised.clone(),
            issuer: AWS_IAM_ISSUER.into(),
            method: AWS_IAM_METHOD.into(),
            auth: self.config.name.clone(),
            attributes,
            proof_id: caller.normalised,
            expires_at: now.plus(self.config.session_ttl.as_duration()),
        })
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Header names lowercased; duplicates (after lowercasing) are refused, as
/// the caller's and STS's view of the request could otherwise differ.
fn lowercase_headers(
    headers: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, AwsIamError> {
    if headers.len() > MAX_HEADERS {
        return Err(AwsIamError::Malformed(format!(
            "more than {MAX_HEADERS} headers"
        )));
    }
    let mut out = BTreeMap::new();
    for (k, v) in headers {
        if v.len() > MAX_HEADER_VALUE || v.contains(['\r', '\n']) {
            return Err(AwsIamError::Malformed(format!(
                "header {:?} is too long or spans lines",
                truncate(k, 64)
            )));
        }
        if out.insert(k.to_ascii_lowercase(), v.clone()).is_some() {
            return Err(AwsIamError::Malformed(format!(
                "header {:?} is given twice",
                truncate(k, 64)
            )));
        }
    }
    Ok(out)
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=…,
/// SignedHeaders=…, Signature=…` idmint checks.
#[derive(Debug, PartialEq, Eq)]
struct Authorization {
    access_key_id: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: String,
}

impl Authorization {
    fn parse(value: &str) -> Result<Self, AwsIamError> {
        let bad = |m: &str| AwsIamError::Malformed(format!("Authorization header: {m}"));
        let rest = value
            .strip_prefix("AWS4-HMAC-SHA256 ")
            .ok_or_else(|| bad("must use AWS4-HMAC-SHA256"))?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (k, v) = part
                .trim()
                .split_once('=')
                .ok_or_else(|| bad("expected key=value parts"))?;
            let slot = match k {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed,
                "Signature" => &mut signature,
                _ => return Err(bad("unknown part")),
            };
            if slot.replace(v).is_some() {
                return Err(bad("a part is given twice"));
            }
        }
        let credential = credential.ok_or_else(|| bad("no Credential"))?;
        let signed = signed.ok_or_else(|| bad("no SignedHeaders"))?;
        let signature = signature.ok_or_else(|| bad("no Signature"))?;
        let scope: Vec<&str> = credential.split('/').collect();
        let [key, _date, region, service, "aws4_request"] = scope.as_slice() else {
            return Err(bad(
                "Credential must be KEY/DATE/REGION/SERVICE/aws4_request",
            ));
        };
        if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("Signature must be 64 hex digits"));
        }
        Ok(Self {
            access_key_id: key.to_string(),
            region: region.to_string(),
            service: service.to_string(),
            signed_headers: signed.split(';').map(str::to_string).collect(),
            signature: signature.to_ascii_lowercase(),
        })
    }
}

/// `YYYYMMDDTHHMMSSZ` as Unix time.
fn parse_amz_date(s: &str) -> Option<UnixTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b.get(8) != Some(&b'T') || b.get(15) != Some(&b'Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(UnixTime(days * 86_400 + hh * 3600 + mm * 60 + ss))
}

/// A caller ARN as STS returns it, normalised.
#[derive(Debug, PartialEq, Eq)]
struct CallerArn {
    normalised: String,
    account: String,
    role: Option<String>,
    session: Option<String>,
    user: Option<String>,
}

impl CallerArn {
    fn parse(arn: &str) -> Result<Self, AwsIamError> {
        let bad = || AwsIamError::BadArn(truncate(arn, 256));
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let ["arn", partition, service, "", account, resource] = parts.as_slice() else {
            return Err(bad());
        };
        if account.is_empty() || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        match (*service, resource.split_once('/')) {
            // The role's path is not in a session ARN, so the form is fixed.
            ("sts", Some(("assumed-role", rest))) => {
                let (role, session) = rest.split_once('/').ok_or_else(bad)?;
                if role.is_empty() || session.is_empty() || session.contains('/') {
                    return Err(bad());
                }
                Ok(Self {
                    normalised: format!(
                        "arn:{partition}:sts::{account}:assumed-role/{role}/{session}"
                    ),
                    account: account.to_string(),
                    role: Some(role.to_string()),
                    session: Some(session.to_string()),
                    user: None,
                })
            }
            ("iam", Some(("user", path_and_name))) => {
                let name = path_and_name.rsplit('/').next().unwrap_or_default();
                if name.is_empty() {
                    return Err(bad());
                }
                Ok(Self {
                    normalised: arn.to_string(),
                    account: account.to_string(),
                    role: None,
                    session: None,
                    user: Some(name.to_string()),
                })
            }
            ("iam", None) if *resource == "root" => Ok(Self {
                normalised: arn.to_string(),
                account: account.to_string(),
                role: None,
                session: None,
                user: None,
            }),
            _ => Err(bad()),
        }
    }
}

/// Whether `arn` matches `pattern`, where `*` matches any run of characters
/// other than `/` (so `assumed-role/ci-*/*` cannot match a longer path).
pub fn arn_matches(pattern: &str, arn: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => {
                let mut i = 0;
                loop {
                    if go(rest, s.get(i..).unwrap_or_default()) {
                        return true;
                    }
                    match s.get(i) {
                        Some(b'/') | None => return false,
                        Some(_) => i += 1,
                    }
                }
            }
            Some((c, rest)) => s.split_first().is_some_and(|(h, t)| h == c && go(rest, t)),
        }
    }
    go(pattern.as_bytes(), arn.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn auth() -> AwsIamAuth {
        AwsIamAuth::new(AwsIamConfig {
            name: "aws".into(),
            region: "us-east-1".into(),
            sts_endpoint: Some("http://127.0.0.1:5000".into()),
            server_id: "https://idmint.example".into(),
            bound_arns: vec![
                "arn:aws:sts::123456789012:assumed-role/ci-*/*".into(),
                "arn:aws:iam::123456789012:user/alice".into(),
            ],
            max_skew: Ttl::clamped(300),
            session_ttl: Ttl::clamped(900),
        })
        .expect("valid config")
    }

    fn headers(signed: &str, sig: &str) -> BTreeMap<String, String> {
        let mut h = BTreeMap::new();
        h.insert(
            "Authorization".into(),
            format!("AWS4-HMAC-SHA256 Credential=AKIAX/20261123/us-east-1/sts/aws4_request, SignedHeaders={signed}, Signature={sig}"),
        );
        h.insert("X-Amz-Date".into(), "20261123T190000Z".into());
        h.insert("X-Idmint-Server-Id".into(), "https://idmint.example".into());
        h.insert(
            "Content-Type".into(),
            "application/x-www-form-urlencoded; charset=utf-8".into(),
        );
        h
    }

    const SIGNED: &str = "content-type;host;x-amz-date;x-idmint-server-id";

    fn now() -> UnixTime {
        parse_amz_date("20261123T190100Z").expect("date")
    }

    fn check(
        url: &str,
        h: &BTreeMap<String, String>,
        body: &str,
    ) -> Result<CheckedRequest, AwsIamError> {
        auth().check("POST", url, h, body.as_bytes(), now())
    }

    #[test]
    fn a_well_formed_request_is_forwarded_to_the_configured_endpoint_only() {
        let out = check(
            "http://127.0.0.1:5000/",
            &headers(SIGNED, SIG),
            GET_CALLER_IDENTITY_BODY,
        )
        .expect("accepted");
        assert_eq!(out.url, "http://127.0.0.1:5000/");
        assert_eq!(out.access_key_id, "AKIAX");
        let names: Vec<&str> = out.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "content-type",
                "x-amz-date",
                "x-idmint-server-id",
                "authorization"
            ]
        );
    }

    #[test]
    fn another_host_is_refused_without_being_called() {
        let e = check(
            "http://169.254.169.254/",
            &headers(SIGNED, SIG),
            GET_CALLER_IDENTITY_BODY,
        )
        .expect_err("ssrf");
        assert_eq!(e.code(), "wrong_sts_endpoint");
        let e = check(
            "http://127.0.0.1:5000/x?y",
            &headers(SIGNED, SIG),
            GET_CALLER_IDENTITY_BODY,
        )
        .expect_err("path");
        assert_eq!(e.code(), "wrong_sts_endpoint");
    }

    #[test]
    fn another_body_region_or_method_is_refused() {
        let h = headers(SIGNED, SIG);
        let e = check(
            "http://127.0.0.1:5000/",
            &h,
            "Action=CreateUser&Version=2010-05-08",
        )
        .expect_err("body");
        assert_eq!(e, AwsIamError::Body);
        let e = auth()
            .check(
                "GET",
                "http://127.0.0.1:5000/",
                &h,
                GET_CALLER_IDENTITY_BODY.as_bytes(),
                now(),
            )
            .expect_err("method");
        assert_eq!(e.code(), "invalid_aws_request");
        let mut h = headers(SIGNED, SIG);
        h.insert("Authorization".into(), format!("AWS4-HMAC-SHA256 Credential=AKIAX/20261123/eu-west-1/sts/aws4_request, SignedHeaders={SIGNED}, Signature={SIG}"));
        let e = check("http://127.0.0.1:5000/", &h, GET_CALLER_IDENTITY_BODY).expect_err("region");
        assert!(matches!(e, AwsIamError::WrongScope { .. }), "{e}");
    }

    #[test]
    fn the_server_id_must_be_present_equal_and_signed() {
        let mut h = headers(SIGNED, SIG);
        h.remove("X-Idmint-Server-Id");
        let e = check("http://127.0.0.1:5000/", &h, GET_CALLER_IDENTITY_BODY).expect_err("missing");
        assert!(matches!(e, AwsIamError::ServerIdMissing(_)));
        let mut h = headers(SIGNED, SIG);
        h.insert("X-Idmint-Server-Id".into(), "https://other".into());
        let e = check("http://127.0.0.1:5000/", &h, GET_CALLER_IDENTITY_BODY).expect_err("other");
        assert!(matches!(e, AwsIamError::ServerIdMismatch { .. }));
        let h = headers("content-type;host;x-amz-date", SIG);
        let e =
            check("http://127.0.0.1:5000/", &h, GET_CALLER_IDENTITY_BODY).expect_err("unsigned");
        assert_eq!(e, AwsIamError::ServerIdUnsigned);
    }

    #[test]
    fn a_stale_or_replayed_request_is_refused() {
        let a = auth();
        let h = headers(SIGNED, SIG);
        let late = UnixTime(now().secs() + 600);
        let e = a
            .check(
                "POST",
                "http://127.0.0.1:5000/",
                &h,
                GET_CALLER_IDENTITY_BODY.as_bytes(),
                late,
            )
            .expect_err("skew");
        assert!(matches!(e, AwsIamError::Skew { .. }), "{e}");
        a.check(
            "POST",
            "http://127.0.0.1:5000/",
            &h,
            GET_CALLER_IDENTITY_BODY.as_bytes(),
            now(),
        )
        .expect("first use");
        let e = a
            .check(
                "POST",
                "http://127.0.0.1:5000/",
                &h,
                GET_CALLER_IDENTITY_BODY.as_bytes(),
                now(),
            )
            .expect_err("replay");
        assert_eq!(e, AwsIamError::Replayed);
    }

    #[test]
    fn assumed_role_arns_are_normalised_and_matched_against_bound_arns() {
        let a = auth();
        let i = a
            .identity(
                "arn:aws:sts::123456789012:assumed-role/ci-deploy/run-42",
                now(),
            )
            .expect("bound");
        assert_eq!(i.kind, IdentityKind::AwsIam);
        assert_eq!(
            i.subject,
            "arn:aws:sts::123456789012:assumed-role/ci-deploy/run-42"
        );
        assert_eq!(i.attributes["role"], "ci-deploy");
        assert_eq!(i.attributes["session"], "run-42");
        assert_eq!(i.attributes["account"], "123456789012");
        let e = a
            .identity("arn:aws:sts::123456789012:assumed-role/prod-admin/x", now())
            .expect_err("unbound role");
        assert_eq!(e.code(), "arn_not_bound");
        let i = a
            .identity("arn:aws:iam::123456789012:user/alice", now())
            .expect("user");
        assert_eq!(i.attributes["user"], "alice");
        assert!(a
            .identity("arn:aws:iam::123456789012:user/mallory", now())
            .is_err());
        assert!(a.identity("not-an-arn", now()).is_err());
    }

    #[test]
    fn star_does_not_cross_a_slash() {
        assert!(arn_matches(
            "arn:aws:iam::1:user/*",
            "arn:aws:iam::1:user/bob"
        ));
        assert!(!arn_matches(
            "arn:aws:iam::1:user/*",
            "arn:aws:iam::1:user/path/bob"
        ));
        assert!(arn_matches("a*c", "abbbc"));
        assert!(!arn_matches("a*c", "abd"));
    }

    #[test]
    fn amz_dates_parse_to_unix_time() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(UnixTime(0)));
        assert_eq!(
            parse_amz_date("20150830T123600Z"),
            Some(UnixTime(1_440_938_160))
        );
        assert_eq!(parse_amz_date("2015-08-30T12:36:00Z"), None);
    }

    #[test]
    fn config_needs_server_id_and_bound_arns() {
        let mut c = auth().config().clone();
        c.server_id = " ".into();
        assert!(c.validate().is_err());
        let mut c = auth().config().clone();
        c.bound_arns.clear();
        assert!(c.validate().is_err());
        let mut c = auth().config().clone();
        c.sts_endpoint = None;
        assert_eq!(c.endpoint_url(), "https://sts.us-east-1.amazonaws.com");
        assert!(c.validate().is_ok());
    }
}
