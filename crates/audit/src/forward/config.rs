//! `[[audit.sinks]]`: what each secondary sink needs, and its validation.

use crate::AuditError;
use serde::Deserialize;
use std::path::PathBuf;

const DEFAULT_SPOOL_MAX_BYTES: u64 = 64 * 1024 * 1024;
const DEFAULT_BATCH_MAX_BYTES: u64 = 1024 * 1024;
const DEFAULT_TIMEOUT_SECONDS: u64 = 10;
const DEFAULT_BACKOFF_INITIAL_MS: u64 = 500;
const DEFAULT_BACKOFF_MAX_SECONDS: u64 = 60;

/// One `[[audit.sinks]]` entry, selected by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SinkConfig {
    /// JSON lines on stdout, best-effort (unlike `[audit] stdout = true`,
    /// which is a fail-closed primary sink).
    Stdout(StdoutConfig),
    Syslog(SyslogConfig),
    Webhook(WebhookConfig),
}

/// `kind = "stdout"`: only a name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {
    #[serde(default)]
    pub name: Option<String>,
}

/// `kind = "syslog"`: RFC 5424 messages, one datagram per event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    #[serde(default)]
    pub name: Option<String>,
    /// `udp://host:port` or `unix:///dev/log` (a datagram socket).
    pub address: String,
    /// `kern`…`local7` (default `authpriv`).
    #[serde(default = "default_facility")]
    pub facility: String,
    /// HOSTNAME field; defaults to the machine's host name.
    #[serde(default)]
    pub hostname: Option<String>,
    /// APP-NAME field (default `idmint`).
    #[serde(default = "default_app_name")]
    pub app_name: String,
}

/// `kind = "webhook"`: NDJSON batches POSTed to `url`, at-least-once.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    #[serde(default)]
    pub name: Option<String>,
    /// `http://` or `https://` endpoint; any 2xx acknowledges a batch.
    pub url: String,
    /// Directory of undelivered batches; created 0700 if missing. Must not
    /// be shared with another sink or server.
    pub spool_dir: PathBuf,
    /// Spool bound; batches arriving while it is full are dropped and
    /// counted (default 64 MiB).
    #[serde(default = "default_spool_max_bytes")]
    pub spool_max_bytes: u64,
    /// Largest POST body; spooled batches are merged up to this (default 1 MiB).
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: u64,
    /// Per-request timeout (default 10).
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// First retry delay; doubles per failure (default 500).
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// Retry delay cap (default 60).
    #[serde(default = "default_backoff_max_seconds")]
    pub backoff_max_seconds: u64,
    /// Name of an environment variable whose value is sent as the
    /// `Authorization` header (e.g. `Bearer …`); never logged.
    #[serde(default)]
    pub authorization_env: Option<String>,
}

fn default_facility() -> String {
    "authpriv".into()
}
fn default_app_name() -> String {
    "idmint".into()
}
fn default_spool_max_bytes() -> u64 {
    DEFAULT_SPOOL_MAX_BYTES
}
fn default_batch_max_bytes() -> u64 {
    DEFAULT_BATCH_MAX_BYTES
}
fn default_timeout_seconds() -> u64 {
    DEFAULT_TIMEOUT_SECONDS
}
fn default_backoff_initial_ms() -> u64 {
    DEFAULT_BACKOFF_INITIAL_MS
}
fn default_backoff_max_seconds() -> u64 {
    DEFAULT_BACKOFF_MAX_SECONDS
}

impl WebhookConfig {
    /// A config with defaults for everything but the endpoint and spool.
    pub fn new(url: impl Into<String>, spool_dir: impl Into<PathBuf>) -> Self {
        Self {
            name: None,
            url: url.into(),
            spool_dir: spool_dir.into(),
            spool_max_bytes: DEFAULT_SPOOL_MAX_BYTES,
            batch_max_bytes: DEFAULT_BATCH_MAX_BYTES,
            timeout_seconds: DEFAULT_TIMEOUT_SECONDS,
            backoff_initial_ms: DEFAULT_BACKOFF_INITIAL_MS,
            backoff_max_seconds: DEFAULT_BACKOFF_MAX_SECONDS,
            authorization_env: None,
        }
    }
}

impl SyslogConfig {
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            name: None,
            address: address.into(),
            facility: default_facility(),
            hostname: None,
            app_name: default_app_name(),
        }
    }
}

