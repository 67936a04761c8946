//! Loading and creating the root key that wraps every data key.
//!
//! The root key is the one secret that unlocks all others, so this module is
//! strict: the file must not be readable by group or others, its content must
//! decode to exactly 256 bits, and an existing file is never overwritten
//! (losing the root key makes every sealed secret unreadable).

use crate::error::StoreError;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use idmint_core::SealKey;
use std::io::{Read, Write};
use std::path::Path;
use zeroize::Zeroizing;

/// Root keys are 256-bit AES keys.
pub const ROOT_KEY_LEN: usize = 32;

/// A root key file is a handful of bytes; anything much larger is not one,
/// and bounding the read keeps the buffer from reallocating (which would
/// leave unzeroized copies of the key in freed memory).
const MAX_FILE_LEN: u64 = 1024;

const ACCEPTED: &str =
    "expected 32 raw bytes, 64 hex characters or the base64 encoding of 32 bytes";
const HOW_TO_GENERATE: &str = "generate one with `openssl rand -hex 32`";

/// Reads a root key file: 32 raw bytes, 64 hex characters, or base64 (with
/// or without padding, standard or URL-safe alphabet); surrounding
/// whitespace is ignored for the text forms.
pub(crate) fn load_file(path: &Path) -> Result<SealKey, StoreError> {
    let shown = path.display();
    let mut file = std::fs::File::open(path)
        .map_err(|e| StoreError::RootKey(format!("cannot read root key file {shown}: {e}")))?;
    // Check the permissions of the file we opened, not of the path, so the
    // check and the read concern the same inode.
    let meta = file
        .metadata()
        .map_err(|e| StoreError::RootKey(format!("cannot stat root key file {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(StoreError::RootKey(format!(
            "root key file {shown} is not a regular file"
        )));
    }
    check_private(path, &meta)?;
    if meta.len() > MAX_FILE_LEN {
        return Err(StoreError::RootKey(format!(
            "root key file {shown} is {} bytes long, which is not a root key ({ACCEPTED}; {HOW_TO_GENERATE})",
            meta.len()
        )));
    }
    let mut content = Zeroizing::new(Vec::with_capacity(MAX_FILE_LEN as usize + 1));
    (&mut file)
        .take(MAX_FILE_LEN)
        .read_to_end(&mut content)
        .map_err(|e| StoreError::RootKey(format!("cannot read root key file {shown}: {e}")))?;
    let raw = decode_file_content(&content).ok_or_else(|| {
        StoreError::RootKey(format!(
            "root key file {shown} does not hold a 256-bit key ({ACCEPTED}; {HOW_TO_GENERATE})"
        ))
    })?;
    key_from_raw(&raw, &format!("root key file {shown}"))
}

/// Parses the `IDMINT_ROOT_KEY` environment variable: hex or base64.
pub(crate) fn from_env(value: &str) -> Result<SealKey, StoreError> {
    let raw = decode_text(value.as_bytes()).ok_or_else(|| {
        StoreError::RootKey(format!(
            "IDMINT_ROOT_KEY does not hold a 256-bit key (expected 64 hex characters or the base64 encoding of 32 bytes; {HOW_TO_GENERATE})"
        ))
    })?;
    key_from_raw(&raw, "IDMINT_ROOT_KEY")
}

