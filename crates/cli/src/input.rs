//! Reading secrets (tokens) from files or stdin.

use anyhow::{bail, Context, Result};
use idmint_client::SecretString;
use std::io::Read;
use std::path::Path;

/// Largest token accepted. OIDC tokens are a few KB; this bounds memory if
/// someone pipes in the wrong thing.
const MAX_TOKEN_BYTES: u64 = 64 * 1024;

/// A token from `path`, or from stdin when `path` is `-`. Surrounding
/// whitespace (a trailing newline from `echo` or a file) is removed.
pub fn read_token(path: &Path, what: &str) -> Result<SecretString> {
    if path == Path::new("-") {
        read_token_from(std::io::stdin().lock(), what, "stdin")
    } else {
        let f = std::fs::File::open(path)
            .with_context(|| format!("reading the {what} from {}", path.display()))?;
        read_token_from(f, what, &path.display().to_string())
    }
}

/// The same, from any reader (testable).
pub fn read_token_from(r: impl Read, what: &str, source: &str) -> Result<SecretString> {
    let mut buf = String::new();
    r.take(MAX_TOKEN_BYTES + 1)
        .read_to_string(&mut buf)
        .with_context(|| format!("reading the {what} from {source} (is it text?)"))?;
    let token = SecretString::new(buf.trim().to_string());
    // Wipe the untrimmed copy too.
    drop(SecretString::new(buf));
    if token.expose().len() as u64 > MAX_TOKEN_BYTES {
        bail!("the {what} from {source} is over {MAX_TOKEN_BYTES} bytes; is it really a token?");
    }
    if token.expose().is_empty() {
        bail!("the {what} from {source} is empty");
    }
    if token.expose().chars().any(char::is_whitespace) {
        bail!("the {what} from {source} contains whitespace inside it; a token is one word (did the file hold something else?)");
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_validates() {
        let t = read_token_from(&b"  a.b.c\n"[..], "OIDC token", "stdin").unwrap();
        assert_eq!(t.expose(), "a.b.c");
        let e = read_token_from(&b"\n"[..], "OIDC token", "stdin").unwrap_err();
        assert_eq!(e.to_string(), "the OIDC token from stdin is empty");
        assert!(read_token_from(&b"a b"[..], "OIDC token", "stdin").is_err());
        let big = vec![b'a'; (MAX_TOKEN_BYTES + 10) as usize];
        let e = read_token_from(&big[..], "OIDC token", "f").unwrap_err();
        assert!(e.to_string().contains("over"), "{e}");
    }
}
