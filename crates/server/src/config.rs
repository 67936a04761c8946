//! `idmint.toml`: the server configuration.
//!
//! Every error names the file, the line and the key. Syntax and unknown-key
//! errors come from the TOML parser (which reports line and key); semantic
//! checks use [`toml::Spanned`] on the tables they validate so that they can
//! point at the right line too.

use idmint_authn::OidcConfig;
use idmint_core::Ttl;
use idmint_issuers::aws::AwsIssuerConfig;
use idmint_issuers::azure::AzureIssuerConfig;
use idmint_issuers::mysql::MysqlIssuerConfig;
use idmint_issuers::postgres::PostgresIssuerConfig;
use idmint_issuers::rabbitmq::RabbitmqIssuerConfig;
use idmint_issuers::redis::RedisIssuerConfig;
use idmint_issuers::ssh::SshIssuerConfig;
use idmint_issuers::OauthIssuerConfig;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdmintConfig {
    #[serde(default)]
    pub server: ServerSection,
    pub storage: StorageSection,
    pub seal: SealSection,
    #[serde(default)]
    pub audit: AuditSection,
    #[serde(default)]
    pub session: SessionSection,
    #[serde(default)]
    pub auth: AuthSection,
    #[serde(default)]
    pub issuer: IssuerSection,
    #[serde(default)]
    pub reaper: ReaperSection,
    /// Policy drafts and approvals (two-person rule, break-glass).
    #[serde(default)]
    pub governance: crate::governance::GovernanceSection,
    /// Issuance rate limits and lease quotas.
    #[serde(default)]
    pub limits: crate::limits::LimitsSection,
    /// Anomaly signals at issuance (absent: none are watched).
    #[serde(default)]
    pub anomaly: Option<crate::anomaly::AnomalySection>,
    /// Directory with `roles.toml` and `*.cedar`: seeds bundle version 1.
    pub policy_dir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// External URL of this server: the `iss` of tokens idmint signs and the
    /// base of its discovery document. Defaults to `https://<listen>`.
    #[serde(default)]
    pub public_url: Option<String>,
    #[serde(default)]
    pub tls: Option<TlsSection>,
    /// Maximum request body; tokens are small, so keep this tight.
    #[serde(default = "default_body_limit")]
    pub max_body_bytes: usize,
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Ttl,
    /// Allow plain HTTP. Only accepted when `listen` is a loopback address
    /// (e.g. behind a local TLS-terminating proxy, or in tests).
    #[serde(default)]
    pub insecure_http: bool,
    /// Also serve the API on this Unix socket (e.g.
    /// `/run/idmint/idmint.sock`): the only way in for `[[auth.unix]]`
    /// local-process logins, whose proof is the peer's credentials.
    #[serde(default)]
    pub unix_socket: Option<PathBuf>,
    /// Permissions of the socket file (default `0o660`: owner and group).
    #[serde(default = "default_unix_socket_mode")]
    pub unix_socket_mode: u32,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            public_url: None,
            tls: None,
            max_body_bytes: default_body_limit(),
            request_timeout: default_request_timeout(),
            insecure_http: false,
            unix_socket: None,
            unix_socket_mode: default_unix_socket_mode(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8443))
}
fn default_unix_socket_mode() -> u32 {
    0o660
}
fn default_body_limit() -> usize {
    64 * 1024
}
fn default_request_timeout() -> Ttl {
    Ttl::clamped(30)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    pub sqlite: Option<SqliteSection>,
    /// `postgres = { url, pool_size, tls, ca_file }`: for production and
    /// for several active servers sharing one database.
    #[serde(default)]
    pub postgres: Option<Spanned<idmint_store::PostgresConfig>>,
    /// `idmint server --store URL`: replaces whatever the file configures.
    #[serde(skip)]
    pub store_override: Option<idmint_store::StoreLocation>,
}

