//! Drafts at rest: one JSON blob per draft under [`DRAFT_PREFIX`], and the
//! validation every draft passes before it is stored.

use crate::startup::{check_bundle, Issuers};
use idmint_core::policy::SourceFile;
use idmint_core::PolicyBundle;
use idmint_proto::governance::{DraftInfo, PolicySource};
use idmint_store::{Store, StoreError};

/// Blob-name prefix of drafts: `policy/draft/<id>`.
pub const DRAFT_PREFIX: &str = "policy/draft/";
/// Blob-name prefix of the break-glass index: `policy/break_glass/<id>`
/// exists (value: `expires_at`, Unix seconds) while draft `<id>` is in
/// force through break-glass, so the expiry loop reads a handful of tiny
/// blobs per tick instead of every draft.
pub const BREAK_GLASS_PREFIX: &str = "policy/break_glass/";
/// Random bytes in a draft id (hex-encoded, so twice as many characters).
const DRAFT_ID_BYTES: usize = 6;
/// Source files in one draft; a bundle is reviewed by people.
const MAX_FILES: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum DraftError {
    /// The draft does not parse or does not fit the server: never stored,
    /// never activatable. The message names the file and line.
    #[error("{0}")]
    Invalid(String),
    #[error("no draft {0:?}; list drafts with `idmint policy draft list`")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored draft {id} is not valid JSON ({message}); an operator must look at blob {DRAFT_PREFIX}{id}")]
    Corrupt { id: String, message: String },
    #[error("cannot generate a draft id: {0}")]
    Random(String),
}

/// A fresh random draft id.
pub fn new_id() -> Result<String, DraftError> {
    idmint_core::ids::random_hex(DRAFT_ID_BYTES).map_err(|e| DraftError::Random(e.to_string()))
}

