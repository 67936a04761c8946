//! Shared by the SSH end-to-end tests: roles and policy, the server spec
//! with an `[[issuer.ssh]]`, a minimal in-test host agent that signs its
//! requests like `idmint agent` must (so the server side of the agent
//! protocol is tested without the real agent), and `ssh-keygen` helpers.
#![allow(dead_code)]

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use idmint_client::proto::ssh::agent_signing_input;
use idmint_testkit::{unix_now, ApiResponse, IdmintServer, JitNamespace, ServerSpec, TestJwks};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

use crate::db_support::{oidc, toml_table, Caller};

/// `roles.toml` of the SSH tests.
pub const ROLES: &str = r#"
[[role]]
name = "web-deploy"
issuer = "ssh"
max_ttl = "10m"
default_ttl = "5m"
ssh = { hosts = { env = "prod" }, sudo = ["/usr/bin/systemctl restart web"], extensions = ["permit-pty"] }

[[role]]
name = "dev-shell"
issuer = "ssh"
max_ttl = "10m"
ssh = { hosts = { env = "dev" } }

[[role]]
name = "ci-cert"
issuer = "ssh"
max_ttl = "10m"
default_ttl = "5m"
ssh = { mode = "certificate", principals = ["deployer"], force_command = "/usr/bin/id -un" }

[[role]]
name = "short-cert"
issuer = "ssh"
max_ttl = "2s"
ssh = { mode = "certificate", principals = ["deployer"] }

[[role]]
name = "other-cert"
issuer = "ssh"
max_ttl = "10m"
ssh = { mode = "certificate", principals = ["someoneelse"] }
"#;

/// `ssh.cedar`: `acme/app` may open sessions on prod hosts with
/// `web-deploy` (the host is in the context) and get the certificate-mode
/// roles; nobody gets `dev-shell`; `acme/ops` is admin.
pub const POLICY: &str = r#"
@id("app-prod-sessions")
@ttl_cap("5m")
permit (principal, action == Action::"issue", resource == Role::"web-deploy")
when { principal has repository && principal.repository == "acme/app"
       && context has host && context.host.labels.env == "prod" };

@id("app-certificates")
permit (principal, action == Action::"issue", resource)
when { principal has repository && principal.repository == "acme/app"
       && ["ci-cert", "short-cert", "other-cert"].contains(resource.name) };

@id("ops-admin")
permit (principal, action == Action::"admin", resource)
when { principal.subject == "repo:acme/ops:ref:refs/heads/main" };
"#;

/// A server trusting `jwks`, with one ssh issuer whose hosts are given as
/// TOML inline tables.
pub fn spec(jwks: &TestJwks, hosts: &[String], ready_timeout: &str) -> anyhow::Result<ServerSpec> {
    let issuer = toml_table(&format!(
        "name = \"ssh\"\nready_timeout = \"{ready_timeout}\"\nhosts = [{}]\n",
        hosts.join(", ")
    ))?;
    let mut spec = ServerSpec::with_oidc(vec![oidc(jwks)]).with_issuer("ssh", issuer);
    spec.roles = ROLES.to_string();
    spec.policies = vec![("ssh.cedar".to_string(), POLICY.to_string())];
    Ok(spec)
}

/// `ssh-ed25519 AAAA…` for raw Ed25519 public key bytes.
pub fn openssh_line(public: &[u8]) -> String {
    let mut blob = Vec::new();
    for part in [b"ssh-ed25519".as_slice(), public] {
        blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
        blob.extend_from_slice(part);
    }
    format!("ssh-ed25519 {}", STANDARD.encode(blob))
}

/// A host agent as far as the server can tell: an Ed25519 key that signs
/// every request per `idmint_proto::ssh`.
pub struct TestAgent {
    pub host: String,
    pair: Ed25519KeyPair,
    http: reqwest::Client,
    base: String,
}

/// Status and JSON body of a response.
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

impl TestAgent {
    pub fn new(host: &str, base: &str) -> anyhow::Result<Self> {
        let mut seed = [0u8; 32];
        idmint_core::ids::random_bytes(&mut seed)?;
        let pair =
            Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|e| anyhow::anyhow!("key: {e}"))?;
        Ok(Self {
            host: host.to_string(),
            pair,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(40))
                .build()?,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    pub fn public_line(&self) -> String {
        openssh_line(self.pair.public_key().as_ref())
    }

    /// The `Authorization` header for one request.
    pub fn authorization(
        &self,
        method: &str,
        target: &str,
        body: &[u8],
        ts: i64,
        nonce: &str,
    ) -> String {
        let hash =
            idmint_core::ids::hex(ring::digest::digest(&ring::digest::SHA256, body).as_ref());
        let input = agent_signing_input(method, target, &self.host, ts, nonce, &hash);
        let sig = self.pair.sign(input.as_bytes());
        format!(
            "IdmintAgent host=\"{}\",ts=\"{ts}\",nonce=\"{nonce}\",sig=\"{}\"",
            self.host,
            URL_SAFE_NO_PAD.encode(sig.as_ref())
        )
    }

    /// Send with an explicit header (replays, forgeries).
    pub async fn send_with(
        &self,
        method: &str,
        target: &str,
        body: &[u8],
        header: &str,
    ) -> anyhow::Result<Reply> {
        let url = format!("{}{target}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            _ => self
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_vec()),
        };
        let resp = req.header("authorization", header).send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok(Reply {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        })
    }

