//! `idmint secret put|list|delete`: static secrets sealed in idmint for
//! `idmint proxy` to inject. The value is read from a file, an environment
//! variable or standard input, never from the command line.

use super::{denied, session_error, Exit, Format};
use crate::args::{GlobalArgs, SecretCommand, SecretPutArgs};
use crate::connection;
use crate::output::{emit, json, list_table, time_with_relative};
use anyhow::{bail, Context, Result};
use idmint_client::SecretString;
use idmint_core::UnixTime;
use idmint_issuers::static_secret::MAX_VALUE_BYTES;
use idmint_proto::secrets::{SecretInfo, SecretList};
use std::io::Read;

pub async fn run(global: &GlobalArgs, format: Format, cmd: SecretCommand) -> Result<Exit> {
    // Read the value before anything else: a wrong source fails without a
    // round trip, and the session is not needed to find that out.
    let value = match &cmd {
        SecretCommand::Put(args) => Some(read_value(args)?),
        _ => None,
    };
    let (client, source) = connection::authenticated(global)?;
    match cmd {
        SecretCommand::Put(args) => {
            let Some(value) = value else {
                bail!("internal error: no value was read for `idmint secret put`");
            };
            let info = match client.put_secret(&args.name, &value).await {
                Ok(info) => info,
                Err(e) if e.is_denied() => return Ok(denied(&e)),
                Err(e) => return Err(session_error(e, &source)),
            };
            match format {
                Format::Json => emit(&json(&info)?)?,
                Format::Text => emit(&put_text(&info))?,
            }
        }
        SecretCommand::List => {
            let list = match client.list_secrets().await {
                Ok(list) => list,
                Err(e) if e.is_denied() => return Ok(denied(&e)),
                Err(e) => return Err(session_error(e, &source)),
            };
            match format {
                Format::Json => emit(&json(&list)?)?,
                Format::Text => emit(&list_text(&list, UnixTime::now().secs()))?,
            }
        }
        SecretCommand::Delete { name } => {
            match client.delete_secret(&name).await {
                Ok(()) => {}
                Err(e) if e.is_denied() => return Ok(denied(&e)),
                Err(e) => return Err(session_error(e, &source)),
            }
            match format {
                Format::Json => emit(&json(&serde_json::json!({ "deleted": name }))?)?,
                Format::Text => emit(&format!(
                    "Deleted static secret {name}; roles that deliver it fail with static_secret_missing until it is stored again.\n"
                ))?,
            }
        }
    }
    Ok(Exit::Success)
}

/// The value from the one source the arguments name, with one trailing
/// newline (`\n` or `\r\n`) removed.
fn read_value(args: &SecretPutArgs) -> Result<SecretString> {
    let raw = if let Some(file) = &args.from_file {
        let f = std::fs::File::open(file)
            .with_context(|| format!("cannot open --from-file {}", file.display()))?;
        read_limited(f).with_context(|| format!("--from-file {}", file.display()))?
    } else if let Some(var) = &args.from_env {
        match std::env::var(var) {
            Ok(v) => SecretString::new(v),
            Err(std::env::VarError::NotPresent) => {
                bail!("--from-env {var}: the environment variable {var} is not set")
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                bail!("--from-env {var}: the value of {var} is not UTF-8")
            }
        }
    } else if args.stdin {
        read_limited(std::io::stdin().lock()).context("--stdin")?
    } else {
        bail!("give the value with --from-file FILE, --from-env VAR or --stdin (never as an argument: it would land in shell history and `ps`)");
    };
    let value = strip_one_newline(raw);
    if value.expose().is_empty() {
        bail!("the secret value is empty; nothing was stored");
    }
    if value.expose().len() > MAX_VALUE_BYTES {
        bail!(
            "the secret value has {} bytes; static secrets hold at most {MAX_VALUE_BYTES} bytes (64 KiB)",
            value.expose().len()
        );
    }
    Ok(value)
}

