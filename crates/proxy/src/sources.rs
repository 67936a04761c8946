//! Where an injected secret comes from: `[secrets.NAME]` and `[idmint]`.
//!
//! Four kinds of source, validated at load:
//! - `file` / `env`: read once at startup ([`SecretSource::Static`]).
//! - `idmint`: minted (or, for `static` roles, unsealed) by the idmint
//!   server for the identity of the calling process, obtained at request
//!   time and cached until shortly before it expires
//!   ([`SecretSource::Idmint`], see [`crate::creds`]).
//! - `vault_kv`: a field of an OpenBao/Vault KV v2 secret, re-read every
//!   `refresh` ([`SecretSource::VaultKv`]).
//!
//! Only the configuration lives here; fetching and caching are in
//! [`crate::creds`].

use crate::config::{check_header_text, invalid_key, ConfigError};
use idmint_core::Secret;
use serde::Deserialize;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_AGENT_STATE_DIR: &str = "/var/lib/idmint-agent";
const DEFAULT_REFRESH_BEFORE: Duration = Duration::from_secs(60);
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);
const DEFAULT_KV_REFRESH: Duration = Duration::from_secs(300);
const DEFAULT_KV_MOUNT: &str = "secret";

/// `[secrets.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecret {
    file: Option<PathBuf>,
    env: Option<String>,
    idmint: Option<RawIdmintSource>,
    vault_kv: Option<RawVaultKv>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdmintSource {
    role: String,
    field: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVaultKv {
    addr: String,
    mount: Option<String>,
    path: String,
    field: String,
    token_file: PathBuf,
    ca_file: Option<PathBuf>,
    refresh: Option<String>,
    grace: Option<String>,
    timeout: Option<String>,
}

/// `[idmint]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdmint {
    server: Option<String>,
    agent_state_dir: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    auth: Option<String>,
    refresh_before: Option<String>,
    retry_after: Option<String>,
}

/// How the proxy reaches the idmint server (`[idmint]`).
#[derive(Debug, Clone)]
pub struct IdmintSettings {
    /// Base URL; `None`: the one `idmint agent enroll` recorded.
    pub server: Option<String>,
    /// The enrolled agent's state directory (its key signs attestations).
    pub agent_state_dir: PathBuf,
    /// Extra PEM CA trusted for the server's certificate.
    pub ca_file: Option<PathBuf>,
    /// Name of the server's `[[auth.unix]]` config; `None`: the server's
    /// only one.
    pub auth: Option<String>,
    /// Refresh a minted credential (or session) this long before it
    /// expires (at most half its lifetime).
    pub refresh_before: Duration,
    /// After a failed fetch, serve the cached value (or fail at once) for
    /// this long before asking the server again.
    pub retry_after: Duration,
}

/// Which part of a minted credential is injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialField {
    /// `oauth_token`: the JWT.
    AccessToken,
    /// `static_secret`: the stored value.
    Value,
    /// `aws`: one of the three keys.
    AccessKeyId,
    SecretAccessKey,
    SessionToken,
    /// `database_user`: the password (for basic auth).
    Password,
    /// `azure_client_secret`.
    ClientSecret,
}

impl CredentialField {
    const ALL: &'static [(&'static str, CredentialField)] = &[
        ("access_token", Self::AccessToken),
        ("value", Self::Value),
        ("access_key_id", Self::AccessKeyId),
        ("secret_access_key", Self::SecretAccessKey),
        ("session_token", Self::SessionToken),
        ("password", Self::Password),
        ("client_secret", Self::ClientSecret),
    ];

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == text).map(|(_, f)| *f)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(n, _)| n)
    }
}

/// An `idmint` source: a role on the server.
#[derive(Debug, Clone)]
pub struct IdmintSource {
    /// Role name as in `POST /api/v1/creds/{role}` (may contain `/`).
    pub role: String,
    /// `None`: the default of the credential kind (`access_token`,
    /// `value`, `password`, `client_secret`; AWS keys need a field unless
    /// used whole by `aws_sigv4 = { credentials = … }`).
    pub field: Option<CredentialField>,
}

