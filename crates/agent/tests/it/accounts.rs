//! Account lifecycle against the real shadow tools and visudo, inside a
//! private mount namespace (root only; TESTBED §3).

use crate::common;

use common::{account, desired, grant, Lab};
use idmint_agent::proto::AgentEventKind;
use idmint_agent::DesiredState;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

const REMOVAL: Duration = Duration::from_secs(20);

#[test]
fn account_gets_its_shell_a_fresh_uid_and_uids_are_never_reused() {
    let mut lab = Lab::start();
    let name = account();
    let g1 = grant(&name, &[], 300);
    let want = desired(&[&g1]);
    let uid1 = lab.ready(&want, &name);
    assert!(lab.range.contains(uid1));

    let line = lab.entry("/etc/passwd", &name).expect("passwd entry");
    let fields: Vec<&str> = line.split(':').collect();
    assert_eq!(fields[2], uid1.to_string(), "{line}");
    assert_eq!(
        fields[3],
        uid1.to_string(),
        "own group with the same id: {line}"
    );
    assert_eq!(fields[5], format!("/home/{name}"));
    assert_eq!(fields[6], "/bin/bash");
    // `-p '*'`: no password, but not locked (sshd refuses `!` hashes).
    let shadow = lab.entry("/etc/shadow", &name).unwrap();
    assert_eq!(shadow.split(':').nth(1), Some("*"), "{shadow}");
    let home = lab.ns.host_path(format!("/home/{name}"));
    let meta = std::fs::metadata(&home).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (uid1, 0o700));
    // No sudo rules, no drop-in.
    assert!(!lab.exists(&format!("/etc/sudoers.d/{name}")));
    // Only the namespace sees it.
    assert!(lab
        .ns
        .run("/usr/bin/getent", &["passwd", &name])
        .unwrap()
        .status
        .success());
    assert!(!std::process::Command::new("getent")
        .args(["passwd", &name])
        .status()
        .unwrap()
        .success());

    // Revoked: the account goes; the same name under a new lease gets a
    // new uid, never the old one.
    let report = lab.removed(&DesiredState::empty(), &name, REMOVAL);
    assert!(report.clean, "{report:?}");
    lab.assert_no_residue(&name, uid1);
    lab.events.clear();
    let g2 = grant(&name, &[], 300);
    let uid2 = lab.ready(&desired(&[&g2]), &name);
    assert!(uid2 > uid1, "uid {uid2} after {uid1}");
    // A restarted agent continues after both.
    lab.crash_and_restart();
    let other = account();
    let g3 = grant(&other, &[], 300);
    let uid3 = lab.ready(&desired(&[&g2, &g3]), &other);
    assert!(uid3 > uid2, "uid {uid3} after {uid2}");
    // The used-up lease g1 is never made again, even if listed again.
    let events = lab.reconcile(&desired(&[&g1, &g2, &g3]));
    assert!(events.is_empty(), "{events:?}");
    lab.assert_host_untouched();
}

#[test]
fn two_grants_make_two_accounts_with_their_own_sudoers() {
    let mut lab = Lab::start();
    let (a, b) = (account(), account());
    let ga = grant(&a, &["/usr/bin/true"], 300);
    let gb = grant(&b, &["ALL"], 300);
    let want = desired(&[&ga, &gb]);
    let ua = lab.ready(&want, &a);
    let ub = lab.ready(&want, &b);
    assert_ne!(ua, ub);
    for e in &lab.events {
        if let AgentEventKind::AccountReady { sudo_rules, .. } = e.kind {
            assert_eq!(sudo_rules, 1);
        }
    }
    let path_a = lab.ns.host_path(format!("/etc/sudoers.d/{a}"));
    let text_a = std::fs::read_to_string(&path_a).unwrap();
    assert!(
        text_a.contains(&format!("{a} ALL=(root) NOPASSWD: /usr/bin/true\n")),
        "{text_a}"
    );
    let meta = std::fs::metadata(&path_a).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o777), (0, 0, 0o440));
    let text_b = std::fs::read_to_string(lab.ns.host_path(format!("/etc/sudoers.d/{b}"))).unwrap();
    assert!(
        text_b.contains(&format!("{b} ALL=(ALL:ALL) NOPASSWD: ALL")),
        "{text_b}"
    );
    // The whole sudo configuration in the namespace stays valid.
    assert!(lab
        .ns
        .run("/usr/sbin/visudo", &["-c", "-q"])
        .unwrap()
        .status
        .success());
    // Nothing changes on a second pass.
    assert!(lab.reconcile(&want).is_empty());
    // Revoking one leaves the other.
    let report = lab.removed(&desired(&[&gb]), &a, REMOVAL);
    assert!(report.clean, "{report:?}");
    lab.assert_no_residue(&a, ua);
    assert!(lab.entry("/etc/passwd", &b).is_some());
    lab.assert_host_untouched();
}

