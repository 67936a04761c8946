//! `idmint ssh [ROLE@]HOST [-- CMD…]`, `idmint ssh known-hosts`,
//! `idmint ssh sign`, `idmint ssh host-token`.

use super::{session_error, text_or_json, Exit, Format};
use crate::args::GlobalArgs;
use crate::connection;
use crate::output::{emit, json, key_value_table, time_with_relative};
use crate::ssh_args::{HostTokenArgs, KnownHostsArgs, SshArgs, SshCommand, SshSignArgs};
use anyhow::{bail, Context, Result};
use idmint_client::SshKeyPair;
use idmint_core::UnixTime;
use idmint_proto::ssh::{SshSessionRequest, SshSessionResponse, SshSignRequest};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub async fn run(global: &GlobalArgs, args: SshArgs) -> Result<Exit> {
    match args.command {
        Some(SshCommand::KnownHosts(a)) => known_hosts(global, a).await,
        Some(SshCommand::Sign(a)) => {
            sign(global, text_or_json(global.output, "ssh sign")?, a).await
        }
        Some(SshCommand::HostToken(a)) => {
            host_token(global, text_or_json(global.output, "ssh host-token")?, a).await
        }
        None => connect(global, args).await,
    }
}

/// `ROLE@HOST` or `HOST`.
fn split_target(target: &str) -> Result<(Option<String>, String)> {
    let (role, host) = match target.split_once('@') {
        Some((r, h)) => (Some(r.to_string()), h.to_string()),
        None => (None, target.to_string()),
    };
    if host.is_empty() || role.as_deref() == Some("") {
        bail!("{target:?} is not [ROLE@]HOST (e.g. web-1 or deploy@web-1)");
    }
    Ok((role, host))
}

/// The private directory holding one session's key, certificate and
/// known_hosts. Dropping it overwrites the key file, then removes all.
struct SessionFiles {
    dir: Option<tempfile::TempDir>,
    key: PathBuf,
    cert: PathBuf,
    known_hosts: PathBuf,
    key_len: usize,
}

fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)
        .with_context(|| format!("writing {}", path.display()))
}

impl SessionFiles {
    fn create(key: &SshKeyPair, resp: &SshSessionResponse) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("idmint-ssh-")
            .tempdir()
            .context("creating a private temporary directory")?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .context("making the temporary directory private")?;
        let pem = key.private_key_pem(&format!("idmint {}", resp.lease_id))?;
        let files = Self {
            key: dir.path().join("id_ed25519"),
            cert: dir.path().join("id_ed25519-cert.pub"),
            known_hosts: dir.path().join("known_hosts"),
            key_len: pem.len(),
            dir: Some(dir),
        };
        write_private(&files.key, pem.as_bytes())?;
        write_private(&files.cert, format!("{}\n", resp.certificate).as_bytes())?;
        write_private(
            &files.known_hosts,
            format!("{}\n", resp.known_hosts).as_bytes(),
        )?;
        Ok(files)
    }

    /// Keep the files (for `--print`): the caller reports where they are.
    fn keep(&mut self) -> Option<PathBuf> {
        self.dir.take().map(|d| d.keep())
    }
}

impl Drop for SessionFiles {
    fn drop(&mut self) {
        if self.dir.is_none() {
            return;
        }
        // Overwrite the key before unlinking, so its bytes do not linger in
        // free blocks of a persistent /tmp.
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&self.key) {
            let _ = f.write_all(&vec![0u8; self.key_len]);
            let _ = f.sync_all();
        }
        let _ = std::fs::remove_file(&self.key);
        // The TempDir drop removes the rest.
    }
}

fn ssh_command(resp: &SshSessionResponse, files: &SessionFiles, args: &SshArgs) -> Vec<String> {
    let opt = |k: &str, v: &Path| format!("{k}={}", v.display());
    let mut cmd = vec![
        "ssh".to_string(),
        "-F".into(),
        "none".into(),
        "-i".into(),
        files.key.display().to_string(),
        "-o".into(),
        opt("CertificateFile", &files.cert),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        "-o".into(),
        "IdentityAgent=none".into(),
        "-o".into(),
        opt("UserKnownHostsFile", &files.known_hosts),
        "-o".into(),
        "GlobalKnownHostsFile=/dev/null".into(),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-p".into(),
        resp.port.to_string(),
    ];
    for o in &args.ssh_options {
        cmd.push("-o".into());
        cmd.push(o.clone());
    }
    cmd.push("--".into());
    cmd.push(format!("{}@{}", resp.account, resp.address));
    cmd.extend(args.remote_command.iter().cloned());
    cmd
}

