//! `idmint store migrate --from … --to …`: copies a deployment's whole
//! state from one store into another (typically a dev/single-node SQLite
//! file into PostgreSQL), then proves the copy is complete.
//!
//! Only the [`Store`] trait is used, so any pair of backends works. Stop the
//! source server first: a lease written during the copy may be missed (the
//! verification then fails, and the copy can be re-run with `force`).

use crate::error::StoreError;
use crate::store::{Store, StoredBundle, MAX_BLOB_LIST};
use idmint_core::{Lease, LeaseId, UnixTime};

/// Leases read per page while copying and checksumming.
const PAGE: usize = 1000;

/// What the copy is doing, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyPhase {
    Blobs,
    Bundles,
    Leases,
    Denylist,
    Verify,
}

impl CopyPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            CopyPhase::Blobs => "sealed blobs",
            CopyPhase::Bundles => "policy bundles",
            CopyPhase::Leases => "leases",
            CopyPhase::Denylist => "token denylist",
            CopyPhase::Verify => "verifying",
        }
    }
}

/// Progress callback: phase, items done, items expected in this phase.
pub type Progress<'a> = &'a mut (dyn FnMut(CopyPhase, u64, u64) + Send);

/// What was copied, and the checksum both sides agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub blobs: u64,
    pub bundles: u64,
    pub active_bundle: Option<u64>,
    pub leases: u64,
    pub denials: u64,
    /// SHA-256 (hex) over every lease in insertion order, the same on both
    /// sides.
    pub lease_checksum: String,
}

/// Whether `store` holds nothing at all.
pub async fn is_empty(store: &dyn Store) -> Result<bool, StoreError> {
    Ok(store.count_leases(false).await? == 0
        && store.active_bundle().await?.is_none()
        && store.bundle_history().await?.is_empty()
        && store.list_blobs("").await?.is_empty()
        && store.denied_tokens(UnixTime(i64::MIN)).await?.is_empty())
}

/// Copies everything from `from` into `to`, then verifies.
///
/// `to` must be empty unless `force`: then blobs are overwritten, bundle
/// versions already present must be identical, and leases already present
/// (same id) must be identical; anything else is refused rather than
/// merged.
pub async fn copy_store(
    from: &dyn Store,
    to: &dyn Store,
    force: bool,
    progress: Progress<'_>,
) -> Result<CopyReport, StoreError> {
    if !force && !is_empty(to).await? {
        return Err(StoreError::Conflict(format!(
            "the target store {} is not empty; copy into a new database, or pass --force to add to it (existing data must then match the source)",
            to.describe()
        )));
    }
    let blobs = copy_blobs(from, to, progress).await?;
    let (bundles, active_bundle) = copy_bundles(from, to, progress).await?;
    let leases = copy_leases(from, to, progress).await?;
    let denials = copy_denials(from, to, progress).await?;
    let lease_checksum = verify(from, to, progress).await?;
    Ok(CopyReport {
        blobs,
        bundles,
        active_bundle,
        leases,
        denials,
        lease_checksum,
    })
}

async fn copy_blobs(
    from: &dyn Store,
    to: &dyn Store,
    progress: Progress<'_>,
) -> Result<u64, StoreError> {
    let blobs = from.list_blobs("").await?;
    if blobs.len() >= MAX_BLOB_LIST {
        return Err(StoreError::Backend(format!(
            "the source holds {MAX_BLOB_LIST} or more blobs, more than one copy can list; this is not an idmint store layout the copier supports"
        )));
    }
    let total = blobs.len() as u64;
    for (i, (name, value)) in blobs.iter().enumerate() {
        to.put_blob(name, value).await?;
        progress(CopyPhase::Blobs, i as u64 + 1, total);
    }
    progress(CopyPhase::Blobs, total, total);
    Ok(total)
}

