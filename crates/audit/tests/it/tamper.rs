use crate::common;

use common::*;
use idmint_audit::verify::{verify_file, ProblemKind, VerifyReport};
use idmint_audit::{kinds, AuditError, AuditLog};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// 10 events with a checkpoint every 4: lines 5 and 10 are checkpoints,
/// line 13 is the closing checkpoint.
async fn fixture() -> (tempfile::TempDir, PathBuf, Vec<u8>, Vec<String>) {
    let (dir, path, _key, pk, lines) = fixture_keyed().await;
    (dir, path, pk, lines)
}

/// [`fixture`], also returning the signing key.
async fn fixture_keyed() -> (tempfile::TempDir, PathBuf, Vec<u8>, Vec<u8>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let key = signing_key();
    let path = write_log(dir.path(), "audit.jsonl", 10, 4, &key).await;
    let pk = Ed25519KeyPair::from_pkcs8(&key)
        .unwrap()
        .public_key()
        .as_ref()
        .to_vec();
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 13);
    for n in [5, 10, 13] {
        assert_eq!(parse(&lines[n - 1]).event, kinds::CHECKPOINT);
    }
    let report = verify_file(&path, Some(&pk)).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.checkpoints, 3);
    (dir, path, key, pk, lines)
}

fn verify_lines(dir: &Path, lines: &[String], pk: Option<&[u8]>) -> VerifyReport {
    let path = dir.join("tampered.jsonl");
    write_lines(&path, lines);
    verify_file(&path, pk).unwrap()
}

fn kinds_at(report: &VerifyReport) -> Vec<(usize, ProblemKind)> {
    report.problems.iter().map(|p| (p.line, p.kind)).collect()
}

#[tokio::test]
async fn edited_field_is_a_hash_mismatch_on_that_line() {
    let (dir, _, pk, mut lines) = fixture().await;
    assert!(lines[2].contains("\"outcome\":\"success\""));
    lines[2] = lines[2].replace("\"outcome\":\"success\"", "\"outcome\":\"denied\"");
    let report = verify_lines(dir.path(), &lines, Some(&pk));
    assert_eq!(kinds_at(&report), vec![(3, ProblemKind::HashMismatch)]);
    assert_eq!(report.problems[0].seq, Some(3));
}

#[tokio::test]
async fn deleted_line_breaks_the_next_link() {
    let (dir, _, pk, mut lines) = fixture().await;
    lines.remove(3);
    let report = verify_lines(dir.path(), &lines, Some(&pk));
    assert_eq!(
        kinds_at(&report),
        vec![(4, ProblemKind::BrokenLink), (4, ProblemKind::SeqGap)]
    );
}

#[tokio::test]
async fn deleted_first_line_is_detected() {
    let (dir, _, pk, mut lines) = fixture().await;
    lines.remove(0);
    let report = verify_lines(dir.path(), &lines, Some(&pk));
    assert_eq!(kinds_at(&report), vec![(1, ProblemKind::BrokenLink)]);
}

#[tokio::test]
async fn swapped_lines_break_links() {
    let (dir, _, pk, mut lines) = fixture().await;
    lines.swap(2, 3);
    let report = verify_lines(dir.path(), &lines, Some(&pk));
    let links: Vec<usize> = report
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::BrokenLink)
        .map(|p| p.line)
        .collect();
    assert_eq!(links, vec![3, 4, 5]);
    assert!(report.problems.iter().all(|p| (3..=5).contains(&p.line)));
    assert!(!report
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::HashMismatch));
}

#[tokio::test]
async fn forged_line_with_recomputed_hash_breaks_the_following_link() {
    let (dir, _, pk, mut lines) = fixture().await;
    let before = parse(&lines[2]);
    let mut forged = event(999);
    forged.seq = before.seq + 1;
    forged.time = before.time.clone();
    forged.prev = before.hash.clone();
    let forged = reseal(forged);
    lines.insert(3, to_line(&forged));
    let report = verify_lines(dir.path(), &lines, Some(&pk));
    // The forged line itself is internally consistent; the line after it
    // links to (and numbers after) the original predecessor.
    assert_eq!(
        kinds_at(&report),
        vec![(5, ProblemKind::BrokenLink), (5, ProblemKind::SeqGap)]
    );
}

#[tokio::test]
async fn forged_checkpoint_signature_is_detected() {
    let (dir, _, pk, mut lines) = fixture().await;
    let mut cp = parse(&lines[4]);
    let other = Ed25519KeyPair::from_pkcs8(&signing_key()).unwrap();
    let forged_sig = base64_url(other.sign(cp.hash.as_bytes()).as_ref());
    cp.sig = Some(forged_sig);
    lines[4] = to_line(&cp);
    for key in [Some(pk.as_slice()), None] {
        let report = verify_lines(dir.path(), &lines, key);
        assert_eq!(
            kinds_at(&report),
            vec![(5, ProblemKind::BadCheckpointSignature)]
        );
    }
}

