//! The ACL rules of a Redis role: the `[role.redis]` template parsed
//! against a whitelist grammar and turned into `ACL SETUSER` arguments.
//!
//! Every rule is sent as its own RESP argument, so nothing in a template can
//! add a rule by itself; the grammar below additionally keeps every rule
//! round-trippable through `ACL LIST`/`ACL SAVE` (which join rules with
//! spaces) and refuses what would give a lease user power over the server or
//! over other tenants' data unless the template sets `allow_dangerous`.
//!
//! Decisions (documented for operators in the module docs of
//! [`crate::redis`]):
//! - key and channel patterns are globs *without* Redis's `~`/`&` prefix,
//!   1–512 printable ASCII characters without spaces; a pattern that does
//!   not start with a literal character (`*`, `?`, `[`) reaches every
//!   tenant's keys and is dangerous;
//! - command rules are `+name`, `-name`, `+name|sub`, `+@category` (known
//!   Redis 7 categories only), case-insensitive;
//! - dangerous are `+@all`, `+@admin`, `+@dangerous` and adding any command
//!   Redis itself classifies as `@dangerous` (`KEYS`, `FLUSHALL`, `CONFIG`,
//!   `ACL SETUSER`, `DEBUG`, `SHUTDOWN`, `INFO`, `SORT`, …) or that changes
//!   state shared by all tenants (`FUNCTION FLUSH/DELETE/RESTORE/LOAD/KILL`,
//!   `SCRIPT FLUSH/KILL`);
//! - unless `allow_dangerous`, idmint appends `-@dangerous` and removals of
//!   those shared-state commands after the template's rules, so a broad
//!   category such as `+@read` never brings in `KEYS` or `FLUSHALL`.

use idmint_core::role::RedisTemplate;

/// Longest key or channel pattern accepted.
const MAX_PATTERN_LEN: usize = 512;

/// The command categories of Redis 7.0 (`ACL CAT`).
const CATEGORIES: &[&str] = &[
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
    "all",
];

/// Categories a lease user may not be given without `allow_dangerous`.
const DANGEROUS_CATEGORIES: &[&str] = &["all", "admin", "dangerous"];

/// `ACL CAT dangerous` of Redis 7.0.15, verbatim (the integration tests check
/// that the running server lists nothing that is missing here).
pub const REDIS_DANGEROUS_COMMANDS: &[&str] = &[
    "monitor",
    "replconf",
    "psync",
    "role",
    "sort",
    "debug",
    "flushall",
    "restore-asking",
    "failover",
    "bgsave",
    "lastsave",
    "sync",
    "migrate",
    "replicaof",
    "slaveof",
    "keys",
    "shutdown",
    "info",
    "client|kill",
    "client|unpause",
    "client|unblock",
    "client|no-evict",
    "client|pause",
    "client|list",
    "pfselftest",
    "restore",
    "latency|reset",
    "latency|doctor",
    "latency|latest",
    "latency|history",
    "latency|histogram",
    "latency|graph",
    "pfdebug",
    "acl|load",
    "acl|getuser",
    "acl|setuser",
    "acl|log",
    "acl|users",
    "acl|save",
    "acl|dryrun",
    "acl|list",
    "acl|deluser",
    "swapdb",
    "flushdb",
    "slowlog|len",
    "slowlog|reset",
    "slowlog|get",
    "save",
    "config|rewrite",
    "config|get",
    "config|resetstat",
    "config|set",
    "module|loadex",
    "module|list",
    "module|load",
    "module|unload",
    "sort_ro",
    "bgrewriteaof",
    "cluster|forget",
    "cluster|reset",
    "cluster|count-failure-reports",
    "cluster|replicate",
    "cluster|delslotsrange",
    "cluster|delslots",
    "cluster|addslotsrange",
    "cluster|replicas",
    "cluster|addslots",
    "cluster|flushslots",
    "cluster|failover",
    "cluster|setslot",
    "cluster|bumpepoch",
    "cluster|slaves",
    "cluster|set-config-epoch",
    "cluster|meet",
    "cluster|saveconfig",
];

