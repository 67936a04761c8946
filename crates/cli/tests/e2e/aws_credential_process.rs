//! idmint as the AWS CLI's and Terraform's credential source: `idmint aws
//! configure-profile` writes a `credential_process` profile, the real AWS
//! CLI and Terraform (built-in S3 backend on moto, authentication
//! enforced) use it, and revoking the lease (an `iam_user` key, which AWS
//! really revokes) makes them fail.

use crate::aws_support;
use crate::common;
use crate::db_support;

use aws_support::setup;
use db_support::login_app;
use idmint_client::LeaseQuery;
use idmint_testkit::moto::tool;
use idmint_testkit::Cli;
use std::path::Path;
use std::process::{Command, Output};

/// A command with only the environment the AWS tools should see: the
/// profile file, no other AWS settings, the CLI's home and idmint session.
fn hermetic(program: &Path, cli: &Cli, config: &Path, session: &str, server: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        )
        .env("AWS_CONFIG_FILE", config)
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("HOME", cli.home())
        .env("XDG_CACHE_HOME", cli.cache_dir())
        .env("IDMINT_TOKEN", session)
        .env("IDMINT_ADDR", server)
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .env("TF_IN_AUTOMATION", "1")
        .env("CHECKPOINT_DISABLE", "1")
        .stdin(std::process::Stdio::null());
    cmd
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_and_terraform_use_idmint_and_fail_after_revocation() -> anyhow::Result<()> {
    let env = setup().await?;
    env.moto
        .admin_aws(&["s3api", "create-bucket", "--bucket", "tfstate"])?;
    let app = login_app(&env.server, &env.jwks).await?;
    let mut cli = Cli::new(common::bin())?;
    cli.set_env("IDMINT_ADDR", &env.server.base_url())
        .set_env("IDMINT_TOKEN", &app.session);
    let config = cli.home().join("aws_config");
    std::fs::write(&config, "# keep me\n[profile other]\nregion = eu-west-1\n")?;

    let out = cli
        .run_env(
            &[
                "aws",
                "configure-profile",
                "idmint",
                "--role",
                "aws/ci-user",
                "--region",
                "us-east-1",
                "--endpoint-url",
                env.moto.endpoint(),
            ],
            &[("AWS_CONFIG_FILE".into(), config.display().to_string())],
        )
        .await?;
    assert!(out.success(), "{}", out.summary());
    let written = std::fs::read_to_string(&config)?;
    assert!(
        written.starts_with("# keep me\n[profile other]\nregion = eu-west-1\n"),
        "{written}"
    );
    assert!(
        written.contains("[profile idmint]\ncredential_process = "),
        "{written}"
    );
    assert!(
        written.contains(" aws credential-process aws/ci-user "),
        "{written}"
    );
    assert!(
        written.contains(&format!("endpoint_url = {}\n", env.moto.endpoint())),
        "{written}"
    );

    let server = env.server.base_url();
    let aws = |args: &[&str]| -> anyhow::Result<Output> {
        Ok(hermetic(&tool("aws"), &cli, &config, &app.session, &server)
            .args(["--profile", "idmint"])
            .args(args)
            .args(["--output", "json"])
            .output()?)
    };
    let who = aws(&["sts", "get-caller-identity"])?;
    assert!(who.status.success(), "{}", text(&who));
    let arn = serde_json::from_slice::<serde_json::Value>(&who.stdout)?["Arn"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        arn.starts_with("arn:aws:iam::123456789012:user/idmint/"),
        "{arn}"
    );
    // The AWS CLI calls credential_process every time; the cache answers.
    let again = aws(&["sts", "get-caller-identity"])?;
    assert!(
        String::from_utf8_lossy(&again.stdout).contains(&arn),
        "{}",
        text(&again)
    );
    let leases = app
        .client
        .leases(&LeaseQuery {
            live: true,
            ..Default::default()
        })
        .await?;
    assert_eq!(leases.leases.len(), 1, "{:?}", leases.leases);
    let cache = cli.cache_dir().join("idmint").join("aws");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&cache)?.permissions().mode() & 0o777,
        0o700
    );
    for f in std::fs::read_dir(&cache)? {
        assert_eq!(f?.metadata()?.permissions().mode() & 0o777, 0o600);
    }
    // The exact credential_process output.
    let out = cli
        .run(&["aws", "credential-process", "aws/ci-user"])
        .await?;
    assert!(out.success(), "{}", out.summary());
    let v: serde_json::Value = serde_json::from_str(&out.stdout)?;
    let keys: Vec<&str> = v
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        keys,
        ["Version", "AccessKeyId", "SecretAccessKey", "Expiration"]
    );
    assert_eq!(v["Version"], 1);

    // Terraform with the built-in S3 backend, credentials from the profile.
    let tf_dir = cli.home().join("tf");
    std::fs::create_dir_all(&tf_dir)?;
    let ep = env.moto.endpoint();
    std::fs::write(
        tf_dir.join("main.tf"),
        format!(
            r#"terraform {{
  backend "s3" {{
    bucket                      = "tfstate"
    key                         = "idmint/test.tfstate"
    region                      = "us-east-1"
    profile                     = "idmint"
    endpoints                   = {{ s3 = "{ep}", sts = "{ep}", iam = "{ep}" }}
    use_path_style              = true
    skip_credentials_validation = true
    skip_region_validation      = true
    skip_requesting_account_id  = true
    skip_metadata_api_check     = true
    skip_s3_checksum            = true
    use_lockfile                = true
  }}
}}
resource "terraform_data" "marker" {{ input = "hello" }}
"#
        ),
    )?;
    let terraform = |args: &[&str]| -> anyhow::Result<Output> {
        Ok(hermetic(
            Path::new("/usr/local/bin/terraform"),
            &cli,
            &config,
            &app.session,
            &server,
        )
        .current_dir(&tf_dir)
        .env("TF_DATA_DIR", tf_dir.join(".terraform"))
        .args(args)
        .output()?)
    };
    let init = terraform(&["init", "-input=false", "-no-color"])?;
    assert!(init.status.success(), "{}", text(&init));
    let plan = terraform(&["plan", "-input=false", "-no-color"])?;
    assert!(plan.status.success(), "{}", text(&plan));
    assert!(
        String::from_utf8_lossy(&plan.stdout).contains("Plan: 1 to add"),
        "{}",
        text(&plan)
    );

    // Revoke: AWS deletes the key; the AWS CLI and Terraform now fail.
    let leases = app
        .client
        .leases(&LeaseQuery {
            live: true,
            ..Default::default()
        })
        .await?;
    // The profile's request (AWS CLI and Terraform) and the bare
    // `credential-process` call above: one lease each.
    assert_eq!(leases.leases.len(), 2, "{:?}", leases.leases);
    for l in &leases.leases {
        assert_eq!(app.client.revoke_lease(&l.id).await?.state, "revoked");
    }
    let who = aws(&["sts", "get-caller-identity"])?;
    assert!(!who.status.success(), "{}", text(&who));
    assert!(
        String::from_utf8_lossy(&who.stderr).contains("InvalidClientTokenId"),
        "{}",
        text(&who)
    );
    let init = terraform(&["init", "-input=false", "-no-color", "-reconfigure"])?;
    assert!(!init.status.success(), "{}", text(&init));
    let plan = terraform(&["plan", "-input=false", "-no-color"])?;
    assert!(!plan.status.success(), "{}", text(&plan));
    let why =
        String::from_utf8_lossy(&plan.stderr).to_string() + &String::from_utf8_lossy(&init.stderr);
    assert!(
        ["InvalidAccessKeyId", "InvalidClientTokenId", "403"]
            .iter()
            .any(|c| why.contains(c)),
        "{why}"
    );
    Ok(())
}
