//! First-start generation of server secrets (signing keys, fingerprint key).

use crate::envelope::Envelope;
use crate::error::StoreError;
use crate::store::Store;
use zeroize::Zeroizing;

/// Returns the secret stored (sealed) under `name`, generating it with `gen`
/// if it does not exist yet.
///
/// Several servers may start at once against one database: each may generate
/// a candidate, but [`Store::put_blob_if_absent`] lets exactly one win and
/// every server returns the winner's plaintext, so they all agree. `gen` is
/// not called when the secret already exists. The blob name is also the
/// sealing purpose, so a blob copied under another name does not open.
pub async fn get_or_create_secret(
    store: &dyn Store,
    env: &Envelope,
    name: &str,
    gen: impl FnOnce() -> Result<Vec<u8>, StoreError> + Send,
) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    if let Some(sealed) = store.get_blob(name).await? {
        return env.open(name, &sealed);
    }
    let candidate = Zeroizing::new(gen()?);
    let sealed = env.seal(name, &candidate)?;
    drop(candidate);
    let stored = store.put_blob_if_absent(name, &sealed).await?;
    if stored != sealed {
        tracing::info!(
            secret = name,
            "another server created this secret first; using theirs"
        );
    }
    env.open(name, &stored)
}
