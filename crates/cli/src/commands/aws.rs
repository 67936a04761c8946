//! `idmint aws credential-process ROLE` and `idmint aws configure-profile
//! NAME --role ROLE`: idmint as the AWS CLI's, SDKs' and Terraform's
//! credential source.

use super::{session_error, Exit};
use crate::args::{AwsCommand, AwsConfigureProfileArgs, AwsCredentialProcessArgs, GlobalArgs};
use crate::aws_process::{self, ProcessCredentials};
use crate::connection;
use crate::output::{emit, json, shell_quote};
use anyhow::{bail, Context, Result};
use idmint_core::{Ttl, UnixTime};
use idmint_issuers::aws::api::{Endpoint, QueryClient};
use idmint_issuers::aws::profile;
use idmint_issuers::aws::sts::{self, STS_VERSION};
use idmint_proto::{Credential, CredsRequest, CredsResponse};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub async fn run(global: &GlobalArgs, cmd: AwsCommand) -> Result<Exit> {
    match cmd {
        AwsCommand::CredentialProcess(args) => credential_process(global, args).await,
        AwsCommand::ConfigureProfile(args) => configure_profile(global, args),
    }
}

async fn credential_process(global: &GlobalArgs, args: AwsCredentialProcessArgs) -> Result<Exit> {
    let (client, source) = connection::authenticated(global)?;
    let refresh_before = args
        .refresh_before
        .parse::<Ttl>()
        .map_err(|e| anyhow::anyhow!("--refresh-before: {e}"))?
        .as_secs();
    let now = UnixTime::now();
    let cache = if args.no_cache {
        None
    } else {
        // The session is part of the key: another login (maybe another
        // identity) never reuses these keys.
        let session = match connection::env_token() {
            Some(t) => t,
            None => connection::cached_token(
                &connection::session_cache()?,
                &client.base_url(),
                now.secs(),
            )?,
        };
        let dir = aws_process::cache_dir(|k| std::env::var(k).ok())?;
        let scopes = args.scopes.join(" ");
        Some(aws_process::cache_file(
            &dir,
            &[
                &client.base_url(),
                &args.role,
                args.ttl.as_deref().unwrap_or(""),
                &scopes,
                args.role_arn.as_deref().unwrap_or(""),
                args.sts_endpoint.as_deref().unwrap_or(""),
                args.region.as_deref().unwrap_or(""),
                &session,
            ],
        ))
    };
    if let Some(path) = &cache {
        if let Some(cached) = aws_process::read_cached(path, now, refresh_before)? {
            emit(&cached.to_output()?)?;
            return Ok(Exit::Success);
        }
    }
    let req = CredsRequest {
        ttl: args.ttl.clone(),
        scopes: (!args.scopes.is_empty()).then(|| args.scopes.clone()),
        audience: args.role_arn.clone(),
        csr: None,
    };
    let resp = match client.creds(&args.role, &req).await {
        Ok(r) => r,
        Err(e) if e.is_denied() => {
            eprintln!("denied: {e}");
            return Ok(Exit::Denied);
        }
        Err(e) => return Err(session_error(e, &source)),
    };
    let creds = process_credentials(&resp, &args).await?;
    if let Some(path) = &cache {
        // A cache that cannot be written costs a new credential next time,
        // nothing more: warn and hand these out.
        if let Err(e) = aws_process::write_cached(path, &creds, now) {
            eprintln!("idmint: warning: cannot cache the AWS credentials: {e:#}");
        }
    }
    emit(&creds.to_output()?)?;
    Ok(Exit::Success)
}

/// The `credential_process` form of a creds response; a web-identity token
/// is exchanged at STS first.
async fn process_credentials(
    resp: &CredsResponse,
    args: &AwsCredentialProcessArgs,
) -> Result<ProcessCredentials> {
    match &resp.credential {
        Credential::Aws {
            access_key_id,
            secret_access_key,
            session_token,
            expiration,
            ..
        } => Ok(ProcessCredentials {
            version: 1,
            access_key_id: access_key_id.clone(),
            secret_access_key: secret_access_key.clone(),
            session_token: session_token.clone(),
            expiration: expiration.clone(),
        }),
        Credential::AwsWebIdentity {
            token,
            role_arn,
            role_session_name,
            region,
            ..
        } => {
            let region = args
                .region
                .clone()
                .or_else(|| region.clone())
                .unwrap_or_else(|| "us-east-1".into());
            let url = args
                .sts_endpoint
                .clone()
                .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
            let endpoint = Endpoint::new(&url, &region, "sts", STS_VERSION)
                .map_err(|e| anyhow::anyhow!("--sts-endpoint {e}"))?;
            let client =
                QueryClient::new(Duration::from_secs(20), 1).map_err(|e| anyhow::anyhow!(e))?;
            let duration = resp.ttl_seconds.clamp(900, 43_200);
            let session = sts::assume_role_with_web_identity(
                &client,
                &endpoint,
                role_arn,
                role_session_name,
                token,
                Some(duration),
            )
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "AWS STS at {url} refused AssumeRoleWithWebIdentity for {role_arn}: {e}"
                )
            })?;
            let c = session.credentials;
            Ok(ProcessCredentials {
                version: 1,
                access_key_id: c.access_key_id().to_string(),
                secret_access_key: c.secret_access_key().to_string(),
                session_token: c.session_token().map(str::to_string),
                expiration: c
                    .expires_at()
                    .map(UnixTime::rfc3339)
                    .context("STS answered without an expiration")?,
            })
        }
        _ => bail!(
            "role {} issues another kind of credential, not AWS keys; use `idmint creds {}`",
            resp.role,
            resp.role
        ),
    }
}

