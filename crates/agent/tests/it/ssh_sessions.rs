//! Real SSH logins with test-CA certificates to just-in-time accounts, sudo
//! inside the session, and the session's end (logout, expiry, agent crash)
//! removing everything. sshd runs in the same private mount namespace as
//! the accounts (root only; TESTBED §3).

use crate::common;

use common::{account, desired, grant, processes_of, wait_for, Lab};
use idmint_agent::proto::{AgentEvent, AgentEventKind};
use idmint_agent::DesiredState;
use idmint_testkit::{SshKey, Sshd};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

struct SshLab {
    lab: Lab,
    ca: SshKey,
    user_key: SshKey,
    sshd: Sshd,
}

impl SshLab {
    fn start() -> Self {
        let lab = Lab::start();
        let ca = SshKey::generate("test-user-ca").unwrap();
        let user_key = SshKey::generate("workload").unwrap();
        let sshd = Sshd::start(&lab.ns, &ca.public_key_path()).unwrap();
        Self {
            lab,
            ca,
            user_key,
            sshd,
        }
    }

    fn certify(&self, account: &str, validity: &str) {
        self.ca
            .sign_user_key(&self.user_key, "req-1", account, validity)
            .unwrap();
    }

    /// `ssh account@127.0.0.1 REMOTE` with stdin and stdout piped; stdout
    /// lines arrive on the returned channel.
    fn session(&self, account: &str, remote: &str) -> (Child, mpsc::Receiver<String>) {
        let mut child = self
            .sshd
            .ssh_command(account, &self.user_key)
            .arg(remote)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        (child, rx)
    }

    /// Reconcile until the agent reports a session of `account` started.
    fn session_started(&mut self, want: &DesiredState, account: &str) {
        self.lab
            .reconcile_until(want, account, "SessionStarted", LIMIT, |k| {
                matches!(k, AgentEventKind::SessionStarted { .. })
            });
    }

    /// Reconcile until the agent reports a session of `account` ended;
    /// returns the event and its reason.
    fn session_ended(&mut self, want: &DesiredState, account: &str) -> (AgentEvent, String) {
        let ended = self
            .lab
            .reconcile_until(want, account, "SessionEnded", LIMIT, |k| {
                matches!(k, AgentEventKind::SessionEnded { .. })
            });
        let AgentEventKind::SessionEnded { reason, .. } = &ended.kind else {
            unreachable!("the predicate only accepts SessionEnded")
        };
        let reason = reason.clone();
        (ended, reason)
    }

    fn login_status(&self, account: &str) -> bool {
        self.sshd
            .ssh_command(account, &self.user_key)
            .arg("true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }
}

/// Lines until `marker` (exclusive), with a deadline.
fn lines_until(rx: &mpsc::Receiver<String>, marker: &str, sshd: &Sshd) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        match rx.recv_timeout(LIMIT) {
            Ok(l) if l == marker => return lines,
            Ok(l) => lines.push(l),
            Err(e) => panic!(
                "no {marker} from the session ({e}); got {lines:?}\nsshd log:\n{}",
                sshd.log()
            ),
        }
    }
}

fn wait_exit(child: &mut Child, what: &str) -> std::process::ExitStatus {
    wait_for(what, LIMIT, || child.try_wait().unwrap())
}

#[test]
fn certificate_login_sudo_rules_and_logout_removes_everything() {
    let mut s = SshLab::start();
    let name = account();
    let g = grant(&name, &["/usr/bin/true"], 300);
    let want = desired(&[&g]);
    let uid = s.lab.ready(&want, &name);
    s.certify(&name, "+5m");

    let (mut ssh, out) = s.session(
        &name,
        "id -un; id -u; sudo -n /usr/bin/true && echo SUDO_TRUE_OK; sudo -n /usr/bin/id 2>&1; echo READY; cat",
    );
    // The agent sees the session start (the `cat` keeps it open).
    s.session_started(&want, &name);
    let lines = lines_until(&out, "READY", &s.sshd);
    assert_eq!(lines.first(), Some(&name), "{lines:?}");
    assert_eq!(lines.get(1), Some(&uid.to_string()), "{lines:?}");
    assert!(
        lines.contains(&"SUDO_TRUE_OK".to_string()),
        "allowed command: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("a password is required")),
        "any other command is refused: {lines:?}"
    );
    assert!(!lines.iter().any(|l| l.contains("uid=0")), "{lines:?}");

    // Logout: closing stdin ends `cat`, the session, and the account.
    drop(ssh.stdin.take());
    assert!(wait_exit(&mut ssh, "ssh to exit after logout").success());
    let (ended, reason) = s.session_ended(&want, &name);
    assert_eq!(reason, "logout");
    assert_eq!(ended.lease_id, g.lease_id);
    let report = s.lab.removed(&want, &name, LIMIT);
    assert!(report.clean && report.remaining.is_empty(), "{report:?}");
    s.lab.assert_no_residue(&name, uid);
    // One-time: the grant is still listed, yet no new account and no login.
    assert!(s.lab.reconcile(&want).is_empty());
    assert!(!s.login_status(&name), "login after logout must fail");
    s.lab.assert_host_untouched();
}

