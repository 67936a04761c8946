//! `idmint login --sso`: a person signs in at the company IdP and the CLI
//! logs in to idmint with the resulting ID token.
//!
//! Where the code is exchanged: here, in the CLI. The CLI is the OAuth
//! client (public, native, PKCE per RFC 8252/7636), so it holds the code
//! verifier, checks `state` (CSRF on the loopback redirect) and `nonce`
//! (the ID token belongs to *this* login), and then uses the ordinary OIDC
//! login of the server, which verifies the ID token like any other. The
//! server needs no client secret and no per-login state.
//!
//! Two flows: authorization code + PKCE with a loopback redirect
//! (`127.0.0.1:<random port>`, [`loopback`]), and the device grant for
//! shells without a browser ([`device`]).

mod device;
mod idp;
mod loopback;
mod pkce;

pub use idp::Discovery;

use anyhow::{bail, Context, Result};
use idmint_client::SecretString;
use idmint_proto::sso::SsoMethod;
use std::time::Duration;

/// How long a person has to finish signing in in the browser.
const BROWSER_WAIT: Duration = Duration::from_secs(300);
/// Upper bound on a device-code wait, whatever the IdP's `expires_in`.
const DEVICE_MAX_WAIT: Duration = Duration::from_secs(900);
/// Timeout of each request to the IdP.
const IDP_TIMEOUT: Duration = Duration::from_secs(15);

/// How the person signs in.
#[derive(Debug, Clone)]
pub struct SsoOptions {
    /// Device grant instead of the browser flow.
    pub device: bool,
    /// Only print the URL; do not run `xdg-open`/`$BROWSER`.
    pub no_browser: bool,
    /// Passed to the IdP as `login_hint` (pre-fills the user name).
    pub login_hint: Option<String>,
}

/// What a finished SSO flow yields: the ID token (the proof idmint
/// verifies) and, when the IdP issued one, the access token (idmint uses it
/// only for groups from userinfo). Both live in memory only.
pub struct SsoTokens {
    pub id_token: SecretString,
    pub access_token: Option<SecretString>,
}

/// Runs the chosen flow against `method`'s IdP and returns its tokens.
pub async fn id_token(method: &SsoMethod, opts: &SsoOptions) -> Result<SsoTokens> {
    let http = reqwest::Client::builder()
        .user_agent(idmint_client::USER_AGENT)
        .timeout(IDP_TIMEOUT)
        // The IdP's token and device endpoints never redirect; following
        // one could leak the code or the verifier.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the HTTP client for the IdP")?;
    let discovery = Discovery::fetch(&http, &method.issuer).await?;
    if opts.device {
        device::run(&http, &discovery, method, opts, DEVICE_MAX_WAIT).await
    } else {
        browser_flow(&http, &discovery, method, opts).await
    }
}

async fn browser_flow(
    http: &reqwest::Client,
    discovery: &Discovery,
    method: &SsoMethod,
    opts: &SsoOptions,
) -> Result<SsoTokens> {
    let listener = loopback::Listener::bind().await?;
    let redirect_uri = listener.redirect_uri();
    let params = pkce::FlowSecrets::generate()?;
    let url = discovery.authorization_url(method, &redirect_uri, &params, opts)?;
    eprintln!("Sign in at {} in your browser:\n{url}", method.issuer);
    if !opts.no_browser && open_browser(url.as_str()) {
        eprintln!(
            "(opened your browser; waiting up to {}s)",
            BROWSER_WAIT.as_secs()
        );
    }
    let callback = listener.wait(BROWSER_WAIT).await?;
    // CSRF / mix-up defence: the redirect must carry the state we sent.
    let state_ok = callback.state.as_deref().is_some_and(|s| {
        idmint_core::secret::ct_eq(s.as_bytes(), params.state.expose().as_bytes())
    });
    if !state_ok {
        bail!("the sign-in redirect carried a different `state` than this login sent: refusing it (a forged or stale redirect; start `idmint login --sso` again)");
    }
    if let Some(err) = callback.error {
        bail!(
            "the IdP refused the sign-in: {err}{}",
            callback
                .error_description
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        );
    }
    let Some(code) = callback.code else {
        bail!("the sign-in redirect has no authorization code");
    };
    let tokens = discovery
        .exchange_code(http, method, &code, &redirect_uri, &params)
        .await?;
    check_nonce(&tokens.id_token, params.nonce.expose())?;
    Ok(tokens)
}

/// The ID token must carry the nonce this login sent: a token injected
/// from another login (a replayed or swapped code) fails here.
fn check_nonce(id_token: &SecretString, nonce: &str) -> Result<()> {
    let claims = crate::jwt::unverified_claims(id_token.expose())
        .context("the IdP's id_token is not a JWT")?;
    let got = claims.get("nonce").and_then(|v| v.as_str()).unwrap_or("");
    if !idmint_core::secret::ct_eq(got.as_bytes(), nonce.as_bytes()) {
        bail!("the IdP's id_token does not carry this login's nonce: refusing it");
    }
    Ok(())
}

/// Opens `url` with `$BROWSER` or `xdg-open` when one exists; returns
/// whether a browser was started. Never fails the login: the URL is
/// printed anyway.
fn open_browser(url: &str) -> bool {
    let program = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join("xdg-open"))
                    .find(|p| p.is_file())
                    .map(|p| p.display().to_string())
            })
        });
    let Some(program) = program else {
        return false;
    };
    std::process::Command::new(program)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_ok()
}

/// Picks the SSO method: by name, or the only one the server has.
pub fn choose<'a>(methods: &'a [SsoMethod], name: Option<&str>) -> Result<&'a SsoMethod> {
    let names = || {
        methods
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (name, methods) {
        (_, []) => bail!("the server has no SSO login method (an [[auth.oidc]] with preset = \"human\"); log in with a token instead"),
        (Some(n), _) => methods
            .iter()
            .find(|m| m.name == n)
            .with_context(|| format!("the server has no SSO method {n:?}; it has: {}", names())),
        (None, [only]) => Ok(only),
        (None, _) => bail!("the server has several SSO methods ({}); pick one with --sso NAME", names()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method(name: &str) -> SsoMethod {
        SsoMethod {
            name: name.into(),
            issuer: "https://idp.example".into(),
            client_id: "cli".into(),
            scopes: vec!["openid".into()],
        }
    }

    #[test]
    fn chooses_by_name_or_the_only_one() {
        let one = [method("corp")];
        assert_eq!(choose(&one, None).unwrap().name, "corp");
        let two = [method("corp"), method("partner")];
        assert_eq!(choose(&two, Some("partner")).unwrap().name, "partner");
        let e = choose(&two, None).unwrap_err().to_string();
        assert!(
            e.contains("--sso NAME") && e.contains("corp, partner"),
            "{e}"
        );
        assert!(choose(&[], None).is_err());
        assert!(choose(&two, Some("x")).is_err());
    }

    #[test]
    fn nonce_must_match() {
        use base64::Engine;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"nonce":"n1"}"#);
        let token = SecretString::new(format!("e30.{payload}.sig"));
        assert!(check_nonce(&token, "n1").is_ok());
        assert!(check_nonce(&token, "n2").is_err());
        let none = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{}"#);
        assert!(check_nonce(&SecretString::new(format!("e30.{none}.sig")), "n1").is_err());
    }
}
