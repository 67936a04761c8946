//! Behaviour tests every [`Store`] backend must pass.
//!
//! Call [`run_store_suite`] from a backend's tests with a fresh, empty store.
//! The checks panic (they are test assertions) with a message naming the
//! behaviour that broke. Sub-suites use disjoint names, principals, roles and
//! time ranges so they can share one store.

use crate::{get_or_create_secret, Envelope, LeaseFilter, SourceFile, Store, StoreError};
use idmint_core::{Lease, LeaseId, LeaseState, RequestId, RevocationHandle, SealKey, UnixTime};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A realistic "now" for sub-suites that must not interfere with the
/// due-lease checks, which run at tiny absolute times.
const REALISTIC_NOW: i64 = 1_750_000_000;

/// Runs every behaviour check against `store`, which must be empty.
pub async fn run_store_suite(store: &dyn Store) {
    assert!(
        !store.describe().is_empty(),
        "describe() must name the backend"
    );
    blobs(store).await;
    bundles(store).await;
    conditional_activation(store).await;
    lease_roundtrip_and_conflict(store).await;
    lease_transitions(store).await;
    batch_transitions(store).await;
    lease_extension(store).await;
    lease_listing(store).await;
    due_leases(store).await;
    claims(store).await;
    denylist(store).await;
    concurrent_inserts(store).await;
    sealed_secrets(store).await;
}

/// `transition_leases`: per-lease compare-and-set, input order kept,
/// fingerprint kept and `last_error` cleared, repeats and unknown ids
/// unchanged, oversized batches refused whole.
async fn batch_transitions(store: &dyn Store) {
    let t = REALISTIC_NOW + 10_000;
    let pending = sample_lease("batch:a", "batch-role", t, t + 60);
    let mut active = with_state(
        sample_lease("batch:b", "batch-role", t, t + 60),
        LeaseState::Active,
    );
    active.fingerprint = Some("fp-batch".into());
    let stale = with_state(
        sample_lease("batch:c", "batch-role", t, t + 60),
        LeaseState::Active,
    );
    for lease in [&pending, &active, &stale] {
        insert(store, lease).await;
    }
    store
        .record_revoke_failure(&active.id, UnixTime(t + 100), "target down")
        .await
        .expect("record failure");
    let unknown = LeaseId::generate().expect("random lease id");

    assert_eq!(
        store
            .transition_leases(&[], LeaseState::Revoked)
            .await
            .expect("empty batch"),
        Vec::<bool>::new()
    );
    let changed = store
        .transition_leases(
            &[
                (pending.id.clone(), LeaseState::Pending),
                (active.id.clone(), LeaseState::Active),
                // Stale expected state: must not change.
                (stale.id.clone(), LeaseState::Pending),
                (unknown, LeaseState::Active),
                // A repeat finds the lease already moved.
                (pending.id.clone(), LeaseState::Pending),
            ],
            LeaseState::Revoked,
        )
        .await
        .expect("batch transition");
    assert_eq!(changed, vec![true, true, false, false, false]);

    assert_eq!(fetch(store, &pending.id).await.state, LeaseState::Revoked);
    let revoked = fetch(store, &active.id).await;
    assert_eq!(revoked.state, LeaseState::Revoked);
    assert_eq!(
        revoked.fingerprint.as_deref(),
        Some("fp-batch"),
        "fingerprint kept"
    );
    assert_eq!(
        revoked.last_error, None,
        "last_error cleared like transition_lease"
    );
    assert_eq!(
        fetch(store, &stale.id).await,
        stale,
        "a failed compare-and-set touches nothing"
    );

    let too_many: Vec<(LeaseId, LeaseState)> = (0..=crate::MAX_DUE_LIMIT)
        .map(|_| (stale.id.clone(), LeaseState::Active))
        .collect();
    let err = store
        .transition_leases(&too_many, LeaseState::Revoked)
        .await
        .expect_err("a batch above MAX_DUE_LIMIT is refused");
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(
        fetch(store, &stale.id).await.state,
        LeaseState::Active,
        "a refused batch writes nothing"
    );
}

