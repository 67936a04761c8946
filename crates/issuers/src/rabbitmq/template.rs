//! The permissions of a RabbitMQ role: the `[role.rabbitmq]` template
//! checked when the role is loaded.
//!
//! Values travel as JSON strings in management API bodies and as
//! percent-encoded path segments, so they cannot change the request; the
//! checks here refuse what would silently mean something else (a tag list
//! smuggled through a comma, control characters) and what gives more power
//! than a lease should have, unless the template sets `allow_dangerous`.
//!
//! Decisions:
//! - tags are `[a-z][a-z0-9_-]*` (the broker splits a tag string on commas,
//!   so `"management,administrator"` must not pass as one tag);
//!   `administrator`, `monitoring`, `policymaker` and `impersonator` are
//!   dangerous (user management, every connection's details, policies that
//!   reshape other users' queues, forged `user-id`s);
//! - `configure` patterns that match every name (`.*`, `^.*$`, `.+`, or an
//!   alternative of them) are dangerous: they let the user delete or
//!   redeclare every queue and exchange of the vhost, including other
//!   services'. Catch-all `write`/`read` are allowed: they stay within the
//!   role's one vhost, which is what a vhost-per-service layout grants;
//! - the broker compiles the patterns itself (Erlang `re`); one it refuses
//!   fails the first issuance with a message naming the pattern, and no
//!   user is left behind.

use idmint_core::role::RabbitmqTemplate;

const MAX_VHOST_LEN: usize = 255;
const MAX_PATTERN_LEN: usize = 1024;
const MAX_TAG_LEN: usize = 64;

/// Tags that give a lease user power beyond its own vhost's resources.
pub const DANGEROUS_TAGS: &[&str] = &["administrator", "monitoring", "policymaker", "impersonator"];

/// A validated template: what the issuer sends to the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Permissions {
    pub(crate) vhost: String,
    pub(crate) configure: String,
    pub(crate) write: String,
    pub(crate) read: String,
    /// Comma-joined, as the management API of every 3.x accepts it.
    pub(crate) tags: String,
}

impl Permissions {
    /// Check `template` of role `role`; the error names the role and the
    /// offending field, for the operator fixing `roles.toml`.
    pub(crate) fn from_template(role: &str, template: &RabbitmqTemplate) -> Result<Self, String> {
        let refuse = |field: &str, value: &str, why: &str| {
            format!("role {role:?}: rabbitmq {field} {value:?} is refused: {why}")
        };
        let vhost = &template.vhost;
        // `.` and `..` would be resolved as dot segments in the API's URL.
        if vhost.is_empty()
            || vhost.len() > MAX_VHOST_LEN
            || vhost.chars().any(char::is_control)
            || vhost == "."
            || vhost == ".."
        {
            return Err(refuse(
                "vhost",
                vhost,
                "a vhost is 1-255 characters without control characters, and not `.` or `..` \
                 (the default vhost is \"/\")",
            ));
        }
        for (field, pattern) in [
            ("configure", &template.configure),
            ("write", &template.write),
            ("read", &template.read),
        ] {
            if pattern.len() > MAX_PATTERN_LEN || pattern.chars().any(char::is_control) {
                return Err(refuse(
                    field,
                    pattern,
                    "a permission pattern is a regular expression of at most 1024 characters without control characters",
                ));
            }
        }
        if !template.allow_dangerous && matches_every_name(&template.configure) {
            return Err(refuse(
                "configure",
                &template.configure,
                "it matches every name, so the user could delete or redeclare every queue and exchange \
                 of the vhost (other services' too); name a prefix such as \"^app\\\\.\" or set \
                 allow_dangerous = true",
            ));
        }
        let mut tags = Vec::with_capacity(template.tags.len());
        for tag in &template.tags {
            let well_formed = tag.len() <= MAX_TAG_LEN
                && tag.starts_with(|c: char| c.is_ascii_lowercase())
                && tag
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            if !well_formed {
                return Err(refuse(
                    "tag",
                    tag,
                    "a tag is [a-z][a-z0-9_-]* (one tag per list entry)",
                ));
            }
            if !template.allow_dangerous && DANGEROUS_TAGS.contains(&tag.as_str()) {
                return Err(refuse(
                    "tag",
                    tag,
                    "it gives administrative or cross-tenant power; set allow_dangerous = true if that is intended",
                ));
            }
            tags.push(tag.as_str());
        }
        Ok(Self {
            vhost: vhost.clone(),
            configure: template.configure.clone(),
            write: template.write.clone(),
            read: template.read.clone(),
            tags: tags.join(","),
        })
    }
}

