//! `proxy.toml`: parsed, then validated into [`ProxyConfig`].
//!
//! Everything that can be wrong with the configuration is reported at load
//! time with the offending key, so a running proxy never discovers a bad
//! header value or a missing secret on the first request. In particular a
//! header value (prefix, username or secret) containing CR or LF is refused
//! here: it would otherwise let the configuration inject extra headers.

use crate::inject::Injection;
use crate::net::IpNetwork;
use crate::sources::{load_source, IdmintSettings, RawIdmint, RawSecret, SecretSource};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Networks refused by default whatever the rules say: link-local (cloud
/// metadata endpoints live there) and the AWS IPv6 metadata address.
const DEFAULT_DENIED_NETWORKS: &[&str] = &["169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128"];
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read proxy config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("proxy config {path} is not valid TOML for the proxy: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("proxy config: {key}: {problem}")]
    Invalid { key: String, problem: String },
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: SocketAddr,
    transparent_listen: Option<SocketAddr>,
    audit_file: PathBuf,
    ca_cert: Option<PathBuf>,
    ca_key: Option<PathBuf>,
    #[serde(default)]
    upstream_ca_file: Vec<PathBuf>,
    #[serde(default = "default_true")]
    system_roots: bool,
    header_read_timeout: Option<String>,
    upstream_timeout: Option<String>,
    max_header_bytes: Option<usize>,
    fingerprint_key_file: Option<PathBuf>,
    denied_networks: Option<Vec<String>>,
    #[serde(default)]
    resolve: BTreeMap<String, IpAddr>,
    idmint: Option<RawIdmint>,
    #[serde(default)]
    secrets: BTreeMap<String, RawSecret>,
    #[serde(default)]
    bindings: Vec<RawBinding>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBinding {
    identity: String,
    exe: Option<PathBuf>,
    exe_sha256: Option<String>,
    uid: Option<u32>,
    cgroup: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    identity: String,
    host: String,
    #[serde(default = "default_port")]
    port: u16,
    methods: Option<Vec<String>>,
    path_prefix: Option<String>,
    #[serde(default)]
    plaintext: bool,
    inject: Option<RawInject>,
}

fn default_port() -> u16 {
    443
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum RawInject {
    Bearer {
        secret: String,
    },
    Header {
        name: String,
        secret: String,
        prefix: Option<String>,
    },
    Basic {
        username: String,
        secret: String,
    },
    Query {
        name: String,
        secret: String,
    },
    AwsSigv4 {
        /// Static form: the key id, the secret holding the secret access
        /// key, and optionally the secret holding a session token.
        access_key_id: Option<String>,
        secret: Option<String>,
        session_token_secret: Option<String>,
        /// Minted form: an `idmint` secret whose role returns AWS keys.
        credentials: Option<String>,
        region: String,
        service: String,
    },
}

/// Where the local CA lives (both files written by `idmint proxy init-ca`).
#[derive(Debug, Clone)]
pub struct CaPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A named secret and where its value comes from; the name is what the
/// audit log shows.
#[derive(Debug)]
pub struct NamedSecret {
    pub name: String,
    pub source: SecretSource,
}

/// Selectors a process must all match to get `identity`.
#[derive(Debug, Clone)]
pub struct Binding {
    pub identity: String,
    pub exe: Option<PathBuf>,
    pub exe_sha256: Option<String>,
    pub uid: Option<u32>,
    pub cgroup: Option<String>,
}

/// One allowed destination for one identity, and what to inject there.
#[derive(Debug, Clone)]
pub struct Rule {
    pub identity: String,
    /// Lower-case host name or IP literal, as the client names it.
    pub host: String,
    pub port: u16,
    /// Upper-case methods; `None` allows every method.
    pub methods: Option<Vec<String>>,
    pub path_prefix: Option<String>,
    /// Allow injecting over plain `http://` (off: a credential would cross
    /// the network in clear text).
    pub plaintext: bool,
    pub inject: Option<Injection>,
}

impl Rule {
    /// Whether requests must be seen (TLS intercepted) to apply this rule,
    /// rather than tunnelling the connection untouched.
    pub fn needs_interception(&self) -> bool {
        self.inject.is_some() || self.methods.is_some() || self.path_prefix.is_some()
    }
}

/// The validated proxy configuration.
#[derive(Debug)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    /// Listener for connections redirected by iptables/nftables (see
    /// docs/proxy.md "Transparent mode"); loopback only, like `listen`.
    pub transparent_listen: Option<SocketAddr>,
    pub audit_file: PathBuf,
    pub ca: Option<CaPaths>,
    pub upstream_ca_files: Vec<PathBuf>,
    pub system_roots: bool,
    pub header_read_timeout: Duration,
    pub upstream_timeout: Duration,
    pub max_header_bytes: usize,
    pub fingerprint_key_file: Option<PathBuf>,
    pub denied_networks: Vec<IpNetwork>,
    pub resolve: BTreeMap<String, IpAddr>,
    /// How minted (`idmint`) secrets are obtained.
    pub idmint: IdmintSettings,
    /// Every configured secret by name.
    pub secrets: BTreeMap<String, Arc<NamedSecret>>,
    pub bindings: Vec<Binding>,
    pub rules: Vec<Rule>,
}

impl ProxyConfig {
    /// Whether some rule injects an `idmint` secret (then the proxy needs
    /// the enrolled agent key and the server).
    pub fn uses_idmint(&self) -> bool {
        self.rules
            .iter()
            .filter_map(|r| r.inject.as_ref())
            .flat_map(|i| i.secrets())
            .any(|s| matches!(s.source, SecretSource::Idmint(_)))
    }
}

impl ProxyConfig {
    /// Read, parse and validate `path`; relative paths in it are relative to
    /// the file's directory. Secrets are read now (and file modes checked).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                source,
            },
            other => other,
        })
    }

    /// Parse and validate TOML text; `base` anchors relative paths.
    pub fn from_toml(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<inline>"),
            source: Box::new(e),
        })?;
        validate(raw, base)
    }
}

