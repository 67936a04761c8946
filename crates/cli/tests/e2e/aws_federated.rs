//! AWS `federated`: idmint is the OIDC provider. The caller gets an
//! idmint-signed JWT for `sts.amazonaws.com` (verifiable with idmint's
//! published JWKS) and trades it at STS itself; `idmint aws
//! credential-process` does that trade client-side.
//!
//! moto does not validate web-identity tokens and answers an unsigned
//! `AssumeRoleWithWebIdentity` with 500 while enforcing authentication
//! (TESTBED.md), so the exchange runs with enforcement off; the token
//! itself is checked here against idmint's discovery document and JWKS.

use crate::aws_support;
use crate::common;
use crate::db_support;

use aws_support::{setup, WEB};
use base64::Engine;
use db_support::{lease_suffix, login_app, APP_SUBJECT};
use idmint_client::proto::{Credential, CredsRequest};
use idmint_testkit::moto::AwsKey;
use idmint_testkit::Cli;
use serde_json::Value;

fn segment(jwt: &str, i: usize) -> anyhow::Result<Value> {
    let part = jwt
        .split('.')
        .nth(i)
        .ok_or_else(|| anyhow::anyhow!("not a JWT"))?;
    Ok(serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part)?,
    )?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federated_role_gets_an_idmint_jwt_for_sts_and_credential_process_trades_it(
) -> anyhow::Result<()> {
    let env = setup().await?;
    let app = login_app(&env.server, &env.jwks).await?;
    let resp = app
        .client
        .creds("aws/web", &CredsRequest::default())
        .await?;
    let Credential::AwsWebIdentity {
        token,
        role_arn,
        role_session_name,
        token_id,
        ..
    } = &resp.credential
    else {
        anyhow::bail!("expected a web identity token, got {:?}", resp.credential);
    };
    assert_eq!(role_arn, WEB);
    assert!(
        role_session_name.ends_with(&lease_suffix(&resp.lease_id)),
        "{role_session_name}"
    );
    let header = segment(token, 0)?;
    let claims = segment(token, 1)?;
    assert_eq!(header["alg"], "RS256");
    assert_eq!(claims["aud"], "sts.amazonaws.com");
    assert_eq!(claims["sub"], APP_SUBJECT);
    assert_eq!(claims["jti"], token_id.as_str());
    assert_eq!(claims["exp"], resp.expires_at);
    let discovery = app.client.discovery().await?;
    assert_eq!(claims["iss"], discovery["issuer"]);
    let jwks = app.client.jwks().await?;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .map(|k| k.iter().filter_map(|j| j["kid"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        kids.contains(&header["kid"].as_str().unwrap_or_default()),
        "{kids:?}"
    );
    assert!(env.tap.calls().is_empty(), "idmint itself calls no AWS API");

    let mut cli = Cli::new(common::bin())?;
    cli.set_env("IDMINT_ADDR", &env.server.base_url())
        .set_env("IDMINT_TOKEN", &app.session);
    let out = cli.run(&["creds", "aws/web", "-o", "env"]).await?;
    assert!(out.success(), "{}", out.summary());
    for name in [
        "IDMINT_WEB_IDENTITY_TOKEN",
        "AWS_ROLE_ARN",
        "AWS_ROLE_SESSION_NAME",
    ] {
        assert!(
            out.stdout.contains(&format!("export {name}='")),
            "{}",
            out.stdout
        );
    }

    env.moto.enforce(false).await?;
    let out = cli
        .run(&[
            "aws",
            "credential-process",
            "aws/web",
            "--sts-endpoint",
            env.moto.endpoint(),
            "--no-cache",
        ])
        .await?;
    assert!(out.success(), "{}", out.summary());
    let c: Value = serde_json::from_str(&out.stdout)?;
    let key = AwsKey::new(
        c["AccessKeyId"].as_str().unwrap_or_default(),
        c["SecretAccessKey"].as_str().unwrap_or_default(),
        c["SessionToken"].as_str(),
    );
    assert!(key.access_key_id.starts_with("ASIA"), "{c}");
    let who = env.moto.aws(&key, &["sts", "get-caller-identity"])?;
    assert!(who.success, "{who:?}");
    assert!(
        who.json()?["Arn"]
            .as_str()
            .unwrap_or_default()
            .contains(":assumed-role/web/"),
        "{who:?}"
    );
    Ok(())
}
