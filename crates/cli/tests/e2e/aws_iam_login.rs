//! `[[auth.aws_iam]]` end to end against moto with authentication
//! ENFORCED: a signed `sts:GetCallerIdentity` request is the proof, moto
//! (as STS) checks the signature, idmint binds the ARN.
//!
//! Covered: an IAM user's real keys and an assumed-role session log in
//! through `idmint login --aws-iam` and Cedar sees the ARN and its parts;
//! refused with an audit event: a request for another host or region, a
//! replay, a tampered body (STS rejects the signature), a missing or
//! unsigned `X-Idmint-Server-Id`, an ARN outside `bound_arns`; and STS
//! down answers 503 naming STS.

use crate::common;
use crate::db_support;

use base64::Engine;
use common::bin;
use db_support::oidc;
use idmint_core::UnixTime;
use idmint_issuers::aws::credentials::AwsCredentials;
use idmint_issuers::aws::sigv4::{self, Options, Payload, Scope};
use idmint_testkit::audit::events_of;
use idmint_testkit::moto::{allow, trust_principal, AwsKey, Moto};
use idmint_testkit::server::write_root_key;
use idmint_testkit::{free_port, Cli, IdmintServer, ServerSpec, TestJwks};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const SERVER_ID: &str = "idmint-aws-iam-test";
const BODY: &str = "Action=GetCallerIdentity&Version=2011-06-15";
const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";
const ALICE: &str = "arn:aws:iam::123456789012:user/alice";

/// Cedar sees the ARN (subject) and its parts (attributes).
const POLICY: &str = r#"
@id("alice-gets-demo-api")
permit (principal, action == Action::"issue", resource == Role::"demo-api")
when { principal.kind == "aws_iam" && principal.subject == "arn:aws:iam::123456789012:user/alice" };

@id("ci-roles-get-short-lived")
permit (principal, action == Action::"issue", resource == Role::"short-lived")
when { principal.kind == "aws_iam" && principal has role && principal.role == "ci-deploy"
       && principal.account == "123456789012" && principal.session == "run-42" };
"#;

async fn start(jwks: &TestJwks, sts: &str) -> anyhow::Result<IdmintServer> {
    let mut spec = ServerSpec::with_oidc(vec![oidc(jwks)]);
    spec.policies = vec![("aws_iam.cedar".to_string(), POLICY.to_string())];
    let dir = tempfile::Builder::new()
        .prefix("idmint-aws-iam-")
        .tempdir()?;
    write_root_key(&dir.path().join("root.key"))?;
    let port = free_port()?;
    let config = spec.write(dir.path(), port)?;
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str(&format!(
        r#"
[[auth.aws_iam]]
name = "aws"
region = "us-east-1"
sts_endpoint = "{sts}"
server_id = "{SERVER_ID}"
bound_arns = ["{ALICE}", "arn:aws:sts::123456789012:assumed-role/ci-*/*"]
session_ttl = "3m"
"#
    ));
    std::fs::write(&config, text)?;
    let audit = dir.path().join("audit.jsonl");
    Ok(IdmintServer::start_with_config(bin(), dir, config, port, audit, vec![]).await?)
}

/// How a test request is signed and what is then changed.
struct Signing<'a> {
    host: &'a str,
    region: &'a str,
    /// `X-Idmint-Server-Id` value signed (None: not signed).
    signed_server_id: Option<&'a str>,
    /// The body signed (the request always carries [`BODY`]).
    signed_body: &'a str,
}

impl Default for Signing<'_> {
    fn default() -> Self {
        Self {
            host: "",
            region: "us-east-1",
            signed_server_id: Some(SERVER_ID),
            signed_body: BODY,
        }
    }
}