/// Reads at most one byte more than the limit, so a huge file or an
/// endless pipe fails fast instead of filling memory.
fn read_limited(r: impl Read) -> Result<SecretString> {
    let mut buf = Vec::new();
    if let Err(e) = r.take(MAX_VALUE_BYTES as u64 + 3).read_to_end(&mut buf) {
        buf.fill(0);
        return Err(anyhow::Error::new(e).context("reading the secret value"));
    }
    // Moved, not copied, into the SecretString (wiped on drop).
    match String::from_utf8(buf) {
        Ok(text) => Ok(SecretString::new(text)),
        Err(e) => {
            e.into_bytes().fill(0);
            bail!("the secret value is not UTF-8 text")
        }
    }
}

fn strip_one_newline(v: SecretString) -> SecretString {
    let s = v.expose();
    let trimmed = s
        .strip_suffix("\r\n")
        .or_else(|| s.strip_suffix('\n'))
        .unwrap_or(s);
    if trimmed.len() == s.len() {
        v
    } else {
        SecretString::new(trimmed.to_string())
    }
}

pub fn put_text(info: &SecretInfo) -> String {
    format!(
        "Stored static secret {} (version {}, {} bytes, fingerprint {}). The value is sealed and never shown again.\n",
        info.name, info.version, info.size, info.fingerprint
    )
}

pub fn list_text(list: &SecretList, now: i64) -> String {
    if list.secrets.is_empty() {
        return "No static secrets stored; add one with `idmint secret put NAME --from-file FILE`.\n"
            .into();
    }
    let rows = list
        .secrets
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.version.to_string(),
                if s.fingerprint.is_empty() {
                    "(cannot be opened: put it again)".into()
                } else {
                    s.fingerprint.clone()
                },
                s.size.to_string(),
                time_with_relative(s.updated_at, now),
                s.updated_by.clone(),
            ]
        })
        .collect();
    list_table(
        &["NAME", "VERSION", "FINGERPRINT", "BYTES", "UPDATED", "BY"],
        rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(file: Option<&std::path::Path>, env: Option<&str>) -> SecretPutArgs {
        SecretPutArgs {
            name: "openai".into(),
            from_file: file.map(|p| p.to_path_buf()),
            from_env: env.map(str::to_string),
            stdin: false,
        }
    }

    #[test]
    fn one_trailing_newline_is_removed() {
        for (raw, want) in [
            ("sk\n", "sk"),
            ("sk\r\n", "sk"),
            ("sk\n\n", "sk\n"),
            ("sk", "sk"),
            ("a\nb", "a\nb"),
        ] {
            assert_eq!(
                strip_one_newline(SecretString::new(raw.into())).expose(),
                want
            );
        }
    }

    #[test]
    fn files_are_read_checked_and_limited() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok");
        std::fs::write(&ok, "sk-file\n").unwrap();
        assert_eq!(
            read_value(&args(Some(&ok), None)).unwrap().expose(),
            "sk-file"
        );

        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        assert!(read_value(&args(Some(&empty), None))
            .unwrap_err()
            .to_string()
            .contains("empty"));

        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; MAX_VALUE_BYTES + 10]).unwrap();
        assert!(
            format!("{:#}", read_value(&args(Some(&big), None)).unwrap_err()).contains("64 KiB")
        );

        let binary = dir.path().join("bin");
        std::fs::write(&binary, [0xff, 0xfe]).unwrap();
        assert!(
            format!("{:#}", read_value(&args(Some(&binary), None)).unwrap_err()).contains("UTF-8")
        );

        let missing = dir.path().join("nope");
        assert!(read_value(&args(Some(&missing), None)).is_err());
        let unset = read_value(&args(None, Some("IDMINT_TEST_SURELY_UNSET_VAR_42")));
        assert!(unset.unwrap_err().to_string().contains("not set"));
    }

    #[test]
    fn texts_never_need_the_value() {
        let info = SecretInfo {
            name: "openai".into(),
            fingerprint: "fp_0123".into(),
            version: 2,
            size: 51,
            updated_at: 100,
            updated_by: "https://idp|alice".into(),
        };
        assert!(put_text(&info).contains("version 2, 51 bytes, fingerprint fp_0123"));
        let t = list_text(
            &SecretList {
                secrets: vec![info],
            },
            160,
        );
        assert!(t.contains("openai") && t.contains("fp_0123") && t.contains("alice"));
        assert!(list_text(&SecretList { secrets: vec![] }, 0).contains("idmint secret put"));
    }
}