/// RFC 5424 facility codes by name.
pub(crate) fn facility_code(name: &str) -> Option<u8> {
    const NAMES: [&str; 24] = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
        "authpriv", "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2",
        "local3", "local4", "local5", "local6", "local7",
    ];
    NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(name))
        .and_then(|i| u8::try_from(i).ok())
}

impl SinkConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Stdout(_) => "stdout",
            SinkConfig::Syslog(_) => "syslog",
            SinkConfig::Webhook(_) => "webhook",
        }
    }

    /// The configured name, or the kind.
    pub fn name(&self) -> &str {
        let name = match self {
            SinkConfig::Stdout(c) => &c.name,
            SinkConfig::Syslog(c) => &c.name,
            SinkConfig::Webhook(c) => &c.name,
        };
        name.as_deref().unwrap_or(self.kind())
    }

    /// Checks everything that can be checked without I/O. Messages name the
    /// sink and the key so the config loader can add file and line.
    pub fn validate(&self) -> Result<(), AuditError> {
        let bad = |key: &str, why: String| {
            Err(AuditError::Config(format!(
                "[[audit.sinks]] {:?} ({}): {key} {why}",
                self.name(),
                self.kind()
            )))
        };
        match self {
            SinkConfig::Stdout(_) => Ok(()),
            SinkConfig::Syslog(c) => {
                if facility_code(&c.facility).is_none() {
                    return bad(
                        "facility",
                        format!(
                            "{:?} is not a syslog facility (kern … local7; default authpriv)",
                            c.facility
                        ),
                    );
                }
                if let Err(why) = crate::forward::syslog::Target::parse(&c.address) {
                    return bad("address", why);
                }
                if !printable_token(&c.app_name, 48) {
                    return bad(
                        "app_name",
                        "must be 1-48 printable ASCII characters without spaces".into(),
                    );
                }
                if c.hostname
                    .as_deref()
                    .is_some_and(|h| !printable_token(h, 255))
                {
                    return bad(
                        "hostname",
                        "must be 1-255 printable ASCII characters without spaces".into(),
                    );
                }
                Ok(())
            }
            SinkConfig::Webhook(c) => {
                if !(c.url.starts_with("http://") || c.url.starts_with("https://")) {
                    return bad(
                        "url",
                        format!("{:?} must start with http:// or https://", c.url),
                    );
                }
                let authority = c
                    .url
                    .split_once("://")
                    .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
                if authority.contains('@') {
                    return bad("url", "must not embed credentials (they would appear in errors); use authorization_env".into());
                }
                if c.spool_dir.as_os_str().is_empty() {
                    return bad(
                        "spool_dir",
                        "is empty; give a directory for undelivered batches".into(),
                    );
                }
                if c.batch_max_bytes == 0 || c.spool_max_bytes < c.batch_max_bytes {
                    return bad(
                        "spool_max_bytes",
                        format!(
                            "({}) must be at least batch_max_bytes ({}), which must be positive",
                            c.spool_max_bytes, c.batch_max_bytes
                        ),
                    );
                }
                if c.timeout_seconds == 0 || c.backoff_initial_ms == 0 || c.backoff_max_seconds == 0
                {
                    return bad("timeout_seconds/backoff_*", "must be positive".into());
                }
                if let Some(var) = &c.authorization_env {
                    if std::env::var_os(var).is_none() {
                        return bad(
                            "authorization_env",
                            format!("names ${var}, which is not set"),
                        );
                    }
                }
                Ok(())
            }
        }
    }
}

fn printable_token(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| (33..=126).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facilities_have_rfc5424_codes() {
        assert_eq!(facility_code("kern"), Some(0));
        assert_eq!(facility_code("AUTHPRIV"), Some(10));
        assert_eq!(facility_code("local7"), Some(23));
        assert_eq!(facility_code("nope"), None);
    }

    #[test]
    fn validation_names_sink_and_key() {
        let mut s = SyslogConfig::new("tcp://x:1");
        s.name = Some("siem".into());
        let err = SinkConfig::Syslog(s).validate().unwrap_err().to_string();
        assert!(err.contains("\"siem\"") && err.contains("address"), "{err}");
        let mut w = WebhookConfig::new("ftp://x", "/tmp/s");
        let err = SinkConfig::Webhook(w.clone())
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("url"), "{err}");
        w.url = "http://x".into();
        w.spool_max_bytes = 1;
        let err = SinkConfig::Webhook(w).validate().unwrap_err().to_string();
        assert!(err.contains("spool_max_bytes"), "{err}");
        assert!(SinkConfig::Stdout(StdoutConfig::default())
            .validate()
            .is_ok());
    }
}
