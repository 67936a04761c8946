//! [`Moto`]: a throwaway moto server (AWS IAM/STS/S3 emulation) with
//! authentication **enforced**, and the real AWS CLI to talk to it, for the
//! aws issuer's tests (TESTBED.md section 2).
//!
//! `moto_server -H 127.0.0.1 -p 0` runs as a foreground child ([`Peer`]);
//! its port is read from its log (` * Running on http://127.0.0.1:PORT`).
//! `testbed/moto-bootstrap.py` then wipes it, creates the IAM user `admin`
//! (`Allow *`) with an access key and switches enforcement on, so from then
//! on every request must be signed by a known key and allowed by IAM.
//!
//! moto, the AWS CLI and boto3 come from `.venv-testbed/bin` in the
//! workspace when present, else from `PATH`.

use crate::error::{Result, TestkitError};
use crate::process::{workspace_root, Peer};
use crate::wait::poll_until;
use serde_json::Value;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// How long moto may take to start (normally about 0.5 s).
const START_LIMIT: Duration = Duration::from_secs(30);

/// An AWS access key (and session token, for STS sessions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsKey {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl AwsKey {
    pub fn new(access_key_id: &str, secret_access_key: &str, session_token: Option<&str>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: session_token.map(str::to_string),
        }
    }
}

/// What a run of the AWS CLI gave.
#[derive(Debug, Clone)]
pub struct AwsCliOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl AwsCliOutput {
    fn from(out: Output) -> Self {
        Self {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The AWS error code in the CLI's message (`… (AccessDenied) when
    /// calling …`), if it failed with one.
    pub fn error_code(&self) -> Option<String> {
        let start = self.stderr.find('(')?;
        let end = self.stderr.get(start..)?.find(')')?;
        self.stderr.get(start + 1..start + end).map(str::to_string)
    }

    /// stdout as JSON.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.stdout).map_err(|e| TestkitError::Protocol {
            peer: "aws cli".into(),
            message: format!(
                "stdout is not JSON ({e}): {} / stderr: {}",
                self.stdout, self.stderr
            ),
        })
    }
}