/// Renewal moves a live lease's expiry and never revives a dead one.
async fn lease_extension(store: &dyn Store) {
    let lease = sample_lease("ext|p", "db/ext", 1_000, 2_000);
    store.insert_lease(&lease).await.expect("insert");
    assert!(store
        .extend_lease(&lease.id, UnixTime(3_000))
        .await
        .expect("extend"));
    let got = store
        .get_lease(&lease.id)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got.expires_at, UnixTime(3_000));
    assert!(store
        .transition_lease(
            &lease.id,
            LeaseState::Pending,
            LeaseState::Revoked,
            None,
            None
        )
        .await
        .expect("revoke"));
    assert!(!store
        .extend_lease(&lease.id, UnixTime(9_000))
        .await
        .expect("extend dead"));
    let got = store
        .get_lease(&lease.id)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got.expires_at, UnixTime(3_000));
    let missing = sample_lease("ext|p", "db/ext", 1_000, 2_000);
    assert!(!store
        .extend_lease(&missing.id, UnixTime(3_000))
        .await
        .expect("extend missing"));
}

/// A lease with fresh ids, realistic times, due at its expiry.
pub fn sample_lease(principal: &str, role: &str, created_at: i64, expires_at: i64) -> Lease {
    Lease {
        id: LeaseId::generate().expect("random lease id"),
        request_id: RequestId::generate().expect("random request id"),
        role: role.to_owned(),
        issuer: "oauth".to_owned(),
        principal: principal.to_owned(),
        policy_version: 3,
        created_at: UnixTime(created_at),
        expires_at: UnixTime(expires_at),
        state: LeaseState::Pending,
        revocation: RevocationHandle {
            kind: "token_id".to_owned(),
            value: format!("tok-{created_at}-{expires_at}"),
        },
        fingerprint: None,
        attempts: 0,
        next_attempt_at: UnixTime(expires_at),
        last_error: None,
    }
}

fn with_state(mut lease: Lease, state: LeaseState) -> Lease {
    lease.state = state;
    lease
}

async fn insert(store: &dyn Store, lease: &Lease) {
    store
        .insert_lease(lease)
        .await
        .unwrap_or_else(|e| panic!("insert_lease {}: {e}", lease.id));
}

async fn fetch(store: &dyn Store, id: &LeaseId) -> Lease {
    store
        .get_lease(id)
        .await
        .unwrap_or_else(|e| panic!("get_lease {id}: {e}"))
        .unwrap_or_else(|| panic!("lease {id} is missing"))
}

fn ids(leases: &[Lease]) -> Vec<LeaseId> {
    leases.iter().map(|l| l.id.clone()).collect()
}

async fn blobs(store: &dyn Store) {
    mutable_blobs(store).await;
    assert_eq!(store.get_blob("blob:a").await.unwrap(), None, "absent blob");
    let first = store.put_blob_if_absent("blob:a", b"first").await.unwrap();
    assert_eq!(first, b"first", "first put stores its value");
    let second = store.put_blob_if_absent("blob:a", b"second").await.unwrap();
    assert_eq!(
        second, b"first",
        "second put must return the existing value"
    );
    assert_eq!(
        store.get_blob("blob:a").await.unwrap().as_deref(),
        Some(&b"first"[..])
    );
    assert_eq!(
        store.get_blob("blob:b").await.unwrap(),
        None,
        "names are independent"
    );

    // Binary values survive exactly, including NULs and an empty value.
    let binary: Vec<u8> = (0..=255u8).collect();
    assert_eq!(
        store.put_blob_if_absent("blob:bin", &binary).await.unwrap(),
        binary
    );
    assert_eq!(store.get_blob("blob:bin").await.unwrap(), Some(binary));
    assert_eq!(
        store.put_blob_if_absent("blob:empty", b"").await.unwrap(),
        b""
    );

    // Two racing writers agree on one winner.
    let (a, b) = tokio::join!(
        store.put_blob_if_absent("blob:race", b"one"),
        store.put_blob_if_absent("blob:race", b"two"),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a, b,
        "racing put_blob_if_absent calls must return the same winner"
    );
    assert!(a == b"one" || a == b"two");
    assert_eq!(store.get_blob("blob:race").await.unwrap(), Some(a));
}