async fn copy_bundles(
    from: &dyn Store,
    to: &dyn Store,
    progress: Progress<'_>,
) -> Result<(u64, Option<u64>), StoreError> {
    let mut source = from.bundle_history().await?;
    source.reverse();
    let active = from.active_bundle().await?.map(|b| b.version);
    let existing = to.bundle_history().await?;
    let mut missing: Vec<StoredBundle> = Vec::new();
    for bundle in source.iter() {
        match existing.iter().find(|b| b.version == bundle.version) {
            Some(b) if b == bundle => {}
            Some(_) => {
                return Err(StoreError::Conflict(format!(
                    "policy bundle v{} differs between source and target; refusing to overwrite policy history",
                    bundle.version
                )))
            }
            None => missing.push(bundle.clone()),
        }
    }
    let total = source.len() as u64;
    to.import_bundles(&missing, active).await?;
    progress(CopyPhase::Bundles, total, total);
    Ok((total, active))
}

async fn copy_leases(
    from: &dyn Store,
    to: &dyn Store,
    progress: Progress<'_>,
) -> Result<u64, StoreError> {
    let total = from.count_leases(false).await?;
    let mut done = 0u64;
    let mut after: Option<LeaseId> = None;
    loop {
        let page = from.export_leases(after.as_ref(), PAGE).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.id.clone());
        for lease in &page {
            match to.insert_lease(lease).await {
                Ok(()) => {}
                Err(StoreError::Conflict(_)) => {
                    let present = to.get_lease(&lease.id).await?;
                    if present.as_ref() != Some(lease) {
                        return Err(StoreError::Conflict(format!(
                            "lease {} exists in the target with different data; refusing to overwrite it",
                            lease.id
                        )));
                    }
                }
                Err(e) => return Err(e),
            }
            done += 1;
        }
        progress(CopyPhase::Leases, done, total.max(done));
    }
    Ok(done)
}

async fn copy_denials(
    from: &dyn Store,
    to: &dyn Store,
    progress: Progress<'_>,
) -> Result<u64, StoreError> {
    let denials = from.denied_tokens(UnixTime(i64::MIN)).await?;
    let total = denials.len() as u64;
    for (i, (token_id, expires_at)) in denials.iter().enumerate() {
        to.deny_token(token_id, *expires_at).await?;
        progress(CopyPhase::Denylist, i as u64 + 1, total);
    }
    progress(CopyPhase::Denylist, total, total);
    Ok(total)
}

/// Compares both sides: counts, blobs, bundle history and active version,
/// denylist, and a checksum over every lease. Returns the checksum.
pub async fn verify(
    from: &dyn Store,
    to: &dyn Store,
    progress: Progress<'_>,
) -> Result<String, StoreError> {
    let mismatch = |what: &str| {
        StoreError::Conflict(format!(
            "verification failed: {what} differ between {} and {}; was the source server still running? stop it and re-run with --force",
            from.describe(),
            to.describe()
        ))
    };
    let total = from.count_leases(false).await?;
    if total != to.count_leases(false).await? {
        return Err(mismatch("lease counts"));
    }
    if from.count_leases(true).await? != to.count_leases(true).await? {
        return Err(mismatch("live lease counts"));
    }
    if from.list_blobs("").await? != to.list_blobs("").await? {
        return Err(mismatch("sealed blobs"));
    }
    if from.bundle_history().await? != to.bundle_history().await? {
        return Err(mismatch("policy bundle histories"));
    }
    if from.active_bundle().await?.map(|b| b.version)
        != to.active_bundle().await?.map(|b| b.version)
    {
        return Err(mismatch("active policy versions"));
    }
    let mut denied_from = from.denied_tokens(UnixTime(i64::MIN)).await?;
    let mut denied_to = to.denied_tokens(UnixTime(i64::MIN)).await?;
    denied_from.sort();
    denied_to.sort();
    if denied_from != denied_to {
        return Err(mismatch("token denylists"));
    }
    let source_sum = lease_checksum(from, &mut |done| {
        progress(CopyPhase::Verify, done, total.saturating_mul(2))
    })
    .await?;
    let target_sum = lease_checksum(to, &mut |done| {
        progress(CopyPhase::Verify, total + done, total.saturating_mul(2))
    })
    .await?;
    if source_sum != target_sum {
        return Err(mismatch("lease checksums"));
    }
    Ok(source_sum)
}