/// Commands Redis does not call dangerous but that act on state shared by
/// every user of the server (all functions, all scripts), so key patterns
/// cannot confine them.
pub const SHARED_STATE_COMMANDS: &[&str] = &[
    "function|flush",
    "function|delete",
    "function|restore",
    "function|load",
    "function|kill",
    "script|flush",
    "script|kill",
];

/// ACL keywords someone might write as a key or channel pattern by mistake.
const ACL_KEYWORDS: &[&str] = &[
    "allkeys",
    "allchannels",
    "allcommands",
    "nocommands",
    "resetkeys",
    "resetchannels",
    "reset",
    "on",
    "off",
    "nopass",
    "resetpass",
];

/// The validated ACL of a role, as `ACL SETUSER` arguments (without the
/// user name and password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AclRules {
    /// `~pattern` arguments.
    keys: Vec<String>,
    /// `&pattern` arguments.
    channels: Vec<String>,
    /// `+cmd` / `-cmd` / `+@cat` arguments, lowercased, followed by the
    /// safety removals unless the template allows dangerous rules.
    commands: Vec<String>,
}

impl AclRules {
    /// Parse and check `template` of role `role`. The error names the role
    /// and the offending entry, for the operator fixing `roles.toml`.
    pub(crate) fn from_template(role: &str, template: &RedisTemplate) -> Result<Self, String> {
        let refuse = |what: &str, entry: &str, why: String| {
            format!("role {role:?}: redis {what} entry {entry:?} is refused: {why}")
        };
        let keys = template
            .keys
            .iter()
            .map(|p| {
                check_pattern(p, '~', template.allow_dangerous)
                    .map(|()| format!("~{p}"))
                    .map_err(|why| refuse("keys", p, why))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let channels = template
            .channels
            .iter()
            .map(|p| {
                check_pattern(p, '&', template.allow_dangerous)
                    .map(|()| format!("&{p}"))
                    .map_err(|why| refuse("channels", p, why))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if template.commands.is_empty() {
            return Err(format!(
                "role {role:?}: redis `commands` is empty, so the user could run no command; \
                 list the commands it needs, e.g. [\"+get\", \"+set\"] or [\"+@read\"]"
            ));
        }
        let mut commands = template
            .commands
            .iter()
            .map(|c| {
                check_command_rule(c, template.allow_dangerous)
                    .map_err(|why| refuse("commands", c, why))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !template.allow_dangerous {
            commands.push("-@dangerous".to_string());
            commands.extend(SHARED_STATE_COMMANDS.iter().map(|c| format!("-{c}")));
        }
        Ok(Self {
            keys,
            channels,
            commands,
        })
    }

    /// The rules after `ACL SETUSER <user> reset on ><password>`: every
    /// previous key, channel and command permission is reset first, so the
    /// user has exactly these and nothing else.
    pub(crate) fn setuser_rules(&self) -> Vec<&str> {
        let mut out =
            Vec::with_capacity(self.keys.len() + self.channels.len() + self.commands.len() + 3);
        out.push("resetkeys");
        out.extend(self.keys.iter().map(String::as_str));
        out.push("resetchannels");
        out.extend(self.channels.iter().map(String::as_str));
        out.push("-@all");
        out.extend(self.commands.iter().map(String::as_str));
        out
    }
}

/// A key (`sigil` `~`) or channel (`&`) glob pattern.
fn check_pattern(pattern: &str, sigil: char, allow_dangerous: bool) -> Result<(), String> {
    if pattern.is_empty() || pattern.len() > MAX_PATTERN_LEN {
        return Err(format!(
            "a pattern must be 1 to {MAX_PATTERN_LEN} characters long"
        ));
    }
    if let Some(bad) = pattern.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "it contains {bad:?}; patterns are printable ASCII without spaces \
             (Redis stores ACL rules space-separated, so anything else cannot round-trip)"
        ));
    }
    if pattern.starts_with(sigil) {
        return Err(format!(
            "write the pattern without Redis's leading {sigil:?}: idmint adds it"
        ));
    }
    if pattern.starts_with('%') {
        return Err(
            "read/write selectors (`%R~`, `%W~`) are not supported; write a plain pattern".into(),
        );
    }
    if ACL_KEYWORDS.contains(&pattern.to_ascii_lowercase().as_str()) {
        return Err("this is an ACL keyword, not a pattern; to match everything write \"*\" and set allow_dangerous = true".into());
    }
    if !allow_dangerous && pattern.starts_with(['*', '?', '[']) {
        return Err("the pattern does not start with a literal prefix, so it matches other tenants' \
             names (e.g. `*` is every key); use a prefix such as \"app:*\" or set allow_dangerous = true"
            .into());
    }
    Ok(())
}

/// A command rule: `+name`, `-name`, `+name|sub`, `+@category`; returned
/// lowercased (Redis command names are case-insensitive, the danger lists
/// are lowercase).
fn check_command_rule(rule: &str, allow_dangerous: bool) -> Result<String, String> {
    let rule = rule.to_ascii_lowercase();
    let (sign, body) = match rule.split_at_checked(1) {
        Some(("+", body)) => ('+', body),
        Some(("-", body)) => ('-', body),
        _ => {
            return Err(
                "a command rule starts with `+` (allow) or `-` (deny), e.g. \"+get\", \"+@read\", \"-flushall\"".into(),
            )
        }
    };
    if let Some(category) = body.strip_prefix('@') {
        if !CATEGORIES.contains(&category) {
            return Err(format!(
                "unknown command category; Redis 7 has @{}",
                CATEGORIES.join(", @")
            ));
        }
        if sign == '+' && !allow_dangerous && DANGEROUS_CATEGORIES.contains(&category) {
            return Err(format!(
                "@{category} gives administrative or cross-tenant power; set allow_dangerous = true if that is intended"
            ));
        }
        return Ok(rule);
    }
    let (command, sub) = match body.split_once('|') {
        Some((c, s)) => (c, Some(s)),
        None => (body, None),
    };
    let name_ok = |s: &str, first_may_be_digit: bool| {
        s.len() <= 64
            && s.chars().next().is_some_and(|c| {
                c.is_ascii_lowercase() || (first_may_be_digit && c.is_ascii_digit())
            })
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    };
    if !name_ok(command, false) || !sub.is_none_or(|s| name_ok(s, true)) {
        return Err("a command is [a-z][a-z0-9_-]* optionally followed by |subcommand, e.g. \"+client|setname\"".into());
    }
    if sign == '+' && !allow_dangerous && is_dangerous_command(command, sub) {
        return Err(
            "Redis classifies this command as @dangerous (or it changes state shared by all users); \
             set allow_dangerous = true if that is intended"
                .into(),
        );
    }
    Ok(rule)
}

/// Whether allowing `command` (all its subcommands when `sub` is `None`)
/// allows something dangerous.
fn is_dangerous_command(command: &str, sub: Option<&str>) -> bool {
    let listed = |name: &str| {
        REDIS_DANGEROUS_COMMANDS.contains(&name) || SHARED_STATE_COMMANDS.contains(&name)
    };
    let any_sub_listed = || {
        REDIS_DANGEROUS_COMMANDS
            .iter()
            .chain(SHARED_STATE_COMMANDS)
            .any(|n| n.split_once('|').is_some_and(|(c, _)| c == command))
    };
    match sub {
        // A whole-command entry (`keys`) covers every subcommand.
        Some(s) => listed(command) || listed(&format!("{command}|{s}")),
        None => listed(command) || any_sub_listed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(keys: &[&str], channels: &[&str], commands: &[&str]) -> RedisTemplate {
        RedisTemplate {
            keys: keys.iter().map(|s| s.to_string()).collect(),
            channels: channels.iter().map(|s| s.to_string()).collect(),
            commands: commands.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_plain_template_becomes_exact_rules_with_safety_removals() {
        let rules = AclRules::from_template(
            "r",
            &template(&["app:*"], &["ev:*"], &["+GET", "+set", "+@read"]),
        )
        .unwrap();
        let args = rules.setuser_rules();
        let expected_head = [
            "resetkeys",
            "~app:*",
            "resetchannels",
            "&ev:*",
            "-@all",
            "+get",
            "+set",
            "+@read",
            "-@dangerous",
        ];
        assert_eq!(&args[..expected_head.len()], &expected_head);
        assert!(
            args.contains(&"-function|flush") && args.contains(&"-script|flush"),
            "{args:?}"
        );
    }

    #[test]
    fn allow_dangerous_passes_rules_through_without_removals() {
        let mut t = template(&["*"], &["*"], &["+@all"]);
        t.allow_dangerous = true;
        let rules = AclRules::from_template("r", &t).unwrap();
        assert_eq!(
            rules.setuser_rules(),
            ["resetkeys", "~*", "resetchannels", "&*", "-@all", "+@all"]
        );
    }

    #[test]
    fn dangerous_entries_are_refused_by_default() {
        for cmd in [
            "+@all",
            "+@admin",
            "+@dangerous",
            "+acl",
            "+acl|setuser",
            "+config",
            "+config|get",
            "+CONFIG",
            "+module",
            "+debug",
            "+flushall",
            "+flushdb",
            "+shutdown",
            "+keys",
            "+client",
            "+client|kill",
            "+function",
            "+function|flush",
            "+script|flush",
            "+sort",
            "+keys|x",
        ] {
            let e =
                AclRules::from_template("db/r", &template(&["app:*"], &[], &[cmd])).unwrap_err();
            assert!(
                e.contains("allow_dangerous") && e.contains("db/r") && e.contains(cmd),
                "{cmd}: {e}"
            );
        }
        for key in ["*", "?x", "[a-z]*", "**"] {
            let e = AclRules::from_template("r", &template(&[key], &[], &["+get"])).unwrap_err();
            assert!(e.contains("allow_dangerous"), "{key}: {e}");
            let e =
                AclRules::from_template("r", &template(&["app:*"], &[key], &["+get"])).unwrap_err();
            assert!(e.contains("channels"), "{key}: {e}");
        }
        // Removing is always fine, and harmless subcommands stay allowed.
        for ok in [
            "-@all",
            "-flushall",
            "-@dangerous",
            "+client|setname",
            "+acl|whoami",
            "+select|0",
            "+georadius_ro",
        ] {
            AclRules::from_template("r", &template(&["app:*"], &[], &[ok])).unwrap();
        }
    }

    #[test]
    fn malformed_entries_are_refused_with_the_entry_named() {
        let hostile_keys = [
            "",
            "app:* +@all",
            "app:*\n",
            "app\0",
            "app:é",
            "~app:*",
            "%R~app:*",
            "allkeys",
            "ALLKEYS",
            "app:*\t",
            "a b",
        ];
        for key in hostile_keys {
            let e = AclRules::from_template("r", &template(&[key], &[], &["+get"])).unwrap_err();
            assert!(e.contains("keys entry"), "{key:?}: {e}");
        }
        let long = "a".repeat(MAX_PATTERN_LEN + 1);
        assert!(AclRules::from_template("r", &template(&[&long], &[], &["+get"])).is_err());
        let hostile_commands = [
            "get",
            "+",
            "+@",
            "+@nosuch",
            "+get +@all",
            "+get\n",
            "+ge t",
            "+@all\0",
            ">pw",
            "<pw",
            "#hash",
            "!x",
            "nopass",
            "allcommands",
            "+get|",
            "+|x",
            "+a|b|c",
            "+1get",
            "+gét",
            "on",
        ];
        for cmd in hostile_commands {
            let e = AclRules::from_template("r", &template(&["app:*"], &[], &[cmd])).unwrap_err();
            assert!(e.contains("commands entry"), "{cmd:?}: {e}");
        }
        let e = AclRules::from_template("r", &template(&["app:*"], &[], &[])).unwrap_err();
        assert!(e.contains("empty"), "{e}");
    }
}
