//! The IdP side: discovery, the authorization URL, and the token endpoint.

use super::pkce::FlowSecrets;
use super::SsoOptions;
use anyhow::{bail, Context, Result};
use idmint_client::SecretString;
use idmint_proto::sso::SsoMethod;
use serde::Deserialize;
use url::Url;

/// The parts of the OIDC discovery document the CLI uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
}

/// A token endpoint answer: tokens, or an RFC 6749 §5.2 error.
#[derive(Deserialize)]
pub struct TokenAnswer {
    #[serde(default)]
    pub id_token: Option<String>,
    /// Sent to idmint only so it can read groups from userinfo when the
    /// ID token has none; kept in memory for this login only.
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub error_description: Option<String>,
}

impl Discovery {
    pub async fn fetch(http: &reqwest::Client, issuer: &str) -> Result<Self> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let doc: Discovery = http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("fetching the IdP's discovery document {url}"))?
            .error_for_status()
            .with_context(|| format!("the IdP's discovery document {url}"))?
            .json()
            .await
            .with_context(|| format!("{url} is not an OIDC discovery document"))?;
        // RFC 8414 §3.3: the document must name the issuer we asked.
        if doc.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
            bail!(
                "{url} names issuer {:?}, not {issuer:?}: refusing to sign in there",
                doc.issuer
            );
        }
        Ok(doc)
    }

    pub fn authorization_url(
        &self,
        method: &SsoMethod,
        redirect_uri: &str,
        secrets: &FlowSecrets,
        opts: &SsoOptions,
    ) -> Result<Url> {
        let mut url = Url::parse(&self.authorization_endpoint).with_context(|| {
            format!(
                "the IdP's authorization_endpoint {:?} is not a URL",
                self.authorization_endpoint
            )
        })?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &method.client_id)
                .append_pair("response_type", "code")
                .append_pair("scope", &method.scopes.join(" "))
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("code_challenge", &secrets.challenge)
                .append_pair("code_challenge_method", "S256")
                .append_pair("state", secrets.state.expose())
                .append_pair("nonce", secrets.nonce.expose());
            if let Some(hint) = &opts.login_hint {
                q.append_pair("login_hint", hint);
            }
        }
        Ok(url)
    }

    /// Authorization code → ID token (with the PKCE verifier).
    pub async fn exchange_code(
        &self,
        http: &reqwest::Client,
        method: &SsoMethod,
        code: &str,
        redirect_uri: &str,
        secrets: &FlowSecrets,
    ) -> Result<super::SsoTokens> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", method.client_id.as_str()),
            ("code_verifier", secrets.verifier.expose()),
        ];
        let answer = self.token_request(http, &form).await?;
        match answer {
            TokenAnswer {
                id_token: Some(t),
                access_token,
                ..
            } => Ok(super::SsoTokens {
                id_token: SecretString::new(t),
                access_token: access_token.map(SecretString::new),
            }),
            TokenAnswer {
                error: Some(e),
                error_description,
                ..
            } => bail!(
                "the IdP refused the authorization code: {e}{} (codes are single-use and bound to this login)",
                error_description.map(|d| format!(" ({d})")).unwrap_or_default()
            ),
            _ => bail!("the IdP's token answer has no id_token (is `openid` among the scopes?)"),
        }
    }

    /// POSTs `form` to the token endpoint; an OAuth error body is returned
    /// as an answer, not an error, so callers can act on its code.
    pub async fn token_request(
        &self,
        http: &reqwest::Client,
        form: &[(&str, &str)],
    ) -> Result<TokenAnswer> {
        let resp = http
            .post(&self.token_endpoint)
            .form(form)
            .send()
            .await
            .with_context(|| format!("calling the IdP's token endpoint {}", self.token_endpoint))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .with_context(|| format!("reading the IdP's token answer ({status})"))?;
        serde_json::from_slice(&body).with_context(|| {
            format!("the IdP's token endpoint answered {status} with a body that is not OAuth JSON")
        })
    }
}