async fn bundles(store: &dyn Store) {
    assert!(
        store.active_bundle().await.unwrap().is_none(),
        "no bundle before the first activation"
    );
    assert!(store.bundle_history().await.unwrap().is_empty());

    let v1_sources = vec![
        SourceFile {
            name: "main.cedar".into(),
            text: "permit (principal, action, resource);\n".into(),
        },
        SourceFile {
            name: "roles.toml".into(),
            text: "[[role]]\nname = \"api\"\n# ünïcode ✓\n".into(),
        },
    ];
    assert_eq!(
        store
            .activate_bundle_if(Some(1), &v1_sources, "mallory", "no base yet")
            .await
            .unwrap(),
        None,
        "conditional activation expecting a version fails on an empty store"
    );
    // The first version goes through the conditional path (expecting no
    // active bundle), as a server seeding its store does.
    let v1 = store
        .activate_bundle_if(None, &v1_sources, "alice", "initial")
        .await
        .unwrap();
    assert_eq!(v1, Some(1), "first bundle is version 1");
    let active = store
        .active_bundle()
        .await
        .unwrap()
        .expect("active bundle after activation");
    assert_eq!(active.version, 1);
    assert_eq!(active.sources, v1_sources, "sources are stored verbatim");
    assert_eq!(active.author, "alice");
    assert_eq!(active.comment, "initial");
    assert!(active.created_at > 0, "created_at is set");

    let v2_sources = vec![SourceFile {
        name: "roles.toml".into(),
        text: "".into(),
    }];
    let v2 = store
        .activate_bundle(&v2_sources, "bob", "tighten")
        .await
        .unwrap();
    assert_eq!(v2, 2, "versions increase by one");
    let v3 = store.activate_bundle(&[], "carol", "").await.unwrap();
    assert_eq!(v3, 3);
    let active = store.active_bundle().await.unwrap().expect("active bundle");
    assert_eq!(
        (active.version, active.author.as_str()),
        (3, "carol"),
        "latest activation wins"
    );
    assert!(active.sources.is_empty());

    let history = store.bundle_history().await.unwrap();
    let versions: Vec<u64> = history.iter().map(|b| b.version).collect();
    assert_eq!(versions, vec![3, 2, 1], "history is newest first");
    assert_eq!(history[1].sources, v2_sources, "history includes sources");
    assert_eq!(history[2].sources, v1_sources);
    assert_eq!(history[2].comment, "initial");

    // Concurrent activations get distinct versions.
    let (a, b) = tokio::join!(
        store.activate_bundle(&[], "dave", "a"),
        store.activate_bundle(&[], "erin", "b"),
    );
    let mut got = [a.unwrap(), b.unwrap()];
    got.sort_unstable();
    assert_eq!(
        got,
        [4, 5],
        "concurrent activations must not share a version"
    );
    assert_eq!(
        store.active_bundle().await.unwrap().map(|b| b.version),
        Some(5)
    );
}

/// `activate_bundle_if` activates only on the expected base version, and
/// of two concurrent activations on the same base exactly one wins.
/// Runs after [`bundles`], so some bundle is already active.
async fn conditional_activation(store: &dyn Store) {
    let base = store
        .active_bundle()
        .await
        .unwrap()
        .expect("bundles() left an active bundle")
        .version;
    let sources = vec![SourceFile {
        name: "cas.cedar".into(),
        text: "forbid (principal, action, resource);\n".into(),
    }];

    let stale = store
        .activate_bundle_if(Some(base + 7), &sources, "mallory", "stale")
        .await
        .unwrap();
    assert_eq!(stale, None, "a wrong expected version must not activate");
    let none_expected = store
        .activate_bundle_if(None, &sources, "mallory", "stale")
        .await
        .unwrap();
    assert_eq!(
        none_expected, None,
        "expecting no active bundle must fail once one is active"
    );
    assert_eq!(
        store.active_bundle().await.unwrap().map(|b| b.version),
        Some(base),
        "a refused conditional activation changes nothing"
    );
    assert_eq!(
        store.bundle_history().await.unwrap().len() as u64,
        base,
        "a refused conditional activation stores no version"
    );

    let next = store
        .activate_bundle_if(Some(base), &sources, "frank", "cas")
        .await
        .unwrap();
    assert_eq!(
        next,
        Some(base + 1),
        "the expected base activates the next version"
    );
    let active = store.active_bundle().await.unwrap().expect("active");
    assert_eq!(
        (
            active.version,
            active.author.as_str(),
            active.comment.as_str()
        ),
        (base + 1, "frank", "cas")
    );
    assert_eq!(active.sources, sources);

    // Concurrent activations on the same base: exactly one new version.
    let (a, b) = tokio::join!(
        store.activate_bundle_if(Some(base + 1), &[], "grace", "a"),
        store.activate_bundle_if(Some(base + 1), &[], "heidi", "b"),
    );
    let outcomes = [a.unwrap(), b.unwrap()];
    let won: Vec<u64> = outcomes.iter().flatten().copied().collect();
    assert_eq!(
        won,
        vec![base + 2],
        "exactly one of two concurrent conditional activations wins"
    );
    assert_eq!(
        store.active_bundle().await.unwrap().map(|b| b.version),
        Some(base + 2)
    );
    assert_eq!(
        store.bundle_history().await.unwrap().len() as u64,
        base + 2,
        "the losing activation stored nothing"
    );
}

