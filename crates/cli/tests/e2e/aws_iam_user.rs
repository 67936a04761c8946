//! AWS `iam_user` end to end against moto with authentication enforced:
//! a user per lease whose inline policy is the narrowed request (enforced
//! by moto), revoked by deleting its key, policy and user; and a crash
//! between `CreateAccessKey` and the lease's activation that the reaper
//! cleans up after a restart.

use crate::aws_support;
use crate::db_support;

use aws_support::{aws_key, setup, setup_with};
use db_support::{belongs_to, is_derived_username, lease, login_admin, login_app, wait_until};
use idmint_client::proto::CredsRequest;
use std::time::Duration;

const REAPER_LIMIT: Duration = Duration::from_secs(30);

fn scopes(s: &[&str]) -> CredsRequest {
    CredsRequest {
        scopes: Some(s.iter().map(|x| x.to_string()).collect()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_user_key_is_narrowed_works_and_stops_working_when_revoked() -> anyhow::Result<()> {
    let env = setup().await?;
    let app = login_app(&env.server, &env.jwks).await?;
    let resp = app.client.creds("aws/ci-user", &scopes(&["s3"])).await?;
    let (key, mode, _) = aws_key(&resp)?;
    assert_eq!(mode, "iam_user");
    assert!(key.access_key_id.starts_with("AKIA") && key.session_token.is_none());

    let users = env.moto.users_under("/idmint/")?;
    assert_eq!(users.len(), 1, "{users:?}");
    let user = &users[0];
    assert!(
        is_derived_username(user, 64) && belongs_to(user, &resp.lease_id),
        "{user}"
    );
    let create = &env.tap.calls_of("CreateUser")[0].params;
    assert_eq!(create["Path"], "/idmint/");
    assert_eq!(create["Tags.member.1.Value"], resp.lease_id);

    // The key works at once (real AWS CLI, enforcing moto) with exactly the
    // picked policy: s3 yes, iam:ListUsers (the other policy) no.
    let who = env.moto.aws(&key, &["sts", "get-caller-identity"])?;
    assert!(who.success, "{who:?}");
    assert_eq!(
        who.json()?["Arn"],
        format!("arn:aws:iam::123456789012:user/idmint/{user}")
    );
    let bucket = env
        .moto
        .aws(&key, &["s3api", "create-bucket", "--bucket", "idmint-ci"])?;
    assert!(bucket.success, "{bucket:?}");
    let denied = env.moto.aws(&key, &["iam", "list-users"])?;
    assert_eq!(
        denied.error_code().as_deref(),
        Some("AccessDenied"),
        "{denied:?}"
    );

    db_support::assert_not_logged(&env.server, &key.secret_access_key, "the secret access key")?;

    // Both policies: listing users works too.
    let both = app
        .client
        .creds("aws/ci-user", &CredsRequest::default())
        .await?;
    let (key2, _, _) = aws_key(&both)?;
    let listed = env.moto.aws(&key2, &["iam", "list-users"])?;
    assert!(listed.success, "{listed:?}");

    // Revoke: the key stops working at once and the user is gone.
    let revoked = app.client.revoke_lease(&resp.lease_id).await?;
    assert_eq!(revoked.state, "revoked");
    let after = env.moto.aws(&key, &["sts", "get-caller-identity"])?;
    assert_eq!(
        after.error_code().as_deref(),
        Some("InvalidClientTokenId"),
        "{after:?}"
    );
    assert!(!env.moto.users_under("/idmint/")?.contains(user));
    // Revoking again is fine (idempotent, NoSuchEntity = done).
    let again = app.client.revoke_lease(&resp.lease_id).await?;
    assert_eq!(again.state, "revoked");
    // The other lease's user is untouched.
    assert!(
        env.moto
            .aws(&key2, &["sts", "get-caller-identity"])?
            .success
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_create_access_key_leaves_no_orphan_after_restart() -> anyhow::Result<()> {
    let mut env = setup_with(|spec| spec.set_reaper("pending_grace", "2s")).await?;
    let app = login_app(&env.server, &env.jwks).await?;
    let admin = login_admin(&env.server, &env.jwks).await?;
    // CreateAccessKey is carried out at AWS, but idmint never hears back.
    env.tap.freeze_after("CreateAccessKey");
    let client = app.client.clone();
    let request =
        tokio::spawn(async move { client.creds("aws/ci-user", &CredsRequest::default()).await });
    env.tap.wait_frozen(Duration::from_secs(30)).await?;
    // idmint dies before it hears back (well within its 3 s AWS timeout,
    // after which it would clean up by itself).
    env.server.kill()?;
    assert!(request.await?.is_err(), "the request died with the server");
    // The user and its key exist at AWS: an orphan unless idmint reaps it.
    let users = env.moto.users_under("/idmint/")?;
    assert_eq!(users.len(), 1, "{users:?}");
    let keys = env
        .moto
        .admin_aws(&["iam", "list-access-keys", "--user-name", &users[0]])?;
    assert_eq!(keys["AccessKeyMetadata"].as_array().map(Vec::len), Some(1));

    env.server.restart().await?;
    // The pending lease names the user: the reaper revokes it.
    wait_until(
        "the reaper to delete the orphaned IAM user",
        REAPER_LIMIT,
        || async { Ok(env.moto.users_under("/idmint/")?.is_empty().then_some(())) },
    )
    .await?;
    let leases = db_support::all_leases(&admin).await?;
    let ours: Vec<_> = leases.iter().filter(|l| l.role == "aws/ci-user").collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    let l = lease(&admin, &ours[0].id).await?;
    assert_eq!(l.state, "revoked", "{l:?}");
    Ok(())
}