/// Whether `id` has the shape of a draft id (so it is safe in a blob name).
pub fn is_valid_id(id: &str) -> bool {
    id.len() == DRAFT_ID_BYTES * 2 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

pub fn to_sources(sources: &[PolicySource]) -> Vec<SourceFile> {
    sources
        .iter()
        .map(|s| SourceFile {
            name: s.name.clone(),
            text: s.text.clone(),
        })
        .collect()
}

pub fn from_sources(sources: &[SourceFile]) -> Vec<PolicySource> {
    sources
        .iter()
        .map(|s| PolicySource {
            name: s.name.clone(),
            text: s.text.clone(),
        })
        .collect()
}

/// Parses `sources` exactly as activation would (Cedar syntax, `@id` and
/// `@ttl_cap` annotations, roles) and checks every role against the
/// configured issuers. Returns the bundle for impact analysis.
pub fn validate(sources: &[SourceFile], issuers: &Issuers) -> Result<PolicyBundle, DraftError> {
    if sources.is_empty() || sources.len() > MAX_FILES {
        return Err(DraftError::Invalid(format!(
            "a draft needs between 1 and {MAX_FILES} files (roles.toml and *.cedar); got {}",
            sources.len()
        )));
    }
    let mut names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
    for name in &names {
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !plain || !(name.ends_with(".cedar") || *name == "roles.toml") {
            return Err(DraftError::Invalid(format!(
                "{name:?}: a draft holds only roles.toml and *.cedar files with plain names (letters, digits, - _ .)"
            )));
        }
    }
    names.sort_unstable();
    if names.windows(2).any(|w| w.first() == w.get(1)) {
        return Err(DraftError::Invalid(
            "a file name appears twice in the draft".into(),
        ));
    }
    let bundle = PolicyBundle::from_sources(0, sources.to_vec())
        .map_err(|e| DraftError::Invalid(e.to_string()))?;
    check_bundle(&bundle, issuers).map_err(|e| DraftError::Invalid(format!("roles.toml: {e}")))?;
    Ok(bundle)
}

pub async fn load(store: &dyn Store, id: &str) -> Result<DraftInfo, DraftError> {
    if !is_valid_id(id) {
        return Err(DraftError::NotFound(id.chars().take(32).collect()));
    }
    let bytes = store
        .get_blob(&format!("{DRAFT_PREFIX}{id}"))
        .await?
        .ok_or_else(|| DraftError::NotFound(id.to_string()))?;
    decode(id, &bytes)
}

pub async fn save(store: &dyn Store, draft: &DraftInfo) -> Result<(), DraftError> {
    let bytes = serde_json::to_vec(draft).map_err(|e| DraftError::Corrupt {
        id: draft.id.clone(),
        message: e.to_string(),
    })?;
    store
        .put_blob(&format!("{DRAFT_PREFIX}{}", draft.id), &bytes)
        .await?;
    index_break_glass(store, draft).await
}

/// Keeps the break-glass index in step with a saved draft. Written after
/// the draft, so a crash in between leaves a draft in force without its
/// index entry only until the next start's full scan
/// ([`rebuild_break_glass_index`]), never an entry without a draft.
pub async fn index_break_glass(store: &dyn Store, draft: &DraftInfo) -> Result<(), DraftError> {
    let name = format!("{BREAK_GLASS_PREFIX}{}", draft.id);
    match (&draft.state, &draft.break_glass) {
        (idmint_proto::governance::DraftState::BreakGlass, Some(bg)) => {
            store
                .put_blob(&name, bg.expires_at.to_string().as_bytes())
                .await?;
        }
        _ => {
            store.delete_blob(&name).await?;
        }
    }
    Ok(())
}

/// Ids of drafts in force through break-glass whose window has ended at
/// `now`, from the index.
pub async fn expired_break_glass(store: &dyn Store, now: i64) -> Result<Vec<String>, DraftError> {
    Ok(store
        .list_blobs(BREAK_GLASS_PREFIX)
        .await?
        .into_iter()
        .filter_map(|(name, value)| {
            let id = name.strip_prefix(BREAK_GLASS_PREFIX)?.to_string();
            // An unreadable entry counts as expired: the draft itself is
            // then loaded and decides.
            let expires_at = std::str::from_utf8(&value)
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(i64::MIN);
            (expires_at <= now && is_valid_id(&id)).then_some(id)
        })
        .collect())
}

/// One full scan that (re)creates the break-glass index: run once per
/// server start, for drafts saved before the index existed.
pub async fn rebuild_break_glass_index(store: &dyn Store) -> Result<(), DraftError> {
    for d in list(store).await? {
        if d.state == idmint_proto::governance::DraftState::BreakGlass {
            index_break_glass(store, &d).await?;
        }
    }
    Ok(())
}

/// Deletes a draft and its index entry.
pub async fn delete(store: &dyn Store, id: &str) -> Result<(), DraftError> {
    store.delete_blob(&format!("{DRAFT_PREFIX}{id}")).await?;
    store
        .delete_blob(&format!("{BREAK_GLASS_PREFIX}{id}"))
        .await?;
    Ok(())
}

/// Every stored draft, newest first.
pub async fn list(store: &dyn Store) -> Result<Vec<DraftInfo>, DraftError> {
    let mut drafts = store
        .list_blobs(DRAFT_PREFIX)
        .await?
        .into_iter()
        .map(|(name, bytes)| {
            let id = name.strip_prefix(DRAFT_PREFIX).unwrap_or(&name).to_string();
            decode(&id, &bytes)
        })
        .collect::<Result<Vec<_>, _>>()?;
    drafts.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    Ok(drafts)
}

fn decode(id: &str, bytes: &[u8]) -> Result<DraftInfo, DraftError> {
    serde_json::from_slice(bytes).map_err(|e| DraftError::Corrupt {
        id: id.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(name: &str, text: &str) -> SourceFile {
        SourceFile {
            name: name.into(),
            text: text.into(),
        }
    }

    #[test]
    fn invalid_cedar_names_file_and_line() {
        let e = validate(
            &[
                src("roles.toml", ""),
                src(
                    "a.cedar",
                    "permit (principal, action, resource);\npermit (principal action);\n",
                ),
            ],
            &Issuers::new(),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("a.cedar: line 2:"), "{e}");
    }

    #[test]
    fn odd_file_names_are_refused() {
        for name in ["../x.cedar", "x.txt", ".hidden.cedar", "a/b.cedar"] {
            let e = validate(&[src("roles.toml", ""), src(name, "")], &Issuers::new()).unwrap_err();
            assert!(matches!(e, DraftError::Invalid(_)), "{name}: {e}");
        }
        let e = validate(
            &[src("roles.toml", ""), src("roles.toml", "")],
            &Issuers::new(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
    }

    #[test]
    fn ids_are_checked_before_use_in_blob_names() {
        let id = new_id().unwrap();
        assert!(is_valid_id(&id));
        assert!(!is_valid_id("../../x"));
        assert!(!is_valid_id(""));
    }
}
