//! The draft life cycle: create, approve (two-person rule), reject,
//! break-glass, and the one place a bundle is activated.

use super::diff::{role_changes, touched_labels};
use super::draft::{self, DraftError};
use super::impact;
use super::{permits, ACTION_APPROVE, ACTION_DRAFT};
use crate::audit_events::audit_identity;
use crate::metrics::Metrics;
use crate::startup::check_bundle;
use crate::state::AppState;
use idmint_audit::AuditEvent;
use idmint_core::policy::SourceFile;
use idmint_core::{Identity, PolicyBundle, UnixTime};
use idmint_proto::governance::{
    Approval, ApproveRequest, ApproveResponse, BreakGlassInfo, DraftInfo, DraftState,
};
use std::sync::Arc;

/// Why a governance action was refused. Each variant maps to one HTTP
/// status and error code in `routes::policy`.
#[derive(Debug, thiserror::Error)]
pub enum GovernanceError {
    #[error("{0}")]
    Forbidden(String),
    #[error("you wrote draft {0}; the two-person rule needs another admin to approve it (or `--break-glass --reason …` in an emergency)")]
    SelfApproval(String),
    #[error("you already approved draft {0}; it needs approvals from other admins")]
    AlreadyApproved(String),
    #[error("draft {id} is {state}, not pending; nothing to do")]
    NotPending { id: String, state: &'static str },
    #[error("draft {id} was made against policy v{base} but v{active} is active now; its diff and impact no longer describe the change. Re-create it from the current policy (`idmint policy draft create --from DIR`)")]
    Stale { id: String, base: u64, active: u64 },
    #[error("{0}")]
    BadRequest(String),
    #[error("no stored policy version {0}; see `idmint policy history`")]
    UnknownVersion(u64),
    #[error(transparent)]
    Draft(#[from] DraftError),
    #[error("the audit log cannot be written, so the governance action was refused")]
    Audit,
    #[error("{0}")]
    Internal(String),
}

impl From<idmint_store::StoreError> for GovernanceError {
    fn from(e: idmint_store::StoreError) -> Self {
        GovernanceError::Draft(DraftError::Store(e))
    }
}

fn require(state: &AppState, who: &Identity, action: &str) -> Result<(), GovernanceError> {
    if permits(state, who, action) {
        return Ok(());
    }
    Err(GovernanceError::Forbidden(format!(
        "this needs the {action} action: a Cedar policy in the active bundle must permit Action::\"{action}\" on Server::\"idmint\" for {}",
        who.principal_key()
    )))
}

/// Read access to drafts and history: anyone who may draft, approve or
/// administer.
pub fn require_reader(state: &AppState, who: &Identity) -> Result<(), GovernanceError> {
    if [ACTION_DRAFT, ACTION_APPROVE, "admin"]
        .iter()
        .any(|a| permits(state, who, a))
    {
        return Ok(());
    }
    Err(GovernanceError::Forbidden(format!(
        "reading drafts needs Action::\"{ACTION_DRAFT}\", Action::\"{ACTION_APPROVE}\" or Action::\"admin\" on Server::\"idmint\" for {}",
        who.principal_key()
    )))
}

/// Appends a governance event; fail closed.
async fn audit(
    state: &AppState,
    request_id: Option<&str>,
    event: &str,
    who: Option<&Identity>,
    detail: serde_json::Value,
) -> Result<(), GovernanceError> {
    let ev = AuditEvent {
        request_id: request_id.map(str::to_string),
        event: event.to_string(),
        outcome: "success".into(),
        identity: who.map(audit_identity),
        action: Some("policy".into()),
        detail: Some(detail),
        ..Default::default()
    };
    state
        .audit
        .append(ev)
        .await
        .map(|_| ())
        .map_err(|_| GovernanceError::Audit)
}

fn detail(d: &DraftInfo) -> serde_json::Value {
    serde_json::json!({
        "draft_id": d.id,
        "author": d.author,
        "base_version": d.base_version,
        "new_version": d.activated_version,
        "approvers": d.approvals.iter().map(|a| a.principal.as_str()).collect::<Vec<_>>(),
        "required_approvals": d.required_approvals,
        "rollback_of": d.rollback_of,
        "comment": d.comment,
    })
}

/// [`detail`] plus event-specific fields.
fn detail_with<const N: usize>(
    d: &DraftInfo,
    extra: [(&str, serde_json::Value); N],
) -> serde_json::Value {
    let mut ev = detail(d);
    if let Some(obj) = ev.as_object_mut() {
        for (key, value) in extra {
            obj.insert(key.to_string(), value);
        }
    }
    ev
}

/// Creates a draft from `sources` (validated in full first: an invalid
/// draft is never stored, so it can never be activated).
pub async fn create(
    state: &Arc<AppState>,
    request_id: &str,
    who: &Identity,
    sources: Vec<SourceFile>,
    comment: String,
    rollback_of: Option<u64>,
) -> Result<DraftInfo, GovernanceError> {
    require(state, who, ACTION_DRAFT)?;
    let draft_bundle = draft::validate(&sources, &state.issuers)?;
    let active = state.bundle.load_full();
    let roles = role_changes(&active.roles, &draft_bundle.roles);
    let required = state.governance.config.required_approvals(touched_labels(
        &roles,
        &active.roles,
        &draft_bundle.roles,
    ));
    let impact = match &state.audit_file {
        Some(path) => {
            let (path, limit) = (path.clone(), state.governance.config.impact_events);
            let active = active.clone();
            tokio::task::spawn_blocking(move || {
                let requests = impact::recorded_requests(&path, limit);
                impact::compare(&active, &draft_bundle, &requests)
            })
            .await
            .map_err(|e| GovernanceError::Internal(format!("impact analysis failed: {e}")))?
        }
        None => Default::default(),
    };
    let d = DraftInfo {
        id: draft::new_id()?,
        state: DraftState::Pending,
        author: who.principal_key(),
        comment,
        created_at: UnixTime::now().secs(),
        base_version: Some(active.version),
        rollback_of,
        required_approvals: required,
        approvals: vec![],
        rejected_by: None,
        reject_reason: None,
        activated_version: None,
        break_glass: None,
        roles,
        impact,
        sources: draft::from_sources(&sources),
    };
    let ev = detail_with(
        &d,
        [
            (
                "impact",
                serde_json::to_value(&d.impact).unwrap_or_default(),
            ),
            ("roles", serde_json::to_value(&d.roles).unwrap_or_default()),
        ],
    );
    audit(
        state,
        Some(request_id),
        "policy_draft_created",
        Some(who),
        ev,
    )
    .await?;
    draft::save(state.store.as_ref(), &d).await?;
    Metrics::count(&state.metrics.governance, "draft_created");
    Ok(d)
}

/// A draft with the sources of stored version `version`.
pub async fn rollback(
    state: &Arc<AppState>,
    request_id: &str,
    who: &Identity,
    version: u64,
    comment: String,
) -> Result<DraftInfo, GovernanceError> {
    require(state, who, ACTION_DRAFT)?;
    let stored = state
        .store
        .bundle_history()
        .await?
        .into_iter()
        .find(|b| b.version == version)
        .ok_or(GovernanceError::UnknownVersion(version))?;
    let comment = if comment.is_empty() {
        format!("rollback to v{version}")
    } else {
        comment
    };
    create(
        state,
        request_id,
        who,
        stored.sources,
        comment,
        Some(version),
    )
    .await
}

/// The active version according to the store (the source of truth shared
/// by every server).
async fn active_version(state: &AppState) -> Result<u64, GovernanceError> {
    Ok(state
        .store
        .active_bundle()
        .await?
        .map(|b| b.version)
        .unwrap_or(0))
}

/// Stores `sources` as the next version if `base` is still active, and
/// swaps it in for this server's requests. `None`: someone activated first.
pub async fn activate(
    state: &AppState,
    base: u64,
    sources: &[SourceFile],
    author: &str,
    comment: &str,
) -> Result<Option<u64>, GovernanceError> {
    // Build before storing: a bundle that cannot be loaded is never stored.
    let mut bundle = PolicyBundle::from_sources(0, sources.to_vec())
        .map_err(|e| DraftError::Invalid(e.to_string()))?;
    check_bundle(&bundle, &state.issuers).map_err(DraftError::Invalid)?;
    let Some(version) = state
        .store
        .activate_bundle_if(Some(base), sources, author, comment)
        .await?
    else {
        return Ok(None);
    };
    bundle.version = version;
    install(state, bundle);
    Ok(Some(version))
}

/// The draft's base version, provided it is still the active one: a draft
/// made against an older version must never activate (its diff and impact
/// describe another change).
async fn current_base(state: &AppState, d: &DraftInfo) -> Result<u64, GovernanceError> {
    let base = d.base_version.unwrap_or(0);
    let active = active_version(state).await?;
    if active != base {
        return Err(GovernanceError::Stale {
            id: d.id.clone(),
            base,
            active,
        });
    }
    Ok(base)
}

/// [`activate`]s the draft's sources on `base`; `Stale` when another
/// activation won the compare-and-set.
async fn activate_draft(
    state: &AppState,
    d: &DraftInfo,
    base: u64,
    author: &str,
    comment: &str,
) -> Result<u64, GovernanceError> {
    let sources = draft::to_sources(&d.sources);
    match activate(state, base, &sources, author, comment).await? {
        Some(version) => Ok(version),
        None => Err(GovernanceError::Stale {
            id: d.id.clone(),
            base,
            active: active_version(state).await?,
        }),
    }
}

/// Makes `bundle` the one this server's requests see (unless a newer one
/// is already installed, e.g. by the sync loop).
pub fn install(state: &AppState, bundle: PolicyBundle) {
    let version = bundle.version;
    let new = Arc::new(bundle);
    state.bundle.rcu(|cur| {
        if cur.version >= version {
            cur.clone()
        } else {
            new.clone()
        }
    });
    state
        .metrics
        .policy_version
        .set(i64::try_from(state.bundle.load().version).unwrap_or(i64::MAX));
}

/// Approves draft `id` as `who`; activates when the count is reached, or at
/// once with break-glass.
pub async fn approve(
    state: &Arc<AppState>,
    request_id: &str,
    who: &Identity,
    id: &str,
    req: ApproveRequest,
) -> Result<ApproveResponse, GovernanceError> {
    require(state, who, ACTION_APPROVE)?;
    let _guard = state.governance.drafts_lock.lock().await;
    let mut d = draft::load(state.store.as_ref(), id).await?;
    let me = who.principal_key();
    let now = UnixTime::now().secs();
    if req.break_glass {
        return break_glass(state, request_id, who, d, req.reason.unwrap_or_default()).await;
    }
    if d.author == me {
        return Err(GovernanceError::SelfApproval(d.id));
    }
    if d.approvals.iter().any(|a| a.principal == me) {
        return Err(GovernanceError::AlreadyApproved(d.id));
    }
    match d.state {
        DraftState::Pending => {}
        DraftState::BreakGlass => return confirm_break_glass(state, request_id, who, d).await,
        other => {
            return Err(GovernanceError::NotPending {
                id: d.id,
                state: other.as_str(),
            })
        }
    }
    let base = current_base(state, &d).await?;
    d.approvals.push(Approval {
        principal: me,
        at: now,
    });
    let reached = d.approvals.len() >= d.required_approvals as usize;
    audit(
        state,
        Some(request_id),
        "policy_draft_approved",
        Some(who),
        detail(&d),
    )
    .await?;
    if !reached {
        draft::save(state.store.as_ref(), &d).await?;
        Metrics::count(&state.metrics.governance, "approved");
        return Ok(ApproveResponse {
            draft: d,
            activated_version: None,
        });
    }
    let comment = format!("{} (draft {})", d.comment, d.id);
    let version = activate_draft(state, &d, base, &d.author, &comment).await?;
    d.state = DraftState::Activated;
    d.activated_version = Some(version);
    draft::save(state.store.as_ref(), &d).await?;
    Metrics::count(&state.metrics.governance, "activated");
    if audit(
        state,
        Some(request_id),
        idmint_audit::kinds::POLICY_ACTIVATED,
        Some(who),
        detail(&d),
    )
    .await
    .is_err()
    {
        tracing::error!(draft = %d.id, version, "policy activated but its audit event could not be written");
    }
    Ok(ApproveResponse {
        draft: d,
        activated_version: Some(version),
    })
}

/// Emergency activation by one admin: in force at once, reverted by the
/// sync loop at `expires_at` unless other admins confirm it in time.
async fn break_glass(
    state: &Arc<AppState>,
    request_id: &str,
    who: &Identity,
    mut d: DraftInfo,
    reason: String,
) -> Result<ApproveResponse, GovernanceError> {
    if reason.trim().is_empty() {
        return Err(GovernanceError::BadRequest(
            "break-glass needs --reason: say why the two-person rule cannot wait".into(),
        ));
    }
    if d.state != DraftState::Pending {
        return Err(GovernanceError::NotPending {
            id: d.id,
            state: d.state.as_str(),
        });
    }
    let base = current_base(state, &d).await?;
    let now = UnixTime::now().secs();
    let ttl = state.governance.config.break_glass_ttl.as_secs();
    let ev = detail_with(
        &d,
        [
            ("break_glass_reason", reason.clone().into()),
            ("break_glass_ttl_seconds", ttl.into()),
        ],
    );
    audit(state, Some(request_id), "policy_break_glass", Some(who), ev).await?;
    let comment = format!(
        "BREAK-GLASS: {} (draft {}; reason: {reason})",
        d.comment, d.id
    );
    let version = activate_draft(state, &d, base, &who.principal_key(), &comment).await?;
    d.state = DraftState::BreakGlass;
    d.activated_version = Some(version);
    d.break_glass = Some(BreakGlassInfo {
        principal: who.principal_key(),
        reason,
        at: now,
        expires_at: now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
        previous_version: base,
        activated_version: version,
        confirmed_at: None,
        reverted_to: None,
    });
    draft::save(state.store.as_ref(), &d).await?;
    Metrics::count(&state.metrics.governance, "break_glass");
    tracing::warn!(draft = %d.id, version, by = %who.principal_key(), "BREAK-GLASS policy activation; reverts unless approved in time");
    Ok(ApproveResponse {
        draft: d,
        activated_version: Some(version),
    })
}

/// An approval of a draft in force through break-glass: once enough
/// admins other than the author and the break-glass actor approved, it
/// stays.
async fn confirm_break_glass(
    state: &Arc<AppState>,
    request_id: &str,
    who: &Identity,
    mut d: DraftInfo,
) -> Result<ApproveResponse, GovernanceError> {
    let me = who.principal_key();
    let Some(bg) = d.break_glass.clone() else {
        return Err(GovernanceError::Internal(format!(
            "draft {} is in break-glass state without break-glass details",
            d.id
        )));
    };
    if bg.principal == me {
        return Err(GovernanceError::SelfApproval(d.id));
    }
    let now = UnixTime::now().secs();
    if now >= bg.expires_at {
        return Err(GovernanceError::NotPending {
            id: d.id,
            state: "expired (being reverted)",
        });
    }
    d.approvals.push(Approval {
        principal: me,
        at: now,
    });
    let confirmed = d
        .approvals
        .iter()
        .filter(|a| a.principal != bg.principal)
        .count()
        >= d.required_approvals as usize;
    let event = if confirmed {
        "policy_break_glass_confirmed"
    } else {
        "policy_draft_approved"
    };
    audit(state, Some(request_id), event, Some(who), detail(&d)).await?;
    if confirmed {
        d.state = DraftState::Activated;
        if let Some(b) = d.break_glass.as_mut() {
            b.confirmed_at = Some(now);
        }
        Metrics::count(&state.metrics.governance, "break_glass_confirmed");
    }
    draft::save(state.store.as_ref(), &d).await?;
    Ok(ApproveResponse {
        draft: d,
        activated_version: None,
    })
}

/// Rejects a pending draft (approvers, or its author withdrawing it).
pub async fn reject(
    state: &Arc<AppState>,
    request_id: &str,
    who: &Identity,
    id: &str,
    reason: String,
) -> Result<DraftInfo, GovernanceError> {
    if reason.trim().is_empty() {
        return Err(GovernanceError::BadRequest(
            "rejecting needs --reason, so the author knows what to change".into(),
        ));
    }
    let _guard = state.governance.drafts_lock.lock().await;
    let mut d = draft::load(state.store.as_ref(), id).await?;
    let me = who.principal_key();
    if d.author != me {
        require(state, who, ACTION_APPROVE)?;
    }
    if d.state != DraftState::Pending {
        return Err(GovernanceError::NotPending {
            id: d.id,
            state: d.state.as_str(),
        });
    }
    d.state = DraftState::Rejected;
    d.rejected_by = Some(Approval {
        principal: me,
        at: UnixTime::now().secs(),
    });
    d.reject_reason = Some(reason);
    let ev = detail_with(&d, [("reason", d.reject_reason.clone().into())]);
    audit(
        state,
        Some(request_id),
        "policy_draft_rejected",
        Some(who),
        ev,
    )
    .await?;
    draft::save(state.store.as_ref(), &d).await?;
    Metrics::count(&state.metrics.governance, "rejected");
    Ok(d)
}

/// Reverts every break-glass activation whose window passed unconfirmed.
/// Safe to run on every server at once: the revert is a compare-and-set
/// on the break-glass version, so exactly one server performs it, and an
/// activation made after the break-glass one is never overwritten.
pub async fn revert_expired(state: &AppState) -> Result<(), GovernanceError> {
    let now = UnixTime::now().secs();
    // The index names only drafts in force through break-glass, so this
    // reads a few tiny blobs per tick, not every draft.
    let expired = draft::expired_break_glass(state.store.as_ref(), now).await?;
    for id in expired {
        let _guard = state.governance.drafts_lock.lock().await;
        let mut d = match draft::load(state.store.as_ref(), &id).await {
            Ok(d) => d,
            Err(draft::DraftError::NotFound(_)) => {
                // Pruned or never saved: drop the dangling entry.
                draft::delete(state.store.as_ref(), &id).await?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let Some(mut bg) = d.break_glass.clone() else {
            draft::index_break_glass(state.store.as_ref(), &d).await?;
            continue;
        };
        if d.state != DraftState::BreakGlass || bg.expires_at > now {
            // Confirmed meanwhile (or extended): refresh the entry.
            draft::index_break_glass(state.store.as_ref(), &d).await?;
            continue;
        }
        let previous = state
            .store
            .bundle_history()
            .await?
            .into_iter()
            .find(|b| b.version == bg.previous_version)
            .ok_or(GovernanceError::UnknownVersion(bg.previous_version))?;
        let comment = format!(
            "break-glass draft {} expired unconfirmed: restoring v{}",
            d.id, bg.previous_version
        );
        let reverted = activate(
            state,
            bg.activated_version,
            &previous.sources,
            "break-glass-expiry",
            &comment,
        )
        .await?;
        // Another server may have reverted it first; it then saved the draft.
        let current = draft::load(state.store.as_ref(), &d.id).await?;
        if current.state != DraftState::BreakGlass {
            continue;
        }
        bg.reverted_to = reverted;
        d.break_glass = Some(bg.clone());
        d.state = DraftState::Reverted;
        let ev = detail_with(
            &d,
            [
                ("break_glass_by", bg.principal.clone().into()),
                ("restored_version", bg.previous_version.into()),
                ("reverted_to", reverted.into()),
            ],
        );
        if audit(state, None, "policy_break_glass_expired", None, ev)
            .await
            .is_err()
        {
            tracing::error!(draft = %d.id, "break-glass expiry could not be audited");
        }
        draft::save(state.store.as_ref(), &d).await?;
        Metrics::count(&state.metrics.governance, "break_glass_reverted");
        match reverted {
            Some(v) => {
                tracing::warn!(draft = %d.id, version = v, restored = bg.previous_version, "break-glass activation expired unconfirmed; previous policy restored")
            }
            None => {
                tracing::error!(draft = %d.id, "break-glass activation expired but the active policy changed since; nothing was reverted, review `idmint policy history`")
            }
        }
    }
    Ok(())
}