/// SHA-256 over the JSON of every lease, in insertion order.
async fn lease_checksum(
    store: &dyn Store,
    on_page: &mut (dyn FnMut(u64) + Send),
) -> Result<String, StoreError> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut after: Option<LeaseId> = None;
    let mut done = 0u64;
    loop {
        let page: Vec<Lease> = store.export_leases(after.as_ref(), PAGE).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.id.clone());
        for lease in &page {
            let json = serde_json::to_vec(lease)
                .map_err(|e| StoreError::Backend(format!("encoding lease {}: {e}", lease.id)))?;
            ctx.update(&(json.len() as u64).to_be_bytes());
            ctx.update(&json);
            done += 1;
        }
        on_page(done);
    }
    Ok(idmint_core::ids::hex(ctx.finish().as_ref()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::conformance::sample_lease;
    use crate::SqliteStore;
    use idmint_core::policy::SourceFile;
    use idmint_core::LeaseState;

    #[tokio::test]
    async fn sqlite_to_sqlite_copy_is_complete_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let from = SqliteStore::open(&dir.path().join("a.db")).unwrap();
        let to = SqliteStore::open(&dir.path().join("b.db")).unwrap();
        fill(&from).await;
        let mut phases = Vec::new();
        let report = copy_store(&from, &to, false, &mut |phase, _, _| phases.push(phase))
            .await
            .unwrap();
        assert_eq!(
            (
                report.blobs,
                report.bundles,
                report.active_bundle,
                report.leases,
                report.denials
            ),
            (2, 2, Some(2), 2500, 1)
        );
        assert!(phases.contains(&CopyPhase::Leases) && phases.contains(&CopyPhase::Verify));
        let filter = crate::LeaseFilter {
            limit: 3,
            ..Default::default()
        };
        assert_eq!(
            from.list_leases(&filter).await.unwrap(),
            to.list_leases(&filter).await.unwrap(),
            "listing order is kept"
        );

        // A second copy into the now non-empty target is refused...
        let err = copy_store(&from, &to, false, &mut |_, _, _| {})
            .await
            .unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        // ...and with force it is a verified no-op.
        let again = copy_store(&from, &to, true, &mut |_, _, _| {})
            .await
            .unwrap();
        assert_eq!(again.lease_checksum, report.lease_checksum);

        // A divergent target fails verification.
        to.transition_lease(
            &from.export_leases(None, 1).await.unwrap()[0].id,
            LeaseState::Active,
            LeaseState::Revoked,
            None,
            None,
        )
        .await
        .unwrap();
        let err = verify(&from, &to, &mut |_, _, _| {}).await.unwrap_err();
        assert!(err.to_string().contains("verification failed"), "{err}");
    }

    /// Two bundles, two blobs, 2500 leases (more than one page), one denial.
    pub(crate) async fn fill(store: &dyn Store) {
        let src = |text: &str| {
            vec![SourceFile {
                name: "p.cedar".into(),
                text: text.into(),
            }]
        };
        store
            .activate_bundle(&src("a"), "alice", "one")
            .await
            .unwrap();
        store
            .activate_bundle(&src("b"), "bob", "two")
            .await
            .unwrap();
        store.put_blob("k1", b"sealed-1").await.unwrap();
        store.put_blob("k2", &[0, 1, 2]).await.unwrap();
        for i in 0..2500 {
            let mut lease = sample_lease("copy:p", "copy", 1_000 + i, 9_000_000_000 + i);
            lease.state = LeaseState::Active;
            store.insert_lease(&lease).await.unwrap();
        }
        store
            .deny_token("tok-copy", UnixTime(9_000_000_000))
            .await
            .unwrap();
    }
}