async fn lease_roundtrip_and_conflict(store: &dyn Store) {
    let count_before = store.count_leases(false).await.unwrap();
    let live_before = store.count_leases(true).await.unwrap();

    let mut lease = sample_lease(
        "crud:alice",
        "crud-role",
        REALISTIC_NOW,
        REALISTIC_NOW + 600,
    );
    lease.fingerprint = Some("hmac:abc".into());
    lease.last_error = Some("previous".into());
    lease.attempts = 2;
    lease.next_attempt_at = UnixTime(REALISTIC_NOW + 900);
    lease.policy_version = 42;
    lease.state = LeaseState::Active;
    insert(store, &lease).await;
    assert_eq!(
        fetch(store, &lease.id).await,
        lease,
        "every field round-trips"
    );

    let missing = LeaseId::generate().unwrap();
    assert_eq!(
        store.get_lease(&missing).await.unwrap(),
        None,
        "unknown lease is None"
    );

    let mut duplicate = sample_lease("crud:mallory", "other", REALISTIC_NOW, REALISTIC_NOW + 1);
    duplicate.id = lease.id.clone();
    match store.insert_lease(&duplicate).await {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains(lease.id.as_str()), "{msg}"),
        other => panic!("duplicate lease id must be a Conflict, got {other:?}"),
    }
    assert_eq!(
        fetch(store, &lease.id).await,
        lease,
        "a rejected duplicate changes nothing"
    );

    let revoked = with_state(
        sample_lease(
            "crud:alice",
            "crud-role",
            REALISTIC_NOW,
            REALISTIC_NOW + 600,
        ),
        LeaseState::Revoked,
    );
    insert(store, &revoked).await;
    assert_eq!(store.count_leases(false).await.unwrap(), count_before + 2);
    assert_eq!(
        store.count_leases(true).await.unwrap(),
        live_before + 1,
        "revoked is not live"
    );
}

async fn lease_transitions(store: &dyn Store) {
    let lease = sample_lease("cas:alice", "cas-role", REALISTIC_NOW, REALISTIC_NOW + 600);
    insert(store, &lease).await;

    let moved = store
        .transition_lease(
            &lease.id,
            LeaseState::Pending,
            LeaseState::Active,
            Some("fp-1"),
            None,
        )
        .await
        .unwrap();
    assert!(moved, "CAS from the current state succeeds");
    let now = fetch(store, &lease.id).await;
    assert_eq!(now.state, LeaseState::Active);
    assert_eq!(now.fingerprint.as_deref(), Some("fp-1"));

    let moved = store
        .transition_lease(
            &lease.id,
            LeaseState::Pending,
            LeaseState::Revoked,
            Some("fp-x"),
            Some("e"),
        )
        .await
        .unwrap();
    assert!(!moved, "CAS from a stale state must not change the row");
    let unchanged = fetch(store, &lease.id).await;
    assert_eq!(
        unchanged, now,
        "a failed CAS touches nothing, not even fingerprint or error"
    );

    store
        .record_revoke_failure(&lease.id, UnixTime(REALISTIC_NOW + 700), "target down")
        .await
        .unwrap();
    store
        .record_revoke_failure(&lease.id, UnixTime(REALISTIC_NOW + 800), "still down")
        .await
        .unwrap();
    let failing = fetch(store, &lease.id).await;
    assert_eq!(failing.attempts, 2, "each failure increments attempts");
    assert_eq!(failing.next_attempt_at, UnixTime(REALISTIC_NOW + 800));
    assert_eq!(failing.last_error.as_deref(), Some("still down"));
    assert_eq!(
        failing.state,
        LeaseState::Active,
        "a failure does not change the state"
    );

    let moved = store
        .transition_lease(
            &lease.id,
            LeaseState::Active,
            LeaseState::Revoked,
            None,
            None,
        )
        .await
        .unwrap();
    assert!(moved);
    let done = fetch(store, &lease.id).await;
    assert_eq!(done.state, LeaseState::Revoked);
    assert_eq!(
        done.fingerprint.as_deref(),
        Some("fp-1"),
        "None keeps the fingerprint"
    );
    assert_eq!(
        done.last_error, None,
        "last_error is set to the given value (cleared)"
    );
    assert_eq!(done.attempts, 2, "attempts are kept");

    let moved = store
        .transition_lease(
            &lease.id,
            LeaseState::Revoked,
            LeaseState::Irrevocable,
            None,
            Some("gave up"),
        )
        .await
        .unwrap();
    assert!(moved);
    assert_eq!(
        fetch(store, &lease.id).await.last_error.as_deref(),
        Some("gave up")
    );

    let unknown = LeaseId::generate().unwrap();
    let moved = store
        .transition_lease(
            &unknown,
            LeaseState::Pending,
            LeaseState::Active,
            None,
            None,
        )
        .await
        .unwrap();
    assert!(!moved, "CAS on an unknown lease changes nothing");
    match store
        .record_revoke_failure(&unknown, UnixTime(1), "x")
        .await
    {
        Err(StoreError::NotFound(_)) => {}
        other => {
            panic!("record_revoke_failure on an unknown lease must be NotFound, got {other:?}")
        }
    }

    // Racing CAS calls: exactly one wins.
    let contested = sample_lease("cas:bob", "cas-role", REALISTIC_NOW, REALISTIC_NOW + 600);
    insert(store, &contested).await;
    let (a, b) = tokio::join!(
        store.transition_lease(
            &contested.id,
            LeaseState::Pending,
            LeaseState::Active,
            None,
            None
        ),
        store.transition_lease(
            &contested.id,
            LeaseState::Pending,
            LeaseState::Revoked,
            None,
            None
        ),
    );
    assert!(
        a.unwrap() ^ b.unwrap(),
        "exactly one of two racing CAS transitions wins"
    );
}

