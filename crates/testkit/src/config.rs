//! [`ServerSpec`]: what a test wants from its idmint server, rendered into
//! a real `idmint.toml` plus policy directory.
//!
//! The file is produced with the `toml` serializer rather than string
//! templates, so values (paths, URLs) are always quoted correctly.

use crate::error::{Result, TestkitError};
use crate::fixtures;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// One `[[auth.oidc]]` table.
#[derive(Debug, Clone)]
pub struct OidcSpec {
    table: Table,
}

impl OidcSpec {
    /// `name`, `issuer`, `audiences = ["idmint"]` and
    /// `allow_insecure_http = true` (test issuers are plain http on
    /// loopback).
    pub fn new(name: &str, issuer: &str) -> Self {
        let mut table = Table::new();
        table.insert("name".into(), Value::String(name.into()));
        table.insert("issuer".into(), Value::String(issuer.into()));
        table.insert(
            "audiences".into(),
            Value::Array(vec![Value::String("idmint".into())]),
        );
        table.insert("allow_insecure_http".into(), Value::Boolean(true));
        Self { table }
    }

    /// `preset = "<preset>"` (`github-actions`, `gitlab-ci`, `kubernetes`…).
    pub fn preset(self, preset: &str) -> Self {
        self.set("preset", preset)
    }

    /// Any other key, e.g. `set("replay_protection", true)` or
    /// `set("jwks_refetch_interval", "1s")`.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.table.insert(key.into(), value.into());
        self
    }

    /// Replace `audiences`.
    pub fn audiences(self, audiences: &[&str]) -> Self {
        let list: Vec<Value> = audiences
            .iter()
            .map(|a| Value::String((*a).into()))
            .collect();
        self.set("audiences", Value::Array(list))
    }

    /// Remove a key set by default (e.g. `allow_insecure_http`).
    pub fn unset(mut self, key: &str) -> Self {
        self.table.remove(key);
        self
    }

    pub fn table(&self) -> &Table {
        &self.table
    }
}

/// Everything a test can choose about its server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub oidc: Vec<OidcSpec>,
    /// `roles.toml` text.
    pub roles: String,
    /// `(file name, text)` of each `*.cedar` file.
    pub policies: Vec<(String, String)>,
    /// Extra `[server]` keys (e.g. `max_body_bytes`).
    pub server: Table,
    /// `[session]` keys.
    pub session: Table,
    /// Audit log location; default `<dir>/audit.jsonl`.
    pub audit_file: Option<PathBuf>,
    /// `[audit] checkpoint_every`.
    pub checkpoint_every: Option<u64>,
    /// `[reaper] interval`; default `"1s"` so expiry is observable fast.
    pub reaper_interval: String,
    /// `[[issuer.oauth]] algorithm` of the issuer named `oauth`.
    pub oauth_algorithm: Option<String>,
    /// Environment variables for the server process.
    pub env: Vec<(String, String)>,
    /// More `[[issuer.<kind>]]` tables as `(kind, table)`, e.g.
    /// `("postgres", …)`, rendered after the built-in `oauth` issuer.
    pub issuers: Vec<(String, Table)>,
    /// More `[reaper]` keys (e.g. `pending_grace`, `max_attempts`).
    pub reaper: Table,
    /// Other top-level tables, verbatim (e.g. `[anomaly]`).
    pub tables: Vec<(String, Table)>,
}

impl Default for ServerSpec {
    fn default() -> Self {
        Self {
            oidc: Vec::new(),
            roles: fixtures::ROLES.to_string(),
            policies: vec![("test.cedar".to_string(), fixtures::POLICY.to_string())],
            server: Table::new(),
            session: Table::new(),
            audit_file: None,
            checkpoint_every: None,
            reaper_interval: "1s".into(),
            oauth_algorithm: None,
            env: Vec::new(),
            issuers: Vec::new(),
            reaper: Table::new(),
            tables: Vec::new(),
        }
    }
}

impl ServerSpec {
    /// The fixture policy with these auth configs.
    pub fn with_oidc(oidc: Vec<OidcSpec>) -> Self {
        Self {
            oidc,
            ..Self::default()
        }
    }

    /// Set a `[server]` key, e.g. `set_server("max_body_bytes", 262144)`.
    pub fn set_server(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.server.insert(key.into(), value.into());
        self
    }

    /// Set a `[session]` key, e.g. `set_session("machine_ttl", "2s")`.
    pub fn set_session(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.session.insert(key.into(), value.into());
        self
    }

    /// Add an `[[issuer.<kind>]]` table, e.g. a `postgres` target.
    pub fn with_issuer(mut self, kind: &str, table: Table) -> Self {
        self.issuers.push((kind.to_string(), table));
        self
    }

    /// Add a top-level table, e.g. `with_table("anomaly", t)` for `[anomaly]`.
    pub fn with_table(mut self, name: &str, table: Table) -> Self {
        self.tables.push((name.to_string(), table));
        self
    }

    /// Set a `[reaper]` key, e.g. `set_reaper("pending_grace", "1s")`.
    pub fn set_reaper(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.reaper.insert(key.into(), value.into());
        self
    }

    /// Write the policy directory and `idmint.toml` into `dir` for a server
    /// on `127.0.0.1:port`; returns the config path.
    pub fn write(&self, dir: &Path, port: u16) -> Result<PathBuf> {
        let policy_dir = dir.join("policy");
        std::fs::create_dir_all(&policy_dir)
            .map_err(|e| TestkitError::io(format!("creating {}", policy_dir.display()), e))?;
        let write = |path: PathBuf, text: &str| {
            std::fs::write(&path, text)
                .map_err(|e| TestkitError::io(format!("writing {}", path.display()), e))
        };
        write(policy_dir.join("roles.toml"), &self.roles)?;
        for (name, text) in &self.policies {
            write(policy_dir.join(name), text)?;
        }
        let text = self.render(dir, port)?;
        let path = dir.join("idmint.toml");
        write(path.clone(), &text)?;
        Ok(path)
    }

