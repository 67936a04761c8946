//! Asking a person to confirm a destructive action (`leases revoke
//! --prefix`).
//!
//! Without a terminal there is nobody to ask, and guessing "yes" would let a
//! script with a wrong prefix revoke everyone's credentials; so scripts must
//! say `--yes` explicitly.

use anyhow::{Context, Result};
use std::io::{BufRead, Write};

/// Whether to go ahead, ask, or refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// `--yes` was given.
    Given,
    /// Ask on the terminal.
    Ask,
    /// No `--yes` and no terminal to ask on: refuse.
    Refused,
}

pub fn needed(yes: bool, stdin_is_terminal: bool) -> Confirmation {
    match (yes, stdin_is_terminal) {
        (true, _) => Confirmation::Given,
        (false, true) => Confirmation::Ask,
        (false, false) => Confirmation::Refused,
    }
}

/// `y` or `yes`, in any case, with surrounding whitespace. Anything else,
/// including an empty answer, is "no".
pub fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Write `question` and ` [y/N] ` to `prompt`, read one line from `input`.
/// End of input counts as "no".
pub fn ask(question: &str, mut input: impl BufRead, mut prompt: impl Write) -> Result<bool> {
    write!(prompt, "{question} [y/N] ")
        .and_then(|()| prompt.flush())
        .context("writing the confirmation prompt")?;
    let mut answer = String::new();
    input
        .read_line(&mut answer)
        .context("reading the answer from stdin")?;
    Ok(is_yes(&answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_decides() {
        assert_eq!(needed(true, true), Confirmation::Given);
        assert_eq!(needed(true, false), Confirmation::Given);
        assert_eq!(needed(false, true), Confirmation::Ask);
        assert_eq!(needed(false, false), Confirmation::Refused);
    }

    #[test]
    fn answers() {
        for yes in ["y", "Y", "yes", "YES", " yes\n"] {
            assert!(is_yes(yes), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "yess", "y e s", "ok"] {
            assert!(!is_yes(no), "{no:?}");
        }
    }

    #[test]
    fn asking() {
        let mut prompt = Vec::new();
        assert!(ask("Revoke?", &b"y\n"[..], &mut prompt).unwrap());
        assert_eq!(String::from_utf8(prompt).unwrap(), "Revoke? [y/N] ");
        assert!(!ask("Revoke?", &b"nope\n"[..], Vec::new()).unwrap());
        assert!(!ask("Revoke?", &b""[..], Vec::new()).unwrap(), "EOF is no");
    }
}