    /// A correctly signed request; returns the reply and the header used.
    pub async fn send(
        &self,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> anyhow::Result<(Reply, String)> {
        let nonce = idmint_core::ids::random_hex(16)?;
        let header = self.authorization(method, target, body, unix_now(), &nonce);
        let reply = self.send_with(method, target, body, &header).await?;
        Ok((reply, header))
    }

    pub async fn grants(&self, since: u64, wait: u64) -> anyhow::Result<Reply> {
        Ok(self
            .send(
                "GET",
                &format!("/api/v1/agent/grants?since={since}&wait={wait}"),
                b"",
            )
            .await?
            .0)
    }

    /// The host's current grant revision (no waiting).
    pub async fn revision(&self) -> anyhow::Result<u64> {
        Ok(self.grants(0, 0).await?.body["revision"]
            .as_u64()
            .unwrap_or_default())
    }

    pub async fn event(&self, event: &Value) -> anyhow::Result<Reply> {
        Ok(self
            .send("POST", "/api/v1/agent/events", &serde_json::to_vec(event)?)
            .await?
            .0)
    }
}

/// A single-use join token for `host`, created by `admin`.
pub async fn join_token(
    server: &IdmintServer,
    admin: &Caller,
    host: &str,
) -> anyhow::Result<String> {
    let r = server
        .api()
        .post_json(
            &format!("/api/v1/ssh/hosts/{host}/join-token"),
            &serde_json::json!({}),
            Some(&admin.session),
        )
        .await?;
    anyhow::ensure!(r.status == 200, "join token for {host}: {}", r.summary());
    let token = r.body["join_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    anyhow::ensure!(token.starts_with("idm_join_"), "{token}");
    Ok(token)
}

/// `POST /api/v1/agent/enroll` for `agent` with `token` and sshd's
/// `host_key` line.
pub async fn enroll(
    server: &IdmintServer,
    agent: &TestAgent,
    token: &str,
    host_key: &str,
) -> anyhow::Result<ApiResponse> {
    Ok(server
        .api()
        .post_json(
            "/api/v1/agent/enroll",
            &serde_json::json!({"host": agent.host, "join_token": token, "agent_public_key": agent.public_line(), "host_public_key": host_key}),
            None,
        )
        .await?)
}

/// Enroll `agent` with a fresh join token from `admin`; returns the
/// enrollment (host certificate, user CA).
pub async fn enroll_with_new_token(
    server: &IdmintServer,
    admin: &Caller,
    agent: &TestAgent,
    host_key: &str,
) -> anyhow::Result<Value> {
    let token = join_token(server, admin, &agent.host).await?;
    let r = enroll(server, agent, &token, host_key).await?;
    anyhow::ensure!(r.status == 200, "enrolling {}: {}", agent.host, r.summary());
    Ok(r.body)
}

/// Generate an Ed25519 key with the real `ssh-keygen`; returns the private
/// key path and the public key line.
pub fn ssh_keygen(dir: &Path, name: &str) -> anyhow::Result<(std::path::PathBuf, String)> {
    let path = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(path.with_extension("pub"))?;
    Ok((path, public.trim().to_string()))
}

/// `ssh-keygen -L` of a certificate line (the real parser of OpenSSH).
pub fn ssh_keygen_l(dir: &Path, cert_line: &str) -> anyhow::Result<String> {
    let path = dir.join(format!(
        "inspect-{}-cert.pub",
        idmint_core::ids::random_hex(4)?
    ));
    std::fs::write(&path, format!("{cert_line}\n"))?;
    let out = Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(&path)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "ssh-keygen -L: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The principals listed by `ssh-keygen -L`.
pub fn principals_of(listing: &str) -> Vec<String> {
    let mut out = vec![];
    let mut inside = false;
    for line in listing.lines() {
        let t = line.trim();
        if t.starts_with("Principals:") {
            inside = true;
            continue;
        }
        if inside {
            if t.ends_with(':') || t.starts_with("Critical Options") {
                break;
            }
            out.push(t.to_string());
        }
    }
    out
}

/// Run `program args…` inside `ns` and fail with its stderr unless it
/// succeeds (`useradd`, `userdel` in the tests' namespaces).
pub fn run_in(ns: &JitNamespace, program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = ns.run(program, args)?;
    anyhow::ensure!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
