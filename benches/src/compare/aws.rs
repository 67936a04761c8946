//! The AWS target of `aws-creds`: a moto server with authentication
//! enforced (so every STS call idmint makes is SigV4-signed and checked
//! against IAM, like real AWS), idmint's own IAM principal in it and the
//! role idmint assumes.
//!
//! OpenBao 2.7.2 ships no AWS secrets engine, so this scenario measures
//! idmint alone; its peer column says so.

use crate::error::{BenchError, Result};
use crate::procstat::ProcSample;
use idmint_testkit::moto::{allow, trust_principal, AwsKey, Moto};

/// What the peer column says for `aws-creds`.
pub const NO_PEER: &str = "OpenBao: no AWS engine in 2.7.2";
/// `[[issuer.aws]] name` and the `assumed_role` role using it.
pub const IDMINT_AWS_ISSUER: &str = "bench-aws";
pub const IDMINT_AWS_ROLE: &str = "aws/deploy";
/// moto's fixed account.
const ACCOUNT: &str = "123456789012";
const BROKER_USER: &str = "idmint-broker";
const ASSUMED_ROLE: &str = "deployer";

/// moto plus idmint's principal (an IAM user allowed to assume the role).
pub struct SharedMoto {
    moto: Moto,
    broker: AwsKey,
}

impl SharedMoto {
    /// Starts moto and creates the broker user and the role. The IAM calls
    /// run the AWS CLI synchronously: this is setup before any measured
    /// window, so blocking the generator's runtime for it costs nothing.
    pub async fn start() -> Result<Self> {
        let moto = Moto::start()
            .await
            .map_err(|e| BenchError::peer("starting moto (testbed/install-testbed.sh)", e))?;
        let broker = moto
            .create_user_with_key(
                BROKER_USER,
                &allow(&["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"]),
            )
            .map_err(|e| BenchError::peer("creating idmint's IAM user in moto", e))?;
        let broker_arn = format!("arn:aws:iam::{ACCOUNT}:user/{BROKER_USER}");
        moto.create_role(
            ASSUMED_ROLE,
            &trust_principal(&broker_arn),
            &allow(&["s3:*", "sts:GetCallerIdentity"]),
        )
        .map_err(|e| BenchError::peer("creating the assumed role in moto", e))?;
        Ok(Self { moto, broker })
    }

    pub fn endpoint(&self) -> &str {
        self.moto.endpoint()
    }

    /// The body of `[[issuer.aws]]`.
    pub fn issuer_toml(&self) -> String {
        format!(
            r#"
name = "{IDMINT_AWS_ISSUER}"
region = "us-east-1"
endpoint = "{}"
timeout = "3s"
"#,
            self.moto.endpoint()
        )
    }

    /// The server's environment: idmint's own AWS key, and no profile or
    /// config file of the machine that could shadow it.
    pub fn server_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "AWS_ACCESS_KEY_ID".into(),
                self.broker.access_key_id.clone(),
            ),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                self.broker.secret_access_key.clone(),
            ),
            ("AWS_CONFIG_FILE".into(), "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE".into(), "/dev/null".into()),
        ]
    }

    /// The moto process's CPU time, to report how much of the machine the
    /// emulator took. The test kit does not expose its pid, so it is found
    /// as this process's child running `moto_server`.
    pub fn sample(&self, clock_ticks: u64) -> Option<ProcSample> {
        ProcSample::read(moto_pid()?, clock_ticks)
    }

    /// The last lines of moto's log, for a failed preflight.
    pub fn log_tail(&self, lines: usize) -> String {
        self.moto.log_tail(lines)
    }
}

/// The pid of our child process whose command line names `moto_server`.
fn moto_pid() -> Option<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let cmdline =
                std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            parent_pid(&stat) == Some(me) && cmdline.contains("moto_server")
        })
}

/// Field 4 of `/proc/<pid>/stat`, after the parenthesised command name
/// (which may itself contain spaces and parentheses).
fn parent_pid(stat: &str) -> Option<u32> {
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// The `assumed_role` role: one role ARN, no session policy or tags, so
/// the measured request is one `AssumeRole` plus idmint's own work (policy,
/// lease write, audit append).
pub fn role() -> String {
    format!(
        r#"
[[role]]
name = "{IDMINT_AWS_ROLE}"
issuer = "{IDMINT_AWS_ISSUER}"
description = "STS session of the deployer role"
max_ttl = "1h"
default_ttl = "15m"
[role.aws]
mode = "assumed_role"
role_arns = ["arn:aws:iam::{ACCOUNT}:role/{ASSUMED_ROLE}"]
"#
    )
}

/// The permit for the bench's CI identity.
pub fn policy() -> String {
    format!(
        r#"
@id("acme-app-main-gets-aws-deploy")
permit (principal, action == Action::"issue", resource == Role::"{IDMINT_AWS_ROLE}")
when {{ principal has repository && principal.repository == "acme/app"
       && principal has ref && principal.ref == "refs/heads/main" }};
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_and_its_permit_agree() {
        assert!(role().contains(&format!("name = \"{IDMINT_AWS_ROLE}\"")));
        assert!(role().contains(&format!("issuer = \"{IDMINT_AWS_ISSUER}\"")));
        assert!(role().contains("mode = \"assumed_role\""));
        assert!(policy().contains(&format!("Role::\"{IDMINT_AWS_ROLE}\"")));
    }

    #[test]
    fn parent_pid_skips_a_command_name_with_spaces() {
        assert_eq!(parent_pid("42 (moto (x) y) S 7 42 42 0"), Some(7));
        assert_eq!(parent_pid("garbage"), None);
    }
}