    /// The `idmint.toml` text.
    pub fn render(&self, dir: &Path, port: u16) -> Result<String> {
        let path_value = |p: PathBuf| Value::String(p.display().to_string());
        let mut root = Table::new();
        root.insert("policy_dir".into(), path_value(dir.join("policy")));

        let mut server = Table::new();
        server.insert("listen".into(), Value::String(format!("127.0.0.1:{port}")));
        server.insert(
            "public_url".into(),
            Value::String(format!("http://127.0.0.1:{port}")),
        );
        server.insert("insecure_http".into(), Value::Boolean(true));
        for (k, v) in &self.server {
            server.insert(k.clone(), v.clone());
        }
        root.insert("server".into(), Value::Table(server));

        root.insert(
            "storage".into(),
            table([(
                "sqlite",
                table([("path", path_value(dir.join("idmint.db")))]),
            )]),
        );
        root.insert(
            "seal".into(),
            table([("key_file", path_value(dir.join("root.key")))]),
        );

        let audit_path = self
            .audit_file
            .clone()
            .unwrap_or_else(|| dir.join("audit.jsonl"));
        let mut audit = table([("file", table([("path", path_value(audit_path))]))]);
        if let (Some(n), Value::Table(t)) = (self.checkpoint_every, &mut audit) {
            t.insert(
                "checkpoint_every".into(),
                Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)),
            );
        }
        root.insert("audit".into(), audit);
        if !self.session.is_empty() {
            root.insert("session".into(), Value::Table(self.session.clone()));
        }

        let oidc: Vec<Value> = self
            .oidc
            .iter()
            .map(|o| Value::Table(o.table.clone()))
            .collect();
        if !oidc.is_empty() {
            root.insert("auth".into(), table([("oidc", Value::Array(oidc))]));
        }
        let mut oauth = Table::new();
        oauth.insert("name".into(), Value::String("oauth".into()));
        if let Some(alg) = &self.oauth_algorithm {
            oauth.insert("algorithm".into(), Value::String(alg.clone()));
        }
        let mut issuers = Table::new();
        issuers.insert("oauth".into(), Value::Array(vec![Value::Table(oauth)]));
        for (kind, t) in &self.issuers {
            if let Value::Array(list) = issuers
                .entry(kind.clone())
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                list.push(Value::Table(t.clone()));
            }
        }
        root.insert("issuer".into(), Value::Table(issuers));
        let mut reaper = Table::new();
        reaper.insert(
            "interval".into(),
            Value::String(self.reaper_interval.clone()),
        );
        for (k, v) in &self.reaper {
            reaper.insert(k.clone(), v.clone());
        }
        root.insert("reaper".into(), Value::Table(reaper));
        for (name, table) in &self.tables {
            root.insert(name.clone(), Value::Table(table.clone()));
        }

        toml::to_string(&root).map_err(|e| TestkitError::Render {
            what: "idmint.toml",
            message: e.to_string(),
        })
    }
}

fn table<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Table(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_parseable_config() {
        let spec = ServerSpec::with_oidc(vec![OidcSpec::new("gh", "http://127.0.0.1:9")
            .preset("github-actions")
            .set("replay_protection", true)
            .set("jwks_refetch_interval", "1s")]);
        let text = spec.render(Path::new("/tmp/x y"), 4242).unwrap();
        let parsed: Table = toml::from_str(&text).unwrap();
        assert_eq!(parsed["server"]["listen"].as_str(), Some("127.0.0.1:4242"));
        assert_eq!(
            parsed["storage"]["sqlite"]["path"].as_str(),
            Some("/tmp/x y/idmint.db")
        );
        let oidc = &parsed["auth"]["oidc"][0];
        assert_eq!(oidc["preset"].as_str(), Some("github-actions"));
        assert_eq!(oidc["replay_protection"].as_bool(), Some(true));
        assert_eq!(oidc["allow_insecure_http"].as_bool(), Some(true));
        assert_eq!(parsed["issuer"]["oauth"][0]["name"].as_str(), Some("oauth"));
        assert_eq!(parsed["reaper"]["interval"].as_str(), Some("1s"));
        assert_eq!(parsed["policy_dir"].as_str(), Some("/tmp/x y/policy"));
    }

    #[test]
    fn renders_extra_issuers_and_reaper_keys() {
        let mut pg = Table::new();
        pg.insert("name".into(), Value::String("orders-pg".into()));
        let spec = ServerSpec::default()
            .with_issuer("postgres", pg.clone())
            .with_issuer("postgres", pg)
            .set_reaper("pending_grace", "1s");
        let text = spec.render(Path::new("/tmp/x"), 1).unwrap();
        let parsed: Table = toml::from_str(&text).unwrap();
        assert_eq!(parsed["issuer"]["oauth"][0]["name"].as_str(), Some("oauth"));
        assert_eq!(
            parsed["issuer"]["postgres"][1]["name"].as_str(),
            Some("orders-pg")
        );
        assert_eq!(parsed["reaper"]["interval"].as_str(), Some("1s"));
        assert_eq!(parsed["reaper"]["pending_grace"].as_str(), Some("1s"));
    }

    #[test]
    fn writes_policy_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = ServerSpec::default().write(dir.path(), 1).unwrap();
        assert!(path.exists());
        let roles = std::fs::read_to_string(dir.path().join("policy/roles.toml")).unwrap();
        assert!(roles.contains("demo-api"));
        assert!(dir.path().join("policy/test.cedar").exists());
    }
}
