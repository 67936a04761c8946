//! Formatting for stdout: JSON, shell `export` lines, tables, times.
//!
//! Everything here returns a `String` so it can be tested without capturing
//! stdout.

use anyhow::{Context, Result};
use comfy_table::{presets, ContentArrangement, Table};
use serde::Serialize;
use std::time::Duration;

/// Write `text` to stdout. A closed pipe (`idmint … | head`) is not an
/// error: the reader has what it wanted.
pub fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

/// Pretty JSON with a trailing newline.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    let mut s = serde_json::to_string_pretty(value).context("encoding JSON output")?;
    s.push('\n');
    Ok(s)
}

/// `value` quoted for POSIX shells: single quotes, with embedded single
/// quotes written as `'\''`. Safe for any content, including newlines.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// `export NAME='value'` lines for `eval "$(idmint … -o env)"`.
pub fn env_exports(vars: &[(&str, &str)]) -> String {
    vars.iter()
        .map(|(name, value)| format!("export {name}={}\n", shell_quote(value)))
        .collect()
}

/// `2026-11-23T15:04:05Z (in 4m 59s)` or `… (expired 3m ago)`.
pub fn time_with_relative(unix: i64, now: i64) -> String {
    let when = idmint_core::UnixTime(unix).rfc3339();
    let delta = unix.saturating_sub(now);
    let human = |secs: i64| humantime::format_duration(Duration::from_secs(secs.unsigned_abs()));
    if delta > 0 {
        format!("{when} (in {})", human(delta))
    } else if delta < 0 {
        format!("{when} (expired {} ago)", human(delta))
    } else {
        format!("{when} (now)")
    }
}

/// A two-column key/value table.
pub fn key_value_table(rows: &[(&str, String)]) -> String {
    let mut t = new_table();
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v.clone()]);
    }
    format!("{t}\n")
}

/// A table with a header row.
pub fn list_table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = new_table();
    t.set_header(header.to_vec());
    for r in rows {
        t.add_row(r);
    }
    format!("{t}\n")
}

fn new_table() -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_hostile_values() {
        assert_eq!(shell_quote("abc"), "'abc'");
        assert_eq!(shell_quote("it's $(rm -rf /)"), r"'it'\''s $(rm -rf /)'");
        assert_eq!(
            env_exports(&[("A", "x y"), ("B", "")]),
            "export A='x y'\nexport B=''\n"
        );
    }

    #[test]
    fn relative_times() {
        assert_eq!(time_with_relative(300, 0), "1970-01-01T00:05:00Z (in 5m)");
        assert_eq!(
            time_with_relative(0, 90),
            "1970-01-01T00:00:00Z (expired 1m 30s ago)"
        );
        assert_eq!(time_with_relative(7, 7), "1970-01-01T00:00:07Z (now)");
    }

    #[test]
    fn tables_contain_their_cells() {
        let t = key_value_table(&[("Lease", "lease_1".into()), ("Role", "demo-api".into())]);
        assert!(
            t.contains("Lease") && t.contains("lease_1") && t.contains("demo-api"),
            "{t}"
        );
        let t = list_table(&["ID", "ROLE"], vec![vec!["l1".into(), "r1".into()]]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines.iter().any(|l| l.contains("ID") && l.contains("ROLE")),
            "{t}"
        );
        assert!(
            lines.iter().any(|l| l.contains("l1") && l.contains("r1")),
            "{t}"
        );
    }

    #[test]
    fn json_is_pretty_with_newline() {
        assert_eq!(
            json(&serde_json::json!({"a": 1})).unwrap(),
            "{\n  \"a\": 1\n}\n"
        );
    }
}
