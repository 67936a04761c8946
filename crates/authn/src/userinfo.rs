//! Groups from the IdP's userinfo endpoint, for people whose ID token
//! carries none (IdPs that put groups only in userinfo).
//!
//! The endpoint comes from the issuer's discovery document (whose `issuer`
//! must match the configuration), under the same URL rules as the JWKS
//! (https, or http to loopback with `allow_insecure_http`). The answer must
//! be JSON (signed userinfo is not supported) and its `sub` must be the
//! verified ID token's subject: an access token of someone else cannot
//! lend its groups. Groups are read from `groups_claim` exactly like the
//! ID token's, so a malformed claim can only remove groups.

use crate::config::{check_fetch_url, OidcConfig};
use crate::error::error_chain;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use url::Url;

/// Largest discovery document or userinfo answer accepted.
const MAX_BYTES: usize = 256 * 1024;
/// Per request; a login waits for this at most twice.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum UserinfoError {
    #[error("the IdP's userinfo endpoint could not be used for groups: {0}; the login was refused because its groups are unknown, retry or ask the IdP admin to put groups in the ID token")]
    Unavailable(String),
    #[error("the userinfo answer is for subject {got:?}, not the ID token's {want:?}: the access token belongs to someone else; refusing the login")]
    SubjectMismatch { want: String, got: String },
    #[error("auth config {0:?} has no groups claim (set groups_claim or preset = \"human\")")]
    NoGroupsClaim(String),
}

/// Fetches userinfo; caches each issuer's userinfo endpoint.
pub struct Userinfo {
    http: reqwest::Client,
    endpoints: Mutex<HashMap<String, Url>>,
}

impl Default for Userinfo {
    fn default() -> Self {
        Self::new()
    }
}

impl Userinfo {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            http,
            endpoints: Mutex::new(HashMap::new()),
        }
    }

    /// The `groups` attribute value for `subject`, from userinfo called
    /// with `access_token`.
    pub async fn groups(
        &self,
        cfg: &OidcConfig,
        subject: &str,
        access_token: &str,
    ) -> Result<Vec<Value>, UserinfoError> {
        let claim = cfg
            .effective_groups_claim()
            .ok_or_else(|| UserinfoError::NoGroupsClaim(cfg.name.clone()))?;
        let endpoint = self.endpoint(cfg).await?;
        let answer = self.get(&endpoint, Some(access_token), cfg).await;
        let body = match answer {
            Ok(b) => b,
            Err(e) => {
                // The endpoint may have moved: discover again next time.
                self.endpoints
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&cfg.issuer);
                return Err(e);
            }
        };
        let doc: serde_json::Map<String, Value> = serde_json::from_slice(&body).map_err(|e| {
            UserinfoError::Unavailable(format!(
                "the answer of {endpoint} is not a JSON object ({e}); signed userinfo is not supported"
            ))
        })?;
        let sub = doc.get("sub").and_then(Value::as_str).unwrap_or_default();
        if sub != subject {
            return Err(UserinfoError::SubjectMismatch {
                want: subject.to_string(),
                got: crate::error::untrusted(sub),
            });
        }
        Ok(crate::oidc::groups_of(doc.get(claim)))
    }

    async fn endpoint(&self, cfg: &OidcConfig) -> Result<Url, UserinfoError> {
        if let Some(u) = self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&cfg.issuer)
        {
            return Ok(u.clone());
        }
        let doc_url = Url::parse(&format!(
            "{}/.well-known/openid-configuration",
            cfg.issuer.trim_end_matches('/')
        ))
        .map_err(|e| {
            UserinfoError::Unavailable(format!("issuer {:?} is not a URL: {e}", cfg.issuer))
        })?;
        let body = self.get(&doc_url, None, cfg).await?;
        #[derive(serde::Deserialize)]
        struct Discovery {
            issuer: String,
            #[serde(default)]
            userinfo_endpoint: Option<String>,
        }
        let doc: Discovery = serde_json::from_slice(&body).map_err(|e| {
            UserinfoError::Unavailable(format!("discovery document {doc_url} is not valid: {e}"))
        })?;
        if doc.issuer != cfg.issuer {
            return Err(UserinfoError::Unavailable(format!(
                "discovery document {doc_url} names issuer {:?}, not {:?}",
                crate::error::untrusted(&doc.issuer),
                cfg.issuer
            )));
        }
        let raw = doc.userinfo_endpoint.ok_or_else(|| {
            UserinfoError::Unavailable(format!(
                "discovery document {doc_url} has no userinfo_endpoint"
            ))
        })?;
        let url = Url::parse(&raw).map_err(|e| {
            UserinfoError::Unavailable(format!("userinfo_endpoint {raw:?} is not a URL: {e}"))
        })?;
        check_fetch_url(&url, cfg.allow_insecure_http).map_err(|e| {
            UserinfoError::Unavailable(format!("userinfo_endpoint {url} is refused: {e}"))
        })?;
        self.endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(cfg.issuer.clone(), url.clone());
        Ok(url)
    }

    async fn get(
        &self,
        url: &Url,
        bearer: Option<&str>,
        cfg: &OidcConfig,
    ) -> Result<Vec<u8>, UserinfoError> {
        check_fetch_url(url, cfg.allow_insecure_http)
            .map_err(|e| UserinfoError::Unavailable(format!("{url} is refused: {e}")))?;
        let mut req = self
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(TIMEOUT);
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let mut resp = req.send().await.map_err(|e| {
            UserinfoError::Unavailable(format!("GET {url} failed: {}", error_chain(&e)))
        })?;
        if !resp.status().is_success() {
            return Err(UserinfoError::Unavailable(format!(
                "GET {url} answered {}",
                resp.status()
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            UserinfoError::Unavailable(format!("reading {url} failed: {}", error_chain(&e)))
        })? {
            if body.len() + chunk.len() > MAX_BYTES {
                return Err(UserinfoError::Unavailable(format!(
                    "{url} answered more than {MAX_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
