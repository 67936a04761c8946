//! The whole just-in-time SSH flow with real processes only: the idmint
//! server, the real `idmint agent` (enrolled with a join token from
//! `idmint ssh host-token`) and the real sshd inside a private mount
//! namespace (TESTBED §3), and a CI job connecting with `idmint ssh`.
//!
//! Checked: login to the fresh `wl_` account with the one-time
//! certificate, the role's sudo rule allowed and everything else refused,
//! logout removing the account without residue (reported to the server),
//! expiry killing a live session, and an agent SIGKILLed mid-session
//! cleaning up after its restart. The host's real account files never
//! change. Needs root.

use crate::common;
use crate::db_support;
use crate::ssh_support;

use common::bin;
use db_support::{login_admin, login_app, Caller};
use idmint_testkit::audit::events_of;
use idmint_testkit::{
    free_port, poll_until, Cli, IdmintServer, JitNamespace, Peer, SshKey, Sshd, SshdOptions,
    TestJwks,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const HOST: &str = "web-1";
const LIMIT: Duration = Duration::from_secs(30);

/// sha256 of the host's account files and the listing of /etc/sudoers.d and /home.
fn host_fingerprint() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for f in [
        "/etc/passwd",
        "/etc/shadow",
        "/etc/group",
        "/etc/gshadow",
        "/etc/sudoers",
    ] {
        let digest = std::fs::read(f)
            .map(|b| {
                idmint_core::ids::hex(ring::digest::digest(&ring::digest::SHA256, &b).as_ref())
            })
            .unwrap_or_default();
        m.insert(f.to_string(), digest);
    }
    for d in ["/etc/sudoers.d", "/home"] {
        let mut names: Vec<String> = std::fs::read_dir(d)
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        m.insert(d.to_string(), names.join(","));
    }
    m
}

struct Host {
    ns: JitNamespace,
    state_dir: PathBuf,
    logs: tempfile::TempDir,
    uid_range: String,
    agent: Option<Peer>,
    starts: usize,
}

impl Host {
    fn start_agent(&mut self, url: &str) -> anyhow::Result<()> {
        self.starts += 1;
        let log = self.logs.path().join(format!("agent-{}.log", self.starts));
        let child = self
            .ns
            .command(bin())
            .args([
                "agent",
                "run",
                "--server",
                url,
                "--scan-interval",
                "100ms",
                "--uid-range",
                &self.uid_range,
                "--state-dir",
            ])
            .arg(&self.state_dir)
            .env("IDMINT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        self.agent = Some(Peer::new("idmint agent", child, vec![log]));
        Ok(())
    }

    fn passwd_line(&self, account: &str) -> Option<String> {
        std::fs::read_to_string(self.ns.host_path("/etc/passwd"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.split(':').next() == Some(account))
            .map(str::to_string)
    }

    fn agent_log(&self) -> String {
        self.agent
            .as_ref()
            .map(|a| a.log_tail(40))
            .unwrap_or_default()
    }
}

/// `idmint ssh web-1 -- REMOTE` as the CI job, stdin and stdout piped.
fn idmint_ssh(
    url: &str,
    caller: &Caller,
    home: &Path,
    extra: &[&str],
    remote: &str,
) -> anyhow::Result<(Child, mpsc::Receiver<String>)> {
    let mut child = std::process::Command::new(bin())
        .args(["ssh", HOST, "--server", url])
        .args(extra)
        .args(["--", remote])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("IDMINT_TOKEN", &caller.session)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok((child, rx))
}

/// Lines until `marker` (exclusive); `None` when idmint ssh ended first
/// with its stderr.
fn lines_until(
    rx: &mpsc::Receiver<String>,
    marker: &str,
    child: &mut Child,
) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    loop {
        match rx.recv_timeout(LIMIT) {
            Ok(l) if l == marker => return Ok(lines),
            Ok(l) => lines.push(l),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let mut err = String::new();
                if let Some(mut s) = child.stderr.take() {
                    use std::io::Read;
                    let _ = s.read_to_string(&mut err);
                }
                return Err(format!(
                    "no {marker} from idmint ssh ({e}); stdout {lines:?}; stderr {err}"
                ));
            }
        }
    }
}