async fn connect(global: &GlobalArgs, args: SshArgs) -> Result<Exit> {
    let Some(target) = args.target.as_deref() else {
        bail!("name a host: idmint ssh [ROLE@]HOST (see --help)");
    };
    let (role, host) = split_target(target)?;
    let (client, source) = connection::authenticated(global)?;
    let key = SshKeyPair::generate()?;
    let req = SshSessionRequest {
        host,
        role,
        public_key: key.public_key_openssh(None),
        ttl: args.ttl.clone(),
    };
    let resp = match client.ssh_session(&req).await {
        Ok(r) => r,
        Err(e) if e.is_denied() => return Ok(super::denied(&e)),
        Err(e) => return Err(session_error(e, &source)),
    };
    let mut files = SessionFiles::create(&key, &resp)?;
    let cmd = ssh_command(&resp, &files, &args);
    if args.print {
        let dir = files.keep();
        let mut out = String::new();
        out.push_str(&key_value_table(&[
            ("Lease", resp.lease_id.clone()),
            (
                "Host",
                format!("{} ({}:{})", resp.host, resp.address, resp.port),
            ),
            ("Account", resp.account.clone()),
            ("Role", resp.role.clone()),
            (
                "Expires",
                time_with_relative(resp.expires_at, UnixTime::now().secs()),
            ),
            (
                "Files",
                dir.map(|d| d.display().to_string()).unwrap_or_default(),
            ),
        ]));
        out.push('\n');
        out.push_str(&cmd.join(" "));
        emit(&out)?;
        return Ok(Exit::Success);
    }
    eprintln!(
        "idmint: {} on {} as {} until {} (lease {})",
        resp.role,
        resp.host,
        resp.account,
        UnixTime(resp.expires_at).rfc3339(),
        resp.lease_id
    );
    let mut child = tokio::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .spawn()
        .context("running ssh (is the OpenSSH client installed?)")?;
    // ssh shares our terminal and process group, so it gets Ctrl-C itself;
    // listening here keeps idmint alive until ssh exits, so the files are
    // always removed.
    let status = loop {
        tokio::select! {
            s = child.wait() => break s.context("waiting for ssh")?,
            _ = tokio::signal::ctrl_c() => continue,
        }
    };
    drop(files);
    let code = status
        .code()
        .or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            status.signal().map(|s| 128 + s)
        })
        .unwrap_or(255);
    Ok(Exit::Code(u8::try_from(code).unwrap_or(255)))
}

async fn known_hosts(global: &GlobalArgs, args: KnownHostsArgs) -> Result<Exit> {
    let client = connection::anonymous(global)?;
    let cas = client.ssh_ca().await?;
    if matches!(global.output, crate::args::OutputFormat::Json) {
        emit(&json(&cas)?)?;
        return Ok(Exit::Success);
    }
    if cas.issuers.is_empty() {
        bail!("{} has no ssh issuer configured", client.base_url());
    }
    let lines: Vec<String> = cas
        .issuers
        .iter()
        .map(|c| format!("@cert-authority {} {}", args.hosts, c.host_ca))
        .collect();
    emit(&lines.join("\n"))?;
    Ok(Exit::Success)
}

fn read_public_key(path: &Path) -> Result<String> {
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .take(64 * 1024)
            .read_to_string(&mut text)
            .context("reading the public key from stdin")?;
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(64 * 1024).read_to_string(&mut text))
            .with_context(|| format!("reading the public key {}", path.display()))?;
    }
    let line = text.trim();
    if line.contains("PRIVATE KEY") {
        bail!("{} is a private key: pass the .pub file", path.display());
    }
    Ok(line.to_string())
}

async fn sign(global: &GlobalArgs, format: Format, args: SshSignArgs) -> Result<Exit> {
    let public_key = read_public_key(&args.public_key)?;
    let (client, source) = connection::authenticated(global)?;
    let req = SshSignRequest {
        public_key,
        ttl: args.ttl,
    };
    let resp = match client.ssh_sign(&args.role, &req).await {
        Ok(r) => r,
        Err(e) if e.is_denied() => return Ok(super::denied(&e)),
        Err(e) => return Err(session_error(e, &source)),
    };
    match format {
        Format::Json => emit(&json(&resp)?)?,
        Format::Text => emit(&resp.certificate)?,
    }
    Ok(Exit::Success)
}

async fn host_token(global: &GlobalArgs, format: Format, args: HostTokenArgs) -> Result<Exit> {
    let (client, source) = connection::authenticated(global)?;
    let resp = match client.ssh_join_token(&args.host).await {
        Ok(r) => r,
        Err(e) if e.is_denied() => return Ok(super::denied(&e)),
        Err(e) => return Err(session_error(e, &source)),
    };
    match format {
        Format::Json => emit(&json(&resp)?)?,
        Format::Text => {
            emit(&resp.join_token)?;
            eprintln!(
                "single-use join token for {} (expires {}): on the host run `idmint agent enroll` with it",
                resp.host,
                UnixTime(resp.expires_at).rfc3339()
            );
        }
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_into_role_and_host() {
        assert_eq!(split_target("web-1").unwrap(), (None, "web-1".into()));
        assert_eq!(
            split_target("deploy@web-1").unwrap(),
            (Some("deploy".into()), "web-1".into())
        );
        assert!(split_target("deploy@").is_err());
        assert!(split_target("@web-1").is_err());
    }
}
