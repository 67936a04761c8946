//! One field of an OpenBao/Vault KV version 2 secret.
//!
//! `GET {addr}/v1/{mount}/data/{path}` with `X-Vault-Token`; the value is
//! `data.data[field]`. The token is re-read from `token_file` at every
//! fetch so a token rotated on disk (by `bao agent`, a deploy job) is used
//! without a restart. Values are refreshed every `refresh` and, while KV
//! cannot be read, served for at most `grace` longer.

use super::cache::{FetchError, Fetched};
use crate::config::check_header_text;
use crate::sources::VaultKvSource;
use idmint_core::Secret;

/// Longest error body quoted in a message (OpenBao's errors are short JSON).
const MAX_ERROR_BODY: usize = 300;

/// A reader for one `vault_kv` source.
#[derive(Debug)]
pub struct KvReader {
    source: VaultKvSource,
    http: reqwest::Client,
}

/// Why a KV reader could not be built at startup.
#[derive(Debug, thiserror::Error)]
#[error("[secrets.{name}] vault_kv: {problem}")]
pub struct KvSetupError {
    pub name: String,
    pub problem: String,
}

impl KvReader {
    pub fn new(name: &str, source: VaultKvSource) -> Result<Self, KvSetupError> {
        let fail = |problem: String| KvSetupError {
            name: name.to_string(),
            problem,
        };
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("idmint-proxy/", env!("CARGO_PKG_VERSION")))
            .timeout(source.timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &source.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| fail(format!("cannot read ca_file {}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                fail(format!(
                    "ca_file {}: not PEM certificates: {e}",
                    ca.display()
                ))
            })?;
            if certs.is_empty() {
                return Err(fail(format!(
                    "ca_file {} holds no certificate",
                    ca.display()
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| fail(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { source, http })
    }

    /// Read the field now.
    pub async fn fetch(&self, name: &str) -> Result<Fetched<Secret<String>>, FetchError> {
        let src = &self.source;
        let url = src.url();
        let token = std::fs::read_to_string(&src.token_file).map_err(|e| {
            FetchError::refused(
                502,
                format!(
                    "[secrets.{name}] cannot read the KV token file {}: {e}",
                    src.token_file.display()
                ),
            )
        })?;
        let token = Secret::new(token.trim().to_string());
        let header = reqwest::header::HeaderValue::from_str(token.expose()).map_err(|_| {
            FetchError::refused(
                502,
                format!(
                    "[secrets.{name}] the token in {} is not a valid header value",
                    src.token_file.display()
                ),
            )
        })?;
        let response = self
            .http
            .get(&url)
            .header("X-Vault-Token", header)
            .send()
            .await
            .map_err(|e| {
                FetchError::unavailable(format!("cannot read KV secret {url}: {}", chain(&e)))
            })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            FetchError::unavailable(format!("reading KV secret {url} failed: {}", chain(&e)))
        })?;
        if !status.is_success() {
            let mut message = String::from_utf8_lossy(&body).into_owned();
            if message.len() > MAX_ERROR_BODY {
                let mut cut = MAX_ERROR_BODY;
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                message.truncate(cut);
            }
            let text = format!("KV {url} answered {status}: {}", message.trim());
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                FetchError::unavailable(text)
            } else {
                FetchError::refused(502, text)
            });
        }
        // Parse without ever quoting the body: it holds the secret.
        let parsed: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| FetchError::refused(502, format!("KV {url} did not answer with JSON")))?;
        let value = parsed
            .get("data")
            .and_then(|d| d.get("data"))
            .and_then(|d| d.get(&src.field))
            .ok_or_else(|| {
                FetchError::refused(
                    502,
                    format!(
                        "KV secret {url} has no field `{}` in its latest version (is the mount \
                         KV version 2?)",
                        src.field
                    ),
                )
            })?
            .as_str()
            .ok_or_else(|| {
                FetchError::refused(
                    502,
                    format!("field `{}` of KV secret {url} is not a string", src.field),
                )
            })?;
        let value = Secret::new(value.to_string());
        drop(parsed);
        if value.expose().is_empty() {
            return Err(FetchError::refused(
                502,
                format!("field `{}` of KV secret {url} is empty", src.field),
            ));
        }
        check_header_text(value.expose()).map_err(|problem| {
            FetchError::refused(
                502,
                format!(
                    "field `{}` of KV secret {url} {problem}; refusing to inject it",
                    src.field
                ),
            )
        })?;
        Ok(Fetched {
            value,
            refresh_in: src.refresh,
            expires_in: src.refresh + src.grace,
        })
    }
}

/// reqwest's Display omits the cause ("error sending request").
fn chain(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}