/// Run `idmint ssh` until the remote command prints `READY`. The server
/// refuses with `agent_unavailable` until the agent's first long poll
/// arrives: that answer is the observable state polled here.
async fn open_session(
    url: &str,
    caller: &Caller,
    home: &Path,
    extra: &[&str],
    remote: &str,
) -> anyhow::Result<(Child, Vec<String>)> {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let (mut child, out) = idmint_ssh(url, caller, home, extra, remote)?;
        match lines_until(&out, "READY", &mut child) {
            Ok(lines) => return Ok((child, lines)),
            Err(e) if e.contains("agent_unavailable") && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => anyhow::bail!(e),
        }
    }
}

/// The first audit event `name` about `account`.
async fn audited(server: &IdmintServer, name: &str, account: &str) -> anyhow::Result<Value> {
    Ok(poll_until(
        &format!("audit event {name} for {account}"),
        LIMIT,
        || async {
            let events = server.audit_events()?;
            Ok(events_of(&events, name)
                .into_iter()
                .find(|e| e["detail"]["account"] == account)
                .cloned())
        },
    )
    .await?)
}

async fn wait_exit(child: &mut Child, what: &str) -> anyhow::Result<std::process::ExitStatus> {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out after {LIMIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ci_job_ssh_into_a_just_in_time_account_end_to_end() -> anyhow::Result<()> {
    let host_before = host_fingerprint();
    let jwks = TestJwks::start().await?;
    let port = free_port()?;
    let hosts = vec![format!(
        "{{ name = \"{HOST}\", address = \"127.0.0.1\", port = {port}, labels = {{ env = \"prod\", role = \"web\" }} }}"
    )];
    let server = IdmintServer::start(bin(), ssh_support::spec(&jwks, &hosts, "20s")?).await?;
    let url = server.base_url();
    let admin = login_admin(&server, &jwks).await?;
    let app = login_app(&server, &jwks).await?;
    let home = tempfile::tempdir()?;

    // Admin: a join token for web-1.
    let mut cli = Cli::new(bin())?;
    cli.set_env("IDMINT_TOKEN", &admin.session);
    let out = cli
        .run(&["ssh", "host-token", HOST, "--server", &url])
        .await?;
    assert!(out.success(), "{}", out.summary());
    let join_token = out.stdout.trim().to_string();

    // The host: namespace, enrollment, sshd with the enrolled files, agent.
    let ns = JitNamespace::start()?;
    let state_parent = tempfile::tempdir()?;
    let state_dir = state_parent.path().join("agent-state");
    let host_key = SshKey::generate(HOST)?;
    let mut enroll = ns
        .command(bin())
        .args([
            "agent",
            "enroll",
            "--server",
            &url,
            "--host",
            HOST,
            "--join-token",
            "-",
            "--host-key",
        ])
        .arg(host_key.public_key_path())
        .arg("--state-dir")
        .arg(&state_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    enroll
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(join_token.as_bytes())?;
    let enrolled = enroll.wait_with_output()?;
    assert!(
        enrolled.status.success(),
        "enroll: {}",
        String::from_utf8_lossy(&enrolled.stderr)
    );
    let mut sshd = Sshd::start_with(
        &ns,
        SshdOptions {
            trusted_user_ca: state_dir.join("user_ca.pub"),
            port: Some(port),
            host_key: Some(host_key.private_key_path().to_path_buf()),
            host_certificate: Some(state_dir.join("host_cert.pub")),
            ..SshdOptions::default()
        },
    )?;
    let base = 3_400_000 + (std::process::id() % 1000) * 50;
    let mut host = Host {
        ns,
        state_dir: state_dir.clone(),
        logs: tempfile::tempdir()?,
        uid_range: format!("{base}..{}", base + 50),
        agent: None,
        starts: 0,
    };
    host.start_agent(&url)?;

    // 1. Login, sudo, logout.
    let (mut ssh, lines) = open_session(
        &url,
        &app,
        home.path(),
        &[],
        "id -un; sudo -n -l /usr/bin/systemctl restart web >/dev/null && echo SUDO_ALLOWED; sudo -n /usr/bin/id 2>&1; echo READY; cat",
    )
    .await?;
    let account = lines.first().cloned().unwrap_or_default();
    assert!(
        account.starts_with("wl_"),
        "{lines:?}\nagent: {}\nsshd: {}",
        host.agent_log(),
        sshd.log()
    );
    assert!(
        lines.contains(&"SUDO_ALLOWED".to_string()),
        "the role's sudo rule: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("a password is required")),
        "any other command is refused: {lines:?}"
    );
    let ready = audited(&server, "ssh_account_ready", &account).await?;
    let uid = ready["detail"]["uid"].as_u64().unwrap_or_default() as u32;
    assert!(host.passwd_line(&account).is_some());
    audited(&server, "ssh_session_started", &account).await?;
    drop(ssh.stdin.take());
    assert!(wait_exit(&mut ssh, "idmint ssh to exit after logout")
        .await?
        .success());
    let ended = audited(&server, "ssh_session_ended", &account).await?;
    assert_eq!(ended["detail"]["reason"], "logout", "{ended}");
    let removed = audited(&server, "ssh_account_removed", &account).await?;
    assert_eq!(removed["outcome"], "success", "{removed}");
    assert_eq!(removed["detail"]["residue"]["clean"], true, "{removed}");
    assert_eq!(host.passwd_line(&account), None);
    assert!(!host.ns.host_path(format!("/home/{account}")).exists());
    assert!(!host
        .ns
        .host_path(format!("/etc/sudoers.d/{account}"))
        .exists());
    assert!(processes_of_uid(uid).is_empty());

    // 2. Expiry kills a live session.
    let (mut ssh, lines) = open_session(
        &url,
        &app,
        home.path(),
        &["--ttl", "4s"],
        "id -un; echo READY; sleep 600",
    )
    .await?;
    let account2 = lines.first().cloned().unwrap_or_default();
    assert!(
        account2.starts_with("wl_") && account2 != account,
        "{lines:?}"
    );
    let status = wait_exit(&mut ssh, "the expired session to be killed").await?;
    assert!(!status.success(), "`sleep 600` must not end normally");
    let ended = audited(&server, "ssh_session_ended", &account2).await?;
    assert_eq!(ended["detail"]["reason"], "expired", "{ended}");
    let removed = audited(&server, "ssh_account_removed", &account2).await?;
    assert_eq!(removed["detail"]["residue"]["clean"], true, "{removed}");
    assert_eq!(host.passwd_line(&account2), None);

    // 3. The agent is SIGKILLed mid-session; the user logs out while it is
    //    down; the restarted agent removes the account.
    let (mut ssh, lines) =
        open_session(&url, &app, home.path(), &[], "id -un; echo READY; cat").await?;
    let account3 = lines.first().cloned().unwrap_or_default();
    audited(&server, "ssh_session_started", &account3).await?;
    if let Some(mut agent) = host.agent.take() {
        agent.kill()?;
    }
    drop(ssh.stdin.take());
    wait_exit(&mut ssh, "idmint ssh to exit").await?;
    assert!(
        host.passwd_line(&account3).is_some(),
        "nobody removed it while the agent was down"
    );
    host.start_agent(&url)?;
    let ended = audited(&server, "ssh_session_ended", &account3).await?;
    assert_eq!(ended["detail"]["reason"], "logout", "{ended}");
    let removed = audited(&server, "ssh_account_removed", &account3).await?;
    assert_eq!(
        removed["detail"]["residue"]["clean"],
        true,
        "{removed}\nagent: {}",
        host.agent_log()
    );
    assert_eq!(host.passwd_line(&account3), None);

    // `agent status` reads the same state: enrolled, no account left.
    let status = std::process::Command::new(bin())
        .args(["agent", "status", "-o", "json", "--state-dir"])
        .arg(&state_dir)
        .output()?;
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let status: Value = serde_json::from_slice(&status.stdout)?;
    assert_eq!(status["enrollment"]["host"], HOST, "{status}");
    assert_eq!(status["accounts"], serde_json::json!({}), "{status}");
    assert!(
        status["grants"]["grants"]["revision"]
            .as_u64()
            .unwrap_or_default()
            > 0,
        "{status}"
    );

    sshd.ensure_running()?;
    drop(sshd);
    drop(host);
    assert_eq!(
        host_fingerprint(),
        host_before,
        "the host's real /etc or /home changed"
    );
    Ok(())
}

/// Live processes of `uid` (the pid namespace is shared with the host).
fn processes_of_uid(uid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let owned = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .is_some_and(|l| l.split_whitespace().nth(1) == Some(&uid.to_string()));
        let zombie = status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'));
        if owned && !zombie {
            pids.push(pid);
        }
    }
    pids
}
