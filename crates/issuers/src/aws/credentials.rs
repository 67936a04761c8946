//! idmint's own AWS credentials: where they come from and when they are
//! refreshed. Never from the policy files.
//!
//! Resolution follows the AWS SDKs' default chain, minus instance metadata
//! (IMDS is not implemented: on EC2/ECS give idmint a web identity or a
//! profile with `credential_process` instead):
//!
//! 1. `profile` set in `[[issuer.aws]]`: that profile of the shared files,
//!    and nothing else (an explicit choice must not be overridden by a
//!    stray environment variable);
//! 2. `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`);
//! 3. `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` (+
//!    `AWS_ROLE_SESSION_NAME`): `AssumeRoleWithWebIdentity`, re-read and
//!    re-assumed before the session ends (Kubernetes IRSA, GitHub OIDC);
//! 4. the profile `AWS_PROFILE` (or `default`) of `AWS_SHARED_CREDENTIALS_FILE`
//!    (`~/.aws/credentials`) and `AWS_CONFIG_FILE` (`~/.aws/config`):
//!    static keys, or `credential_process`, run again before its
//!    `Expiration`.
//!
//! Environment variables and files are read once, when the issuer is
//! built; temporary credentials are refreshed when less than
//! [`REFRESH_BEFORE`] remain.

use super::api::{Endpoint, QueryClient};
use super::profile;
use idmint_core::{Secret, UnixTime};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::Mutex;

/// Temporary credentials are replaced when less than this remains.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(300);
/// How long a `credential_process` may run.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest `credential_process` output read.
const MAX_PROCESS_OUTPUT: usize = 64 * 1024;

/// An access key, optionally with a session token and an expiry.
#[derive(Clone)]
pub struct AwsCredentials {
    access_key_id: String,
    secret_access_key: Secret<String>,
    session_token: Option<Secret<String>>,
    expires_at: Option<UnixTime>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("session", &self.session_token.is_some())
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl AwsCredentials {
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
        expires_at: Option<UnixTime>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: Secret::new(secret_access_key.into()),
            session_token: session_token.map(Secret::new),
            expires_at,
        }
    }

    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    pub fn secret_access_key(&self) -> &str {
        self.secret_access_key.expose()
    }

    pub fn session_token(&self) -> Option<&str> {
        self.session_token.as_ref().map(|t| t.expose().as_str())
    }

    pub fn expires_at(&self) -> Option<UnixTime> {
        self.expires_at
    }

    /// Whether these must be replaced before use at `now`.
    fn needs_refresh(&self, now: UnixTime) -> bool {
        self.expires_at
            .is_some_and(|exp| exp <= now.plus(REFRESH_BEFORE))
    }
}

/// Where the credentials come from.
#[derive(Debug, Clone)]
enum Source {
    Static(AwsCredentials),
    /// `credential_process` of a profile: the command line.
    Process(String),
    WebIdentity {
        token_file: PathBuf,
        role_arn: String,
        session_name: String,
    },
    /// Nothing found; the text says where idmint looked.
    Missing(String),
}

/// idmint's AWS credentials, refreshed as needed.
#[derive(Debug)]
pub struct CredentialChain {
    source: Source,
    cached: Mutex<Option<AwsCredentials>>,
}

/// Environment lookups, injectable so resolution is tested without
/// touching the process environment.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

impl CredentialChain {
    /// Resolve the source (reads environment and files, no network).
    pub fn resolve(profile: Option<&str>, env: Env<'_>) -> Result<Self, String> {
        let source = resolve_source(profile, env)?;
        Ok(Self {
            source,
            cached: Mutex::new(None),
        })
    }

    /// Fixed credentials (tests, and `--check-config`).
    pub fn fixed(creds: AwsCredentials) -> Self {
        Self {
            source: Source::Static(creds),
            cached: Mutex::new(None),
        }
    }

