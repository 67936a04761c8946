//! Shared helpers for the integration tests.
#![allow(dead_code)]

use idmint_audit::{kinds, outcomes, AuditConfig, AuditEvent, AuditLog};
use ring::digest::{digest, SHA256};
use std::path::{Path, PathBuf};

pub fn signing_key() -> Vec<u8> {
    idmint_audit::generate_signing_key()
        .unwrap()
        .expose()
        .clone()
}

pub fn config(path: &Path, checkpoint_every: u64) -> AuditConfig {
    AuditConfig {
        file: Some(path.to_path_buf()),
        checkpoint_every,
        ..AuditConfig::default()
    }
}

pub fn event(i: usize) -> AuditEvent {
    AuditEvent {
        request_id: Some(format!("req_{i:032x}")),
        action: Some("issue".into()),
        ..AuditEvent::new(kinds::LOGIN, outcomes::SUCCESS)
    }
}

/// Writes `n` events to a new log at `dir/name` and closes it.
pub async fn write_log(
    dir: &Path,
    name: &str,
    n: usize,
    checkpoint_every: u64,
    key: &[u8],
) -> PathBuf {
    let path = dir.join(name);
    let log = AuditLog::open(config(&path, checkpoint_every), key).unwrap();
    for i in 0..n {
        log.append(event(i)).await.unwrap();
    }
    log.close().await.unwrap();
    path
}

pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

pub fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

/// Recomputes an event's hash exactly as the spec defines it: SHA-256 over
/// `serde_json::to_vec` of the event with `hash = ""` and `sig = None`.
pub fn reseal(mut ev: AuditEvent) -> AuditEvent {
    ev.hash = String::new();
    let sig = ev.sig.take();
    let canonical = serde_json::to_vec(&ev).unwrap();
    ev.hash = hex(digest(&SHA256, &canonical).as_ref());
    ev.sig = sig;
    ev
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn parse(line: &str) -> AuditEvent {
    serde_json::from_str(line).unwrap()
}

pub fn to_line(ev: &AuditEvent) -> String {
    serde_json::to_string(ev).unwrap()
}
