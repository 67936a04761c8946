//! Config-time validation of `ssh` role templates.
//!
//! Sudo rules end up in a sudoers drop-in written by the host agent, so
//! every character that sudoers treats specially is refused here, when the
//! bundle loads, long before anything reaches a host: a rule that passes
//! this check is a literal command line that needs no escaping.

use super::certificate::ALLOWED_EXTENSIONS;
use idmint_core::role::{SshMode, SshTemplate};
use idmint_core::Role;

/// Longest sudo command line, shell path or force-command.
const MAX_COMMAND_LEN: usize = 1024;
/// Most sudo rules per role.
const MAX_SUDO_RULES: usize = 64;

/// Characters special in sudoers command specs or aliases, or wildcards:
/// refused rather than escaped, so what the policy says is what runs.
const SUDOERS_SPECIAL: &[char] = &[
    ',', ':', '=', '\\', '!', '#', '*', '?', '[', ']', '"', '\'', '%', '(', ')', '$', '`', ';',
    '&', '|', '<', '>', '~', '{', '}',
];

/// Check one sudo rule: exactly `ALL`, or an absolute command with
/// optional space-separated literal arguments.
pub fn check_sudo_rule(rule: &str) -> Result<(), String> {
    if rule == "ALL" {
        return Ok(());
    }
    let shown: String = rule.chars().take(80).collect();
    if rule.is_empty() || rule.len() > MAX_COMMAND_LEN {
        return Err(format!(
            "sudo rule {shown:?} must be 1-{MAX_COMMAND_LEN} characters"
        ));
    }
    if let Some(c) = rule.chars().find(|c| !c.is_ascii() || c.is_ascii_control()) {
        return Err(format!(
            "sudo rule {shown:?} contains the non-printable or non-ASCII character {c:?}"
        ));
    }
    if let Some(c) = rule.chars().find(|c| SUDOERS_SPECIAL.contains(c)) {
        return Err(format!(
            "sudo rule {shown:?} contains {c:?}, which is special in sudoers (separator, alias, negation, comment or wildcard); write the literal command line without it"
        ));
    }
    if !rule.starts_with('/') {
        return Err(format!(
            "sudo rule {shown:?} must be an absolute command path (e.g. /usr/bin/systemctl restart web) or exactly \"ALL\""
        ));
    }
    if rule.contains("  ") || rule.ends_with(' ') {
        return Err(format!(
            "sudo rule {shown:?} has repeated or trailing spaces"
        ));
    }
    let command = rule.split(' ').next().unwrap_or_default();
    if command.split('/').any(|seg| seg == "..") || command.ends_with('/') {
        return Err(format!(
            "sudo rule {shown:?}: the command path must not contain \"..\" or end with \"/\""
        ));
    }
    Ok(())
}

/// Check the whole sudo list: `["ALL"]` alone, or command lines.
pub fn check_sudo(rules: &[String]) -> Result<(), String> {
    if rules.len() > MAX_SUDO_RULES {
        return Err(format!("at most {MAX_SUDO_RULES} sudo rules per role"));
    }
    if rules.iter().any(|r| r == "ALL") && rules.len() > 1 {
        return Err("sudo = [\"ALL\"] must be the only rule; ALL already allows everything".into());
    }
    rules.iter().try_for_each(|r| check_sudo_rule(r))
}

fn check_path(what: &str, path: &str) -> Result<(), String> {
    let ok = path.starts_with('/')
        && path.len() <= 256
        && path
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'/' | b'.' | b'_' | b'-' | b'+'))
        && !path.split('/').any(|s| s == "..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {:?} must be an absolute path of [A-Za-z0-9/._+-] without \"..\"",
            path.chars().take(80).collect::<String>()
        ))
    }
}

/// A Unix login name a certificate-mode role may name: POSIX portable,
/// and never a just-in-time account (`wl_…`), which belongs to one lease.
pub fn check_principal(p: &str) -> Result<(), String> {
    let mut chars = p.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = p.len() <= 32
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'));
    if !(first_ok && rest_ok) {
        return Err(format!(
            "principal {:?} is not a valid login name ([a-z_][a-z0-9_.-]*, at most 32)",
            p.chars().take(64).collect::<String>()
        ));
    }
    if p.starts_with(idmint_proto::ssh::ACCOUNT_PREFIX) {
        return Err(format!(
            "principal {p:?}: names starting with {:?} are just-in-time accounts of one lease and cannot be static principals",
            idmint_proto::ssh::ACCOUNT_PREFIX
        ));
    }
    Ok(())
}