fn anchored(base: &Path, p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
}

fn duration(key: &str, value: Option<String>, default: Duration) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => {
            let d = humantime::parse_duration(&v)
                .map_err(|e| invalid(key, format!("`{v}` is not a duration like \"10s\": {e}")))?;
            if d.is_zero() {
                return Err(invalid(key, "must be greater than zero"));
            }
            Ok(d)
        }
    }
}

fn validate(raw: RawConfig, base: &Path) -> Result<ProxyConfig, ConfigError> {
    if !raw.listen.ip().is_loopback() {
        return Err(invalid(
            "listen",
            format!(
                "{} is not a loopback address: the proxy identifies callers through this \
                 host's /proc, so it must only be reachable locally (use 127.0.0.1:PORT)",
                raw.listen
            ),
        ));
    }
    if let Some(addr) = raw.transparent_listen.filter(|a| !a.ip().is_loopback()) {
        return Err(invalid(
            "transparent_listen",
            format!(
                "{addr} is not a loopback address: redirected connections arrive on loopback \
                 (use 127.0.0.1:PORT)"
            ),
        ));
    }
    let ca = match (raw.ca_cert, raw.ca_key) {
        (Some(cert), Some(key)) => Some(CaPaths {
            cert: anchored(base, cert),
            key: anchored(base, key),
        }),
        (None, None) => None,
        _ => {
            return Err(invalid(
                "ca_cert/ca_key",
                "set both or neither (create them with `idmint proxy init-ca`)",
            ))
        }
    };
    let header_read_timeout = duration(
        "header_read_timeout",
        raw.header_read_timeout,
        DEFAULT_HEADER_READ_TIMEOUT,
    )?;
    let upstream_timeout = duration(
        "upstream_timeout",
        raw.upstream_timeout,
        DEFAULT_UPSTREAM_TIMEOUT,
    )?;
    let max_header_bytes = raw.max_header_bytes.unwrap_or(DEFAULT_MAX_HEADER_BYTES);
    if !(1024..=1024 * 1024).contains(&max_header_bytes) {
        return Err(invalid(
            "max_header_bytes",
            "must be between 1024 and 1048576",
        ));
    }
    let denied_networks = match raw.denied_networks {
        None => DEFAULT_DENIED_NETWORKS
            .iter()
            .map(|n| IpNetwork::parse(n))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("denied_networks", e))?,
        Some(list) => list
            .iter()
            .map(|n| IpNetwork::parse(n).map_err(|e| invalid("denied_networks", e)))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let resolve = raw
        .resolve
        .into_iter()
        .map(|(h, a)| (h.to_ascii_lowercase(), a))
        .collect();

    let mut secrets: BTreeMap<String, Arc<NamedSecret>> = BTreeMap::new();
    for (name, s) in raw.secrets {
        let key = format!("secrets.{name}");
        let source = load_source(&key, s, base)?;
        secrets.insert(name.clone(), Arc::new(NamedSecret { name, source }));
    }

    let idmint = IdmintSettings::from_raw(raw.idmint, base)?;

    let mut bindings = Vec::with_capacity(raw.bindings.len());
    for (i, b) in raw.bindings.into_iter().enumerate() {
        bindings.push(validate_binding(i, b)?);
    }
    let mut rules = Vec::with_capacity(raw.rules.len());
    for (i, r) in raw.rules.into_iter().enumerate() {
        let key = format!("rules[{i}]");
        if !bindings.iter().any(|b| b.identity == r.identity) {
            return Err(invalid(
                format!("{key}.identity"),
                format!(
                    "no [[bindings]] entry gives identity `{}`, so this rule could never apply \
                     (typo?)",
                    r.identity
                ),
            ));
        }
        rules.push(validate_rule(&key, r, &secrets)?);
    }
    if ca.is_none() {
        if let Some((i, _)) = rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.needs_interception() && !r.plaintext && r.port != 80)
        {
            return Err(invalid(
                format!("rules[{i}]"),
                "injection or method/path limits on HTTPS need the local CA: set ca_cert and \
                 ca_key (create them with `idmint proxy init-ca`)",
            ));
        }
    }
    Ok(ProxyConfig {
        listen: raw.listen,
        transparent_listen: raw.transparent_listen,
        audit_file: anchored(base, raw.audit_file),
        ca,
        upstream_ca_files: raw
            .upstream_ca_file
            .into_iter()
            .map(|p| anchored(base, p))
            .collect(),
        system_roots: raw.system_roots,
        header_read_timeout,
        upstream_timeout,
        max_header_bytes,
        fingerprint_key_file: raw.fingerprint_key_file.map(|p| anchored(base, p)),
        denied_networks,
        resolve,
        idmint,
        secrets,
        bindings,
        rules,
    })
}