#[tokio::test]
async fn wrong_public_key_flags_every_checkpoint() {
    let (dir, path, _, _) = fixture().await;
    let other = Ed25519KeyPair::from_pkcs8(&signing_key()).unwrap();
    let report = verify_file(&path, Some(other.public_key().as_ref())).unwrap();
    assert_eq!(
        kinds_at(&report),
        vec![
            (5, ProblemKind::UnknownCheckpointKey),
            (10, ProblemKind::UnknownCheckpointKey),
            (13, ProblemKind::UnknownCheckpointKey)
        ]
    );
    drop(dir);
}

/// Someone who rewrites the whole file with their own key fools a verifier
/// that trusts embedded keys, but not one given the server's public key.
#[tokio::test]
async fn full_rewrite_needs_the_real_key_to_detect() {
    let (dir, _, pk, lines) = fixture().await;
    let attacker = Ed25519KeyPair::from_pkcs8(&signing_key()).unwrap();
    let attacker_pk = base64_url(attacker.public_key().as_ref());
    let mut prev = idmint_audit::chain::GENESIS_PREV.to_string();
    let mut forged = Vec::new();
    for line in &lines {
        let mut ev = parse(line);
        ev.prev = prev.clone();
        if ev.event == kinds::CHECKPOINT {
            ev.detail.as_mut().unwrap()["public_key"] = attacker_pk.clone().into();
        } else {
            ev.outcome = "denied".into();
        }
        let mut ev = reseal(ev);
        if ev.event == kinds::CHECKPOINT {
            ev.sig = Some(base64_url(attacker.sign(ev.hash.as_bytes()).as_ref()));
        }
        prev = ev.hash.clone();
        forged.push(to_line(&ev));
    }
    let embedded = verify_lines(dir.path(), &forged, None);
    assert!(embedded.is_ok(), "{:?}", embedded.problems);
    assert!(embedded.key_source.contains("embedded"));
    assert_eq!(embedded.checkpoint_keys, vec![attacker_pk]);
    let pinned = verify_lines(dir.path(), &forged, Some(&pk));
    assert_eq!(pinned.problems.len(), 3);
    assert!(pinned
        .problems
        .iter()
        .all(|p| p.kind == ProblemKind::UnknownCheckpointKey));
}

#[tokio::test]
async fn garbage_and_blank_lines_are_malformed() {
    let (dir, _, pk, mut lines) = fixture().await;
    lines.insert(6, "not json".into());
    lines.insert(2, String::new());
    let report = verify_lines(dir.path(), &lines, Some(&pk));
    assert_eq!(
        kinds_at(&report),
        vec![(3, ProblemKind::Malformed), (8, ProblemKind::Malformed)]
    );
}

/// A crash mid-write leaves a line without its newline. Open cuts it off,
/// says so, and continues the chain from the last complete line.
#[tokio::test]
async fn torn_last_line_is_truncated_and_warned() {
    let (_dir, path, key, pk, lines) = fixture_keyed().await;
    let mut text = std::fs::read_to_string(&path).unwrap();
    let full_len = text.len();
    let torn = r#"{"seq":14,"time":"2026-01-01T00:00:00.000Z","request_id":"req_"#;
    text.push_str(torn);
    std::fs::write(&path, &text).unwrap();

    let captured = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let captured = Arc::clone(&captured);
        move || CaptureWriter(Arc::clone(&captured))
    };
    let subscriber = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .finish();
    // Signed with the original key, so the whole file verifies against it.
    let log =
        tracing::subscriber::with_default(subscriber, || AuditLog::open(config(&path, 4), &key))
            .unwrap();
    let logs = String::from_utf8(captured.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("WARN") && logs.contains("torn"), "{logs}");
    assert_eq!(log.recovery().truncated_bytes, torn.len() as u64);
    assert_eq!(log.recovery().resumed_after_seq, Some(13));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), full_len as u64);

    assert_eq!(log.append(event(50)).await.unwrap().seq, 14);
    log.close().await.unwrap();
    let report = verify_file(&path, Some(&pk)).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.events as usize, lines.len() + 2);
}

#[tokio::test]
async fn edited_last_line_refuses_to_open() {
    let (_dir, path, _, mut lines) = fixture().await;
    let last = lines.len() - 1;
    lines[last] = lines[last].replace("\"outcome\":\"success\"", "\"outcome\":\"error\"");
    write_lines(&path, &lines);
    let err = AuditLog::open(config(&path, 4), &signing_key()).unwrap_err();
    assert!(matches!(err, AuditError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("idmint audit verify"));
}

#[test]
fn foreign_file_without_newline_is_not_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "important notes, no newline").unwrap();
    let err = AuditLog::open(config(&path, 4), &signing_key()).unwrap_err();
    assert!(matches!(err, AuditError::Corrupt { .. }), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "important notes, no newline"
    );
}

fn base64_url(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