/// The whole template of an `ssh` role.
pub fn check_template(role: &Role) -> Result<&SshTemplate, String> {
    let t = role.ssh.as_ref().ok_or_else(|| {
        "an ssh role needs an `ssh = { … }` template (hosts, sudo, mode …)".to_string()
    })?;
    for (k, v) in &t.hosts {
        if k.is_empty() || v.is_empty() {
            return Err("host selector labels must have non-empty keys and values".into());
        }
    }
    for e in &t.extensions {
        if !ALLOWED_EXTENSIONS.contains(&e.as_str()) {
            return Err(format!(
                "extension {:?} is not allowed; allowed: {}",
                e.chars().take(64).collect::<String>(),
                ALLOWED_EXTENSIONS.join(", ")
            ));
        }
    }
    if let Some(fc) = &t.force_command {
        if fc.is_empty() || fc.len() > MAX_COMMAND_LEN || fc.chars().any(|c| c.is_control()) {
            return Err(format!(
                "force_command must be 1-{MAX_COMMAND_LEN} characters without control characters"
            ));
        }
    }
    match t.mode {
        SshMode::Jit => {
            if !t.principals.is_empty() {
                return Err("principals are only for mode = \"certificate\"; a jit role's principal is the account idmint creates".into());
            }
            check_sudo(&t.sudo)?;
            check_path("shell", t.shell())?;
        }
        SshMode::Certificate => {
            if t.principals.is_empty() {
                return Err("mode = \"certificate\" needs principals = [\"login\", …]".into());
            }
            t.principals.iter().try_for_each(|p| check_principal(p))?;
            if !t.sudo.is_empty() || t.shell.is_some() {
                return Err(
                    "sudo and shell need a just-in-time account: they are only for mode = \"jit\""
                        .into(),
                );
            }
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malicious_sudo_rules_are_refused() {
        for bad in [
            "ALL, /bin/sh",
            "/usr/bin/true, ALL",
            "/bin/ls : ALL",
            "/usr/bin/env A=b",
            "/bin/echo \\",
            "!/bin/sh",
            "/bin/true #comment",
            "/bin/true\nwl_x ALL=(ALL) NOPASSWD: ALL",
            "/bin/true\0",
            "/bin/*",
            "/bin/l?",
            "/bin/[a]",
            "-/bin/true",
            "bin/true",
            "sudoedit /etc/shadow",
            "/usr/bin/../../bin/sh",
            "/bin/true\t-x",
            "/bin/tr\u{e9}",
            "/bin/true  x",
            "/bin/true ",
            "/usr/bin/%admin",
            "(root) /bin/sh",
            "/bin/sh -c $(id)",
            "",
            "all",
        ] {
            assert!(check_sudo_rule(bad).is_err(), "accepted {bad:?}");
        }
        for good in [
            "ALL",
            "/usr/bin/systemctl restart web",
            "/usr/bin/true",
            "/opt/app/bin/release.sh --now -v",
        ] {
            check_sudo_rule(good).unwrap();
        }
        assert!(check_sudo(&["ALL".into(), "/bin/true".into()]).is_err());
        assert!(check_sudo(&vec!["/bin/true".to_string(); 65]).is_err());
        check_sudo(&[]).unwrap();
    }

    fn role(ssh: &str) -> Role {
        let text = format!("[[role]]\nname='r'\nissuer='ssh'\nmax_ttl='10m'\nssh = {ssh}\n");
        Role::parse_file("roles.toml", &text)
            .unwrap()
            .remove("r")
            .unwrap()
    }

    #[test]
    fn templates_are_checked() {
        check_template(&role("{ sudo = ['ALL'] }")).unwrap();
        check_template(&role("{ mode = 'certificate', principals = ['deploy'] }")).unwrap();
        for (bad, why) in [
            ("{ mode = 'certificate' }", "needs principals"),
            (
                "{ mode = 'certificate', principals = ['wl_abc'] }",
                "just-in-time",
            ),
            (
                "{ mode = 'certificate', principals = ['Root Admin'] }",
                "valid login name",
            ),
            (
                "{ mode = 'certificate', principals = ['d'], sudo = ['ALL'] }",
                "only for mode",
            ),
            ("{ principals = ['deploy'] }", "only for mode"),
            ("{ shell = 'bash' }", "absolute path"),
            ("{ shell = '/bin/../tmp/sh' }", "absolute path"),
            ("{ extensions = ['permit-root'] }", "not allowed"),
            ("{ force_command = \"a\\nb\" }", "control"),
            ("{ sudo = ['/bin/sh, ALL'] }", "special in sudoers"),
            ("{ hosts = { env = '' } }", "non-empty"),
        ] {
            let e = check_template(&role(bad)).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let mut r = role("{}");
        r.ssh = None;
        assert!(check_template(&r).unwrap_err().contains("needs an `ssh"));
    }
}