#[test]
fn malicious_grants_never_produce_an_account_or_a_wider_sudoers_file() {
    let mut lab = Lab::start();
    let hostile_sudo: &[&[&str]] = &[
        &["/usr/bin/true, ALL"],
        &["/usr/bin/true\nwl_x ALL=(ALL) NOPASSWD: ALL"],
        &["/usr/bin/"],
        &["/usr/bin/*"],
        &["ALL", "/usr/bin/true"],
        &["/usr/bin/true : ALL"],
        &["!/usr/bin/su"],
        &["/bin/sh -c id\\"],
        &["(ALL) ALL"],
        &["/usr/bin/sudoedit /etc/shadow"],
    ];
    let mut grants = Vec::new();
    for rules in hostile_sudo {
        grants.push(grant(&account(), rules, 300));
    }
    // Hostile names and shells too.
    let mut g = grant("wl_abc123/../../etc", &[], 300);
    g.shell = "/bin/bash".into();
    grants.push(g);
    grants.push(grant("root", &[], 300));
    grants.push(grant("-o wl_abcdef", &[], 300));
    let mut g = grant(&account(), &[], 300);
    g.shell = "/bin/sh -c id".into();
    grants.push(g);
    let mut g = grant(&account(), &[], 300);
    g.shell = "/nonexistent/shell".into();
    grants.push(g);

    let want = DesiredState {
        grants: grants.clone(),
        clock_offset_secs: 0,
    };
    let passwd_before = std::fs::read(lab.ns.host_path("/etc/passwd")).unwrap();
    let events = lab.reconcile(&want);
    assert_eq!(events.len(), grants.len(), "{events:?}");
    for e in &events {
        assert!(
            matches!(e.kind, AgentEventKind::AccountFailed { .. }),
            "{e:?}"
        );
    }
    // No account was created (or all were rolled back) and no drop-in exists.
    assert_eq!(
        std::fs::read(lab.ns.host_path("/etc/passwd")).unwrap(),
        passwd_before
    );
    let dropins: Vec<_> = std::fs::read_dir(lab.ns.host_path("/etc/sudoers.d"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("wl_"))
        .collect();
    assert!(dropins.is_empty(), "{dropins:?}");
    // Failures are reported once, not every tick.
    assert!(lab.reconcile(&want).is_empty());
    lab.assert_host_untouched();
}

#[test]
fn residue_sweep_finds_and_removes_what_the_user_left() {
    let mut lab = Lab::start();
    let name = account();
    let g = grant(&name, &[], 300);
    let uid = lab.ready(&desired(&[&g]), &name);
    let tag = idmint_core::ids::random_hex(6).unwrap();
    let uid_s = uid.to_string();
    // The user leaves files behind in the shared directories and a crontab.
    let out = lab
        .ns
        .run(
            "/usr/bin/setpriv",
            &[
                "--reuid",
                &uid_s,
                "--regid",
                &uid_s,
                "--clear-groups",
                "/bin/sh",
                "-c",
                &format!("echo x > /tmp/left-{tag}; mkdir /var/tmp/dir-{tag}; echo y > /var/tmp/dir-{tag}/f; echo z > /dev/shm/shm-{tag}"),
            ],
        )
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crontab = lab.ns.host_path(format!("/var/spool/cron/crontabs/{name}"));
    std::fs::write(&crontab, "* * * * * id\n").unwrap();
    std::os::unix::fs::chown(&crontab, Some(uid), None).unwrap();
    assert!(lab.exists(&format!("/tmp/left-{tag}")));

    let report = lab.removed(&DesiredState::empty(), &name, REMOVAL);
    assert!(report.clean, "{report:?}");
    for expected in [
        format!("/tmp/left-{tag} owned by uid {uid}"),
        format!("/var/tmp/dir-{tag} owned by uid {uid}"),
        format!("/dev/shm/shm-{tag} owned by uid {uid}"),
    ] {
        assert!(
            report.removed.contains(&expected),
            "{expected} not in {report:?}"
        );
    }
    assert!(!lab.exists(&format!("/tmp/left-{tag}")));
    assert!(!lab.exists(&format!("/var/tmp/dir-{tag}")));
    assert!(!lab.exists(&format!("/dev/shm/shm-{tag}")));
    lab.assert_no_residue(&name, uid);
    lab.assert_host_untouched();
}

#[test]
fn unknown_wl_accounts_are_removed_at_startup_and_expired_grants_are_not_created() {
    let mut lab = Lab::start();
    // A wl_ account the agent has no record of (a crash between useradd
    // and the ledger write), with a uid in the agent's range.
    let stray = account();
    let uid = lab.range.start + 19;
    let out = lab
        .ns
        .run(
            "/usr/sbin/useradd",
            &["-m", "-l", "-p", "*", "-u", &uid.to_string(), "-U", &stray],
        )
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One outside the agent's uid range is someone else's: never touched.
    let foreign = account();
    let out = lab
        .ns
        .run(
            "/usr/sbin/useradd",
            &["-M", "-l", "-p", "*", "-u", "1999990", "-U", &foreign],
        )
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expired = grant(&account(), &[], -5);
    let events = lab.reconcile(&desired(&[&expired]));
    assert!(
        lab.entry("/etc/passwd", &foreign).is_some(),
        "outside the range: left alone"
    );
    assert!(lab.reconcile(&desired(&[&expired])).is_empty());
    assert!(lab.entry("/etc/passwd", &foreign).is_some());
    assert!(
        events.is_empty(),
        "no events for an unknown account or an expired grant: {events:?}"
    );
    lab.assert_no_residue(&stray, uid);
    assert_eq!(lab.entry("/etc/passwd", &expired.account), None);
    lab.assert_host_untouched();
}
