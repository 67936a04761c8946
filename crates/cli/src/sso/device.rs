//! The device authorization grant (RFC 8628) for shells without a browser:
//! show a code and a URL, poll the token endpoint until the person
//! approved, honouring `interval` and `slow_down`, for a bounded time.

use super::idp::Discovery;
use super::SsoOptions;
use anyhow::{bail, Context, Result};
use idmint_client::SecretString;
use idmint_proto::sso::SsoMethod;
use serde::Deserialize;
use std::time::{Duration, Instant};

/// RFC 8628 §3.2: the default polling interval.
const DEFAULT_INTERVAL_SECS: u64 = 5;
/// RFC 8628 §3.5: `slow_down` adds this to the interval.
const SLOW_DOWN_SECS: u64 = 5;
/// Never poll slower than this, whatever the IdP asks.
const MAX_INTERVAL_SECS: u64 = 60;
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

#[derive(Deserialize)]
struct DeviceAuthorization {
    device_code: String,
    user_code: String,
    verification_uri: String,
    #[serde(default)]
    verification_uri_complete: Option<String>,
    expires_in: u64,
    #[serde(default)]
    interval: Option<u64>,
}

pub async fn run(
    http: &reqwest::Client,
    discovery: &Discovery,
    method: &SsoMethod,
    opts: &SsoOptions,
    max_wait: Duration,
) -> Result<super::SsoTokens> {
    let Some(endpoint) = &discovery.device_authorization_endpoint else {
        bail!(
            "the IdP {} does not offer the device flow (no device_authorization_endpoint); use the browser flow without --device",
            discovery.issuer
        );
    };
    let scope = method.scopes.join(" ");
    let mut form = vec![
        ("client_id", method.client_id.as_str()),
        ("scope", scope.as_str()),
    ];
    if let Some(hint) = &opts.login_hint {
        form.push(("login_hint", hint.as_str()));
    }
    let resp = http
        .post(endpoint)
        .form(&form)
        .send()
        .await
        .with_context(|| format!("calling the IdP's device endpoint {endpoint}"))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        bail!(
            "the IdP refused the device login ({status}): {}",
            body.chars().take(300).collect::<String>()
        );
    }
    let auth: DeviceAuthorization = resp
        .json()
        .await
        .context("the IdP's device answer is not RFC 8628 JSON")?;
    eprintln!(
        "To sign in, open {} and enter the code {}",
        auth.verification_uri, auth.user_code
    );
    if let Some(complete) = &auth.verification_uri_complete {
        eprintln!("or open: {complete}");
    }
    let limit = Duration::from_secs(auth.expires_in).min(max_wait);
    let deadline = Instant::now() + limit;
    let mut interval = auth
        .interval
        .unwrap_or(DEFAULT_INTERVAL_SECS)
        .clamp(1, MAX_INTERVAL_SECS);
    let device_code = SecretString::new(auth.device_code);
    loop {
        if Instant::now() + Duration::from_secs(interval) > deadline {
            bail!(
                "the device login was not approved within {}s; run `idmint login --sso --device` again",
                limit.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_secs(interval)).await;
        let answer = discovery
            .token_request(
                http,
                &[
                    ("grant_type", GRANT_TYPE),
                    ("device_code", device_code.expose()),
                    ("client_id", method.client_id.as_str()),
                ],
            )
            .await?;
        if let Some(t) = answer.id_token {
            return Ok(super::SsoTokens {
                id_token: SecretString::new(t),
                access_token: answer.access_token.map(SecretString::new),
            });
        }
        match answer.error.as_deref() {
            Some("authorization_pending") => {}
            Some("slow_down") => interval = (interval + SLOW_DOWN_SECS).min(MAX_INTERVAL_SECS),
            Some("access_denied") => bail!("the sign-in was denied at the IdP"),
            Some("expired_token") => {
                bail!("the device code expired before it was approved; run the login again")
            }
            Some(other) => bail!(
                "the IdP refused the device login: {other}{}",
                answer
                    .error_description
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
            None => bail!("the IdP's token answer has neither an id_token nor an error"),
        }
    }
}
