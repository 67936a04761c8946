//! The AWS shared config and credentials files (`~/.aws/config`,
//! `~/.aws/credentials`): INI with `[profile NAME]` (config) or `[NAME]`
//! (credentials) sections and `key = value` lines.
//!
//! Reading follows the AWS CLI: comments start with `#` or `;`, keys are
//! case-sensitive, nested (indented) sub-sections such as `s3 =` blocks are
//! skipped. Writing ([`upsert_profile`]) changes only the keys it is given
//! in the one section it targets, and keeps every other line byte for byte,
//! so a user's other profiles and comments survive `idmint aws
//! configure-profile`.

use std::collections::BTreeMap;

/// `key → value` of one section.
pub type Section = BTreeMap<String, String>;

/// The section header a profile has in the config file: `[default]` or
/// `[profile NAME]`.
pub fn config_section_name(profile: &str) -> String {
    if profile == "default" {
        "default".to_string()
    } else {
        format!("profile {profile}")
    }
}

/// The name inside `[ … ]` of a header line, trimmed; `None` for other lines.
fn header_name(line: &str) -> Option<String> {
    let t = line.trim();
    let inner = t.strip_prefix('[')?.strip_suffix(']')?;
    Some(inner.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Every section of an INI text, by header name (`profile x`, `default`).
pub fn parse(text: &str) -> BTreeMap<String, Section> {
    let mut out: BTreeMap<String, Section> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(name) = header_name(line) {
            out.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        // Indented lines continue a nested block (`s3 =\n  max_… = …`).
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let (Some(section), Some((k, v))) = (&current, trimmed.split_once('=')) else {
            continue;
        };
        out.entry(section.clone())
            .or_default()
            .insert(k.trim().to_string(), v.trim().to_string());
    }
    out
}

/// `text` with `section` holding `values` (set or replaced; `None` removes
/// the key). Other keys and lines of the section, and every other section,
/// are kept as they are; a missing section is appended.
pub fn upsert_profile(text: &str, section: &str, values: &[(&str, Option<&str>)]) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| header_name(l).as_deref() == Some(section));
    let Some(start) = start else {
        let mut out = text.to_string();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!("[{section}]\n"));
        for (k, v) in values {
            if let Some(v) = v {
                out.push_str(&format!("{k} = {v}\n"));
            }
        }
        return out;
    };
    let end = lines
        .iter()
        .skip(start + 1)
        .position(|l| header_name(l).is_some())
        .map(|i| start + 1 + i)
        .unwrap_or(lines.len());
    let key_of = |l: &str| -> Option<String> {
        if l.starts_with([' ', '\t']) {
            return None;
        }
        l.split_once('=').map(|(k, _)| k.trim().to_string())
    };
    let mut out: Vec<String> = lines
        .get(..=start)
        .unwrap_or_default()
        .iter()
        .map(|l| l.to_string())
        .collect();
    let body = lines.get(start + 1..end).unwrap_or_default();
    // Drop the keys being set; they are written again below.
    let mut kept: Vec<String> = body
        .iter()
        .filter(|l| !key_of(l).is_some_and(|k| values.iter().any(|(name, _)| *name == k)))
        .map(|l| l.to_string())
        .collect();
    // New keys go before the section's trailing blank lines.
    let mut trailing = Vec::new();
    while kept.last().is_some_and(|l| l.trim().is_empty()) {
        trailing.push(kept.pop().unwrap_or_default());
    }
    out.extend(kept);
    for (k, v) in values {
        if let Some(v) = v {
            out.push(format!("{k} = {v}"));
        }
    }
    out.extend(trailing);
    out.extend(
        lines
            .get(end..)
            .unwrap_or_default()
            .iter()
            .map(|l| l.to_string()),
    );
    let mut joined = out.join("\n");
    joined.push('\n');
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "# mine\n[default]\nregion = eu-west-1\n\n[profile dev]\nregion = us-east-1\ns3 =\n  max_concurrent_requests = 5\ncredential_process = /bin/old\n\n[profile other]\noutput=json\n";

    #[test]
    fn parses_sections_and_skips_nested_blocks() {
        let p = parse(CONFIG);
        assert_eq!(p["default"]["region"], "eu-west-1");
        assert_eq!(p["profile dev"]["credential_process"], "/bin/old");
        assert!(!p["profile dev"].contains_key("max_concurrent_requests"));
        assert_eq!(p["profile other"]["output"], "json");
        assert_eq!(config_section_name("default"), "default");
        assert_eq!(config_section_name("x"), "profile x");
    }

    #[test]
    fn upsert_replaces_only_the_given_keys() {
        let out = upsert_profile(
            CONFIG,
            "profile dev",
            &[
                (
                    "credential_process",
                    Some("/bin/idmint aws credential-process r"),
                ),
                ("endpoint_url", None),
            ],
        );
        let p = parse(&out);
        assert_eq!(
            p["profile dev"]["credential_process"],
            "/bin/idmint aws credential-process r"
        );
        assert_eq!(p["profile dev"]["region"], "us-east-1");
        assert_eq!(p["profile other"]["output"], "json");
        assert!(
            out.starts_with("# mine\n[default]\nregion = eu-west-1\n"),
            "{out}"
        );
        assert!(
            out.contains("s3 =\n  max_concurrent_requests = 5\n"),
            "{out}"
        );
        assert_eq!(out.matches("credential_process").count(), 1, "{out}");

        let added = upsert_profile(CONFIG, "profile idmint", &[("region", Some("us-east-1"))]);
        assert!(added.starts_with(CONFIG), "{added}");
        assert!(
            added.ends_with("\n\n[profile idmint]\nregion = us-east-1\n"),
            "{added}"
        );
        assert_eq!(
            upsert_profile("", "default", &[("a", Some("b"))]),
            "[default]\na = b\n"
        );
    }
}
