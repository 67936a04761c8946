//! Certificate-mode SSH roles end to end: `idmint ssh sign` through the
//! real CLI, the certificate read back by the real `ssh-keygen -L`, and a
//! real sshd (in a private mount namespace, idmint_testkit::JitNamespace) that trusts
//! idmint's user CA: it accepts the certificate for the role's static
//! principal and refuses an expired one and one for another principal.

use crate::common;
use crate::db_support;
use crate::ssh_support;

use common::bin;
use db_support::{login_app, APP_SUBJECT};
use idmint_testkit::{
    free_port, poll_until, unix_now, Cli, CliOutput, IdmintServer, JitNamespace, SshKey, Sshd,
    SshdOptions, TestJwks,
};
use ssh_support::{principals_of, run_in, spec, ssh_keygen_l};
use std::process::Stdio;
use std::time::Duration;

/// Log in to `sshd` as `user` with `key` and the certificate line `cert`
/// (written where `key` keeps its certificate); returns (exit code, stdout).
fn ssh(sshd: &Sshd, key: &SshKey, cert: &str, user: &str) -> anyhow::Result<(i32, String)> {
    std::fs::write(key.certificate_path(), format!("{cert}\n"))?;
    let out = sshd
        .ssh_command(user, key)
        .arg("true")
        .stdin(Stdio::null())
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

/// `idmint ssh sign ROLE --public-key PUBLIC_KEY EXTRA… --server URL`.
async fn sign(
    cli: &Cli,
    url: &str,
    role: &str,
    public_key: &str,
    extra: &[&str],
) -> idmint_testkit::Result<CliOutput> {
    let mut args = vec!["ssh", "sign", role, "--public-key", public_key];
    args.extend_from_slice(extra);
    args.extend(["--server", url]);
    cli.run(&args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_mode_against_real_ssh_keygen_and_sshd() -> anyhow::Result<()> {
    let jwks = TestJwks::start().await?;
    let port = free_port()?;
    let hosts = vec![format!("{{ name = \"web-1\", address = \"127.0.0.1\", port = {port}, labels = {{ env = \"prod\" }} }}")];
    // Anomaly signals watch SSH signing like every other issuance.
    let server = IdmintServer::start(
        bin(),
        spec(&jwks, &hosts, "2s")?.with_table("anomaly", idmint_testkit::toml::Table::new()),
    )
    .await?;
    let app = login_app(&server, &jwks).await?;
    let dir = tempfile::tempdir()?;
    let user_key = SshKey::generate("user_key")?;
    let pub_path = user_key.public_key_path().display().to_string();
    let mut cli = Cli::new(bin())?;
    cli.set_env("IDMINT_TOKEN", &app.session);
    let url = server.base_url();

    // sign, JSON output
    let out = sign(&cli, &url, "ci-cert", &pub_path, &["-o", "json"]).await?;
    assert!(out.success(), "{}", out.summary());
    let signed = out.json()?;
    assert_eq!(signed["principals"], serde_json::json!(["deployer"]));
    let cert = signed["certificate"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let listing = ssh_keygen_l(dir.path(), &cert)?;
    assert!(
        listing.contains("ssh-ed25519-cert-v01@openssh.com user certificate"),
        "{listing}"
    );
    assert_eq!(principals_of(&listing), vec!["deployer"]);
    assert!(
        listing.contains(&format!("Serial: {}", signed["serial"])),
        "{listing}"
    );
    let request_id = signed["request_id"].as_str().unwrap_or_default();
    assert!(
        listing.contains(&format!("Key ID: \"{request_id} {APP_SUBJECT}\"")),
        "{listing}"
    );
    assert!(
        listing.contains("force-command /usr/bin/id -un"),
        "{listing}"
    );
    assert!(
        listing.contains(&format!(
            "Public key: ED25519-CERT {}",
            signed["key_fingerprint"].as_str().unwrap_or_default()
        )),
        "{listing}"
    );
    let anomalies: Vec<_> = server
        .audit_events()?
        .into_iter()
        .filter(|e| e["event"] == "anomaly" && e["role"] == "ci-cert")
        .collect();
    assert!(
        anomalies
            .iter()
            .any(|e| e["detail"]["kind"] == "first_role_use"),
        "first use of ci-cert by this identity is an anomaly signal: {anomalies:#?}"
    );
    let lifetime = signed["valid_before"].as_i64().unwrap_or_default() - unix_now();
    assert!(
        (290..=301).contains(&lifetime),
        "default_ttl 5m: {lifetime}"
    );

    // sign, text output: just the certificate line (for `> id-cert.pub`)
    let out = sign(&cli, &url, "ci-cert", &pub_path, &["--ttl", "1m"]).await?;
    assert!(out.success(), "{}", out.summary());
    assert!(
        out.stdout
            .trim()
            .starts_with("ssh-ed25519-cert-v01@openssh.com AAAA"),
        "{}",
        out.stdout
    );
    // a JIT role cannot be signed this way; a hostile key is refused
    let out = sign(&cli, &url, "web-deploy", &pub_path, &[]).await?;
    assert!(
        !out.success() && out.stderr.contains("not a certificate-mode"),
        "{}",
        out.summary()
    );
    let rsa = dir.path().join("rsa.pub");
    std::fs::write(&rsa, "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ== x\n")?;
    let out = sign(&cli, &url, "ci-cert", &rsa.display().to_string(), &[]).await?;
    assert!(
        !out.success() && out.stderr.contains("only ssh-ed25519"),
        "{}",
        out.summary()
    );

    // known-hosts: an @cert-authority line for the host CA
    let out = cli.run(&["ssh", "known-hosts", "--server", &url]).await?;
    assert!(out.success(), "{}", out.summary());
    let ca = server.get("/api/v1/ssh/ca").await?;
    let host_ca = ca.body["issuers"][0]["host_ca"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(out.stdout.trim(), format!("@cert-authority * {host_ca}"));
    let user_ca = ca.body["issuers"][0]["user_ca"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    // A real sshd trusting the user CA, with a static `deployer` account.
    let ns = JitNamespace::start()?;
    run_in(
        &ns,
        "useradd",
        &["-m", "-l", "-s", "/bin/sh", "-p", "*", "deployer"],
    )?;
    let user_ca_path = dir.path().join("user_ca.pub");
    std::fs::write(&user_ca_path, format!("{user_ca}\n"))?;
    let sshd = Sshd::start_with(
        &ns,
        SshdOptions {
            port: Some(port),
            ..SshdOptions::trusting(&user_ca_path)
        },
    )?;

    // Accepted for the static principal (force-command prints the login).
    let (code, stdout) = ssh(&sshd, &user_key, &cert, "deployer")?;
    assert_eq!(
        (code, stdout.as_str()),
        (0, "deployer"),
        "sshd: {}",
        sshd.log()
    );

    // Refused: a certificate for another principal.
    let out = sign(&cli, &url, "other-cert", &pub_path, &[]).await?;
    assert!(out.success(), "{}", out.summary());
    let (code, _) = ssh(&sshd, &user_key, out.stdout.trim(), "deployer")?;
    assert_eq!(
        code, 255,
        "a certificate for someoneelse must not log in as deployer"
    );

    // Refused: an expired certificate (role max_ttl 2s).
    let out = sign(&cli, &url, "short-cert", &pub_path, &["-o", "json"]).await?;
    assert!(out.success(), "{}", out.summary());
    let short = out.json()?;
    let valid_before = short["valid_before"].as_i64().unwrap_or_default();
    assert!(valid_before - unix_now() <= 2);
    poll_until(
        "the short certificate to expire",
        Duration::from_secs(10),
        || async { Ok((unix_now() > valid_before).then_some(())) },
    )
    .await?;
    let (code, _) = ssh(
        &sshd,
        &user_key,
        short["certificate"].as_str().unwrap_or_default(),
        "deployer",
    )?;
    assert_eq!(code, 255, "an expired certificate must be refused");
    let log = sshd.log();
    assert!(
        log.contains("not a listed principal") || log.contains("name is not a listed principal"),
        "{log}"
    );
    assert!(log.contains("expired"), "{log}");

    // The audit trail names every certificate with its serial.
    let events = server.audit_events()?;
    let issued: Vec<_> = idmint_testkit::audit::events_of(&events, "ssh_certificate_issued")
        .into_iter()
        .filter(|e| e["outcome"] == "success")
        .collect();
    assert_eq!(issued.len(), 4);
    assert_eq!(issued[0]["detail"]["serial"], signed["serial"]);
    assert_eq!(issued[0]["lease_id"], signed["lease_id"]);
    drop(sshd);
    drop(ns);
    Ok(())
}