/// A login request signed with `key` as described by `s`.
fn signed(key: &AwsKey, url: &str, s: &Signing<'_>) -> Value {
    let creds = AwsCredentials::new(
        key.access_key_id.clone(),
        key.secret_access_key.clone(),
        key.session_token.clone(),
        None,
    );
    // Unique per request, as the CLI does: otherwise two requests signed in
    // the same second with the same key are the same request.
    let nonce = idmint_core::ids::random_hex(16).unwrap_or_default();
    let mut signed_headers = vec![("content-type", CONTENT_TYPE), ("x-idmint-nonce", &nonce)];
    if let Some(id) = s.signed_server_id {
        signed_headers.push(("x-idmint-server-id", id));
    }
    let sig = sigv4::sign(
        &sigv4::Request {
            method: "POST",
            host: s.host,
            path: "/",
            query: &[],
            headers: &signed_headers,
            payload: Payload::Bytes(s.signed_body.as_bytes()),
        },
        &creds,
        &Scope {
            region: s.region,
            service: "sts",
        },
        UnixTime::now(),
        Options::STANDARD,
    );
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    headers.insert("content-type".into(), CONTENT_TYPE.into());
    headers.insert("x-idmint-nonce".into(), nonce.clone());
    if let Some(id) = s.signed_server_id {
        headers.insert("x-idmint-server-id".into(), id.into());
    }
    for (n, v) in sig.headers() {
        headers.insert(n.into(), v.into());
    }
    json!({
        "auth": "aws",
        "method": "POST",
        "url": url,
        "headers": headers,
        "body": base64::engine::general_purpose::STANDARD.encode(BODY),
    })
}

async fn post(base: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
    let resp = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/aws-iam/login"))
        .json(body)
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await?))
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