/// A running moto server with enforcement on. Killed on drop.
pub struct Moto {
    peer: Peer,
    endpoint: String,
    admin: AwsKey,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Moto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Moto")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Directory with `moto_server`, `aws` and a `python3` that has boto3.
pub fn venv_bin() -> PathBuf {
    workspace_root().join(".venv-testbed").join("bin")
}

/// `name` from the venv if there, else `name` for a `PATH` lookup.
pub fn tool(name: &str) -> PathBuf {
    let p = venv_bin().join(name);
    if p.exists() {
        p
    } else {
        PathBuf::from(name)
    }
}

impl Moto {
    /// Start moto, bootstrap the admin key and enforce authentication.
    pub async fn start() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("idmint-moto-")
            .tempdir()
            .map_err(|e| TestkitError::io("creating the moto temp dir", e))?;
        let log = dir.path().join("moto.log");
        let log_file =
            File::create(&log).map_err(|e| TestkitError::io("creating the moto log", e))?;
        let child = Command::new(tool("moto_server"))
            .args(["-H", "127.0.0.1", "-p", "0"])
            .env_remove("INITIAL_NO_AUTH_ACTION_COUNT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| {
                TestkitError::io(
                    format!(
                        "spawning {} (run testbed/install-testbed.sh .venv-testbed)",
                        tool("moto_server").display()
                    ),
                    e,
                )
            })?;
        let mut peer = Peer::new("moto_server", child, vec![log.clone()]);
        let endpoint = poll_until("moto_server to print its address", START_LIMIT, || {
            let exited = peer.ensure_running();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            async move {
                exited?;
                Ok(text
                    .lines()
                    .find_map(|l| l.split("Running on ").nth(1))
                    .map(|u| u.trim().trim_end_matches('/').to_string()))
            }
        })
        .await?;
        let http = reqwest::Client::new();
        let probe = format!("{endpoint}/moto-api/");
        poll_until("moto to answer /moto-api/", START_LIMIT, || {
            let http = http.clone();
            let probe = probe.clone();
            async move {
                Ok(http
                    .get(&probe)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ()))
            }
        })
        .await?;
        let creds_file = dir.path().join("admin.json");
        let out = Command::new(tool("python3"))
            .arg(workspace_root().join("testbed").join("moto-bootstrap.py"))
            .arg(&endpoint)
            .arg(&creds_file)
            .arg("--enforce")
            .output()
            .map_err(|e| TestkitError::io("running testbed/moto-bootstrap.py", e))?;
        if !out.status.success() {
            return Err(TestkitError::Protocol {
                peer: "moto-bootstrap.py".into(),
                message: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        let creds: Value = serde_json::from_str(
            &std::fs::read_to_string(&creds_file)
                .map_err(|e| TestkitError::io("reading the admin key", e))?,
        )
        .map_err(|e| TestkitError::Protocol {
            peer: "moto-bootstrap.py".into(),
            message: e.to_string(),
        })?;
        let field = |k: &str| creds[k].as_str().unwrap_or_default().to_string();
        let admin = AwsKey {
            access_key_id: field("AccessKeyId"),
            secret_access_key: field("SecretAccessKey"),
            session_token: None,
        };
        Ok(Self {
            peer,
            endpoint,
            admin,
            dir,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The bootstrap admin's key (`Allow *`).
    pub fn admin(&self) -> &AwsKey {
        &self.admin
    }

    /// A scratch directory that lives as long as the server.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Kill moto now (SIGKILL), e.g. to test AWS being down.
    pub fn kill(&mut self) -> Result<()> {
        self.peer.kill().map(|_| ())
    }

    /// Turn enforcement on or off (`POST /moto-api/reset-auth`; AWS's own
    /// `AssumeRoleWithWebIdentity` is unsigned and moto answers it 500 while
    /// enforcing, see TESTBED.md).
    pub async fn enforce(&self, on: bool) -> Result<()> {
        let url = format!("{}/moto-api/reset-auth", self.endpoint);
        let resp = reqwest::Client::new()
            .post(&url)
            .header("content-type", "text/plain")
            .body(if on { "0" } else { "inf" })
            .send()
            .await
            .map_err(|e| TestkitError::http("POST", &url, e))?;
        if !resp.status().is_success() {
            return Err(TestkitError::http("POST", &url, resp.status()));
        }
        Ok(())
    }

    /// The AWS CLI with a hermetic environment: no profile, no config
    /// files, no inherited `AWS_*`, region us-east-1, this endpoint.
    pub fn aws_command(&self) -> Command {
        let mut cmd = Command::new(tool("aws"));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(&k);
            }
        }
        cmd.env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_PAGER", "")
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .stdin(Stdio::null());
        cmd
    }

    /// Run `aws ARGS --output json` as `key`.
    pub fn aws(&self, key: &AwsKey, args: &[&str]) -> Result<AwsCliOutput> {
        let mut cmd = self.aws_command();
        cmd.env("AWS_ACCESS_KEY_ID", &key.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &key.secret_access_key);
        if let Some(t) = &key.session_token {
            cmd.env("AWS_SESSION_TOKEN", t);
        }
        let out = cmd
            .args(args)
            .args(["--output", "json"])
            .output()
            .map_err(|e| TestkitError::io(format!("running aws {}", args.join(" ")), e))?;
        Ok(AwsCliOutput::from(out))
    }

    /// Run `aws ARGS` as the admin; it must succeed. Returns stdout as JSON
    /// (`null` when empty).
    pub fn admin_aws(&self, args: &[&str]) -> Result<Value> {
        let out = self.aws(&self.admin, args)?;
        if !out.success {
            return Err(TestkitError::Protocol {
                peer: "aws cli (admin)".into(),
                message: format!("aws {} failed: {}", args.join(" "), out.stderr),
            });
        }
        if out.stdout.trim().is_empty() {
            return Ok(Value::Null);
        }
        out.json()
    }

    /// An IAM user with an inline policy and an access key, e.g. idmint's
    /// own principal.
    pub fn create_user_with_key(&self, name: &str, policy: &Value) -> Result<AwsKey> {
        self.admin_aws(&["iam", "create-user", "--user-name", name])?;
        self.admin_aws(&[
            "iam",
            "put-user-policy",
            "--user-name",
            name,
            "--policy-name",
            "p",
            "--policy-document",
            &policy.to_string(),
        ])?;
        let key = self.admin_aws(&["iam", "create-access-key", "--user-name", name])?;
        Ok(AwsKey {
            access_key_id: key["AccessKey"]["AccessKeyId"]
                .as_str()
                .unwrap_or_default()
                .into(),
            secret_access_key: key["AccessKey"]["SecretAccessKey"]
                .as_str()
                .unwrap_or_default()
                .into(),
            session_token: None,
        })
    }

    /// A role with `trust` as its trust policy and `policy` inline.
    /// Returns its ARN.
    pub fn create_role(&self, name: &str, trust: &Value, policy: &Value) -> Result<String> {
        let role = self.admin_aws(&[
            "iam",
            "create-role",
            "--role-name",
            name,
            "--assume-role-policy-document",
            &trust.to_string(),
        ])?;
        self.admin_aws(&[
            "iam",
            "put-role-policy",
            "--role-name",
            name,
            "--policy-name",
            "p",
            "--policy-document",
            &policy.to_string(),
        ])?;
        Ok(role["Role"]["Arn"].as_str().unwrap_or_default().to_string())
    }

    /// The names of the IAM users under `path`.
    pub fn users_under(&self, path: &str) -> Result<Vec<String>> {
        let v = self.admin_aws(&["iam", "list-users", "--path-prefix", path])?;
        Ok(v["Users"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|u| u["UserName"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The last lines of moto's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.peer.log_tail(lines)
    }
}

/// A policy document allowing `actions` on everything.
pub fn allow(actions: &[&str]) -> Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]
    })
}

/// A trust policy letting the IAM principal `arn` assume (and tag and set
/// the source identity of) the role.
pub fn trust_principal(arn: &str) -> Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": arn},
            "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"]
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_enforces_and_dies_on_drop() {
        let moto = Moto::start().await.unwrap();
        let who = moto.admin_aws(&["sts", "get-caller-identity"]).unwrap();
        assert_eq!(who["Arn"], "arn:aws:iam::123456789012:user/admin");
        let stranger = AwsKey::new("AKIAUNKNOWN000000000", "x", None);
        let out = moto
            .aws(&stranger, &["sts", "get-caller-identity"])
            .unwrap();
        assert_eq!(
            out.error_code().as_deref(),
            Some("InvalidClientTokenId"),
            "{out:?}"
        );
        let endpoint = moto.endpoint().to_string();
        drop(moto);
        assert!(reqwest::get(format!("{endpoint}/moto-api/")).await.is_err());
    }
}
