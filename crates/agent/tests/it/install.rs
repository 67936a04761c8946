//! `idmint agent install --apply` against the real sshd configuration,
//! inside a private mount namespace: the files land in the namespace's
//! overlay `/etc`, `sshd -t` accepts the result, the host's `/etc/ssh` is
//! untouched (root only; TESTBED §3).

use crate::common;

use common::Lab;
use idmint_agent::install::{SSHD_DROPIN, USER_CA_TARGET};
use idmint_agent::{Enrollment, InstallPlan};
use idmint_testkit::SshKey;
use std::process::Command;

#[test]
fn apply_writes_the_sshd_dropin_and_sshd_accepts_it() {
    let lab = Lab::start();
    let host_dropins_before: Vec<_> = std::fs::read_dir("/etc/ssh/sshd_config.d")
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    // What enrollment leaves in the state directory: a host certificate for
    // the host's real Ed25519 key and the user CA.
    let state = lab.state();
    let host_ca = SshKey::generate("host-ca").unwrap();
    let user_ca = SshKey::generate("user-ca").unwrap();
    let work = tempfile::tempdir().unwrap();
    let host_pub = work.path().join("host.pub");
    std::fs::copy("/etc/ssh/ssh_host_ed25519_key.pub", &host_pub).unwrap();
    let signed = Command::new("ssh-keygen")
        .args(["-q", "-h", "-s"])
        .arg(host_ca.private_key_path())
        .args(["-I", "web-1", "-n", "web-1,127.0.0.1", "-V", "+1h"])
        .arg(&host_pub)
        .status()
        .unwrap();
    assert!(signed.success());
    std::fs::copy(work.path().join("host-cert.pub"), state.host_cert_path()).unwrap();
    std::fs::write(
        state.user_ca_path(),
        format!("{}\n", user_ca.public_key_line().unwrap()),
    )
    .unwrap();
    state
        .save_enrollment(&Enrollment {
            server: "https://idmint.test".into(),
            host: "web-1".into(),
            host_public_key_path: "/etc/ssh/ssh_host_ed25519_key.pub".into(),
            enrolled_at: common::now(),
        })
        .unwrap();

    let plan = InstallPlan::prepare(&lab.host, &state).unwrap();
    assert!(plan.ready(), "{:#?}", plan.checks);
    plan.apply(&lab.host).unwrap();

    let dropin = std::fs::read_to_string(lab.ns.host_path(SSHD_DROPIN)).unwrap();
    assert!(dropin.contains("AuthorizedKeysFile none"), "{dropin}");
    assert_eq!(
        std::fs::read_to_string(lab.ns.host_path(USER_CA_TARGET))
            .unwrap()
            .trim(),
        user_ca.public_key_line().unwrap()
    );
    // sshd, reading the real config plus the drop-in, applies our settings.
    let effective = lab
        .ns
        .run(
            "/usr/sbin/sshd",
            &["-T", "-C", "user=wl_abc123,host=x,addr=127.0.0.1"],
        )
        .unwrap();
    assert!(
        effective.status.success(),
        "{}",
        String::from_utf8_lossy(&effective.stderr)
    );
    let effective = String::from_utf8_lossy(&effective.stdout);
    for line in [
        "trustedusercakeys /etc/ssh/idmint_user_ca.pub",
        "authorizedkeysfile none",
        "passwordauthentication no",
        "permitrootlogin no",
        "hostcertificate /etc/ssh/ssh_host_ed25519_key-cert.pub",
    ] {
        assert!(
            effective.contains(line),
            "{line} not in sshd -T:\n{effective}"
        );
    }
    // The host's own /etc/ssh never saw any of it.
    assert!(!std::path::Path::new(USER_CA_TARGET).exists());
    let host_dropins_after: Vec<_> = std::fs::read_dir("/etc/ssh/sshd_config.d")
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(host_dropins_before, host_dropins_after);
    lab.assert_host_untouched();
}
