//! Shared by the Vault-compatibility tests (`vault_compat.rs`,
//! `approle.rs`): the real OpenBao CLI (`bao`) as a Vault client, hvac from
//! the test venv, and raw `/v1/` calls.
//!
//! `bao` is required: when it is missing the test fails and says how to get
//! it (`scripts/install-openbao.sh`); nothing is skipped silently.
#![allow(dead_code)]

use anyhow::Context;
use idmint_testkit::workspace_root;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where `scripts/install-openbao.sh` puts the binary (overridable with
/// `IDMINT_TEST_BAO`).
pub fn bao_path() -> anyhow::Result<PathBuf> {
    Ok(idmint_testkit::openbao::openbao_binary()?)
}

/// The Python of the test venv, which must have hvac.
pub fn venv_python() -> anyhow::Result<PathBuf> {
    let py = workspace_root().join(".venv-testbed/bin/python");
    anyhow::ensure!(
        py.is_file(),
        "this test needs {} with hvac: run `.venv-testbed/bin/pip install hvac` (CI does, in .ci/run)",
        py.display()
    );
    Ok(py)
}

/// Result of one `bao` run.
pub struct BaoRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl BaoRun {
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_str(&self.stdout)
            .with_context(|| format!("bao printed no JSON: {}\n{}", self.stdout, self.stderr))
    }
    pub fn summary(&self) -> String {
        format!(
            "exit {}\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The `bao` CLI pointed at one idmint server, with a private HOME (no
/// token helper file of the user's leaks in or out).
pub struct Bao {
    bin: PathBuf,
    addr: String,
    home: tempfile::TempDir,
}

impl Bao {
    pub fn new(addr: &str) -> anyhow::Result<Self> {
        Ok(Self {
            bin: bao_path()?,
            addr: addr.trim_end_matches('/').to_string(),
            home: tempfile::tempdir()?,
        })
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Runs `bao ARGS` with `token` (if any) as `BAO_TOKEN`.
    pub fn run(&self, token: Option<&str>, args: &[&str]) -> anyhow::Result<BaoRun> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("BAO_ADDR", &self.addr)
            .env("BAO_CLIENT_TIMEOUT", "30s")
            .stdin(Stdio::null());
        if let Some(t) = token {
            cmd.env("BAO_TOKEN", t);
        }
        let out = cmd
            .output()
            .with_context(|| format!("running {}", self.bin.display()))?;
        Ok(BaoRun {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        })
    }
}

/// Status and JSON body of a raw `/v1/` call.
pub struct V1Reply {
    pub status: u16,
    pub body: Value,
}

/// `METHOD base/v1/PATH` with an optional `X-Vault-Token` and JSON body.
pub async fn v1(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<V1Reply> {
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let url = format!("{}/v1/{}", base.trim_end_matches('/'), path);
    let mut req = http.request(method.parse()?, url);
    if let Some(t) = token {
        req = req.header("X-Vault-Token", t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    let body = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).with_context(|| format!("HTTP {status}: not JSON: {text}"))?
    };
    Ok(V1Reply { status, body })
}

/// The first error message of a Vault error body.
pub fn first_error(body: &Value) -> String {
    body["errors"][0].as_str().unwrap_or_default().to_string()
}