/// Whether `pattern` obviously matches every resource name: one of its
/// top-level alternatives is "anything" (`.*`, `.+`, optionally anchored or
/// grouped) or empty. The empty *whole* pattern means "nothing" in
/// RabbitMQ. This is a guard rail against careless templates, not a regex
/// engine: an operator can always opt in with `allow_dangerous`.
fn matches_every_name(pattern: &str) -> bool {
    if pattern.is_empty() {
        return false;
    }
    top_level_alternatives(pattern).into_iter().any(|alt| {
        let core = alt.strip_prefix('^').unwrap_or(alt);
        let core = core.strip_suffix('$').unwrap_or(core);
        let core = core
            .strip_prefix("(?:")
            .or_else(|| core.strip_prefix('('))
            .and_then(|c| c.strip_suffix(')'))
            .unwrap_or(core);
        matches!(
            core,
            "" | ".*" | ".+" | ".*?" | ".+?" | "[\\s\\S]*" | "(.*)" | "(.+)"
        )
    })
}

/// Split on `|` outside groups, classes and escapes.
fn top_level_alternatives(pattern: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut in_class, mut escaped, mut start) = (0usize, false, false, 0usize);
    for (i, c) in pattern.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '(' if !in_class => depth += 1,
            ')' if !in_class => depth = depth.saturating_sub(1),
            '|' if !in_class && depth == 0 => {
                out.push(pattern.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(pattern.get(start..).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(vhost: &str, configure: &str, tags: &[&str]) -> RabbitmqTemplate {
        RabbitmqTemplate {
            vhost: vhost.into(),
            configure: configure.into(),
            write: ".*".into(),
            read: ".*".into(),
            tags: tags.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_scoped_template_passes_through() {
        let p =
            Permissions::from_template("mq/app", &template("/", "^app\\.", &["management", "x-1"]))
                .unwrap();
        assert_eq!(p.vhost, "/");
        assert_eq!(p.configure, "^app\\.");
        assert_eq!((p.write.as_str(), p.read.as_str()), (".*", ".*"));
        assert_eq!(p.tags, "management,x-1");
        let none = Permissions::from_template("mq/app", &template("orders", "", &[])).unwrap();
        assert_eq!((none.configure.as_str(), none.tags.as_str()), ("", ""));
    }

    #[test]
    fn catch_all_configure_and_power_tags_need_allow_dangerous() {
        for configure in [
            ".*",
            "^.*$",
            ".+",
            "^.*",
            "(.*)",
            "^(?:.*)$",
            "app\\.|.*",
            "app|",
            "^(.+)$",
        ] {
            let e =
                Permissions::from_template("mq/app", &template("/", configure, &[])).unwrap_err();
            assert!(
                e.contains("allow_dangerous") && e.contains("mq/app"),
                "{configure}: {e}"
            );
        }
        for scoped in [
            "^app\\.",
            "^(app|billing)\\..*",
            "[|]",
            "app\\|.*x",
            "^amq\\.gen-.*$",
        ] {
            Permissions::from_template("mq/app", &template("/", scoped, &[])).unwrap();
        }
        for tag in DANGEROUS_TAGS {
            let e = Permissions::from_template("mq/app", &template("/", "^a", &[tag])).unwrap_err();
            assert!(e.contains("allow_dangerous"), "{tag}: {e}");
        }
        let mut t = template("/", ".*", &["administrator"]);
        t.allow_dangerous = true;
        assert_eq!(
            Permissions::from_template("mq/app", &t).unwrap().tags,
            "administrator"
        );
    }

    #[test]
    fn malformed_values_are_refused_with_the_field_named() {
        for tag in [
            "management,administrator",
            "Management",
            "",
            "a b",
            "é",
            "x\0",
        ] {
            let e = Permissions::from_template("r", &template("/", "", &[tag])).unwrap_err();
            assert!(e.contains("tag"), "{tag:?}: {e}");
        }
        for vhost in ["", "a\0b", "a\nb", ".", "..", &"v".repeat(256)] {
            let e = Permissions::from_template("r", &template(vhost, "", &[])).unwrap_err();
            assert!(e.contains("vhost"), "{vhost:?}: {e}");
        }
        let e = Permissions::from_template("r", &template("/", "^a\0", &[])).unwrap_err();
        assert!(e.contains("configure"), "{e}");
        let mut t = template("/", "", &[]);
        t.read = "x".repeat(MAX_PATTERN_LEN + 1);
        assert!(Permissions::from_template("r", &t)
            .unwrap_err()
            .contains("read"));
    }
}