    /// A one-line description for logs: which source, never a secret.
    pub fn describe(&self) -> String {
        match &self.source {
            Source::Static(c) => format!("static key {}", c.access_key_id),
            Source::Process(cmd) => format!("credential_process {cmd:?}"),
            Source::WebIdentity { role_arn, .. } => format!("web identity for {role_arn}"),
            Source::Missing(why) => format!("none ({why})"),
        }
    }

    /// Valid credentials now, fetching new ones when needed. `sts` is used
    /// for the web identity source.
    pub async fn current(
        &self,
        client: &QueryClient,
        sts: &Endpoint,
    ) -> Result<AwsCredentials, String> {
        let mut cached = self.cached.lock().await;
        let now = UnixTime::now();
        if let Some(c) = cached.as_ref().filter(|c| !c.needs_refresh(now)) {
            return Ok(c.clone());
        }
        let fresh = match &self.source {
            Source::Static(c) => c.clone(),
            Source::Missing(why) => return Err(format!("idmint has no AWS credentials: {why}")),
            Source::Process(cmd) => run_credential_process(cmd).await?,
            Source::WebIdentity {
                token_file,
                role_arn,
                session_name,
            } => {
                let token = tokio::fs::read_to_string(token_file).await.map_err(|e| {
                    format!(
                        "cannot read AWS_WEB_IDENTITY_TOKEN_FILE {}: {e}",
                        token_file.display()
                    )
                })?;
                super::sts::assume_role_with_web_identity(
                    client,
                    sts,
                    role_arn,
                    session_name,
                    token.trim(),
                    None,
                )
                .await
                .map_err(|e| format!("AssumeRoleWithWebIdentity for {role_arn} failed: {e}"))?
                .credentials
            }
        };
        *cached = Some(fresh.clone());
        Ok(fresh)
    }
}