/// A `vault_kv` source: one field of a KV v2 secret.
#[derive(Debug, Clone)]
pub struct VaultKvSource {
    /// `https://bao.example:8200` (no trailing `/`).
    pub addr: String,
    pub mount: String,
    pub path: String,
    pub field: String,
    /// Re-read at every fetch, so a token renewed on disk (e.g. by
    /// `bao agent`) is picked up.
    pub token_file: PathBuf,
    pub ca_file: Option<PathBuf>,
    pub refresh: Duration,
    /// How long past `refresh` a cached value may still be used while KV
    /// cannot be read.
    pub grace: Duration,
    pub timeout: Duration,
}

impl VaultKvSource {
    /// `GET` URL of the secret's latest version.
    pub fn url(&self) -> String {
        format!("{}/v1/{}/data/{}", self.addr, self.mount, self.path)
    }
}

/// Where a secret's value comes from.
#[derive(Debug)]
pub enum SecretSource {
    /// `file` or `env`, read at startup.
    Static {
        /// `file` or `env` (for the audit log).
        kind: &'static str,
        value: Secret<String>,
    },
    Idmint(IdmintSource),
    VaultKv(VaultKvSource),
}

impl SecretSource {
    /// `file`, `env`, `idmint` or `vault_kv`: what the audit log shows.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Static { kind, .. } => kind,
            Self::Idmint(_) => "idmint",
            Self::VaultKv(_) => "vault_kv",
        }
    }
}

fn anchored(base: &Path, p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
}

fn duration_or(
    key: &str,
    value: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => {
            let d = humantime::parse_duration(&v).map_err(|e| {
                invalid_key(key, format!("`{v}` is not a duration like \"5m\": {e}"))
            })?;
            if d.is_zero() {
                return Err(invalid_key(key, "must be greater than zero"));
            }
            Ok(d)
        }
    }
}

/// A file holding a secret (or a token) must belong to the proxy's user and
/// be private to it.
pub(crate) fn check_private_file(key: &str, file: &Path) -> Result<(), ConfigError> {
    let meta = std::fs::metadata(file)
        .map_err(|e| invalid_key(key, format!("cannot read {}: {e}", file.display())))?;
    if meta.mode() & 0o077 != 0 {
        return Err(invalid_key(
            key,
            format!(
                "{} is readable by group or others (mode {:o}): run `chmod 600 {}`",
                file.display(),
                meta.mode() & 0o777,
                file.display()
            ),
        ));
    }
    let own_uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    if own_uid.is_some_and(|uid| uid != meta.uid()) {
        return Err(invalid_key(
            key,
            format!(
                "{} is not owned by the user running the proxy",
                file.display()
            ),
        ));
    }
    Ok(())
}

/// `http(s)://host[:port]` without path, query or credentials.
fn check_base_url(key: &str, text: &str) -> Result<String, ConfigError> {
    let trimmed = text.trim_end_matches('/');
    let url = reqwest::Url::parse(trimmed)
        .map_err(|e| invalid_key(key, format!("`{text}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid_key(key, "must start with https:// (or http://)"));
    }
    if url.host_str().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err(invalid_key(
            key,
            "must be scheme://host[:port] without user information",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid_key(key, "must not carry a query or fragment"));
    }
    Ok(trimmed.to_string())
}

/// Segments of a KV mount/path or an idmint role: letters, digits,
/// `-_.@+=`, separated by single `/`, no `.`/`..` segment.
fn check_path(key: &str, text: &str) -> Result<(), ConfigError> {
    let ok = !text.is_empty()
        && text.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"-_.@+=".contains(&c))
        });
    if ok {
        Ok(())
    } else {
        Err(invalid_key(
            key,
            format!(
                "`{}` is not a path of letters, digits and -_.@+= separated by single `/`",
                text.escape_debug()
            ),
        ))
    }
}

