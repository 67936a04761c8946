//! Reading an audit log (JSON lines) in tests.

use crate::error::{Result, TestkitError};
use serde_json::Value;
use std::path::Path;

/// Every line of the audit file parsed as JSON, in order. A line that is
/// not JSON is an error naming its number (the log must never hold one).
pub fn read_events(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| TestkitError::io(format!("reading {}", path.display()), e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| TestkitError::Protocol {
                peer: "audit log".into(),
                message: format!("{} line {} is not JSON: {e}", path.display(), i + 1),
            })
        })
        .collect()
}

/// The events of kind `event` (the `event` field).
pub fn events_of<'a>(events: &'a [Value], event: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == event).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.jsonl");
        std::fs::write(
            &p,
            "{\"event\":\"login\"}\n{\"event\":\"login_failed\"}\n\n",
        )
        .unwrap();
        let ev = read_events(&p).unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!(events_of(&ev, "login_failed").len(), 1);
        std::fs::write(&p, "{\"event\":\"login\"}\nnot json\n").unwrap();
        assert!(read_events(&p).unwrap_err().to_string().contains("line 2"));
    }
}
