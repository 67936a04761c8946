use crate::common;

use common::*;
use idmint_audit::trace::{render, trace_file};
use idmint_audit::{
    kinds, outcomes, AuditDecision, AuditError, AuditEvent, AuditIdentity, AuditLog, Fingerprinter,
};
use serde_json::json;

const T: &str = "tok_11111111111111111111111111111111"; // session token from the login
const L: &str = "lse_22222222222222222222222222222222"; // the lease
const J: &str = "tok_33333333333333333333333333333333"; // jti of the minted token

fn identity() -> AuditIdentity {
    AuditIdentity {
        subject: "repo:acme/app:ref:refs/heads/main".into(),
        issuer: "https://token.actions.githubusercontent.com".into(),
        method: "oidc".into(),
        auth: "github".into(),
        kind: "ci".into(),
        claims_used: serde_json::Map::new(),
        proof_id: "proof-jti-42".into(),
    }
}

fn ev(kind: &str, request: Option<&str>) -> AuditEvent {
    AuditEvent {
        request_id: request.map(str::to_string),
        ..AuditEvent::new(kind, outcomes::SUCCESS)
    }
}

/// Writes a realistic log and returns it with the seqs of the expected chain.
async fn scenario(dir: &std::path::Path, fp: &str) -> (std::path::PathBuf, Vec<u64>) {
    let path = dir.join("audit.jsonl");
    let log = AuditLog::open(config(&path, 3), &signing_key()).unwrap();
    let mut chain = Vec::new();
    let append = |e: AuditEvent| {
        let log = log.clone();
        async move { log.append(e).await.unwrap().seq }
    };
    let decision = AuditDecision {
        allowed: true,
        policy_ids: vec!["deploy.cedar#0".into()],
        bundle_version: 3,
        errors: vec![],
    };

    append(ev(kinds::SERVER_START, None)).await;
    // Someone else's login.
    append(AuditEvent {
        token_id: Some("tok_99999999999999999999999999999999".into()),
        identity: Some(AuditIdentity {
            subject: "other".into(),
            ..identity()
        }),
        ..ev(kinds::LOGIN, Some("req_noise1"))
    })
    .await;
    // The login that creates session T.
    chain.push(
        append(AuditEvent {
            token_id: Some(T.into()),
            identity: Some(identity()),
            ttl_seconds: Some(300),
            ..ev(kinds::LOGIN, Some("req_login"))
        })
        .await,
    );
    // The request: decision, then issuance, using session T.
    chain.push(
        append(AuditEvent {
            identity: Some(identity()),
            action: Some("issue".into()),
            role: Some("deploy-web".into()),
            decision: Some(decision.clone()),
            detail: Some(json!({"session_token_id": T})),
            ..ev(kinds::DECISION, Some("req_issue"))
        })
        .await,
    );
    // Noise: another request with another lease, interleaved.
    append(AuditEvent {
        lease_id: Some("lse_noise".into()),
        fingerprint: Some("fp_noise".into()),
        ..ev(kinds::CREDENTIAL_ISSUED, Some("req_noise2"))
    })
    .await;
    chain.push(
        append(AuditEvent {
            identity: Some(identity()),
            action: Some("issue".into()),
            role: Some("deploy-web".into()),
            decision: Some(decision.clone()),
            ttl_seconds: Some(600),
            audience: Some("sts.amazonaws.com".into()),
            fingerprint: Some(fp.into()),
            lease_id: Some(L.into()),
            token_id: Some(J.into()),
            detail: Some(json!({"session_token_id": T, "expires_at": 1_900_000_000})),
            ..ev(kinds::CREDENTIAL_ISSUED, Some("req_issue"))
        })
        .await,
    );
    // Noise: the same session used for a different credential.
    append(AuditEvent {
        lease_id: Some("lse_other_with_same_session".into()),
        detail: Some(json!({"session_token_id": T})),
        ..ev(kinds::CREDENTIAL_ISSUED, Some("req_noise3"))
    })
    .await;
    append(ev(kinds::ADMIN, Some("req_noise4"))).await;
    // The end: the reaper revokes L (no request id).
    chain.push(
        append(AuditEvent {
            lease_id: Some(L.into()),
            ..ev(kinds::LEASE_REVOKED, None)
        })
        .await,
    );
    append(ev(kinds::LEASE_EXPIRED, None)).await;
    log.close().await.unwrap();
    (path, chain)
}

#[tokio::test]
async fn trace_by_lease_fingerprint_jti_and_request_gives_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let fp = Fingerprinter::new(b"fingerprint key, 32 bytes long!!").fingerprint(b"AKIA...secret");
    let (path, expected) = scenario(dir.path(), &fp).await;
    assert_eq!(expected.len(), 4);
    for reference in [L, fp.as_str(), J, "req_issue", &format!("  {L} ")] {
        let events = trace_file(&path, reference).unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, expected, "trace by {reference}");
        let kinds_found: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(
            kinds_found,
            [
                kinds::LOGIN,
                kinds::DECISION,
                kinds::CREDENTIAL_ISSUED,
                kinds::LEASE_REVOKED
            ]
        );
    }

    let text = render(&trace_file(&path, L).unwrap());
    let summary = text.lines().next().unwrap();
    for step in [
        "proof proof-jti-42",
        "identity ci repo:acme/app:ref:refs/heads/main",
        "decision allowed (bundle v3)",
        &format!("credential {fp} lease {L}"),
        "end: lease_revoked",
    ] {
        assert!(summary.contains(step), "summary lacks {step:?}: {summary}");
    }
    for detail in ["deploy.cedar#0", "session", T, "600s", "sts.amazonaws.com"] {
        assert!(text.contains(detail), "render lacks {detail:?}:\n{text}");
    }
}

#[tokio::test]
async fn trace_by_session_token_shows_its_login_and_uses() {
    let dir = tempfile::tempdir().unwrap();
    let (path, expected) = scenario(dir.path(), "fp_x").await;
    let events = trace_file(&path, T).unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    // The chain plus the other credential made with the same session.
    assert!(expected.iter().all(|s| seqs.contains(s)), "{seqs:?}");
    assert!(events
        .iter()
        .any(|e| e.lease_id.as_deref() == Some("lse_other_with_same_session")));
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn unknown_and_empty_references() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = scenario(dir.path(), "fp_x").await;
    assert!(trace_file(&path, "lse_00000000000000000000000000000000")
        .unwrap()
        .is_empty());
    assert!(matches!(
        trace_file(&path, "  "),
        Err(AuditError::InvalidReference(_))
    ));
    assert!(render(&[]).contains("no audit events"));
    let missing = dir.path().join("missing.jsonl");
    assert!(matches!(
        trace_file(&missing, L),
        Err(AuditError::Read { .. })
    ));
}