impl IdmintSettings {
    pub(crate) fn from_raw(raw: Option<RawIdmint>, base: &Path) -> Result<Self, ConfigError> {
        let raw = raw.unwrap_or(RawIdmint {
            server: None,
            agent_state_dir: None,
            ca_file: None,
            auth: None,
            refresh_before: None,
            retry_after: None,
        });
        let server = raw
            .server
            .map(|s| check_base_url("idmint.server", &s))
            .transpose()?;
        if let Some(auth) = &raw.auth {
            if auth.is_empty()
                || !auth
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
            {
                return Err(invalid_key(
                    "idmint.auth",
                    "must be the name of the server's [[auth.unix]] config (letters, digits, -_.)",
                ));
            }
        }
        Ok(Self {
            server,
            agent_state_dir: raw.agent_state_dir.map_or_else(
                || PathBuf::from(DEFAULT_AGENT_STATE_DIR),
                |p| anchored(base, p),
            ),
            ca_file: raw.ca_file.map(|p| anchored(base, p)),
            auth: raw.auth,
            refresh_before: duration_or(
                "idmint.refresh_before",
                raw.refresh_before,
                DEFAULT_REFRESH_BEFORE,
            )?,
            retry_after: duration_or("idmint.retry_after", raw.retry_after, DEFAULT_RETRY_AFTER)?,
        })
    }
}