/// Generates a root key and writes it as hex to a new file with mode 0600.
/// Refuses to touch an existing file.
pub(crate) fn create_file(path: &Path) -> Result<SealKey, StoreError> {
    let shown = path.display();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            StoreError::RootKey(format!(
                "cannot create directory {} for root key file {shown}: {e}",
                parent.display()
            ))
        })?;
    }
    let key = SealKey::generate().map_err(|e| StoreError::Seal(e.to_string()))?;
    let mut text = Zeroizing::new(idmint_core::ids::hex(key.raw_bytes()));
    text.push('\n');

    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            StoreError::RootKey(format!(
                "root key file {shown} already exists; refusing to overwrite it (every secret sealed with it would become unreadable)"
            ))
        } else {
            StoreError::RootKey(format!("cannot create root key file {shown}: {e}"))
        }
    })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::RootKey(format!("cannot write root key file {shown}: {e}")))?;
    Ok(key)
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &std::fs::Metadata) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        let shown = path.display();
        return Err(StoreError::RootKey(format!(
            "root key file {shown} is accessible by group or others (mode {mode:04o}); run `chmod 600 {shown}`"
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _meta: &std::fs::Metadata) -> Result<(), StoreError> {
    Ok(())
}

fn key_from_raw(raw: &[u8], source: &str) -> Result<SealKey, StoreError> {
    SealKey::from_bytes(raw).map_err(|e| StoreError::RootKey(format!("{source}: {e}")))
}

/// A 32-byte file is a raw key unless it is all printable text: a random key
/// is printable with probability (95/256)^32 < 10^-13, whereas a 32-character
/// passphrase or a base64 string of 24 bytes is a plausible mistake that must
/// not silently become the root key.
fn decode_file_content(content: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let looks_textual = content
        .iter()
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    if content.len() == ROOT_KEY_LEN && !looks_textual {
        return Some(Zeroizing::new(content.to_vec()));
    }
    decode_text(content)
}

/// Hex (64 digits) or base64 of exactly 32 bytes, whitespace-trimmed.
fn decode_text(text: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let text = text.trim_ascii();
    if text.len() == 2 * ROOT_KEY_LEN {
        if let Some(raw) = decode_hex(text) {
            return Some(raw);
        }
    }
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| {
            let mut out = Zeroizing::new(vec![0u8; ROOT_KEY_LEN + 3]);
            let n = engine.decode_slice(text, &mut out).ok()?;
            out.truncate(n);
            (n == ROOT_KEY_LEN).then_some(out)
        })
}

fn decode_hex(text: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Zeroizing::new(Vec::with_capacity(text.len() / 2));
    for pair in text.chunks_exact(2) {
        let [hi, lo] = pair else { return None };
        out.push(nibble(*hi)? << 4 | nibble(*lo)?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write_private(dir: &Path, name: &str, content: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// A fixed key that is not all printable, so it is accepted as raw bytes.
    fn sample_raw() -> [u8; 32] {
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(3);
        }
        k
    }

    #[test]
    fn loads_all_three_encodings_to_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let raw = sample_raw();
        let hex = idmint_core::ids::hex(&raw);
        let b64 = STANDARD.encode(raw);
        let b64url_nopad = URL_SAFE_NO_PAD.encode(raw);
        let files = [
            write_private(dir.path(), "raw", &raw),
            write_private(dir.path(), "hex", format!("{hex}\n").as_bytes()),
            write_private(dir.path(), "HEX", hex.to_uppercase().as_bytes()),
            write_private(dir.path(), "b64", format!("  {b64}\n").as_bytes()),
            write_private(dir.path(), "b64url", b64url_nopad.as_bytes()),
        ];
        for f in &files {
            let key = load_file(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            assert_eq!(key.raw_bytes(), &raw, "{}", f.display());
        }
    }

    #[test]
    fn refuses_group_or_world_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_private(
            dir.path(),
            "loose",
            idmint_core::ids::hex(&sample_raw()).as_bytes(),
        );
        for mode in [0o640, 0o604, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = load_file(&path).unwrap_err().to_string();
            assert!(err.contains("chmod 600"), "{err}");
            assert!(err.contains(&path.display().to_string()), "{err}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(load_file(&path).is_ok());
    }

    #[test]
    fn refuses_garbage_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, &[u8]); 6] = [
            ("empty", b""),
            ("short-hex", b"abcdef\n"),
            ("bad-hex", &[b'g'; 64]),
            ("passphrase32", b"correct horse battery staple!!!!"),
            ("b64-of-24", b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYX"),
            ("raw31", &[0xff; 31]),
        ];
        for (name, content) in cases {
            let path = write_private(dir.path(), name, content);
            let err = load_file(&path).unwrap_err();
            assert!(matches!(err, StoreError::RootKey(_)), "{name}: {err}");
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()), "{name}: {msg}");
            assert!(msg.contains("64 hex characters"), "{name}: {msg}");
        }
        let big = write_private(dir.path(), "big", &vec![b'a'; 4096]);
        assert!(matches!(load_file(&big), Err(StoreError::RootKey(_))));
        let missing = dir.path().join("missing");
        let msg = load_file(&missing).unwrap_err().to_string();
        assert!(msg.contains("cannot read root key file"), "{msg}");
    }

    #[test]
    fn env_accepts_hex_and_base64_only() {
        let raw = sample_raw();
        let from_hex = from_env(&idmint_core::ids::hex(&raw)).unwrap();
        let from_b64 = from_env(&format!("{}\n", STANDARD.encode(raw))).unwrap();
        assert_eq!(from_hex.raw_bytes(), &raw);
        assert_eq!(from_b64.raw_bytes(), &raw);
        for bad in ["", "secret", &idmint_core::ids::hex(&raw[..16])] {
            let msg = from_env(bad).unwrap_err().to_string();
            assert!(msg.contains("IDMINT_ROOT_KEY"), "{msg}");
        }
    }

    #[test]
    fn create_writes_private_file_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("root.key");
        let created = create_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = load_file(&path).unwrap();
        assert_eq!(created.raw_bytes(), loaded.raw_bytes());

        let err = create_file(&path).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
        let still = load_file(&path).unwrap();
        assert_eq!(still.raw_bytes(), created.raw_bytes());
    }
}