/// Words of the `credential_process` line; quoted only where needed, in
/// the POSIX shell syntax the AWS CLI splits with.
fn command_line(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/._-=:@,+".contains(c))
            {
                w.clone()
            } else {
                shell_quote(w)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn configure_profile(global: &GlobalArgs, args: AwsConfigureProfileArgs) -> Result<Exit> {
    let valid_name = !args.name.is_empty()
        && args
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@+".contains(c));
    if !valid_name {
        bail!(
            "profile name {:?} must be letters, digits and -_.@+",
            args.name
        );
    }
    let path = match &args.config_file {
        Some(p) => p.clone(),
        None => {
            let home = std::env::var_os("HOME").context("HOME is not set; pass --config-file")?;
            PathBuf::from(home).join(".aws").join("config")
        }
    };
    let exe =
        std::env::current_exe().context("finding the idmint binary for credential_process")?;
    let mut words = vec![
        exe.to_string_lossy().into_owned(),
        "--server".into(),
        global.server.clone(),
    ];
    if let Some(ca) = &global.ca_cert {
        let abs =
            std::fs::canonicalize(ca).with_context(|| format!("--ca-cert {}", ca.display()))?;
        words.extend(["--ca-cert".into(), abs.to_string_lossy().into_owned()]);
    }
    words.extend(["aws".into(), "credential-process".into(), args.role.clone()]);
    if let Some(t) = &args.ttl {
        words.extend(["--ttl".into(), t.clone()]);
    }
    for s in &args.scopes {
        words.extend(["--scope".into(), s.clone()]);
    }
    if let Some(a) = &args.role_arn {
        words.extend(["--role-arn".into(), a.clone()]);
    }
    if let Some(e) = &args.endpoint_url {
        words.extend(["--sts-endpoint".into(), e.clone()]);
    }
    if let Some(r) = &args.region {
        words.extend(["--region".into(), r.clone()]);
    }
    let line = command_line(&words);
    let mut values: Vec<(&str, Option<&str>)> = vec![("credential_process", Some(&line))];
    if let Some(r) = &args.region {
        values.push(("region", Some(r)));
    }
    if let Some(e) = &args.endpoint_url {
        values.push(("endpoint_url", Some(e)));
    }
    if values
        .iter()
        .any(|(_, v)| v.is_some_and(|v| v.contains(['\n', '\r', '\0'])))
    {
        bail!("values written to the AWS config file must not contain line breaks or NUL");
    }
    let existing = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let updated = profile::upsert_profile(
        &existing,
        &profile::config_section_name(&args.name),
        &values,
    );
    replace_file(&path, updated.as_bytes())?;
    match global.output {
        crate::args::OutputFormat::Json => emit(&json(&serde_json::json!({
            "profile": args.name,
            "config_file": path,
            "credential_process": line,
        }))?)?,
        _ => emit(&format!(
            "profile {} in {} now gets credentials from idmint (role {})\n  try: aws --profile {} sts get-caller-identity\n",
            args.name,
            path.display(),
            args.role,
            args.name
        ))?,
    }
    Ok(Exit::Success)
}

/// Replace `path` atomically (temporary file in the same directory, then
/// rename), keeping its permissions, or 0600 for a new file.
fn replace_file(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    crate::session::create_private_dir(&dir)?;
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0o600)
    };
    let tmp = dir.join(format!(
        ".{}.idmint-{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        idmint_core::ids::random_hex(6).map_err(|e| anyhow::anyhow!("random: {e}"))?
    ));
    let result = (|| -> Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(mode);
        }
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(data)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_survive_the_aws_cli_split() {
        let words: Vec<String> = [
            "/opt/id mint/idmint",
            "--server",
            "http://127.0.0.1:8710",
            "aws",
            "x'y",
            "",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let line = command_line(&words);
        assert_eq!(
            line,
            "'/opt/id mint/idmint' --server http://127.0.0.1:8710 aws 'x'\\''y' ''"
        );
        assert_eq!(
            idmint_issuers::aws::credentials::split_command(&line).unwrap(),
            words
        );
    }

    #[test]
    fn replace_file_keeps_mode_and_content_is_whole() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join("config");
        replace_file(&p, b"a").unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        replace_file(&p, b"b").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"b");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(
            std::fs::read_dir(p.parent().unwrap()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