/// Refuse text that cannot safely go into a header value: CR, LF, NUL and
/// other control characters (tab allowed).
pub(crate) fn check_header_text(text: &str) -> Result<(), String> {
    if text.contains(['\r', '\n']) {
        return Err("contains CR or LF, which would split the HTTP header".into());
    }
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Err("contains a control character".into());
    }
    Ok(())
}

fn validate_binding(i: usize, b: RawBinding) -> Result<Binding, ConfigError> {
    let key = format!("bindings[{i}]");
    if b.identity.trim().is_empty() {
        return Err(invalid(format!("{key}.identity"), "must not be empty"));
    }
    if b.exe.is_none() && b.exe_sha256.is_none() && b.uid.is_none() && b.cgroup.is_none() {
        return Err(invalid(
            key,
            "needs at least one selector (exe, exe_sha256, uid, cgroup); a binding without \
             one would give every local process this identity",
        ));
    }
    if let Some(exe) = &b.exe {
        if !exe.is_absolute() {
            return Err(invalid(
                format!("{key}.exe"),
                "must be an absolute path (the resolved binary, e.g. /usr/bin/python3.11)",
            ));
        }
    }
    let exe_sha256 = match b.exe_sha256 {
        Some(h) => {
            let h = h.to_ascii_lowercase();
            if h.len() != 64 || !h.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(invalid(
                    format!("{key}.exe_sha256"),
                    "must be 64 hex digits (`sha256sum /path/to/binary`)",
                ));
            }
            Some(h)
        }
        None => None,
    };
    if let Some(cg) = &b.cgroup {
        if !cg.starts_with('/') {
            return Err(invalid(
                format!("{key}.cgroup"),
                "must be a cgroup v2 path starting with / (see /proc/<pid>/cgroup)",
            ));
        }
    }
    Ok(Binding {
        identity: b.identity,
        exe: b.exe,
        exe_sha256,
        uid: b.uid,
        cgroup: b.cgroup,
    })
}

