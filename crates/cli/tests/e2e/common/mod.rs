//! Shared by the end-to-end tests: the binary under test and the usual
//! server setups. Each test file includes it with `mod common;`, so items
//! one file does not use are allowed to be dead there.
#![allow(dead_code)]

use idmint_client::proto::{LoginRequest, LoginResponse};
use idmint_client::IdmintClient;
use idmint_testkit::{IdmintServer, Idp, OidcSpec, ServerSpec};
use serde_json::Value;
use std::path::Path;

/// The real `idmint` binary built for these tests.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_idmint"))
}

/// The `[[auth.oidc]]` table for the real IdP as a GitHub Actions issuer.
pub fn github_oidc(issuer: &str) -> OidcSpec {
    OidcSpec::new("github", issuer)
        .preset("github-actions")
        .set("jwks_refetch_interval", "1s")
}

/// A server trusting `idp` with the GitHub Actions preset and the test kit's
/// fixture policy.
pub async fn server_for(idp: &Idp) -> anyhow::Result<IdmintServer> {
    Ok(IdmintServer::start(
        bin(),
        ServerSpec::with_oidc(vec![github_oidc(idp.issuer())]),
    )
    .await?)
}

/// A GitHub-style token from the real IdP with the default job claims plus
/// `overrides`, audience `idmint`.
pub async fn job_token(idp: &Idp, overrides: Value) -> anyhow::Result<String> {
    Ok(idp
        .github_token("idmint", &Idp::github_claims(&overrides))
        .await?)
}

/// Log in through the client library; returns the response and a client
/// holding the session.
pub async fn login(
    server: &IdmintServer,
    token: &str,
) -> anyhow::Result<(LoginResponse, IdmintClient)> {
    let client = server.client()?;
    let resp = client
        .login(&LoginRequest {
            method: "oidc".into(),
            token: token.to_string(),
            auth: None,
            access_token: None,
        })
        .await?;
    let authed = client.with_token(resp.token.clone());
    Ok((resp, authed))
}