impl StorageSection {
    /// The configured backend. `validate` guarantees exactly one is set;
    /// `None` only for a config that skipped validation.
    pub fn location(&self) -> Option<idmint_store::StoreLocation> {
        if let Some(location) = &self.store_override {
            return Some(location.clone());
        }
        match (&self.sqlite, &self.postgres) {
            (Some(s), None) => Some(idmint_store::StoreLocation::Sqlite(s.path.clone())),
            (None, Some(p)) => Some(idmint_store::StoreLocation::Postgres(p.get_ref().clone())),
            _ => None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSection {
    pub path: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealSection {
    /// File with the 32-byte root key (raw, hex or base64), mode 0600.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Name of an environment variable holding the root key (hex/base64).
    #[serde(default)]
    pub key_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    #[serde(default)]
    pub file: Option<AuditFileSection>,
    #[serde(default)]
    pub stdout: bool,
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// `[[audit.sinks]]`: best-effort copies (stdout, syslog, webhook) fed
    /// after the primary is durable; see docs/audit.md.
    #[serde(default)]
    pub sinks: Vec<Spanned<idmint_audit::SinkConfig>>,
}

impl Default for AuditSection {
    fn default() -> Self {
        Self {
            file: None,
            stdout: false,
            checkpoint_every: default_checkpoint_every(),
            sinks: Vec::new(),
        }
    }
}

fn default_checkpoint_every() -> u64 {
    1000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFileSection {
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSection {
    /// Session lifetime for machine identities (CI, workloads).
    #[serde(default = "default_machine_session")]
    pub machine_ttl: Ttl,
    /// Session lifetime for people.
    #[serde(default = "default_human_session")]
    pub human_ttl: Ttl,
}

impl Default for SessionSection {
    fn default() -> Self {
        Self {
            machine_ttl: default_machine_session(),
            human_ttl: default_human_session(),
        }
    }
}

fn default_machine_session() -> Ttl {
    Ttl::clamped(300)
}
fn default_human_session() -> Ttl {
    Ttl::clamped(900)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    #[serde(default)]
    pub oidc: Vec<Spanned<OidcConfig>>,
    /// `[[auth.approle]]`: role id + secret id logins (see docs/approle.md).
    #[serde(default)]
    pub approle: Vec<Spanned<idmint_authn::AppRoleConfig>>,
    /// `[[auth.mtls]]`: client-certificate logins (see docs/mtls.md).
    #[serde(default)]
    pub mtls: Vec<Spanned<idmint_authn::MtlsConfig>>,
    /// `[[auth.aws_iam]]`: signed `sts:GetCallerIdentity` logins (see docs/auth-methods.md).
    #[serde(default)]
    pub aws_iam: Vec<Spanned<idmint_authn::AwsIamConfig>>,
    /// `[[auth.unix]]`: local processes, by the kernel's word about them
    /// (see docs/auth-methods.md).
    #[serde(default)]
    pub unix: Vec<Spanned<idmint_authn::UnixConfig>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSection {
    #[serde(default)]
    pub oauth: Vec<Spanned<OauthIssuerConfig>>,
    #[serde(default)]
    pub postgres: Vec<Spanned<PostgresIssuerConfig>>,
    #[serde(default)]
    pub mysql: Vec<Spanned<MysqlIssuerConfig>>,
    #[serde(default)]
    pub redis: Vec<Spanned<RedisIssuerConfig>>,
    #[serde(default)]
    pub rabbitmq: Vec<Spanned<RabbitmqIssuerConfig>>,
    #[serde(default)]
    pub aws: Vec<Spanned<AwsIssuerConfig>>,
    #[serde(default)]
    pub azure: Vec<Spanned<AzureIssuerConfig>>,
    #[serde(default)]
    pub ssh: Vec<Spanned<SshIssuerConfig>>,
    /// `[[issuer.x509]]`: X.509-SVIDs (see docs/mtls.md).
    #[serde(default)]
    pub x509: Vec<Spanned<idmint_issuers::x509::X509IssuerConfig>>,
    /// `[[issuer.static]]`: secrets stored sealed with `idmint secret put`,
    /// delivered to `idmint proxy` (see docs/proxy.md).
    #[serde(default, rename = "static")]
    pub static_secret: Vec<Spanned<idmint_issuers::static_secret::StaticIssuerConfig>>,
}

impl IssuerSection {
    /// `(name, line offset)` of every configured issuer, all kinds.
    pub fn names_and_spans(&self) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = vec![];
        out.extend(
            self.oauth
                .iter()
                .map(|e| (e.get_ref().name.clone(), e.span().start)),
        );
        out.extend(
            self.postgres
                .iter()
                .map(|e| (e.get_ref().name.clone(), e.span().start)),
        );
        out.extend(
            self.mysql
                .iter()
                .map(|e| (e.get_ref().name.clone(), e.span().start)),
        );
        out.extend(
            self.redis
                .iter()
                .map(|e| (e.get_ref().name.clone(), e.span().start)),
        );
        out.extend(
            self.rabbitmq
                .iter()
                .map(|e| (e.get_ref().name.clone(), e.span().start)),
        );
        out.extend(
            self.aws
                .iter()
                .map(|e| (e.get_ref().name.clone(), e.span().start)),
        );
        out.extend(
            self.azure
                .iter()
                .map(|e| (e.get_ref().name.clone(), e.span().start)),
        );
        out.extend(
            self.ssh
                .iter()
                .map(|e| (e.get_ref().name.clone(), e.span().start)),
        );
        out.extend(
            self.x509
                .iter()
                .map(|e| (e.get_ref().name.clone(), e.span().start)),
        );
        out.extend(
            self.static_secret
                .iter()
                .map(|e| (e.get_ref().name.clone(), e.span().start)),
        );
        out
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReaperSection {
    /// How often the reaper looks for expired leases.
    #[serde(default = "default_reaper_interval")]
    pub interval: Ttl,
    /// Revocation attempts before a lease is flagged irrevocable.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// A lease still `pending` this long after creation lost its request (a
    /// crash between write-ahead and activation): whatever the target may
    /// hold for it is revoked. Must exceed the slowest target's minting time.
    #[serde(default = "default_pending_grace")]
    pub pending_grace: Ttl,
    /// How long a reaper pass owns the leases it picked (servers sharing a
    /// PostgreSQL store never revoke one lease twice). If a server dies
    /// mid-pass, another takes its leases over after this long.
    #[serde(default = "default_claim_for")]
    pub claim_for: Ttl,
}

fn default_claim_for() -> Ttl {
    Ttl::clamped(30)
}

impl Default for ReaperSection {
    fn default() -> Self {
        Self {
            interval: default_reaper_interval(),
            max_attempts: default_max_attempts(),
            pending_grace: default_pending_grace(),
            claim_for: default_claim_for(),
        }
    }
}

fn default_reaper_interval() -> Ttl {
    Ttl::clamped(5)
}
fn default_pending_grace() -> Ttl {
    Ttl::clamped(120)
}
fn default_max_attempts() -> u32 {
    8
}

/// A configuration error, always with the file and, when known, the line.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(": line {l}")).unwrap_or_default())]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

fn line_at(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map(|s| s.matches('\n').count() + 1)
        .unwrap_or(1)
}

impl IdmintConfig {
    pub fn load(path: &Path) -> Result<(Self, String), ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: None,
            message: format!("cannot read the configuration file: {e}"),
        })?;
        let cfg = Self::parse(&file, &text)?;
        Ok((cfg, text))
    }

    pub fn parse(file: &str, text: &str) -> Result<Self, ConfigError> {
        let cfg: IdmintConfig = toml::from_str(text).map_err(|e| ConfigError {
            file: file.to_string(),
            line: e.span().map(|s| line_at(text, s.start)),
            message: e.message().to_string(),
        })?;
        cfg.validate(file, text)?;
        Ok(cfg)
    }

    /// Make relative paths relative to the config file's directory, so the
    /// server behaves the same whatever its working directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.policy_dir);
        for e in &mut self.auth.mtls {
            let m = e.get_mut();
            m.ca_files
                .iter_mut()
                .chain(m.crl_files.iter_mut())
                .for_each(fix);
        }
        if let Some(s) = &mut self.storage.sqlite {
            fix(&mut s.path);
        }
        if let Some(ca) = self
            .storage
            .postgres
            .as_mut()
            .and_then(|p| p.get_mut().ca_file.as_mut())
        {
            fix(ca);
        }
        if let Some(k) = &mut self.seal.key_file {
            fix(k);
        }
        if let Some(a) = &mut self.audit.file {
            fix(&mut a.path);
        }
        for sink in &mut self.audit.sinks {
            if let idmint_audit::SinkConfig::Webhook(w) = sink.get_mut() {
                fix(&mut w.spool_dir);
            }
        }
        if let Some(s) = &mut self.server.unix_socket {
            fix(s);
        }
        if let Some(t) = &mut self.server.tls {
            fix(&mut t.cert);
            fix(&mut t.key);
        }
        use crate::targets::TargetConfig;
        fn fix_targets<C: TargetConfig>(list: &mut [Spanned<C>], base: &Path) {
            for e in list {
                if let Some(p) = e.get_mut().admin_password_file_mut() {
                    if p.is_relative() {
                        *p = base.join(&*p);
                    }
                }
            }
        }
        fix_targets(&mut self.issuer.postgres, base);
        fix_targets(&mut self.issuer.mysql, base);
        fix_targets(&mut self.issuer.redis, base);
        fix_targets(&mut self.issuer.rabbitmq, base);
        for e in &mut self.issuer.azure {
            if let Some(p) = e.get_mut().client_secret_file.as_mut() {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
    }

    fn validate(&self, file: &str, text: &str) -> Result<(), ConfigError> {
        let err = |line: Option<usize>, message: String| ConfigError {
            file: file.to_string(),
            line,
            message,
        };
        match (&self.storage.sqlite, &self.storage.postgres) {
            (None, None) => return Err(err(None, "[storage]: configure a backend, e.g. sqlite = { path = \"/var/lib/idmint/idmint.db\" } or postgres = { url = \"postgres://idmint:PASSWORD@db:5432/idmint\" }".into())),
            (Some(_), Some(pg)) => return Err(err(Some(line_at(text, pg.span().start)), "[storage]: configure only one of sqlite and postgres".into())),
            (None, Some(pg)) => {
                pg.get_ref()
                    .validate()
                    .map_err(|e| err(Some(line_at(text, pg.span().start)), e.to_string()))?;
            }
            (Some(_), None) => {}
        }
        match (&self.seal.key_file, &self.seal.key_env) {
            (None, None) => {
                return Err(err(
                    None,
                    "[seal]: set key_file or key_env (the root key that seals secrets at rest)"
                        .into(),
                ))
            }
            (Some(_), Some(_)) => {
                return Err(err(
                    None,
                    "[seal]: set only one of key_file and key_env".into(),
                ))
            }
            _ => {}
        }
        if self.server.tls.is_none() {
            if !self.server.insecure_http {
                return Err(err(None, "[server]: tls = { cert, key } is required (plain HTTP only with insecure_http = true on a loopback listen address, or `idmint server --dev`)".into()));
            }
            if !self.server.listen.ip().is_loopback() {
                return Err(err(None, format!("[server] insecure_http: refusing plain HTTP on non-loopback address {}; configure tls", self.server.listen)));
            }
        }
        if let Some(url) = &self.server.public_url {
            let parsed = url::Url::parse(url)
                .map_err(|e| err(None, format!("[server] public_url {url:?}: {e}")))?;
            if parsed.scheme() != "https" && !self.server.insecure_http {
                return Err(err(
                    None,
                    format!("[server] public_url {url:?} must be https"),
                ));
            }
        }
        if self.server.max_body_bytes < 1024 {
            return Err(err(
                None,
                "[server] max_body_bytes must be at least 1024".into(),
            ));
        }
        let mut sink_names = std::collections::HashSet::new();
        let mut spools = std::collections::HashSet::new();
        for entry in &self.audit.sinks {
            let line = Some(line_at(text, entry.span().start));
            let sink = entry.get_ref();
            sink.validate().map_err(|e| err(line, e.to_string()))?;
            if !sink_names.insert(sink.name().to_string()) {
                return Err(err(line, format!("[[audit.sinks]] name {:?} is used twice; give each sink a distinct name = \"…\"", sink.name())));
            }
            if let idmint_audit::SinkConfig::Webhook(w) = sink {
                if !spools.insert(w.spool_dir.clone()) {
                    return Err(err(line, format!("[[audit.sinks]] spool_dir {} is shared by two webhooks; each needs its own", w.spool_dir.display())));
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for entry in &self.auth.oidc {
            let line = Some(line_at(text, entry.span().start));
            let cfg = entry.get_ref();
            cfg.validate().map_err(|e| err(line, e.to_string()))?;
            if !names.insert(cfg.name.clone()) {
                return Err(err(
                    line,
                    format!("[[auth.oidc]] name {:?} is used twice", cfg.name),
                ));
            }
        }
        let mut approles = std::collections::HashSet::new();
        for entry in &self.auth.approle {
            let line = Some(line_at(text, entry.span().start));
            let cfg = entry.get_ref();
            cfg.validate().map_err(|e| err(line, e.to_string()))?;
            if !approles.insert(cfg.name.clone()) {
                return Err(err(
                    line,
                    format!("[[auth.approle]] name {:?} is used twice", cfg.name),
                ));
            }
        }
        let mut aws_iam = std::collections::HashSet::new();
        for entry in &self.auth.aws_iam {
            let line = Some(line_at(text, entry.span().start));
            let cfg = entry.get_ref();
            cfg.validate().map_err(|e| err(line, e.to_string()))?;
            if !aws_iam.insert(cfg.name.clone()) {
                return Err(err(
                    line,
                    format!("[[auth.aws_iam]] name {:?} is used twice", cfg.name),
                ));
            }
        }
        let mut mtls = std::collections::HashSet::new();
        for entry in &self.auth.mtls {
            let line = Some(line_at(text, entry.span().start));
            let cfg = entry.get_ref();
            cfg.validate().map_err(|e| err(line, e.to_string()))?;
            if !mtls.insert(cfg.name.clone()) {
                return Err(err(
                    line,
                    format!("[[auth.mtls]] name {:?} is used twice", cfg.name),
                ));
            }
        }
        let mut unix = std::collections::HashSet::new();
        for entry in &self.auth.unix {
            let line = Some(line_at(text, entry.span().start));
            let cfg = entry.get_ref();
            cfg.validate().map_err(|e| err(line, e.to_string()))?;
            if !unix.insert(cfg.name.clone()) {
                return Err(err(
                    line,
                    format!("[[auth.unix]] name {:?} is used twice", cfg.name),
                ));
            }
            if cfg.trusted_hosts.is_empty() && self.server.unix_socket.is_none() {
                return Err(err(line, format!("[[auth.unix]] {:?} has no trusted_hosts, so it only accepts logins over the server's Unix socket, but [server] unix_socket is not set; set unix_socket = \"/run/idmint/idmint.sock\"", cfg.name)));
            }
        }
        if self.server.unix_socket_mode > 0o777 {
            return Err(err(
                None,
                format!(
                    "[server] unix_socket_mode {:#o} is not a permission mode; use e.g. 0o660",
                    self.server.unix_socket_mode
                ),
            ));
        }
        if let Some(s) = &self.server.unix_socket {
            if s.as_os_str().is_empty() || s.as_os_str().len() > 100 {
                return Err(err(None, format!("[server] unix_socket {:?}: a socket path must be 1-100 bytes (the kernel's limit is 108)", s.display().to_string())));
            }
        }
        if !self.auth.mtls.is_empty() && self.server.tls.is_none() {
            return Err(err(
                None,
                "[[auth.mtls]] needs [server] tls: client certificates are only seen on the TLS listener".into(),
            ));
        }
        let mut issuers = std::collections::HashSet::new();
        for entry in &self.issuer.oauth {
            let line = Some(line_at(text, entry.span().start));
            if !issuers.insert(entry.get_ref().name.clone()) {
                return Err(err(
                    line,
                    format!(
                        "[[issuer.oauth]] name {:?} is used twice",
                        entry.get_ref().name
                    ),
                ));
            }
        }
        for entry in &self.issuer.aws {
            let line = Some(line_at(text, entry.span().start));
            entry.get_ref().validate().map_err(|e| err(line, e))?;
        }
        for entry in &self.issuer.azure {
            let line = Some(line_at(text, entry.span().start));
            entry.get_ref().validate().map_err(|e| err(line, e))?;
        }
        self.validate_ssh(text).map_err(|(line, m)| err(line, m))?;
        let all_issuers = self.issuer.names_and_spans();
        for entry in &self.issuer.x509 {
            let line = Some(line_at(text, entry.span().start));
            let cfg = entry.get_ref();
            cfg.validate().map_err(|e| err(line, e))?;
            if all_issuers.iter().filter(|(n, _)| *n == cfg.name).count() > 1 {
                return Err(err(
                    line,
                    format!(
                        "[[issuer.x509]] name {:?} is used by another issuer",
                        cfg.name
                    ),
                ));
            }
        }
        for entry in &self.issuer.static_secret {
            let line = Some(line_at(text, entry.span().start));
            let name = &entry.get_ref().name;
            if name.trim().is_empty() {
                return Err(err(
                    line,
                    "[[issuer.static]] needs a non-empty `name`".into(),
                ));
            }
            if all_issuers.iter().filter(|(n, _)| n == name).count() > 1 {
                return Err(err(
                    line,
                    format!("[[issuer.static]] name {name:?} is used by another issuer"),
                ));
            }
        }
        if self.reaper.max_attempts == 0 {
            return Err(err(None, "[reaper] max_attempts must be at least 1".into()));
        }
        Ok(())
    }
}

impl IdmintConfig {
    /// `[[issuer.ssh]]`: each entry valid, its name unique among all
    /// issuers, its hosts unique across ssh issuers (requests and agents
    /// name only the host), and `ready_timeout` shorter than
    /// `[server] request_timeout` (a session request waits that long).
    fn validate_ssh(&self, text: &str) -> Result<(), (Option<usize>, String)> {
        let all = self.issuer.names_and_spans();
        let mut hosts: std::collections::HashMap<&str, &str> = Default::default();
        for entry in &self.issuer.ssh {
            let line = Some(line_at(text, entry.span().start));
            let cfg = entry.get_ref();
            cfg.validate().map_err(|e| (line, e))?;
            if all.iter().filter(|(n, _)| *n == cfg.name).count() > 1 {
                return Err((
                    line,
                    format!(
                        "[[issuer.ssh]] name {:?} is used by another issuer",
                        cfg.name
                    ),
                ));
            }
            if cfg.ready_timeout >= self.server.request_timeout {
                return Err((line, format!(
                    "[[issuer.ssh]] {:?}: ready_timeout {} must be shorter than [server] request_timeout {}",
                    cfg.name, cfg.ready_timeout, self.server.request_timeout
                )));
            }
            for h in &cfg.hosts {
                if let Some(other) = hosts.insert(&h.name, &cfg.name) {
                    return Err((line, format!(
                        "[[issuer.ssh]] {:?}: host {:?} is also declared by issuer {other:?}; host names must be unique",
                        cfg.name, h.name
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_issuers_are_validated_with_lines() {
        let ok = "[[issuer.ssh]]\nname = \"ssh\"\nhosts = [{ name = \"web-1\", address = \"127.0.0.1\", port = 2222, labels = { env = \"prod\" } }]\n";
        let cfg = IdmintConfig::parse("idmint.toml", &format!("{BASE}{ok}")).unwrap();
        assert_eq!(cfg.issuer.ssh[0].get_ref().hosts[0].port, 2222);
        let e = err(&format!("{ok}[[issuer.ssh]]\nname = \"ssh2\"\nhosts = [{{ name = \"web-1\", address = \"x\" }}]\n"));
        assert!(
            e.starts_with("idmint.toml: line 14:") && e.contains("unique"),
            "{e}"
        );
        let e = err("[[issuer.ssh]]\nname = \"ssh\"\nready_timeout = \"1m\"\n");
        assert!(
            e.starts_with("idmint.toml: line 11:") && e.contains("request_timeout"),
            "{e}"
        );
        let e = err(
            "[[issuer.ssh]]\nname = \"s\"\nhosts = [{ name = \"bad host\", address = \"x\" }]\n",
        );
        assert!(e.contains("line 11") && e.contains("host name"), "{e}");
        let e = err("[[issuer.oauth]]\nname = \"dup\"\n[[issuer.ssh]]\nname = \"dup\"\n");
        assert!(e.contains("used by another issuer"), "{e}");
    }

    const BASE: &str = r#"policy_dir = "policy"
[server]
listen = "127.0.0.1:8443"
insecure_http = true
[storage]
sqlite = { path = "x.db" }
[seal]
key_file = "root.key"
[audit]
file = { path = "audit.jsonl" }
"#;

    fn err(extra: &str) -> String {
        IdmintConfig::parse("idmint.toml", &format!("{BASE}{extra}"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn approle_tables_are_checked_with_their_line() {
        let ok = format!("{BASE}[[auth.approle]]\nname = \"billing\"\nrole_id = \"0123456789abcdef\"\nmetadata = {{ team = \"orders\" }}\n");
        let cfg = IdmintConfig::parse("idmint.toml", &ok).unwrap();
        assert_eq!(cfg.auth.approle[0].get_ref().secret_id_num_uses, 1);
        let e = err("[[auth.approle]]\nname = \"billing\"\nrole_id = \"short\"\n");
        assert!(
            e.contains("line") && e.contains("role_id must be 16-256"),
            "{e}"
        );
        let e = err("[[auth.approle]]\nname = \"b\"\nrole_id = \"0123456789abcdef\"\nsecret_id_bound_cidrs = [\"10.0.0.0/40\"]\n");
        assert!(e.contains("secret_id_bound_cidrs"), "{e}");
        let two = "[[auth.approle]]\nname = \"b\"\nrole_id = \"0123456789abcdef\"\n";
        let e = err(&format!("{two}{two}"));
        assert!(e.contains("used twice"), "{e}");
    }

    #[test]
    fn aws_iam_tables_are_checked_with_their_line() {
        let one = "[[auth.aws_iam]]\nname = \"aws\"\nserver_id = \"https://idmint\"\nbound_arns = [\"arn:aws:iam::1:user/a\"]\n";
        let cfg = IdmintConfig::parse("idmint.toml", &format!("{BASE}{one}")).unwrap();
        let aws = cfg.auth.aws_iam[0].get_ref();
        assert_eq!(aws.endpoint_url(), "https://sts.us-east-1.amazonaws.com");
        assert_eq!(aws.max_skew.as_secs(), 300);
        let e = err("[[auth.aws_iam]]\nname = \"aws\"\nserver_id = \"x\"\nbound_arns = []\n");
        assert!(e.contains("line") && e.contains("bound_arns"), "{e}");
        let e = err("[[auth.aws_iam]]\nname = \"aws\"\nbound_arns = [\"arn:aws:iam::1:user/a\"]\n");
        assert!(e.contains("server_id"), "{e}");
        let e = err(&format!("{one}{one}"));
        assert!(e.contains("used twice"), "{e}");
    }

    #[test]
    fn audit_sinks_are_parsed_and_checked_with_their_line() {
        let ok = "[[audit.sinks]]\nkind = \"stdout\"\n[[audit.sinks]]\nkind = \"syslog\"\naddress = \"udp://127.0.0.1:514\"\nfacility = \"local3\"\n[[audit.sinks]]\nkind = \"webhook\"\nurl = \"https://siem.example/ingest\"\nspool_dir = \"spool\"\n";
        let cfg = IdmintConfig::parse("idmint.toml", &format!("{BASE}{ok}")).unwrap();
        let kinds: Vec<_> = cfg.audit.sinks.iter().map(|s| s.get_ref().kind()).collect();
        assert_eq!(kinds, ["stdout", "syslog", "webhook"]);
        let e = err("[[audit.sinks]]\nkind = \"syslog\"\naddress = \"tcp://x:1\"\n");
        assert!(
            e.starts_with("idmint.toml: line 11:") && e.contains("address"),
            "{e}"
        );
        let e = err("[[audit.sinks]]\nkind = \"kafka\"\n");
        assert!(e.contains("line 12") && e.contains("kafka"), "{e}");
        let e = err("[[audit.sinks]]\nkind = \"webhook\"\nurl = \"http://x\"\nspool_dir = \"s\"\nretries = 3\n");
        assert!(e.contains("retries"), "{e}");
        let e = err("[[audit.sinks]]\nkind = \"stdout\"\npath = \"x\"\n");
        assert!(e.contains("path"), "{e}");
        let e = err("[[audit.sinks]]\nkind = \"stdout\"\n[[audit.sinks]]\nkind = \"stdout\"\n");
        assert!(e.contains("line 13") && e.contains("used twice"), "{e}");
    }

    #[test]
    fn mtls_and_x509_tables_are_checked_with_their_line() {
        let e = err("[[auth.mtls]]\nname = \"w\"\nca_files = [\"ca.pem\"]\n");
        assert!(
            e.contains("line 11") && e.contains("allowed_trust_domains"),
            "{e}"
        );
        let e = err("[[auth.mtls]]\nname = \"w\"\nca_files = [\"ca.pem\"]\nallowed_trust_domains = [\"td\"]\n");
        assert!(e.contains("needs [server] tls"), "{e}");
        let e = err("[[issuer.x509]]\nname = \"s\"\ntrust_domain = \"TD\"\n");
        assert!(e.contains("line 11") && e.contains("trust_domain"), "{e}");
    }

    #[test]
    fn base_is_valid() {
        let cfg = IdmintConfig::parse("idmint.toml", BASE).unwrap();
        assert_eq!(cfg.session.machine_ttl.as_secs(), 300);
        assert_eq!(cfg.reaper.max_attempts, 8);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = err("[[auth.oidc]]\nname = \"gh\"\nissuer = \"https://x\"\naudiences = [\"a\"]\naudience = \"a\"\n");
        assert!(e.starts_with("idmint.toml: line 15"), "{e}");
        assert!(e.contains("audience"), "{e}");
    }

    #[test]
    fn semantic_errors_point_at_the_table() {
        let e = err("[[auth.oidc]]\nname = \"gh\"\nissuer = \"https://x\"\naudiences = []\n");
        assert!(e.starts_with("idmint.toml: line 11:"), "{e}");
        assert!(e.contains("audiences"), "{e}");
        let two = "[[auth.oidc]]\nname = \"gh\"\nissuer = \"https://x\"\naudiences = [\"a\"]\n";
        let e = err(&format!("{two}{two}"));
        assert!(
            e.contains("used twice") && e.starts_with("idmint.toml: line 15"),
            "{e}"
        );
    }

    #[test]
    fn plain_http_needs_loopback_and_opt_in() {
        let text = BASE.replace("insecure_http = true\n", "");
        let e = IdmintConfig::parse("idmint.toml", &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls = { cert, key } is required"), "{e}");
        let text = BASE.replace("127.0.0.1:8443", "0.0.0.0:8443");
        let e = IdmintConfig::parse("idmint.toml", &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("refusing plain HTTP"), "{e}");
    }

    #[test]
    fn seal_and_storage_required() {
        let text = BASE.replace("key_file = \"root.key\"", "");
        let e = IdmintConfig::parse("idmint.toml", &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[seal]"), "{e}");
        let e = IdmintConfig::parse("idmint.toml", "policy_dir = 1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn postgres_storage_is_validated_with_its_line() {
        let pg = |table: &str| {
            BASE.replace(
                "sqlite = { path = \"x.db\" }",
                &format!("postgres = {table}"),
            )
        };
        let cfg = IdmintConfig::parse(
            "idmint.toml",
            &pg(r#"{ url = "postgres://idm:pw@127.0.0.1:5432/idmint", pool_size = 4 }"#),
        )
        .unwrap();
        match cfg.storage.location() {
            Some(idmint_store::StoreLocation::Postgres(c)) => assert_eq!(c.pool_size(), 4),
            other => panic!("{other:?}"),
        }
        let remote = pg(r#"{ url = "postgres://idm:pw@db.example/idmint" }"#);
        let line = remote
            .lines()
            .position(|l| l.starts_with("postgres ="))
            .unwrap()
            + 1;
        let e = IdmintConfig::parse("idmint.toml", &remote)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("line {line}")) && e.contains("ca_file"),
            "{e}"
        );
        assert!(!e.contains(":pw@"), "the password must not be shown: {e}");
        let e = IdmintConfig::parse("idmint.toml", &pg(r#"{ url = "x", tls = "maybe" }"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("maybe"), "{e}");
        let both = BASE.replace(
            "sqlite = { path = \"x.db\" }",
            "sqlite = { path = \"x.db\" }\npostgres = { url = \"postgres://a:b@127.0.0.1/d\" }",
        );
        let e = IdmintConfig::parse("idmint.toml", &both)
            .unwrap_err()
            .to_string();
        assert!(e.contains("only one of sqlite and postgres"), "{e}");
    }

    #[test]
    fn shipped_examples_parse() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut n = 0;
        for entry in std::fs::read_dir(&root).unwrap() {
            let dir = entry.unwrap().path();
            let file = dir.join("idmint.toml");
            if file.exists() {
                IdmintConfig::load(&file).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert_eq!(n, 4);
    }
}