fn validate_rule(
    key: &str,
    r: RawRule,
    secrets: &BTreeMap<String, Arc<NamedSecret>>,
) -> Result<Rule, ConfigError> {
    let host = r.host.trim().to_ascii_lowercase();
    if host.is_empty() || host.contains(['/', ':', ' ', '@']) && host.parse::<IpAddr>().is_err() {
        return Err(invalid(
            format!("{key}.host"),
            format!("`{}` is not a host name or IP address", r.host),
        ));
    }
    if r.port == 0 {
        return Err(invalid(format!("{key}.port"), "must not be 0"));
    }
    let methods = match r.methods {
        Some(list) if list.is_empty() => {
            return Err(invalid(
                format!("{key}.methods"),
                "empty list allows nothing; omit it to allow every method",
            ))
        }
        Some(list) => Some(
            list.into_iter()
                .map(|m| {
                    let m = m.to_ascii_uppercase();
                    if m.is_empty() || !m.bytes().all(|c| c.is_ascii_alphabetic()) {
                        Err(invalid(
                            format!("{key}.methods"),
                            format!("`{m}` is not an HTTP method"),
                        ))
                    } else {
                        Ok(m)
                    }
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    if let Some(p) = &r.path_prefix {
        if !p.starts_with('/') {
            return Err(invalid(format!("{key}.path_prefix"), "must start with /"));
        }
    }
    let inject = match r.inject {
        None => None,
        Some(raw) => Some(Injection::from_config(
            &format!("{key}.inject"),
            raw,
            secrets,
        )?),
    };
    Ok(Rule {
        identity: r.identity,
        host,
        port: r.port,
        methods,
        path_prefix: r.path_prefix,
        plaintext: r.plaintext,
        inject,
    })
}

pub(crate) fn invalid_key(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    invalid(key, problem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base_toml() -> String {
        "listen = \"127.0.0.1:0\"\naudit_file = \"audit.jsonl\"\n".to_string()
    }

    #[test]
    fn crlf_in_header_prefix_is_rejected() {
        std::env::set_var("IDMINT_PROXY_TEST_SECRET_A", "s3cret");
        let toml = format!(
            "{}ca_cert = \"c.pem\"\nca_key = \"k.pem\"\n\
             [secrets.a]\nenv = \"IDMINT_PROXY_TEST_SECRET_A\"\n\
             [[bindings]]\nidentity = \"w\"\nuid = 1\n\
             [[rules]]\nidentity = \"w\"\nhost = \"api.test\"\n\
             inject = {{ kind = \"header\", name = \"X-Key\", prefix = \"a\\r\\nX-Evil: 1\", secret = \"a\" }}\n",
            base_toml()
        );
        let err = ProxyConfig::from_toml(&toml, Path::new("/tmp")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("rules[0].inject.prefix"), "{msg}");
        assert!(msg.contains("CR or LF"), "{msg}");
    }

    #[test]
    fn crlf_in_secret_is_rejected_without_printing_it() {
        std::env::set_var("IDMINT_PROXY_TEST_SECRET_B", "abc\r\nX-Evil: 1");
        let toml = format!(
            "{}[secrets.b]\nenv = \"IDMINT_PROXY_TEST_SECRET_B\"\n",
            base_toml()
        );
        let msg = ProxyConfig::from_toml(&toml, Path::new("/tmp"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("CR or LF"), "{msg}");
        assert!(!msg.contains("X-Evil"), "{msg}");
    }

    #[test]
    fn secret_file_readable_by_others_is_rejected() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("key");
        std::fs::write(&f, "k\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let toml = format!("{}[secrets.k]\nfile = \"key\"\n", base_toml());
        let msg = ProxyConfig::from_toml(&toml, dir.path())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("chmod 600"), "{msg}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(ProxyConfig::from_toml(&toml, dir.path()).is_ok());
    }

    #[test]
    fn non_loopback_listen_and_selectorless_binding_are_rejected() {
        let toml = "listen = \"0.0.0.0:8080\"\naudit_file = \"a\"\n";
        let msg = ProxyConfig::from_toml(toml, Path::new("/tmp"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("loopback"), "{msg}");
        let toml = format!("{}[[bindings]]\nidentity = \"w\"\n", base_toml());
        let msg = ProxyConfig::from_toml(&toml, Path::new("/tmp"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("at least one selector"), "{msg}");
    }

    #[test]
    fn rule_for_unknown_identity_is_rejected() {
        let toml = format!(
            "{}[[bindings]]\nidentity = \"w\"\nuid = 1\n[[rules]]\nidentity = \"x\"\nhost = \"a.test\"\n",
            base_toml()
        );
        let msg = ProxyConfig::from_toml(&toml, Path::new("/tmp"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("rules[0].identity"), "{msg}");
    }
}
