//! `idmint login --aws-iam NAME`: sign an `sts:GetCallerIdentity` request
//! with the caller's AWS credentials (the standard chain, as the AWS CLI
//! resolves it) and hand it to idmint, which forwards it to STS.
//!
//! The signature covers `X-Idmint-Server-Id` so the request is good only
//! for this idmint deployment, and only once (the server remembers it).
//! The secret key never leaves this process; the request carries a
//! signature and, for session credentials, the session token (which STS
//! needs to check the signature).

use crate::args::LoginArgs;
use anyhow::{Context, Result};
use base64::Engine;
use idmint_core::UnixTime;
use idmint_issuers::aws::api::{Endpoint, QueryClient};
use idmint_issuers::aws::credentials::CredentialChain;
use idmint_issuers::aws::sigv4::{self, Options, Payload, Scope};
use idmint_proto::aws_iam::{AwsIamLoginRequest, GET_CALLER_IDENTITY_BODY, SERVER_ID_HEADER};
use std::collections::BTreeMap;
use std::time::Duration;

/// A signed random value, so that no two login requests are the same.
const NONCE_HEADER: &str = "x-idmint-nonce";
const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// The signed request for `[[auth.aws_iam]] name`.
pub async fn signed_request(
    client: &idmint_client::IdmintClient,
    name: &str,
    args: &LoginArgs,
) -> Result<AwsIamLoginRequest> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let region = args
        .aws_region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".into());
    let url = args
        .sts_endpoint
        .clone()
        .or_else(|| env("AWS_ENDPOINT_URL_STS"))
        .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
    let url = url.trim_end_matches('/').to_string();
    let server_id = args.server_id.clone().unwrap_or_else(|| client.base_url());
    let parsed = url::Url::parse(&url).with_context(|| format!("STS endpoint {url:?}"))?;
    let host = match (parsed.host_str(), parsed.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => anyhow::bail!("STS endpoint {url:?} has no host"),
    };
    let endpoint = Endpoint::new(&url, &region, "sts", "2011-06-15")
        .map_err(|e| anyhow::anyhow!("STS endpoint: {e}"))?;
    let chain = CredentialChain::resolve(args.aws_profile.as_deref(), &env)
        .map_err(|e| anyhow::anyhow!("AWS credentials: {e}"))?;
    let http = QueryClient::new(Duration::from_secs(10), 1).map_err(|e| anyhow::anyhow!(e))?;
    let creds = chain
        .current(&http, &endpoint)
        .await
        .map_err(|e| anyhow::anyhow!("AWS credentials ({}): {e}", chain.describe()))?;
    // Two logins in the same second with the same key would otherwise
    // carry the same signature, and the server refuses the second as a
    // replay; a signed nonce makes every request unique.
    let nonce = idmint_core::ids::random_hex(16)
        .map_err(|e| anyhow::anyhow!("no randomness for the login nonce: {e}"))?;
    let signed = sigv4::sign(
        &sigv4::Request {
            method: "POST",
            host: &host,
            path: "/",
            query: &[],
            headers: &[
                ("content-type", CONTENT_TYPE),
                (SERVER_ID_HEADER, server_id.as_str()),
                (NONCE_HEADER, nonce.as_str()),
            ],
            payload: Payload::Bytes(GET_CALLER_IDENTITY_BODY.as_bytes()),
        },
        &creds,
        &Scope {
            region: &region,
            service: "sts",
        },
        UnixTime::now(),
        Options::STANDARD,
    );
    let mut headers = BTreeMap::new();
    headers.insert("content-type".to_string(), CONTENT_TYPE.to_string());
    headers.insert(SERVER_ID_HEADER.to_string(), server_id);
    headers.insert(NONCE_HEADER.to_string(), nonce);
    headers.insert("host".to_string(), host);
    for (n, v) in signed.headers() {
        headers.insert(n.to_string(), v.to_string());
    }
    Ok(AwsIamLoginRequest {
        auth: name.to_string(),
        method: "POST".into(),
        url: format!("{url}/"),
        headers,
        body: base64::engine::general_purpose::STANDARD.encode(GET_CALLER_IDENTITY_BODY),
    })
}
