//! The certificate of the test HTTPS upstreams (`testbed/https-echo.py`,
//! the proxy tests' Rust upstreams), made by the real `openssl` CLI.
//!
//! rustls (webpki) refuses a `CA:TRUE` certificate as a server's own
//! certificate (`CaUsedAsEndEntity`), which is what a plain
//! `openssl req -x509` makes, so it is marked an end entity.

use crate::error::{Result, TestkitError};
use std::path::Path;
use std::process::{Command, Stdio};

/// Writes `cert.pem` and `key.pem` into `dir`: P-256, self-signed, valid
/// two days, subject `CN=upstream.test`, with `subject_alt_names` in
/// OpenSSL syntax (`"DNS:upstream.test,IP:127.0.0.1"`).
pub fn write_upstream_cert(dir: &Path, subject_alt_names: &str) -> Result<()> {
    let san = format!("subjectAltName={subject_alt_names}");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=upstream.test",
            "-addext",
            &san,
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
        ])
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stdin(Stdio::null())
        .output()
        .map_err(|source| TestkitError::Io {
            what: "running openssl req (apt-get install openssl)".into(),
            source,
        })?;
    if !out.status.success() {
        return Err(TestkitError::Protocol {
            peer: "openssl req".into(),
            message: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}
