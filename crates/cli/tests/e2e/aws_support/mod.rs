//! Shared by the AWS end-to-end tests (`aws_*.rs`): a real moto with
//! authentication enforced, idmint's own IAM principal in it, the roles
//! idmint assumes, and an idmint server whose `[[issuer.aws]]` talks to
//! moto, directly or through an [`AwsTap`] that records every call.
//!
//! Each test file includes it with `mod aws_support;` (and `mod
//! db_support;` for the callers and the Cedar policy).
#![allow(dead_code)]

use crate::common::bin;
use crate::db_support::{toml_table, POLICY};
use idmint_client::proto::{Credential, CredsResponse};
use idmint_testkit::aws_tap::AwsTap;
use idmint_testkit::moto::{allow, trust_principal, AwsKey, Moto};
use idmint_testkit::{IdmintServer, ServerSpec, TestJwks};

pub const ACCOUNT: &str = "123456789012";
pub const DEPLOYER: &str = "arn:aws:iam::123456789012:role/deployer";
pub const DEPLOYER_B: &str = "arn:aws:iam::123456789012:role/deployer-b";
/// A role idmint's principal may assume, but no idmint role lists.
pub const OTHER: &str = "arn:aws:iam::123456789012:role/other";
pub const WEB: &str = "arn:aws:iam::123456789012:role/web";
pub const EXTERNAL_ID: &str = "idmint-test-external-id";

const S3_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","sts:GetCallerIdentity"],"Resource":"*"}]}"#;
const LIST_USERS_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:ListUsers","Resource":"*"}]}"#;

/// `roles.toml`: one role per mode. The policies are named; a request
/// picks a subset with its scopes.
pub fn roles() -> String {
    format!(
        r#"
[[role]]
name = "aws/deploy"
issuer = "aws"
max_ttl = "1h"
default_ttl = "15m"
scopes = ["s3", "list-users"]
[role.aws]
mode = "assumed_role"
role_arns = ["{DEPLOYER}", "{DEPLOYER_B}"]
session_tags = {{ repo = "{{claims.repository}}", actor = "{{claims.actor}}" }}
[role.aws.policies]
s3 = '{S3_POLICY}'
list-users = '{LIST_USERS_POLICY}'

# Tags from a claim CI tokens do not carry.
[[role]]
name = "aws/team"
issuer = "aws"
max_ttl = "1h"
[role.aws]
mode = "assumed_role"
role_arns = ["{DEPLOYER}"]
session_tags = {{ team = "{{claims.team}}" }}

[[role]]
name = "aws/ci-user"
issuer = "aws"
max_ttl = "1h"
default_ttl = "10m"
scopes = ["s3", "list-users"]
[role.aws]
mode = "iam_user"
[role.aws.policies]
s3 = '{S3_POLICY}'
list-users = '{LIST_USERS_POLICY}'

[[role]]
name = "aws/web"
issuer = "aws"
max_ttl = "15m"
default_ttl = "5m"
[role.aws]
mode = "federated"
role_arns = ["{WEB}"]
"#
    )
}

/// What idmint's own principal needs (the documented minimum, on `*`
/// because moto does not match IAM resource ARNs).
pub fn broker_policy() -> serde_json::Value {
    allow(&[
        "sts:AssumeRole",
        "sts:TagSession",
        "sts:SetSourceIdentity",
        "iam:CreateUser",
        "iam:TagUser",
        "iam:GetUser",
        "iam:PutUserPolicy",
        "iam:AttachUserPolicy",
        "iam:CreateAccessKey",
        "iam:ListAccessKeys",
        "iam:DeleteAccessKey",
        "iam:ListUserPolicies",
        "iam:DeleteUserPolicy",
        "iam:ListAttachedUserPolicies",
        "iam:DetachUserPolicy",
        "iam:DeleteUser",
    ])
}

pub struct AwsEnv {
    pub moto: Moto,
    pub tap: AwsTap,
    pub broker: AwsKey,
    pub jwks: TestJwks,
    pub server: IdmintServer,
}

/// moto (enforcing) with idmint's principal and the roles, a tap in front
/// of it, and an idmint server using the tap as its AWS endpoint.
pub async fn setup() -> anyhow::Result<AwsEnv> {
    setup_with(|spec| spec).await
}

pub async fn setup_with(adjust: impl FnOnce(ServerSpec) -> ServerSpec) -> anyhow::Result<AwsEnv> {
    let moto = Moto::start().await?;
    let broker = moto.create_user_with_key("idmint-broker", &broker_policy())?;
    let broker_arn = format!("arn:aws:iam::{ACCOUNT}:user/idmint-broker");
    let role_policy = allow(&["s3:*", "sts:GetCallerIdentity"]);
    for name in ["deployer", "deployer-b", "other"] {
        moto.create_role(name, &trust_principal(&broker_arn), &role_policy)?;
    }
    let web_trust = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Federated": format!("arn:aws:iam::{ACCOUNT}:oidc-provider/idmint.test")},
                       "Action": "sts:AssumeRoleWithWebIdentity"}]
    });
    moto.create_role("web", &web_trust, &role_policy)?;
    let tap = AwsTap::start(moto.endpoint()).await?;
    let jwks = TestJwks::start().await?;
    let issuer = toml_table(&format!(
        r#"
name = "aws"
region = "us-east-1"
endpoint = "{}"
external_id = "{EXTERNAL_ID}"
timeout = "3s"
"#,
        tap.endpoint()
    ))?;
    let mut spec =
        ServerSpec::with_oidc(vec![crate::db_support::oidc(&jwks)]).with_issuer("aws", issuer);
    spec.roles = roles();
    spec.policies = vec![("aws.cedar".to_string(), POLICY.to_string())];
    spec.env = vec![
        ("AWS_ACCESS_KEY_ID".into(), broker.access_key_id.clone()),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            broker.secret_access_key.clone(),
        ),
        ("AWS_CONFIG_FILE".into(), "/dev/null".into()),
        ("AWS_SHARED_CREDENTIALS_FILE".into(), "/dev/null".into()),
    ];
    let spec = adjust(spec);
    let server = IdmintServer::start(bin(), spec).await?;
    Ok(AwsEnv {
        moto,
        tap,
        broker,
        jwks,
        server,
    })
}

/// The AWS keys of a creds response; fails on any other kind.
pub fn aws_key(resp: &CredsResponse) -> anyhow::Result<(AwsKey, String, String)> {
    match &resp.credential {
        Credential::Aws {
            access_key_id,
            secret_access_key,
            session_token,
            mode,
            expiration,
            ..
        } => Ok((
            AwsKey::new(access_key_id, secret_access_key, session_token.as_deref()),
            mode.clone(),
            expiration.clone(),
        )),
        other => anyhow::bail!("expected AWS keys, got {other:?}"),
    }
}