/// Validate one `[secrets.NAME]`; `key` is `secrets.NAME`. Static values
/// are read now.
pub(crate) fn load_source(
    key: &str,
    raw: RawSecret,
    base: &Path,
) -> Result<SecretSource, ConfigError> {
    let given = [
        raw.file.is_some(),
        raw.env.is_some(),
        raw.idmint.is_some(),
        raw.vault_kv.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given != 1 {
        return Err(invalid_key(
            key,
            "set exactly one of `file`, `env`, `idmint` or `vault_kv`",
        ));
    }
    if let Some(file) = raw.file {
        let file = anchored(base, file);
        check_private_file(key, &file)?;
        let value = std::fs::read_to_string(&file)
            .map_err(|e| invalid_key(key, format!("cannot read {}: {e}", file.display())))?;
        return static_value(key, "file", value);
    }
    if let Some(var) = raw.env {
        let value = std::env::var(&var).map_err(|_| {
            invalid_key(
                key,
                format!("environment variable {var} is not set (or not UTF-8)"),
            )
        })?;
        return static_value(key, "env", value);
    }
    if let Some(src) = raw.idmint {
        check_path(&format!("{key}.idmint.role"), &src.role)?;
        let field = match src.field {
            None => None,
            Some(f) => Some(CredentialField::parse(&f).ok_or_else(|| {
                invalid_key(
                    format!("{key}.idmint.field"),
                    format!(
                        "`{}` is not a credential field (one of: {})",
                        f.escape_debug(),
                        CredentialField::ALL
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?),
        };
        return Ok(SecretSource::Idmint(IdmintSource {
            role: src.role,
            field,
        }));
    }
    if let Some(kv) = raw.vault_kv {
        let k = |sub: &str| format!("{key}.vault_kv.{sub}");
        let addr = check_base_url(&k("addr"), &kv.addr)?;
        let mount = kv.mount.unwrap_or_else(|| DEFAULT_KV_MOUNT.to_string());
        check_path(&k("mount"), &mount)?;
        check_path(&k("path"), &kv.path)?;
        if kv.field.is_empty() {
            return Err(invalid_key(k("field"), "must not be empty"));
        }
        let token_file = anchored(base, kv.token_file);
        check_private_file(&k("token_file"), &token_file)?;
        let ca_file = kv.ca_file.map(|p| anchored(base, p));
        if let Some(ca) = &ca_file {
            std::fs::metadata(ca).map_err(|e| {
                invalid_key(k("ca_file"), format!("cannot read {}: {e}", ca.display()))
            })?;
        }
        let refresh = duration_or(&k("refresh"), kv.refresh, DEFAULT_KV_REFRESH)?;
        let grace = duration_or(&k("grace"), kv.grace, refresh)?;
        let timeout = duration_or(&k("timeout"), kv.timeout, Duration::from_secs(10))?;
        return Ok(SecretSource::VaultKv(VaultKvSource {
            addr,
            mount,
            path: kv.path,
            field: kv.field,
            token_file,
            ca_file,
            refresh,
            grace,
            timeout,
        }));
    }
    Err(invalid_key(key, "no source given"))
}

/// Drop one trailing newline, refuse empty values and values that cannot
/// go into a header (without printing them).
fn static_value(
    key: &str,
    kind: &'static str,
    mut value: String,
) -> Result<SecretSource, ConfigError> {
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    if value.is_empty() {
        return Err(invalid_key(key, "the secret is empty"));
    }
    if let Err(problem) = check_header_text(&value) {
        use zeroize::Zeroize;
        value.zeroize();
        return Err(invalid_key(key, format!("the secret value {problem}")));
    }
    Ok(SecretSource::Static {
        kind,
        value: Secret::new(value),
    })
}

#[cfg(test)]
mod tests {
    use crate::ProxyConfig;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    const BASE: &str = "listen = \"127.0.0.1:0\"\naudit_file = \"a.jsonl\"\n\
                        ca_cert = \"c.pem\"\nca_key = \"k.pem\"\n\
                        [[bindings]]\nidentity = \"w\"\nuid = 1\n";

    fn load(extra: &str, dir: &Path) -> Result<ProxyConfig, String> {
        ProxyConfig::from_toml(&format!("{BASE}{extra}"), dir).map_err(|e| e.to_string())
    }

    fn rule(inject: &str) -> String {
        format!("[[rules]]\nidentity = \"w\"\nhost = \"api.test\"\ninject = {inject}\n")
    }

    #[test]
    fn exactly_one_source_and_known_fields() {
        let dir = Path::new("/tmp");
        let err = load("[secrets.a]\nenv = \"X\"\nidmint = { role = \"r\" }\n", dir).unwrap_err();
        assert!(err.contains("exactly one of"), "{err}");
        let err = load("[secrets.a]\n", dir).unwrap_err();
        assert!(err.contains("exactly one of"), "{err}");
        let err = load(
            "[secrets.a]\nidmint = { role = \"oauth/gh\", field = \"token\" }\n",
            dir,
        )
        .unwrap_err();
        assert!(
            err.contains("secrets.a.idmint.field") && err.contains("access_token"),
            "{err}"
        );
        for role in ["", "a//b", "../x", "a/./b", "a b", "a?b"] {
            let err = load(
                &format!("[secrets.a]\nidmint = {{ role = \"{role}\" }}\n"),
                dir,
            )
            .unwrap_err();
            assert!(err.contains("secrets.a.idmint.role"), "{role}: {err}");
        }
        let ok = load(
            "[idmint]\nrefresh_before = \"30s\"\n[secrets.a]\nidmint = { role = \"oauth/gh\" }\n",
            dir,
        )
        .unwrap();
        assert_eq!(ok.idmint.refresh_before, std::time::Duration::from_secs(30));
        // Defined but injected by no rule: no agent state is needed.
        assert!(!ok.uses_idmint());
        let err = load("[idmint]\nserver = \"ftp://x\"\n", dir).unwrap_err();
        assert!(err.contains("idmint.server"), "{err}");
        let err = load("[idmint]\nserver = \"https://u:p@x\"\n", dir).unwrap_err();
        assert!(err.contains("user information"), "{err}");
    }

    #[test]
    fn vault_kv_is_validated() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("t");
        std::fs::write(&token, "s.token").unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
        let kv = |extra: &str| {
            format!(
                "[secrets.k]\nvault_kv = {{ addr = \"https://bao.test:8200\", path = \"apps/x\", \
                 field = \"key\", token_file = \"t\"{extra} }}\n"
            )
        };
        let err = load(&kv(""), dir.path()).unwrap_err();
        assert!(
            err.contains("secrets.k.vault_kv.token_file") && err.contains("chmod 600"),
            "{err}"
        );
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let ok = load(&kv(", refresh = \"1m\""), dir.path()).unwrap();
        let crate::sources::SecretSource::VaultKv(src) = &ok.secrets["k"].source else {
            panic!("not a vault_kv source");
        };
        assert_eq!(src.url(), "https://bao.test:8200/v1/secret/data/apps/x");
        assert_eq!(
            src.grace,
            std::time::Duration::from_secs(60),
            "grace defaults to refresh"
        );
        let err = load(&kv(", refresh = \"0s\""), dir.path()).unwrap_err();
        assert!(
            err.contains("refresh") && err.contains("greater than zero"),
            "{err}"
        );
        let err = load(&kv(", mount = \"../sys\""), dir.path()).unwrap_err();
        assert!(err.contains("vault_kv.mount"), "{err}");
        let err = load(&kv(", ca_file = \"missing.pem\""), dir.path()).unwrap_err();
        assert!(err.contains("vault_kv.ca_file"), "{err}");
        let err = load(&kv(", bogus = 1"), dir.path()).unwrap_err();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn aws_sigv4_takes_one_form() {
        std::env::set_var("IDMINT_PROXY_TEST_AWS_SK", "sk");
        let dir = Path::new("/tmp");
        let secrets = "[secrets.sk]\nenv = \"IDMINT_PROXY_TEST_AWS_SK\"\n\
                       [secrets.minted]\nidmint = { role = \"aws/deploy\" }\n\
                       [secrets.minted-field]\nidmint = { role = \"aws/deploy\", field = \"access_key_id\" }\n";
        let sig = |keys: &str| {
            format!(
                "{secrets}{}",
                rule(&format!(
                    "{{ kind = \"aws_sigv4\", region = \"us-east-1\", service = \"s3\", {keys} }}"
                ))
            )
        };
        let ok = load(&sig("credentials = \"minted\""), dir).unwrap();
        assert!(ok.uses_idmint());
        assert!(load(&sig("access_key_id = \"AKID\", secret = \"sk\""), dir).is_ok());
        let err = load(&sig("credentials = \"minted\", secret = \"sk\""), dir).unwrap_err();
        assert!(err.contains("either `credentials`"), "{err}");
        let err = load(&sig("region2 = \"x\""), dir).unwrap_err();
        assert!(err.contains("region2"), "{err}");
        let err = load(&sig("credentials = \"sk\""), dir).unwrap_err();
        assert!(err.contains("must be an idmint secret"), "{err}");
        let err = load(&sig("credentials = \"minted-field\""), dir).unwrap_err();
        assert!(err.contains("must not set `field`"), "{err}");
        let err = load(&sig("credentials = \"nope\""), dir).unwrap_err();
        assert!(err.contains("no [secrets.nope]"), "{err}");
    }

    #[test]
    fn idmint_source_needs_an_enrolled_agent_at_startup() {
        let dir = tempfile::tempdir().unwrap();
        crate::init_ca(&dir.path().join("c.pem"), &dir.path().join("k.pem")).unwrap();
        let missing = dir.path().join("no-agent");
        let cfg = ProxyConfig::from_toml(
            &format!(
                "system_roots = false\nupstream_ca_file = [\"c.pem\"]\n{BASE}\
                 [idmint]\nagent_state_dir = \"{}\"\n[secrets.gh]\nidmint = {{ role = \"oauth/gh\" }}\n{}",
                missing.display(),
                rule("{ kind = \"bearer\", secret = \"gh\" }")
            ),
            dir.path(),
        )
        .unwrap();
        let err = crate::Proxy::new(cfg).unwrap_err().to_string();
        assert!(err.contains("idmint agent enroll"), "{err}");
        assert!(!missing.exists(), "the state dir must not be created");
    }
}
