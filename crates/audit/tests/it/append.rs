use crate::common;

use common::*;
use idmint_audit::verify::verify_file;
use idmint_audit::{kinds, AuditLog};
use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_chained_and_batched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let key = signing_key();
    let log = AuditLog::open(config(&path, 1000), &key).unwrap();

    let mut tasks = Vec::new();
    for t in 0..16 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut receipts = Vec::new();
            for i in 0..500 {
                receipts.push(log.append(event(t * 1000 + i)).await.unwrap());
            }
            receipts
        }));
    }
    let mut receipts = Vec::new();
    for t in tasks {
        receipts.extend(t.await.unwrap());
    }
    let stats = log.stats();
    log.close().await.unwrap();

    assert_eq!(receipts.len(), 8000);
    let seqs: HashSet<u64> = receipts.iter().map(|r| r.seq).collect();
    let hashes: HashSet<&str> = receipts.iter().map(|r| r.hash.as_str()).collect();
    assert_eq!((seqs.len(), hashes.len()), (8000, 8000));

    // 8000 events + 8 periodic checkpoints (the final one is not needed:
    // the last periodic checkpoint already covers event 8000).
    let report = verify_file(&path, Some(&log.public_key())).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!((report.events, report.checkpoints), (8008, 8));
    assert_eq!(report.last_seq, Some(8008));
    assert_eq!(report.unsigned_tail, 0);

    // Seq is contiguous in file order, and every receipt is a line.
    let lines = read_lines(&path);
    let events: Vec<_> = lines.iter().map(|l| parse(l)).collect();
    for (i, ev) in events.iter().enumerate() {
        assert_eq!(ev.seq, i as u64 + 1);
    }
    for r in &receipts {
        let ev = &events[r.seq as usize - 1];
        assert_eq!(
            (ev.hash.as_str(), ev.event.as_str()),
            (r.hash.as_str(), kinds::LOGIN)
        );
    }

    assert_eq!(stats.written, 8008);
    assert!(stats.batches < 8000, "no group commit happened: {stats:?}");
    assert_eq!((stats.failures, stats.queued), (0, 0));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test]
async fn reopen_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let key = signing_key();
    // Session 1: 5 events, closed cleanly (final checkpoint = seq 6).
    let path = write_log(dir.path(), "audit.jsonl", 5, 1000, &key).await;

    // Session 2: resumes after seq 6; dropped without close (no checkpoint).
    let log = AuditLog::open(config(&path, 1000), &key).unwrap();
    assert_eq!(log.recovery().resumed_after_seq, Some(6));
    assert_eq!(log.recovery().truncated_bytes, 0);
    let first = log.append(event(100)).await.unwrap();
    assert_eq!(first.seq, 7);
    for i in 0..3 {
        log.append(event(101 + i)).await.unwrap();
    }
    drop(log);

    // Session 3: resumes after seq 10.
    let log = AuditLog::open(config(&path, 1000), &key).unwrap();
    assert_eq!(log.recovery().resumed_after_seq, Some(10));
    assert_eq!(log.append(event(200)).await.unwrap().seq, 11);
    log.close().await.unwrap();

    let lines = read_lines(&path);
    let events: Vec<_> = lines.iter().map(|l| parse(l)).collect();
    assert_eq!(events.len(), 12);
    assert_eq!(events[6].prev, events[5].hash);
    assert_eq!(events[10].prev, events[9].hash);
    let report = verify_file(&path, Some(&key_public(&log))).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(
        (report.events, report.checkpoints, report.last_seq),
        (12, 2, Some(12))
    );
}

fn key_public(log: &AuditLog) -> Vec<u8> {
    log.public_key()
}

#[tokio::test]
async fn events_roundtrip_with_all_fields() {
    use idmint_audit::{AuditDecision, AuditErrorInfo, AuditIdentity};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let log = AuditLog::open(config(&path, 1000), &signing_key()).unwrap();
    let mut claims = serde_json::Map::new();
    claims.insert("repository".into(), "acme/app".into());
    claims.insert("run_attempt".into(), 2.into());
    claims.insert("weight".into(), serde_json::json!(0.1));
    let ev = idmint_audit::AuditEvent {
        request_id: Some("req_1".into()),
        identity: Some(AuditIdentity {
            subject: "repo:acme/app".into(),
            issuer: "https://token.actions.githubusercontent.com".into(),
            method: "oidc".into(),
            auth: "github".into(),
            kind: "ci".into(),
            claims_used: claims,
            proof_id: "jti-1".into(),
        }),
        action: Some("issue".into()),
        role: Some("deploy".into()),
        decision: Some(AuditDecision {
            allowed: true,
            policy_ids: vec!["p0".into()],
            bundle_version: 3,
            errors: vec![],
        }),
        ttl_seconds: Some(600),
        scopes: Some(vec!["read".into(), "write".into()]),
        audience: Some("aws".into()),
        fingerprint: Some("fp_00".into()),
        lease_id: Some("lse_1".into()),
        token_id: Some("tok_1".into()),
        source_ip: Some("10.0.0.1".into()),
        error: Some(AuditErrorInfo {
            code: "x".into(),
            message: "line\nbreak \u{2028} ünïcode \"quoted\"".into(),
        }),
        detail: Some(serde_json::json!({"session_token_id": "tok_s", "f": 1e300, "neg": -0.0})),
        ..idmint_audit::AuditEvent::new(kinds::CREDENTIAL_ISSUED, "success")
    };
    let receipt = log.append(ev.clone()).await.unwrap();
    log.close().await.unwrap();
    let lines = read_lines(&path);
    assert_eq!(
        lines.len(),
        2,
        "the event and the final checkpoint, newline-safe"
    );
    let back = parse(&lines[0]);
    assert_eq!(back.hash, receipt.hash);
    assert_eq!(back.session_token_id(), Some("tok_s"));
    let expected = idmint_audit::AuditEvent {
        seq: 1,
        time: back.time.clone(),
        prev: idmint_audit::chain::GENESIS_PREV.into(),
        hash: receipt.hash.clone(),
        schema_version: Some(idmint_audit::SCHEMA_VERSION),
        ..ev
    };
    assert_eq!(back, expected);
    // time: RFC 3339 UTC with milliseconds.
    assert!(
        back.time.ends_with('Z') && back.time.len() == "2026-01-01T00:00:00.000Z".len(),
        "{}",
        back.time
    );
    assert_eq!(
        reseal(back.clone()).hash,
        back.hash,
        "hash follows the spec definition"
    );
    assert!(verify_file(&path, None).unwrap().is_ok());
}