async fn lease_listing(store: &dyn Store) {
    let t = REALISTIC_NOW + 10_000;
    let specs: [(&str, &str, LeaseState); 6] = [
        ("list:alice", "list-deploy-web", LeaseState::Active),
        ("list:alice", "list-deploy-db", LeaseState::Revoked),
        ("list:bob", "list-deploy-web", LeaseState::Pending),
        ("list:alice", "list-read", LeaseState::Active),
        ("list:bob", "list-deploy", LeaseState::Irrevocable),
        ("list:alice", "list-deploy-web", LeaseState::Pending),
    ];
    let mut inserted = Vec::new();
    for (i, (principal, role, state)) in specs.into_iter().enumerate() {
        let created = t + i as i64;
        let lease = with_state(
            sample_lease(principal, role, created, created + 3600),
            state,
        );
        insert(store, &lease).await;
        inserted.push(lease);
    }
    let pick =
        |idx: &[usize]| -> Vec<LeaseId> { idx.iter().map(|&i| inserted[i].id.clone()).collect() };
    let list = |filter: LeaseFilter| async move { store.list_leases(&filter).await.unwrap() };

    let alice = list(LeaseFilter {
        principal: Some("list:alice".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(
        ids(&alice),
        pick(&[5, 3, 1, 0]),
        "principal filter, newest first"
    );
    assert_eq!(alice[0], inserted[5], "listed leases are complete");

    let alice_live = list(LeaseFilter {
        principal: Some("list:alice".into()),
        live_only: true,
        ..Default::default()
    })
    .await;
    assert_eq!(
        ids(&alice_live),
        pick(&[5, 3, 0]),
        "live_only drops revoked/irrevocable"
    );

    let deploy = list(LeaseFilter {
        role_prefix: Some("list-deploy-".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(
        ids(&deploy),
        pick(&[5, 2, 1, 0]),
        "role_prefix is a prefix match"
    );
    let deploy_any = list(LeaseFilter {
        role_prefix: Some("list-deploy".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(
        ids(&deploy_any),
        pick(&[5, 4, 2, 1, 0]),
        "the prefix itself matches too"
    );
    let wildcard = list(LeaseFilter {
        role_prefix: Some("list-%".into()),
        ..Default::default()
    })
    .await;
    assert!(
        wildcard.is_empty(),
        "prefix characters are literal, not patterns"
    );

    let combined = list(LeaseFilter {
        principal: Some("list:bob".into()),
        role_prefix: Some("list-deploy-".into()),
        live_only: true,
        limit: 0,
    })
    .await;
    assert_eq!(ids(&combined), pick(&[2]), "filters combine with AND");

    let limited = list(LeaseFilter {
        principal: Some("list:alice".into()),
        limit: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&limited), pick(&[5, 3]), "limit keeps the newest");

    let all_live = list(LeaseFilter {
        live_only: true,
        limit: 10_000,
        ..Default::default()
    })
    .await;
    assert!(
        all_live.iter().all(|l| l.state.is_live()),
        "live_only without other filters"
    );
    let live_ids: BTreeSet<LeaseId> = ids(&all_live).into_iter().collect();
    for i in [0, 2, 3, 5] {
        assert!(
            live_ids.contains(&inserted[i].id),
            "live lease {i} missing from the unfiltered listing"
        );
    }
    let newest = list(LeaseFilter {
        limit: 1,
        ..Default::default()
    })
    .await;
    assert_eq!(
        ids(&newest),
        pick(&[5]),
        "unfiltered listing starts with the newest lease"
    );

    let nobody = list(LeaseFilter {
        principal: Some("list:nobody".into()),
        ..Default::default()
    })
    .await;
    assert!(nobody.is_empty());
}

async fn due_leases(store: &dyn Store) {
    const GRACE: i64 = 60;
    // Tiny absolute times keep every other sub-suite's leases out of range.
    let l1 = with_state(sample_lease("due:a", "due", 500, 1000), LeaseState::Active);
    let l2 = with_state(sample_lease("due:a", "due", 500, 2000), LeaseState::Active);
    let l3 = with_state(sample_lease("due:a", "due", 400, 900), LeaseState::Active);
    let l4 = sample_lease("due:a", "due", 1400, 5000); // pending, stale at 1500
    let l5 = sample_lease("due:a", "due", 1480, 5000); // pending, stale at 1700
    let l6 = with_state(sample_lease("due:a", "due", 300, 800), LeaseState::Revoked);
    let l7 = sample_lease("due:a", "due", 1000, 1200); // pending and expired
    let l8 = with_state(
        sample_lease("due:a", "due", 300, 700),
        LeaseState::Irrevocable,
    );
    for lease in [&l1, &l2, &l3, &l4, &l5, &l6, &l7, &l8] {
        insert(store, lease).await;
    }
    let want =
        |leases: &[&Lease]| -> Vec<LeaseId> { leases.iter().map(|l| l.id.clone()).collect() };
    // l3 failed once and backs off until 1600.
    store
        .record_revoke_failure(&l3.id, UnixTime(1600), "target down")
        .await
        .unwrap();

    let due = |now: i64, limit: usize| async move {
        ids(&store.due_leases(UnixTime(now), GRACE, limit).await.unwrap())
    };

    assert_eq!(
        due(1500, 100).await,
        want(&[&l1, &l7, &l4]),
        "expired live and stale pending leases, earliest due first; \
         leases in backoff and dead leases excluded"
    );
    assert_eq!(due(1500, 1).await, want(&[&l1]), "limit takes the earliest");
    assert_eq!(due(1500, 2).await, want(&[&l1, &l7]));
    assert!(due(1500, 0).await.is_empty(), "limit 0 returns nothing");
    assert_eq!(
        due(1700, 100).await,
        want(&[&l1, &l7, &l4, &l5, &l3]),
        "after backoff the lease is due again, ordered by its retry time"
    );
    assert!(
        due(600, 100).await.is_empty(),
        "nothing due before the first expiry"
    );
    let at_expiry = store.due_leases(UnixTime(1000), GRACE, 100).await.unwrap();
    assert_eq!(ids(&at_expiry), want(&[&l1]), "expires_at == now is due");
    assert_eq!(at_expiry[0], l1, "due leases are complete");

    // Revoking takes a lease off the list.
    assert!(store
        .transition_lease(&l1.id, LeaseState::Active, LeaseState::Revoked, None, None)
        .await
        .unwrap());
    assert_eq!(due(1500, 100).await, want(&[&l7, &l4]));
    // A stale pending lease in backoff waits like any other.
    store
        .record_revoke_failure(&l4.id, UnixTime(1650), "not yet")
        .await
        .unwrap();
    assert_eq!(due(1500, 100).await, want(&[&l7]));
    assert_eq!(due(2100, 100).await, want(&[&l7, &l5, &l3, &l4, &l2]));
}

async fn denylist(store: &dyn Store) {
    store.deny_token("tok-1", UnixTime(100)).await.unwrap();
    store.deny_token("tok-2", UnixTime(200)).await.unwrap();
    store.deny_token("tok-3", UnixTime(300)).await.unwrap();
    store.deny_token("tok-1", UnixTime(50)).await.unwrap();

    let mut at_100 = store.denied_tokens(UnixTime(100)).await.unwrap();
    at_100.sort();
    assert_eq!(
        at_100,
        vec![
            ("tok-2".to_string(), UnixTime(200)),
            ("tok-3".to_string(), UnixTime(300))
        ],
        "a denial expiring at `now` is no longer listed"
    );
    let mut at_0 = store.denied_tokens(UnixTime(0)).await.unwrap();
    at_0.sort();
    assert_eq!(
        at_0[0],
        ("tok-1".to_string(), UnixTime(100)),
        "denying again keeps the later expiry"
    );

    assert_eq!(
        store.purge_expired_denials(UnixTime(200)).await.unwrap(),
        2,
        "purges expiry <= now"
    );
    assert_eq!(
        store.purge_expired_denials(UnixTime(200)).await.unwrap(),
        0,
        "purge is idempotent"
    );
    assert_eq!(
        store.denied_tokens(UnixTime(0)).await.unwrap(),
        vec![("tok-3".to_string(), UnixTime(300))]
    );
    store.deny_token("tok-3", UnixTime(400)).await.unwrap();
    assert_eq!(
        store.denied_tokens(UnixTime(0)).await.unwrap(),
        vec![("tok-3".to_string(), UnixTime(400))],
        "a later expiry extends the denial"
    );
}

/// 8 concurrent writers × 500 inserts: every lease is present afterwards.
async fn concurrent_inserts(store: &dyn Store) {
    const PER_TASK: usize = 500;
    let before = store.count_leases(false).await.unwrap();
    let writer = |task: usize| async move {
        let principal = format!("conc:{task}");
        let mut ids = BTreeSet::new();
        for i in 0..PER_TASK {
            let created = REALISTIC_NOW + 20_000 + i as i64;
            let lease = sample_lease(&principal, "conc", created, created + 300);
            store
                .insert_lease(&lease)
                .await
                .unwrap_or_else(|e| panic!("task {task}: {e}"));
            ids.insert(lease.id);
        }
        (principal, ids)
    };
    let results = tokio::join!(
        writer(0),
        writer(1),
        writer(2),
        writer(3),
        writer(4),
        writer(5),
        writer(6),
        writer(7)
    );
    let results = [
        results.0, results.1, results.2, results.3, results.4, results.5, results.6, results.7,
    ];
    for (principal, expected) in results {
        let listed = store
            .list_leases(&LeaseFilter {
                principal: Some(principal.clone()),
                limit: 10_000,
                ..Default::default()
            })
            .await
            .unwrap();
        let listed: BTreeSet<LeaseId> = ids(&listed).into_iter().collect();
        assert_eq!(
            listed, expected,
            "leases of {principal} missing after concurrent inserts"
        );
    }
    assert_eq!(
        store.count_leases(false).await.unwrap(),
        before + 8 * PER_TASK as u64
    );
}

async fn sealed_secrets(store: &dyn Store) {
    let env = Envelope::new(SealKey::generate().unwrap());
    let calls = AtomicUsize::new(0);
    let gen = || {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(b"fresh signing key".to_vec())
    };
    let first = get_or_create_secret(store, &env, "secret:signing", gen)
        .await
        .unwrap();
    assert_eq!(first.as_slice(), b"fresh signing key");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let stored = store
        .get_blob("secret:signing")
        .await
        .unwrap()
        .expect("sealed blob stored");
    assert!(
        !stored.windows(first.len()).any(|w| w == first.as_slice()),
        "the stored blob must be sealed, not plaintext"
    );

    let second = get_or_create_secret(store, &env, "secret:signing", || {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(b"another key".to_vec())
    })
    .await
    .unwrap();
    assert_eq!(
        second.as_slice(),
        first.as_slice(),
        "second call returns the stored secret"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "gen is not called when the secret exists"
    );

    let failing = get_or_create_secret(store, &env, "secret:fails", || {
        Err(StoreError::Seal("generator failed".into()))
    })
    .await;
    assert!(
        matches!(failing, Err(StoreError::Seal(_))),
        "gen errors propagate"
    );
    assert_eq!(
        store.get_blob("secret:fails").await.unwrap(),
        None,
        "nothing stored on failure"
    );

    let (a, b) = tokio::join!(
        get_or_create_secret(store, &env, "secret:race", || Ok(b"candidate-a".to_vec())),
        get_or_create_secret(store, &env, "secret:race", || Ok(b"candidate-b".to_vec())),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a.as_slice(),
        b.as_slice(),
        "racing creators agree on one secret"
    );

    let other_root = Envelope::new(SealKey::generate().unwrap());
    let wrong = get_or_create_secret(store, &other_root, "secret:signing", || Ok(vec![1])).await;
    assert!(
        matches!(wrong, Err(StoreError::Unseal(_))),
        "a different root key cannot open it"
    );
}

async fn mutable_blobs(store: &dyn Store) {
    store.put_blob("mut:a", b"one").await.unwrap();
    store.put_blob("mut:a", b"two").await.unwrap();
    assert_eq!(
        store.get_blob("mut:a").await.unwrap().as_deref(),
        Some(&b"two"[..]),
        "put_blob replaces"
    );
    store.put_blob("mut:b", b"b").await.unwrap();
    store
        .put_blob("mut_c", b"not under the prefix")
        .await
        .unwrap();
    store
        .put_blob("mut%", b"a LIKE wildcard is literal")
        .await
        .unwrap();
    let listed = store.list_blobs("mut:").await.unwrap();
    assert_eq!(
        listed,
        vec![
            ("mut:a".to_string(), b"two".to_vec()),
            ("mut:b".to_string(), b"b".to_vec())
        ],
        "list_blobs returns exactly the prefix, ordered"
    );
    assert_eq!(store.list_blobs("mut%").await.unwrap().len(), 1);
    // Exactly one of two racing deletes wins: single-use values rely on it.
    let (x, y) = tokio::join!(store.delete_blob("mut:a"), store.delete_blob("mut:a"));
    assert!(
        x.unwrap() ^ y.unwrap(),
        "exactly one delete must see the blob"
    );
    assert_eq!(store.get_blob("mut:a").await.unwrap(), None);
    assert!(!store.delete_blob("mut:absent").await.unwrap());
}

/// Reapers on several servers share the due list through claims: two
/// concurrent claimers never get the same lease, a claim hides a lease until
/// it lapses, a recorded failure releases it. Runs after [`due_leases`],
/// whose leftovers are also due here, so only `claim:` leases are checked.
async fn claims(store: &dyn Store) {
    const GRACE: i64 = 60;
    let now = 10_000;
    let mut mine = BTreeSet::new();
    for i in 0..20 {
        let lease = with_state(
            sample_lease("claim:a", "claim", 8_000 + i, 9_000 + i),
            LeaseState::Active,
        );
        insert(store, &lease).await;
        mine.insert(lease.id);
    }
    let stale = sample_lease("claim:a", "claim", 9_500, 50_000);
    insert(store, &stale).await;
    mine.insert(stale.id.clone());
    let own = |leases: Vec<Lease>| -> BTreeSet<LeaseId> {
        leases
            .into_iter()
            .filter(|l| l.principal.starts_with("claim:"))
            .map(|l| l.id)
            .collect()
    };
    let claim = |at: i64, until: i64| async move {
        own(store
            .claim_due_leases(UnixTime(at), GRACE, 1_000, UnixTime(until))
            .await
            .unwrap())
    };

    let (a, b) = tokio::join!(claim(now, now + 30), claim(now, now + 30));
    assert!(
        a.is_disjoint(&b),
        "two concurrent claimers must never get the same lease"
    );
    let both: BTreeSet<LeaseId> = a.union(&b).cloned().collect();
    assert_eq!(both, mine, "together the claimers get every due lease");

    assert!(
        claim(now + 10, now + 40).await.is_empty(),
        "a claimed lease is hidden until its claim lapses"
    );
    let listed = own(store
        .due_leases(UnixTime(now + 10), GRACE, 1_000)
        .await
        .unwrap());
    assert_eq!(listed, mine, "due_leases still lists claimed leases");

    // A failed attempt releases the claim; the retry waits for its time.
    let failed = mine.iter().next().cloned().expect("a lease");
    store
        .record_revoke_failure(&failed, UnixTime(now + 5), "target down")
        .await
        .unwrap();
    assert_eq!(
        claim(now + 6, now + 60).await,
        BTreeSet::from([failed.clone()]),
        "after a failure the lease is claimable again at its retry time"
    );

    // A revoked lease never comes back; the rest return once claims lapse.
    let revoked = mine.iter().nth(1).cloned().expect("a second lease");
    let current = fetch(store, &revoked).await;
    assert!(store
        .transition_lease(&revoked, current.state, LeaseState::Revoked, None, None)
        .await
        .unwrap());
    let again = claim(now + 31, now + 90).await;
    let mut expected = mine.clone();
    expected.remove(&failed);
    expected.remove(&revoked);
    assert_eq!(
        again, expected,
        "lapsed claims make leases claimable again; revoked and re-claimed ones stay out"
    );
}
