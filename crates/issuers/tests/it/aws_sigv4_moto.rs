//! `aws::sigv4::sign` and the Query API client against moto with
//! authentication enforced: moto recomputes every signature, so a wrong
//! canonical form, key derivation or header set is refused
//! (`SignatureDoesNotMatch`).

use idmint_core::UnixTime;
use idmint_issuers::aws::api::{Endpoint, QueryClient};
use idmint_issuers::aws::credentials::{AwsCredentials, CredentialChain};
use idmint_issuers::aws::sigv4::{self, Options, Payload, Request, Scope};
use idmint_issuers::aws::sts::{self, AssumeRoleInput, STS_VERSION};
use idmint_testkit::moto::{allow, trust_principal, Moto};
use std::time::Duration;

fn creds(k: &idmint_testkit::moto::AwsKey) -> AwsCredentials {
    AwsCredentials::new(
        k.access_key_id.clone(),
        k.secret_access_key.clone(),
        k.session_token.clone(),
        None,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_are_accepted_by_enforcing_moto_and_wrong_ones_refused() -> anyhow::Result<()> {
    let moto = Moto::start().await?;
    let client = QueryClient::new(Duration::from_secs(5), 2).map_err(anyhow::Error::msg)?;
    let sts_ep = Endpoint::new(moto.endpoint(), "us-east-1", "sts", STS_VERSION)
        .map_err(anyhow::Error::msg)?;
    let admin = creds(moto.admin());

    let arn = sts::get_caller_identity(&client, &sts_ep, &admin).await?;
    assert_eq!(arn, "arn:aws:iam::123456789012:user/admin");
    let wrong = AwsCredentials::new(admin.access_key_id(), "x", None, None);
    let e = sts::get_caller_identity(&client, &sts_ep, &wrong)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("SignatureDoesNotMatch"), "{e}");

    // Session credentials: the token is signed and checked too.
    let role = moto.create_role(
        "signer-test",
        &trust_principal("arn:aws:iam::123456789012:user/admin"),
        &allow(&["s3:*"]),
    )?;
    let session = sts::assume_role(
        &client,
        &sts_ep,
        &admin,
        &AssumeRoleInput {
            role_arn: &role,
            session_name: "sigv4-test",
            duration_seconds: 900,
            tags: &[("k".into(), "v w".into())],
            ..Default::default()
        },
    )
    .await?;
    let arn = sts::get_caller_identity(&client, &sts_ep, &session.credentials).await?;
    assert!(
        arn.ends_with(":assumed-role/signer-test/sigv4-test"),
        "{arn}"
    );
    let forged = AwsCredentials::new(
        session.credentials.access_key_id(),
        session.credentials.secret_access_key(),
        Some("forged".into()),
        None,
    );
    let e = sts::get_caller_identity(&client, &sts_ep, &forged)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("InvalidClientTokenId"), "{e}");

    // S3 rules (path as sent, x-amz-content-sha256), with a query string:
    // the egress proxy signs requests like this one.
    moto.admin_aws(&["s3api", "create-bucket", "--bucket", "sig-bucket"])?;
    let host = moto.endpoint().trim_start_matches("http://").to_string();
    let query = [("list-type", "2"), ("prefix", "a b/")];
    let signed = sigv4::sign(
        &Request {
            method: "GET",
            host: &host,
            path: "/sig-bucket",
            query: &query,
            headers: &[],
            payload: Payload::Bytes(b""),
        },
        &session.credentials,
        &Scope {
            region: "us-east-1",
            service: "s3",
        },
        UnixTime::now(),
        Options::S3,
    );
    let mut req = reqwest::Client::new().get(format!(
        "{}/sig-bucket?list-type=2&prefix={}",
        moto.endpoint(),
        sigv4::uri_encode("a b/", true)
    ));
    for (name, value) in signed.headers() {
        req = req.header(name, value);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let body = resp.text().await?;
    assert!(status.is_success(), "{status}: {body}");
    assert!(body.contains("<Name>sig-bucket</Name>"), "{body}");
    Ok(())
}

/// idmint's own credentials from a web identity (EKS IRSA style): the
/// token file is read and traded at STS. moto answers the unsigned call
/// only with enforcement off (TESTBED.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_identity_credentials_are_assumed_from_the_token_file() -> anyhow::Result<()> {
    let moto = Moto::start().await?;
    let trust = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow",
                       "Principal": {"Federated": "arn:aws:iam::123456789012:oidc-provider/idp.test"},
                       "Action": "sts:AssumeRoleWithWebIdentity"}]
    });
    let role = moto.create_role("idmint-server", &trust, &allow(&["iam:*"]))?;
    moto.enforce(false).await?;
    let token_file = moto.dir().join("token");
    std::fs::write(&token_file, "header.payload.signature\n")?;
    let file = token_file.display().to_string();
    let env = |k: &str| match k {
        "AWS_WEB_IDENTITY_TOKEN_FILE" => Some(file.clone()),
        "AWS_ROLE_ARN" => Some(role.clone()),
        "AWS_ROLE_SESSION_NAME" => Some("idmint-test".to_string()),
        _ => None,
    };
    let chain = CredentialChain::resolve(None, &env).map_err(anyhow::Error::msg)?;
    assert!(
        chain.describe().starts_with("web identity"),
        "{}",
        chain.describe()
    );
    let client = QueryClient::new(Duration::from_secs(5), 2).map_err(anyhow::Error::msg)?;
    let sts_ep = Endpoint::new(moto.endpoint(), "us-east-1", "sts", STS_VERSION)
        .map_err(anyhow::Error::msg)?;
    let c = chain
        .current(&client, &sts_ep)
        .await
        .map_err(anyhow::Error::msg)?;
    assert!(c.session_token().is_some() && c.expires_at().is_some());
    let again = chain
        .current(&client, &sts_ep)
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(
        again.access_key_id(),
        c.access_key_id(),
        "cached until near expiry"
    );
    let arn = sts::get_caller_identity(&client, &sts_ep, &c).await?;
    assert!(
        arn.ends_with(":assumed-role/idmint-server/idmint-test"),
        "{arn}"
    );
    Ok(())
}