#[test]
fn grant_expiry_kills_a_live_session_and_removes_the_account() {
    let mut s = SshLab::start();
    let name = account();
    let g = grant(&name, &[], 4);
    let want = desired(&[&g]);
    let uid = s.lab.ready(&want, &name);
    s.certify(&name, "+5m");
    let (mut ssh, _out) = s.session(&name, "sleep 600");
    s.session_started(&want, &name);
    assert!(!processes_of(uid).is_empty());
    // Nothing happens before expiry; at expiry the session is killed.
    let (_, reason) = s.session_ended(&want, &name);
    assert!(common::now() >= g.expires_at, "ended before expiry");
    assert_eq!(reason, "expired");
    let report = s.lab.removed(&want, &name, LIMIT);
    assert!(report.clean, "{report:?}");
    let status = wait_exit(&mut ssh, "the ssh client of the killed session to exit");
    assert!(
        !status.success(),
        "the `sleep 600` session must not end normally"
    );
    s.lab.assert_no_residue(&name, uid);
    s.lab.assert_host_untouched();
}

#[test]
fn agent_killed_mid_session_cleans_up_after_restart() {
    let mut s = SshLab::start();
    let (a, b) = (account(), account());
    let ga = grant(&a, &["/usr/bin/true"], 300);
    let gb = grant(&b, &[], 300);
    let want = desired(&[&ga, &gb]);
    let ua = s.lab.ready(&want, &a);
    let ub = s.lab.ready(&want, &b);
    s.certify(&a, "+5m");
    let (mut ssh, _out) = s.session(&a, "cat");
    s.session_started(&want, &a);

    // The agent dies (no cleanup runs); while it is down the user logs
    // out and the server revokes grant b.
    s.lab.crash_and_restart();
    drop(ssh.stdin.take());
    wait_exit(&mut ssh, "ssh to exit");
    wait_for("the session's processes to exit", LIMIT, || {
        processes_of(ua).is_empty().then_some(())
    });
    // The restarted agent only knows its state directory: it notices the
    // recorded session ended (logout) and that b is no longer wanted.
    let after = desired(&[&ga]);
    let (_, reason) = s.session_ended(&after, &a);
    assert_eq!(reason, "logout");
    assert!(s.lab.removed(&after, &a, LIMIT).clean);
    assert!(s.lab.removed(&after, &b, LIMIT).clean);
    s.lab.assert_no_residue(&a, ua);
    s.lab.assert_no_residue(&b, ub);
    s.lab.assert_host_untouched();
}

#[test]
fn cached_grants_expire_across_a_restart_without_the_server() {
    let mut s = SshLab::start();
    let name = account();
    let g = grant(&name, &[], 5);
    let want = desired(&[&g]);
    let uid = s.lab.ready(&want, &name);
    s.certify(&name, "+5m");
    let (mut ssh, _out) = s.session(&name, "sleep 600");
    s.session_started(&want, &name);
    // Persist the desired state as the runtime does, crash, and come back
    // with only the cache (the server is unreachable).
    let state = s.lab.state();
    state
        .save_grants(&idmint_agent::state::CachedGrants {
            grants: idmint_agent::proto::AgentGrants {
                revision: 1,
                grants: vec![g.clone()],
                now: common::now(),
            },
            clock_offset_secs: 0,
            received_at: common::now(),
        })
        .unwrap();
    s.lab.crash_and_restart();
    let cached = DesiredState::from_cache(&state.cached_grants().unwrap().unwrap());
    let (_, reason) = s.session_ended(&cached, &name);
    assert_eq!(reason, "expired");
    assert!(s.lab.removed(&cached, &name, LIMIT).clean);
    assert!(!wait_exit(&mut ssh, "the expired session to be killed").success());
    s.lab.assert_no_residue(&name, uid);
}
