//! `trace` from every kind of credential reference back to the identity,
//! the decision, and the approvers of the policy version it used. The
//! events are shaped like the server's (see crates/server/src/ssh,
//! issuance.rs, routes/agent.rs, governance/activation.rs).

use crate::common;

use common::*;
use idmint_audit::trace::{summarize, trace_file};
use idmint_audit::{kinds, outcomes, AuditDecision, AuditEvent, AuditIdentity, AuditLog};
use serde_json::json;

const SESSION: &str = "tok_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn identity() -> AuditIdentity {
    AuditIdentity {
        subject: "alice@example.com".into(),
        issuer: "https://idp.example".into(),
        method: "oidc".into(),
        auth: "corp".into(),
        kind: "human".into(),
        claims_used: serde_json::Map::new(),
        proof_id: "proof-77".into(),
    }
}

fn issued(request: &str, lease: &str, detail: serde_json::Value) -> AuditEvent {
    AuditEvent {
        request_id: Some(request.into()),
        identity: Some(identity()),
        role: Some("r".into()),
        decision: Some(AuditDecision {
            allowed: true,
            policy_ids: vec!["p#0".into()],
            bundle_version: 2,
            errors: vec![],
        }),
        fingerprint: Some(format!("fp_{request}")),
        lease_id: Some(lease.into()),
        detail: Some(detail),
        ..AuditEvent::new(kinds::CREDENTIAL_ISSUED, outcomes::SUCCESS)
    }
}

#[tokio::test]
async fn every_credential_reference_leads_to_identity_and_approvers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(config(&path, 4), &signing_key()).unwrap();
    let mut policy_v1 = AuditEvent::new(kinds::POLICY_ACTIVATED, outcomes::SUCCESS);
    policy_v1.detail =
        Some(json!({"draft_id": "d1", "author": "bob", "new_version": 1, "approvers": ["carol"]}));
    let mut policy_v2 = AuditEvent::new(kinds::POLICY_ACTIVATED, outcomes::SUCCESS);
    policy_v2.detail = Some(
        json!({"draft_id": "d2", "author": "bob", "new_version": 2, "approvers": ["carol", "dave"]}),
    );
    let login = AuditEvent {
        request_id: Some("req_login".into()),
        identity: Some(identity()),
        token_id: Some(SESSION.into()),
        ..AuditEvent::new(kinds::LOGIN, outcomes::SUCCESS)
    };
    let events = [
        policy_v1,
        policy_v2,
        login,
        issued(
            "req_ssh",
            "lse_ssh",
            json!({"session_token_id": SESSION, "serial": 9_007_199_254_740_993u64, "principals": ["deploy"]}),
        ),
        issued(
            "req_jit",
            "lse_jit",
            json!({"session_token_id": SESSION, "account": "jit-alice-7f3a", "uid": 2}),
        ),
        issued(
            "req_aws",
            "lse_aws",
            json!({"session_token_id": SESSION, "access_key_id": "ASIAEXAMPLEKEY123456", "role_session_name": "idmint-alice-1"}),
        ),
        issued(
            "req_db",
            "lse_db",
            json!({"session_token_id": SESSION, "username": "v_ro_alice_x1y2"}),
        ),
        AuditEvent {
            lease_id: Some("lse_db".into()),
            ..AuditEvent::new(kinds::LEASE_REVOKED, outcomes::SUCCESS)
        },
    ];
    for e in events {
        log.append(e).await.unwrap();
    }
    log.close().await.unwrap();

    for (reference, lease, key) in [
        ("9007199254740993", "lse_ssh", "serial"),
        ("jit-alice-7f3a", "lse_jit", "account"),
        ("ASIAEXAMPLEKEY123456", "lse_aws", "access_key_id"),
        ("idmint-alice-1", "lse_aws", "role_session_name"),
        ("v_ro_alice_x1y2", "lse_db", "username"),
        ("lse_db", "lse_db", "username"),
        ("req_ssh", "lse_ssh", "serial"),
        ("fp_req_aws", "lse_aws", "access_key_id"),
    ] {
        let chain = trace_file(&path, reference).unwrap();
        let s = summarize(&chain);
        let id = s
            .identity
            .unwrap_or_else(|| panic!("{reference}: no identity"));
        assert_eq!(
            (id.subject.as_str(), id.proof_id.as_str()),
            ("alice@example.com", "proof-77"),
            "{reference}"
        );
        assert_eq!(
            id.session_token_id.as_deref(),
            Some(SESSION),
            "{reference}: the login is in the chain"
        );
        assert_eq!(s.decision.unwrap().bundle_version, 2, "{reference}");
        assert_eq!(s.policies.len(), 1, "{reference}: only the version used");
        assert_eq!(s.policies[0].version, 2);
        assert_eq!(s.policies[0].approvers, ["carol", "dave"]);
        assert_eq!(s.policies[0].author.as_deref(), Some("bob"));
        let cred = s.credential.unwrap();
        assert_eq!(cred.lease_id.as_deref(), Some(lease), "{reference}");
        assert!(
            cred.references.contains_key(key),
            "{reference}: {:?}",
            cred.references
        );
        // Other credentials of the same session are not pulled in.
        assert!(
            chain
                .iter()
                .filter(|e| e.event == kinds::CREDENTIAL_ISSUED)
                .count()
                == 1,
            "{reference}"
        );
    }
    let db = summarize(&trace_file(&path, "v_ro_alice_x1y2").unwrap());
    assert_eq!(db.end.unwrap().event, kinds::LEASE_REVOKED);
    // The session token leads to every credential made with it.
    let all = trace_file(&path, SESSION).unwrap();
    assert_eq!(
        all.iter()
            .filter(|e| e.event == kinds::CREDENTIAL_ISSUED)
            .count(),
        4
    );
    // Small numbers in detail (uid 2) are not references.
    assert!(trace_file(&path, "2").unwrap().is_empty());
}
