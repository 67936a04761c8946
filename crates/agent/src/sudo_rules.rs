//! The sudo rights of one grant, re-validated on the host.
//!
//! The server validated the rules against the role already; the agent
//! checks again because a sudoers file is the one place where a string
//! turns directly into root. Only two shapes are accepted: exactly `ALL`,
//! or absolute command lines made of plain characters. Anything that sudo
//! would read as syntax (`,` `:` `=` `\` `!` `(` `)` `#` `%` `"`, wildcards,
//! whitespace other than single spaces, a directory such as `/usr/bin/`,
//! `sudoedit`) is refused rather than escaped: a rule that needs it is not
//! a rule idmint hands out.

use crate::account_name::AccountName;
use crate::error::{AgentError, Result};

/// Most rules one grant may carry, and the longest rule.
const MAX_RULES: usize = 64;
const MAX_RULE_LEN: usize = 1024;

/// What a grant may run with sudo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SudoRules {
    /// No sudo at all: no drop-in is written.
    None,
    /// Every command as any user (`["ALL"]`).
    All,
    /// These exact command lines, as root. A line without arguments allows
    /// the command with any arguments (sudo's rule).
    Commands(Vec<String>),
}

impl SudoRules {
    /// Validate the rules of a grant. `["ALL"]` must be alone.
    pub fn parse(rules: &[String]) -> Result<Self> {
        if rules.is_empty() {
            return Ok(SudoRules::None);
        }
        if rules.len() > MAX_RULES {
            return Err(refuse(
                &format!("{} rules", rules.len()),
                &format!("at most {MAX_RULES} rules per grant"),
            ));
        }
        if rules.iter().any(|r| r == "ALL") {
            return if rules.len() == 1 {
                Ok(SudoRules::All)
            } else {
                Err(refuse("ALL", "ALL must be the only rule when present"))
            };
        }
        let mut commands = Vec::with_capacity(rules.len());
        for rule in rules {
            check_command_line(rule)?;
            commands.push(rule.clone());
        }
        Ok(SudoRules::Commands(commands))
    }

    /// How many rules the drop-in holds (for `AccountReady`).
    pub fn count(&self) -> usize {
        match self {
            SudoRules::None => 0,
            SudoRules::All => 1,
            SudoRules::Commands(c) => c.len(),
        }
    }

    /// The drop-in's contents for `account`, or `None` when no drop-in is
    /// needed.
    pub fn render(&self, account: &AccountName) -> Option<String> {
        let spec = match self {
            SudoRules::None => return None,
            SudoRules::All => "ALL=(ALL:ALL) NOPASSWD: ALL".to_string(),
            SudoRules::Commands(c) => format!("ALL=(root) NOPASSWD: {}", c.join(", ")),
        };
        Some(format!(
            "# Managed by idmint-agent for one just-in-time grant; removed with the account.\n{account} {spec}\n"
        ))
    }
}

fn check_command_line(rule: &str) -> Result<()> {
    if rule.is_empty() || rule.len() > MAX_RULE_LEN {
        return Err(refuse(rule, "a rule must be 1 to 1024 characters"));
    }
    if let Some(c) = rule
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | ' ')))
    {
        return Err(refuse(
            rule,
            &format!(
                "character {c:?} is not allowed (only letters, digits, `/ . _ - +` and single spaces)"
            ),
        ));
    }
    let words: Vec<&str> = rule.split(' ').collect();
    if words.iter().any(|w| w.is_empty()) {
        return Err(refuse(rule, "words must be separated by exactly one space"));
    }
    let program = words.first().copied().unwrap_or_default();
    if !program.starts_with('/') {
        return Err(refuse(rule, "the command must be an absolute path"));
    }
    if program.ends_with('/') {
        return Err(refuse(
            rule,
            "a directory would allow every program in it; name one program",
        ));
    }
    if program.split('/').any(|part| part == "." || part == "..") {
        return Err(refuse(
            rule,
            "`.` and `..` are not allowed in the command path",
        ));
    }
    if program.rsplit('/').next() == Some("sudoedit") {
        return Err(refuse(rule, "sudoedit rules are not supported"));
    }
    Ok(())
}

fn refuse(rule: &str, why: &str) -> AgentError {
    AgentError::InvalidSudoRule {
        rule: rule.chars().take(120).collect(),
        why: why.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(rules: &[&str]) -> Result<SudoRules> {
        SudoRules::parse(&rules.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn renders_commands_and_all() {
        let name = AccountName::parse("wl_abc123").unwrap();
        let r = parse(&["/usr/bin/true", "/usr/bin/systemctl restart web"]).unwrap();
        assert_eq!(r.count(), 2);
        let text = r.render(&name).unwrap();
        assert!(text.ends_with(
            "wl_abc123 ALL=(root) NOPASSWD: /usr/bin/true, /usr/bin/systemctl restart web\n"
        ));
        assert!(parse(&["ALL"])
            .unwrap()
            .render(&name)
            .unwrap()
            .contains("NOPASSWD: ALL"));
        assert_eq!(parse(&[]).unwrap().render(&name), None);
    }

    #[test]
    fn refuses_everything_that_could_widen_the_grant() {
        for bad in [
            "/usr/bin/true, ALL",
            "/usr/bin/true\nwl_abc123 ALL=(ALL) ALL",
            "/usr/bin/true : ALL",
            "ALL=(ALL) ALL",
            "/usr/bin/*",
            "/usr/bin/",
            "/usr/bin/../bin/sh",
            "usr/bin/true",
            "true",
            "/bin/sh -c id\\",
            "/usr/bin/vi #x",
            "!/usr/bin/su",
            "%wheel",
            "/usr/bin/true  x",
            "/usr/bin/true\tx",
            "/usr/bin/sudoedit /etc/shadow",
            "/usr/bin/env \"x\"",
            "/usr/bin/true;id",
            "/usr/bin/true $(id)",
            "",
        ] {
            assert!(parse(&[bad]).is_err(), "{bad:?} must be refused");
        }
        assert!(parse(&["ALL", "/usr/bin/true"]).is_err());
        let many: Vec<&str> = std::iter::repeat_n("/usr/bin/true", 65).collect();
        assert!(parse(&many).is_err());
    }
}