/// `idmint login --aws-iam aws` with `key` in the environment.
async fn cli_login(
    base: &str,
    sts: &str,
    key: &AwsKey,
) -> anyhow::Result<(Cli, idmint_testkit::CliOutput)> {
    let mut cli = Cli::new(bin())?;
    cli.set_env("AWS_ACCESS_KEY_ID", &key.access_key_id)
        .set_env("AWS_SECRET_ACCESS_KEY", &key.secret_access_key)
        .set_env("AWS_CONFIG_FILE", "/dev/null")
        .set_env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    if let Some(t) = &key.session_token {
        cli.set_env("AWS_SESSION_TOKEN", t);
    }
    let out = cli
        .run(&[
            "login",
            "--aws-iam",
            "aws",
            "--sts-endpoint",
            sts,
            "--aws-region",
            "us-east-1",
            "--server-id",
            SERVER_ID,
            "-o",
            "json",
            "--server",
            base,
        ])
        .await?;
    Ok((cli, out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_iam_logins_bind_the_sts_arn_and_refuse_hostile_requests() -> anyhow::Result<()> {
    let mut moto = Moto::start().await?;
    let sts = moto.endpoint().to_string();
    let host = sts.trim_start_matches("http://").to_string();
    let url = format!("{sts}/");
    let alice = moto.create_user_with_key(
        "alice",
        &allow(&["sts:GetCallerIdentity", "sts:AssumeRole"]),
    )?;
    let mallory = moto.create_user_with_key("mallory", &allow(&["sts:GetCallerIdentity"]))?;
    let role = moto.create_role(
        "ci-deploy",
        &trust_principal(ALICE),
        &allow(&["sts:GetCallerIdentity"]),
    )?;
    let assumed = moto.aws(
        &alice,
        &[
            "sts",
            "assume-role",
            "--role-arn",
            &role,
            "--role-session-name",
            "run-42",
        ],
    )?;
    let assumed = assumed.json()?;
    let c = &assumed["Credentials"];
    let session_key = AwsKey::new(
        c["AccessKeyId"].as_str().unwrap_or_default(),
        c["SecretAccessKey"].as_str().unwrap_or_default(),
        c["SessionToken"].as_str(),
    );
    let jwks = TestJwks::start().await?;
    let server = start(&jwks, &sts).await?;
    let base = server.base_url();

    // The user's real keys, through the CLI: Cedar sees the ARN.
    let (alice_cli, login) = cli_login(&base, &sts, &alice).await?;
    assert!(login.success(), "{}", login.summary());
    let session = login.json()?;
    assert_eq!(session["identity"]["kind"], "aws_iam");
    assert_eq!(session["identity"]["subject"], ALICE);
    let creds = alice_cli
        .run(&["creds", "demo-api", "-o", "json", "--server", &base])
        .await?;
    assert!(
        creds.success(),
        "policy permits alice's ARN: {}",
        creds.summary()
    );
    let denied = alice_cli
        .run(&["creds", "short-lived", "--server", &base])
        .await?;
    assert!(!denied.success(), "{}", denied.summary());

    // An assumed-role session: normalised ARN, role/session/account for Cedar.
    let (role_cli, login) = cli_login(&base, &sts, &session_key).await?;
    assert!(login.success(), "{}", login.summary());
    let session = login.json()?;
    assert_eq!(
        session["identity"]["subject"],
        "arn:aws:sts::123456789012:assumed-role/ci-deploy/run-42"
    );
    let creds = role_cli
        .run(&["creds", "short-lived", "-o", "json", "--server", &base])
        .await?;
    assert!(
        creds.success(),
        "policy permits role ci-deploy: {}",
        creds.summary()
    );

    // Replayed: the same signed request logs in once.
    let once = signed(
        &alice,
        &url,
        &Signing {
            host: &host,
            ..Default::default()
        },
    );
    let (status, body) = post(&base, &once).await?;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(&base, &once).await?;
    assert_eq!((status, code(&body)), (401, "replayed"), "{body}");

    // Signed for (and naming) another host: never called.
    let other = signed(
        &alice,
        "http://127.0.0.2:9/",
        &Signing {
            host: "127.0.0.2:9",
            ..Default::default()
        },
    );
    let (status, body) = post(&base, &other).await?;
    assert_eq!((status, code(&body)), (401, "wrong_sts_endpoint"), "{body}");
    // The right URL, but signed for another region.
    let region = signed(
        &alice,
        &url,
        &Signing {
            host: &host,
            region: "eu-west-1",
            ..Default::default()
        },
    );
    let (status, body) = post(&base, &region).await?;
    assert_eq!(
        (status, code(&body)),
        (401, "invalid_aws_request"),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("eu-west-1"),
        "{body}"
    );

    // Tampered body: the signature covered another body; STS refuses it.
    let tampered = signed(
        &alice,
        &url,
        &Signing {
            host: &host,
            signed_body: "Action=GetCallerIdentity&Version=2011-06-15&Extra=1",
            ..Default::default()
        },
    );
    let (status, body) = post(&base, &tampered).await?;
    assert_eq!((status, code(&body)), (401, "sts_refused"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("SignatureDoesNotMatch"),
        "{body}"
    );

    // Server id missing, and present but not signed.
    let mut missing = signed(
        &alice,
        &url,
        &Signing {
            host: &host,
            ..Default::default()
        },
    );
    if let Some(h) = missing["headers"].as_object_mut() {
        h.remove("x-idmint-server-id");
    }
    let (status, body) = post(&base, &missing).await?;
    assert_eq!((status, code(&body)), (401, "server_id_invalid"), "{body}");
    let mut unsigned = signed(
        &alice,
        &url,
        &Signing {
            host: &host,
            signed_server_id: None,
            ..Default::default()
        },
    );
    unsigned["headers"]["x-idmint-server-id"] = json!(SERVER_ID);
    let (status, body) = post(&base, &unsigned).await?;
    assert_eq!((status, code(&body)), (401, "server_id_invalid"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("SignedHeaders"),
        "{body}"
    );

    // A valid principal outside bound_arns.
    let (_, login) = cli_login(&base, &sts, &mallory).await?;
    assert!(!login.success(), "{}", login.summary());
    assert!(login.stderr.contains("bound_arns"), "{}", login.summary());

    // Every refusal is audited with its reason.
    let audited: Vec<String> = events_of(&server.audit_events()?, "login_failed")
        .iter()
        .filter_map(|e| e["error"]["code"].as_str().map(str::to_string))
        .collect();
    for reason in [
        "replayed",
        "wrong_sts_endpoint",
        "invalid_aws_request",
        "sts_refused",
        "server_id_invalid",
        "arn_not_bound",
    ] {
        assert!(
            audited.iter().any(|c| c == reason),
            "{reason} not audited: {audited:?}"
        );
    }

    // STS down: 503, and the message names STS.
    moto.kill()?;
    let fresh = signed(
        &alice,
        &url,
        &Signing {
            host: &host,
            ..Default::default()
        },
    );
    let (status, body) = post(&base, &fresh).await?;
    assert_eq!((status, code(&body)), (503, "sts_unavailable"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("STS"),
        "{body}"
    );
    Ok(())
}
