//! `idmint creds ROLE --csr FILE`: an X.509-SVID for a key that never left
//! the client, through the real CLI binary and server, with the CSR and
//! key made by the real openssl CLI.

use crate::common;

use common::{bin, github_oidc, job_token};
use idmint_testkit::toml::Table;
use idmint_testkit::{Cli, IdmintServer, Idp, ServerSpec};
use serde_json::json;
use std::path::Path;

fn openssl(dir: &Path, script: &str) -> anyhow::Result<()> {
    let out = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creds_with_a_csr_certifies_the_clients_own_key() -> anyhow::Result<()> {
    let idp = Idp::start().await?;
    let mut issuer = Table::new();
    issuer.insert("name".into(), "svid".into());
    issuer.insert("trust_domain".into(), "prod.example".into());
    let mut spec =
        ServerSpec::with_oidc(vec![github_oidc(idp.issuer())]).with_issuer("x509", issuer);
    spec.roles.push_str(
        "\n[[role]]\nname = \"ci-svid\"\nissuer = \"svid\"\nmax_ttl = \"10m\"\nx509 = { spiffe_id = \"spiffe://prod.example/ci/{claims.repository_owner}\" }\n",
    );
    spec.policies.push((
        "svid.cedar".into(),
        "permit (principal, action == Action::\"issue\", resource == Role::\"ci-svid\");\n".into(),
    ));
    let server = IdmintServer::start(bin(), spec).await?;
    let url = server.base_url();
    let cli = Cli::new(bin())?;
    let token_file = cli.home().join("oidc-token");
    std::fs::write(&token_file, job_token(&idp, json!({})).await?)?;
    let login = cli
        .run(&[
            "login",
            "--token-file",
            &token_file.display().to_string(),
            "--server",
            &url,
        ])
        .await?;
    assert!(login.success(), "{}", login.summary());

    let d = cli.home();
    openssl(
        d,
        "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out svid.key
         openssl req -new -key svid.key -subj /CN=wish -addext subjectAltName=URI:spiffe://prod.example/admin -out svid.csr
         openssl req -in svid.csr -pubkey -noout > csr-pub.pem",
    )?;
    let csr = d.join("svid.csr").display().to_string();
    let out = cli
        .run(&[
            "creds", "ci-svid", "--csr", &csr, "--server", &url, "-o", "json",
        ])
        .await?;
    assert!(out.success(), "{}", out.summary());
    let resp = out.json()?;
    let c = &resp["credential"];
    assert_eq!(c["type"], "x509_svid", "{resp}");
    assert_eq!(c["spiffe_id"], "spiffe://prod.example/ci/acme", "{resp}");
    assert!(c.get("private_key_pem").is_none(), "{resp}");
    std::fs::write(
        d.join("svid.pem"),
        c["certificate_pem"].as_str().unwrap_or_default(),
    )?;
    openssl(
        d,
        "openssl x509 -in svid.pem -pubkey -noout > cert-pub.pem && cmp cert-pub.pem csr-pub.pem
         ! openssl x509 -in svid.pem -noout -text | grep -q -e wish -e spiffe://prod.example/admin",
    )?;

    // A missing file is the CLI's error, named; a non-x509 role refuses a CSR.
    let missing = d.join("nope.csr").display().to_string();
    let out = cli
        .run(&["creds", "ci-svid", "--csr", &missing, "--server", &url])
        .await?;
    assert!(
        !out.success() && out.stderr.contains("nope.csr"),
        "{}",
        out.summary()
    );
    let out = cli
        .run(&["creds", "demo-api", "--csr", &csr, "--server", &url])
        .await?;
    assert!(
        !out.success() && out.stderr.contains("only applies to x509 roles"),
        "{}",
        out.summary()
    );
    Ok(())
}
