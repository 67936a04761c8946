use crate::common;

use common::*;
use idmint_audit::{AuditError, AuditLog};
use std::path::Path;

/// `/dev/full` accepts the open but fails every write with ENOSPC: a real
/// disk-full, not a mock.
#[tokio::test]
async fn full_disk_fails_every_append() {
    let log = AuditLog::open(config(Path::new("/dev/full"), 1000), &signing_key()).unwrap();
    assert!(log.is_healthy());
    for i in 0..3 {
        let err = log.append(event(i)).await.unwrap_err();
        assert!(matches!(err, AuditError::Unavailable { .. }), "{err}");
    }
    assert!(!log.is_healthy());
    let stats = log.stats();
    assert_eq!((stats.failures, stats.written), (3, 0));
    assert!(matches!(
        log.close().await,
        Err(AuditError::Unavailable { .. })
    ));
}

#[tokio::test]
async fn first_failure_message_names_the_sink() {
    let log = AuditLog::open(config(Path::new("/dev/full"), 1000), &signing_key()).unwrap();
    let err = log.append(event(0)).await.unwrap_err().to_string();
    assert!(err.contains("/dev/full"), "{err}");
    assert!(err.contains("no credential may be issued"), "{err}");
}

#[test]
fn unopenable_path_is_an_open_error() {
    let err = AuditLog::open(
        config(Path::new("/nonexistent-dir/x/audit.jsonl"), 1000),
        &signing_key(),
    )
    .unwrap_err();
    assert!(matches!(err, AuditError::Open { .. }), "{err}");
}

#[test]
fn bad_signing_key_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let err = AuditLog::open(config(&dir.path().join("a"), 1000), b"nope").unwrap_err();
    assert!(matches!(err, AuditError::SigningKey(_)), "{err}");
}