fn resolve_source(profile: Option<&str>, env: Env<'_>) -> Result<Source, String> {
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(p) = profile {
        return from_profile(p, env)?.ok_or_else(|| {
            format!("AWS profile {p:?} has neither aws_access_key_id/aws_secret_access_key nor credential_process")
        });
    }
    if let (Some(ak), Some(sk)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        return Ok(Source::Static(AwsCredentials::new(
            ak,
            sk,
            var("AWS_SESSION_TOKEN"),
            None,
        )));
    }
    if let (Some(file), Some(role_arn)) = (var("AWS_WEB_IDENTITY_TOKEN_FILE"), var("AWS_ROLE_ARN"))
    {
        return Ok(Source::WebIdentity {
            token_file: PathBuf::from(file),
            role_arn,
            session_name: var("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| "idmint".into()),
        });
    }
    let name = var("AWS_PROFILE").unwrap_or_else(|| "default".into());
    Ok(from_profile(&name, env)?.unwrap_or_else(|| {
        Source::Missing(format!(
            "no AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, no AWS_WEB_IDENTITY_TOKEN_FILE/AWS_ROLE_ARN, and profile {name:?} \
             has no keys or credential_process (instance metadata is not used)"
        ))
    }))
}

/// The profile's source from the shared files, `None` if it has none.
fn from_profile(name: &str, env: Env<'_>) -> Result<Option<Source>, String> {
    let home = env("HOME").map(PathBuf::from);
    let file = |var: &str, default: &str| -> Option<PathBuf> {
        env(var)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
    };
    let read = |p: Option<PathBuf>| -> Result<String, String> {
        match p {
            None => Ok(String::new()),
            Some(p) => match std::fs::read_to_string(&p) {
                Ok(t) => Ok(t),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
                Err(e) => Err(format!("cannot read {}: {e}", p.display())),
            },
        }
    };
    let creds = profile::parse(&read(file("AWS_SHARED_CREDENTIALS_FILE", "credentials"))?);
    let config = profile::parse(&read(file("AWS_CONFIG_FILE", "config"))?);
    let empty = profile::Section::new();
    let in_creds = creds.get(name).unwrap_or(&empty);
    let in_config = config
        .get(&profile::config_section_name(name))
        .unwrap_or(&empty);
    for section in [in_creds, in_config] {
        if let (Some(ak), Some(sk)) = (
            section.get("aws_access_key_id"),
            section.get("aws_secret_access_key"),
        ) {
            return Ok(Some(Source::Static(AwsCredentials::new(
                ak.clone(),
                sk.clone(),
                section.get("aws_session_token").cloned(),
                None,
            ))));
        }
    }
    for section in [in_creds, in_config] {
        if let Some(cmd) = section.get("credential_process") {
            return Ok(Some(Source::Process(cmd.clone())));
        }
    }
    Ok(None)
}

/// Split a `credential_process` line like the AWS CLI does (POSIX shell
/// words, no shell): whitespace separates, quotes group, `\` escapes.
pub fn split_command(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x @ ('"' | '\\' | '$' | '`')) => cur.push(x),
                            Some(x) => {
                                cur.push('\\');
                                cur.push(x);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(x) => cur.push(x),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(x) = chars.next() {
                    cur.push(x);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// The JSON a `credential_process` prints (AWS's documented format).
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProcessOutput {
    version: u32,
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
    #[serde(default)]
    expiration: Option<String>,
}

/// Parse `credential_process` output.
pub fn parse_process_output(out: &[u8]) -> Result<AwsCredentials, String> {
    let parsed: ProcessOutput = serde_json::from_slice(out)
        .map_err(|e| format!("its output is not the credential_process JSON ({e})"))?;
    if parsed.version != 1 {
        return Err(format!(
            "its output has Version {}, only 1 is known",
            parsed.version
        ));
    }
    let expires_at = parsed
        .expiration
        .as_deref()
        .map(parse_rfc3339)
        .transpose()?;
    Ok(AwsCredentials::new(
        parsed.access_key_id,
        parsed.secret_access_key,
        parsed.session_token,
        expires_at,
    ))
}

/// An RFC 3339 UTC time as AWS writes it (`2026-11-23T18:00:00Z`, with or
/// without fractional seconds).
pub fn parse_rfc3339(s: &str) -> Result<UnixTime, String> {
    let t =
        humantime::parse_rfc3339_weak(s.trim().trim_end_matches('Z').trim_end_matches("+00:00"))
            .map_err(|e| format!("{s:?} is not an RFC 3339 UTC time: {e}"))?;
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("{s:?} is before 1970"))?
        .as_secs();
    Ok(UnixTime(i64::try_from(secs).unwrap_or(i64::MAX)))
}

async fn run_credential_process(line: &str) -> Result<AwsCredentials, String> {
    let words = split_command(line).map_err(|e| format!("credential_process {line:?}: {e}"))?;
    let Some((program, args)) = words.split_first() else {
        return Err("credential_process is empty".into());
    };
    let mut cmd = tokio::process::Command::new(Path::new(program));
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(PROCESS_TIMEOUT, cmd.output())
        .await
        .map_err(|_| {
            format!("credential_process {program:?} did not finish within {PROCESS_TIMEOUT:?}")
        })?
        .map_err(|e| format!("cannot run credential_process {program:?}: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "credential_process {program:?} failed ({}): {}",
            out.status,
            stderr.trim().chars().take(300).collect::<String>()
        ));
    }
    let stdout = out.stdout.get(..MAX_PROCESS_OUTPUT).unwrap_or(&out.stdout);
    parse_process_output(stdout).map_err(|e| format!("credential_process {program:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn environment_keys_come_first_unless_a_profile_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("credentials");
        std::fs::write(&creds, "[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = s\n[ci]\naws_access_key_id=AKIACI\naws_secret_access_key=t\n").unwrap();
        let config = dir.path().join("config");
        std::fs::write(
            &config,
            "[profile proc]\ncredential_process = /bin/echo '{\"a\": 1}'\n",
        )
        .unwrap();
        let c = creds.to_str().unwrap();
        let g = config.to_str().unwrap();
        let base = [("AWS_SHARED_CREDENTIALS_FILE", c), ("AWS_CONFIG_FILE", g)];

        let env = env_of(&[
            base[0],
            base[1],
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
        ]);
        assert_eq!(
            CredentialChain::resolve(None, &env).unwrap().describe(),
            "static key AKIAENV"
        );
        assert_eq!(
            CredentialChain::resolve(Some("ci"), &env)
                .unwrap()
                .describe(),
            "static key AKIACI"
        );
        assert_eq!(
            CredentialChain::resolve(Some("proc"), &env)
                .unwrap()
                .describe(),
            "credential_process \"/bin/echo '{\\\"a\\\": 1}'\""
        );
        assert!(CredentialChain::resolve(Some("nope"), &env)
            .unwrap_err()
            .contains("nope"));

        let env = env_of(&[
            base[0],
            base[1],
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/x"),
        ]);
        assert_eq!(
            CredentialChain::resolve(None, &env).unwrap().describe(),
            "web identity for arn:aws:iam::1:role/x"
        );
        let env = env_of(&base);
        assert_eq!(
            CredentialChain::resolve(None, &env).unwrap().describe(),
            "static key AKIAFILE"
        );
        let env = env_of(&[base[0], base[1], ("AWS_PROFILE", "proc")]);
        assert!(CredentialChain::resolve(None, &env)
            .unwrap()
            .describe()
            .starts_with("credential_process"));
        let env = env_of(&[("HOME", dir.path().join("none").to_str().unwrap())]);
        let missing = CredentialChain::resolve(None, &env).unwrap();
        assert!(
            missing.describe().contains("instance metadata is not used"),
            "{}",
            missing.describe()
        );
    }

    #[tokio::test]
    async fn credential_process_output_is_parsed_and_cached_until_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("creds.sh");
        let count = dir.path().join("count");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho x >> '{}'\necho '{{\"Version\":1,\"AccessKeyId\":\"ASIAP\",\"SecretAccessKey\":\"s\",\"SessionToken\":\"t\",\"Expiration\":\"2999-01-01T00:00:00Z\"}}'\n",
                count.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let chain = CredentialChain {
            source: Source::Process(format!("'{}'", script.display())),
            cached: Mutex::new(None),
        };
        let client = QueryClient::new(Duration::from_secs(1), 1).unwrap();
        let sts = Endpoint::new("http://127.0.0.1:9", "us-east-1", "sts", "2011-06-15").unwrap();
        let c = chain.current(&client, &sts).await.unwrap();
        assert_eq!((c.access_key_id(), c.session_token()), ("ASIAP", Some("t")));
        chain.current(&client, &sts).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&count).unwrap().lines().count(),
            1,
            "cached"
        );

        let missing = CredentialChain {
            source: Source::Missing("nothing".into()),
            cached: Mutex::new(None),
        };
        assert!(missing
            .current(&client, &sts)
            .await
            .unwrap_err()
            .contains("no AWS credentials"));
    }

    #[test]
    fn process_output_and_command_lines() {
        assert!(
            parse_process_output(br#"{"Version":2,"AccessKeyId":"a","SecretAccessKey":"b"}"#)
                .is_err()
        );
        let c = parse_process_output(br#"{"Version":1,"AccessKeyId":"a","SecretAccessKey":"b","Expiration":"2015-08-30T12:36:00.123Z"}"#).unwrap();
        assert_eq!(c.expires_at(), Some(UnixTime(1_440_938_160)));
        assert_eq!(
            split_command(r#"/usr/bin/idmint --server 'http://x y' aws "a \"b\"" c\ d"#).unwrap(),
            [
                "/usr/bin/idmint",
                "--server",
                "http://x y",
                "aws",
                "a \"b\"",
                "c d"
            ]
        );
        assert!(split_command("'open").is_err());
        assert_eq!(
            parse_rfc3339("2026-11-23T18:00:00Z").unwrap().rfc3339(),
            "2026-11-23T18:00:00Z"
        );
    }
}
