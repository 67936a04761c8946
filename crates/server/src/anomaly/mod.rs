//! Anomaly signals at issuance: the first use of a role by an identity, a
//! request from a network the identity has not used before, and a burst of
//! issuances far above the identity's own recent baseline.
//!
//! Each signal is an `anomaly` audit event and a count in
//! `idmint_anomalies_total{kind, action}`; per role pattern it can instead
//! require a second admin's approval before the credential is issued
//! (`[[anomaly.rule]] action = "require_approval"`).
//!
//! "Seen" state (identity × role, identity × network) lives in the store as
//! small blobs named by a hash, so every server on one database shares it.
//! The hot path stays read-only after warm-up: a positive answer is cached
//! in memory (seen never becomes unseen), a blob is read only on a cache
//! miss, and written only on first sight, with insert-if-absent, so of two
//! servers seeing the same first use at once exactly one reports it.
//!
//! Burst state is per server and in memory, like the rate buckets in
//! `crate::limits`: a burst spread evenly over N servers is seen at 1/N of
//! its rate on each.

pub mod approvals;
pub mod config;

pub use config::{AnomalyAction, AnomalySection, Signal};

use crate::audit_events::audit_identity;
use crate::issuance::IssueFailure;
use crate::state::AppState;
use idmint_audit::AuditEvent;
use idmint_core::{Identity, UnixTime};
use idmint_store::Store;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Blob-name prefix of "seen" markers: `anomaly/seen/<sha256 hex>`.
pub const SEEN_PREFIX: &str = "anomaly/seen/";
/// Cached seen markers per server; past this the cache starts over (which
/// costs store reads, never correctness).
const MAX_CACHED_SEEN: usize = 200_000;
/// Identities whose issuance history a server keeps for burst detection.
const MAX_TRACKED_IDENTITIES: usize = 50_000;
/// Timestamps kept per identity; a longer history is truncated (oldest
/// first), which can only make the baseline look lower.
const MAX_HISTORY: usize = 10_000;

/// The per-server anomaly state plus the `[anomaly]` settings.
pub struct Anomalies {
    config: Option<AnomalySection>,
    seen: Mutex<HashSet<[u8; 32]>>,
    rates: Mutex<HashMap<String, History>>,
}

struct History {
    first: Instant,
    times: VecDeque<Instant>,
    last_burst: Option<Instant>,
}

/// What the burst detector says about one issuance.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Burst {
    bursting: bool,
    /// First detection in this burst window (the one to audit).
    newly: bool,
    recent: usize,
    baseline_per_window: f64,
}

/// One signal this request raised.
struct Hit {
    signal: Signal,
    action: AnomalyAction,
    detail: serde_json::Value,
    seen: Option<[u8; 32]>,
}

impl Anomalies {
    pub fn new(config: Option<AnomalySection>) -> Result<Self, String> {
        if let Some(c) = &config {
            c.validate()?;
        }
        Ok(Self {
            config,
            seen: Mutex::new(HashSet::new()),
            rates: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> Option<&AnomalySection> {
        self.config.as_ref()
    }

    /// Approval lifetime in seconds (pending wait and approved retry).
    pub fn approval_ttl_secs(&self) -> u64 {
        self.config
            .as_ref()
            .map(|c| c.approval_ttl.as_secs())
            .unwrap_or(900)
    }

    fn cached(&self, key: &[u8; 32]) -> bool {
        self.seen.lock().map(|s| s.contains(key)).unwrap_or(false)
    }

    fn cache(&self, key: [u8; 32]) {
        if let Ok(mut s) = self.seen.lock() {
            if s.len() >= MAX_CACHED_SEEN {
                s.clear();
            }
            s.insert(key);
        }
    }

    /// Whether `key` was seen before: memory first, then the store.
    async fn is_seen(&self, store: &dyn Store, key: &[u8; 32]) -> Result<bool, String> {
        if self.cached(key) {
            return Ok(true);
        }
        let found = store
            .get_blob(&seen_blob(key))
            .await
            .map_err(|e| e.to_string())?
            .is_some();
        if found {
            self.cache(*key);
        }
        Ok(found)
    }

    /// Records `key` as seen; `true` when this call was the first anywhere.
    async fn mark_seen(
        &self,
        store: &dyn Store,
        key: &[u8; 32],
        now: UnixTime,
    ) -> Result<bool, String> {
        let nonce = idmint_core::ids::random_hex(8).map_err(|e| e.to_string())?;
        let value = format!("{{\"first_seen\":{},\"nonce\":\"{nonce}\"}}", now.secs());
        let stored = store
            .put_blob_if_absent(&seen_blob(key), value.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        self.cache(*key);
        Ok(stored == value.as_bytes())
    }

    /// Adds one issuance by `principal` at `now` and tests for a burst.
    fn record_rate(&self, cfg: &AnomalySection, principal: &str, now: Instant) -> Burst {
        let window = cfg.burst_window.as_duration();
        let baseline = cfg.baseline_window.as_duration();
        let Ok(mut rates) = self.rates.lock() else {
            return Burst {
                bursting: false,
                newly: false,
                recent: 0,
                baseline_per_window: 0.0,
            };
        };
        if rates.len() >= MAX_TRACKED_IDENTITIES && !rates.contains_key(principal) {
            rates.retain(|_, h| {
                h.times
                    .back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < baseline)
            });
            if rates.len() >= MAX_TRACKED_IDENTITIES {
                tracing::warn!(
                    tracked = rates.len(),
                    "anomaly burst history is full; starting over (bursts in progress may go unnoticed)"
                );
                rates.clear();
            }
        }
        let h = rates.entry(principal.to_string()).or_insert(History {
            first: now,
            times: VecDeque::new(),
            last_burst: None,
        });
        burst_step(h, now, window, baseline, cfg.burst_factor, cfg.burst_min)
    }
}

/// The pure burst arithmetic, separate so it can be tested with a fake
/// clock: the count in the last `window` against the rate over the rest
/// of the history (up to `baseline`), scaled to one window.
fn burst_step(
    h: &mut History,
    now: Instant,
    window: Duration,
    baseline: Duration,
    factor: f64,
    min: u32,
) -> Burst {
    while h
        .times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= baseline)
    {
        h.times.pop_front();
    }
    if h.times.len() >= MAX_HISTORY {
        h.times.pop_front();
    }
    h.times.push_back(now);
    let recent = h
        .times
        .iter()
        .rev()
        .take_while(|t| now.saturating_duration_since(**t) < window)
        .count();
    let older = h.times.len() - recent;
    let span = now
        .saturating_duration_since(h.first)
        .min(baseline)
        .saturating_sub(window);
    let baseline_per_window = if span.is_zero() {
        0.0
    } else {
        older as f64 * window.as_secs_f64() / span.as_secs_f64()
    };
    let bursting = recent >= min as usize && recent as f64 > factor * baseline_per_window;
    let newly = bursting
        && h.last_burst
            .is_none_or(|t| now.saturating_duration_since(t) >= window);
    if newly {
        h.last_burst = Some(now);
    }
    Burst {
        bursting,
        newly,
        recent,
        baseline_per_window,
    }
}

/// The network an address belongs to for the `new_network` signal: the
/// /24 of an IPv4 address, the /64 of an IPv6 one (IPv4-mapped IPv6 is
/// treated as IPv4).
pub fn network_of(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{net}/64")
        }
    }
}

/// SHA-256 over length-prefixed fields, so no choice of principal or role
/// (both attacker-influenced strings) can collide with another split.
pub(crate) fn digest_fields(domain: &str, fields: &[&str]) -> ring::digest::Digest {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for f in std::iter::once(&domain).chain(fields) {
        ctx.update(&(f.len() as u64).to_le_bytes());
        ctx.update(f.as_bytes());
    }
    ctx.finish()
}

fn seen_key(signal: Signal, principal: &str, value: &str) -> [u8; 32] {
    let digest = digest_fields(
        "idmint-anomaly-seen-v1",
        &[signal.as_str(), principal, value],
    );
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn seen_blob(key: &[u8; 32]) -> String {
    format!("{SEEN_PREFIX}{}", idmint_core::ids::hex(key))
}

/// One issuance about to happen, after policy allowed it.
pub struct Screen<'a> {
    pub identity: &'a Identity,
    pub role: &'a str,
    pub source_ip: Option<IpAddr>,
    pub request_id: &'a str,
}

/// Runs the signals for an allowed issuance. `Ok` lets it proceed (after
/// auditing any `audit` signals); `Err(ApprovalRequired)` refuses it until
/// a second admin approves. Store and audit failures fail closed.
pub async fn screen(state: &AppState, s: &Screen<'_>) -> Result<(), IssueFailure> {
    let Some(cfg) = state.anomalies.config() else {
        return Ok(());
    };
    let store = state.store.as_ref();
    let principal = s.identity.principal_key();
    let now = UnixTime::now();
    let store_err = |e: String| IssueFailure::Store(format!("anomaly state: {e}"));
    let mut hits = Vec::new();

    if let Some(action) = cfg.action_for(s.role, Signal::Burst) {
        let b = state.anomalies.record_rate(cfg, &principal, Instant::now());
        if b.bursting && (b.newly || action == AnomalyAction::RequireApproval) {
            hits.push(Hit {
                signal: Signal::Burst,
                action,
                detail: serde_json::json!({
                    "recent": b.recent,
                    "window_seconds": cfg.burst_window.as_secs(),
                    "baseline_per_window": (b.baseline_per_window * 100.0).round() / 100.0,
                    "factor": cfg.burst_factor,
                }),
                seen: None,
            });
        }
    }
    if let Some(action) = cfg.action_for(s.role, Signal::FirstRoleUse) {
        let key = seen_key(Signal::FirstRoleUse, &principal, s.role);
        if !state
            .anomalies
            .is_seen(store, &key)
            .await
            .map_err(store_err)?
        {
            hits.push(Hit {
                signal: Signal::FirstRoleUse,
                action,
                detail: serde_json::json!({}),
                seen: Some(key),
            });
        }
    }
    if let (Some(ip), Some(action)) = (s.source_ip, cfg.action_for(s.role, Signal::NewNetwork)) {
        let net = network_of(ip);
        let key = seen_key(Signal::NewNetwork, &principal, &net);
        if !state
            .anomalies
            .is_seen(store, &key)
            .await
            .map_err(store_err)?
        {
            hits.push(Hit {
                signal: Signal::NewNetwork,
                action,
                detail: serde_json::json!({ "network": net }),
                seen: Some(key),
            });
        }
    }
    if hits.is_empty() {
        return Ok(());
    }

    let gated: Vec<String> = hits
        .iter()
        .filter(|h| h.action == AnomalyAction::RequireApproval)
        .map(|h| h.signal.as_str().to_string())
        .collect();
    let approval_err = |e: approvals::ApprovalError| IssueFailure::Store(e.to_string());
    if !gated.is_empty() {
        let taken = approvals::take_approved(store, &principal, s.role, now)
            .await
            .map_err(approval_err)?;
        match taken {
            Some(a) => {
                // Approved: the gated signals are settled; record them as
                // seen and say who let this issuance through.
                for h in hits
                    .iter()
                    .filter(|h| h.action == AnomalyAction::RequireApproval)
                {
                    if let Some(key) = &h.seen {
                        state
                            .anomalies
                            .mark_seen(store, key, now)
                            .await
                            .map_err(store_err)?;
                    }
                }
                let ev = AuditEvent {
                    request_id: Some(s.request_id.to_string()),
                    event: "anomaly_approval_used".into(),
                    outcome: "success".into(),
                    identity: Some(audit_identity(s.identity)),
                    action: Some("issue".into()),
                    role: Some(s.role.to_string()),
                    source_ip: s.source_ip.map(|i| i.to_string()),
                    detail: Some(serde_json::json!({
                        "approval_id": a.id,
                        "approved_by": a.approved_by,
                        "approved_at": a.approved_at,
                        "signals": gated,
                        "requested_by_request": a.request_id,
                    })),
                    ..Default::default()
                };
                state
                    .audit
                    .append(ev)
                    .await
                    .map_err(|_| IssueFailure::Audit)?;
                let audit_only: Vec<Hit> = hits
                    .into_iter()
                    .filter(|h| h.action == AnomalyAction::Audit)
                    .collect();
                return report(state, s, audit_only, None, now).await;
            }
            None => {
                let (approval, created) = approvals::request(
                    store,
                    s.identity,
                    s.role,
                    gated.clone(),
                    s.request_id,
                    now,
                    state.anomalies.approval_ttl_secs(),
                )
                .await
                .map_err(approval_err)?;
                if created {
                    // Report every signal of this request once, with the
                    // approval it opened; retries while it is pending are
                    // audited as refusals (`approval_required`) only.
                    report(state, s, hits, Some(&approval.id), now).await?;
                } else {
                    let audit_only: Vec<Hit> = hits
                        .into_iter()
                        .filter(|h| h.action == AnomalyAction::Audit)
                        .collect();
                    report(state, s, audit_only, None, now).await?;
                }
                return Err(IssueFailure::ApprovalRequired {
                    id: approval.id,
                    signals: gated,
                    expires_at: approval.expires_at,
                });
            }
        }
    }
    report(state, s, hits, None, now).await
}

/// Audits and counts `hits`. Audit-action signals with a seen marker are
/// marked first and reported only by the server that marked them first;
/// gated ones are reported as they are (they are marked on approval).
async fn report(
    state: &AppState,
    s: &Screen<'_>,
    hits: Vec<Hit>,
    approval_id: Option<&str>,
    now: UnixTime,
) -> Result<(), IssueFailure> {
    let store = state.store.as_ref();
    for h in hits {
        if h.action == AnomalyAction::Audit {
            if let Some(key) = &h.seen {
                let first = state
                    .anomalies
                    .mark_seen(store, key, now)
                    .await
                    .map_err(|e| IssueFailure::Store(format!("anomaly state: {e}")))?;
                if !first {
                    continue;
                }
            }
        }
        let mut detail = serde_json::json!({
            "kind": h.signal.as_str(),
            "action": h.action.as_str(),
        });
        if let (Some(d), serde_json::Value::Object(extra)) = (detail.as_object_mut(), h.detail) {
            d.extend(extra);
            if let Some(id) = approval_id {
                d.insert("approval_id".into(), id.into());
            }
        }
        let ev = AuditEvent {
            request_id: Some(s.request_id.to_string()),
            event: "anomaly".into(),
            outcome: match h.action {
                AnomalyAction::Audit => "success".into(),
                AnomalyAction::RequireApproval => "denied".into(),
            },
            identity: Some(audit_identity(s.identity)),
            action: Some("issue".into()),
            role: Some(s.role.to_string()),
            source_ip: s.source_ip.map(|i| i.to_string()),
            detail: Some(detail),
            ..Default::default()
        };
        state
            .audit
            .append(ev)
            .await
            .map_err(|_| IssueFailure::Audit)?;
        state
            .metrics
            .anomalies
            .get_or_create(&crate::metrics::AnomalyLabel {
                kind: h.signal.as_str(),
                action: h.action.as_str(),
            })
            .inc();
        tracing::info!(
            kind = h.signal.as_str(),
            action = h.action.as_str(),
            role = s.role,
            "anomaly signal at issuance"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_slash_24_and_slash_64() {
        let n = |s: &str| network_of(s.parse().unwrap());
        assert_eq!(n("10.1.2.3"), "10.1.2.0/24");
        assert_eq!(n("10.1.2.250"), "10.1.2.0/24");
        assert_ne!(n("10.1.3.1"), n("10.1.2.1"));
        assert_eq!(n("::ffff:10.1.2.3"), "10.1.2.0/24");
        assert_eq!(n("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(n("2001:db8:1:2:ffff::1"), "2001:db8:1:2::/64");
        assert_ne!(n("2001:db8:1:3::1"), n("2001:db8:1:2::1"));
    }

    #[test]
    fn seen_keys_separate_signals_and_identities() {
        let a = seen_key(Signal::FirstRoleUse, "iss|a", "db");
        assert_ne!(a, seen_key(Signal::NewNetwork, "iss|a", "db"));
        assert_ne!(a, seen_key(Signal::FirstRoleUse, "iss|b", "db"));
        assert_ne!(
            seen_key(Signal::FirstRoleUse, "iss|a\0x", "y"),
            seen_key(Signal::FirstRoleUse, "iss|a", "x\0y")
        );
    }

    #[test]
    fn a_burst_is_far_above_the_identitys_own_baseline() {
        let start = Instant::now();
        let mut h = History {
            first: start,
            times: VecDeque::new(),
            last_burst: None,
        };
        let window = Duration::from_secs(60);
        let baseline = Duration::from_secs(3600);
        // A steady 2 per minute for 50 minutes: never a burst.
        for i in 0..100u64 {
            let b = burst_step(
                &mut h,
                start + Duration::from_secs(i * 30),
                window,
                baseline,
                5.0,
                5,
            );
            assert!(!b.bursting, "steady rate at step {i}: {b:?}");
        }
        // Then 30 in one minute: 15× the baseline of ~2 per minute.
        let t0 = start + Duration::from_secs(3000);
        let mut first = None;
        let mut newly = 0;
        for i in 0..30u64 {
            let b = burst_step(
                &mut h,
                t0 + Duration::from_secs(i),
                window,
                baseline,
                5.0,
                5,
            );
            if b.bursting && first.is_none() {
                first = Some(i);
            }
            newly += usize::from(b.newly);
        }
        let first = first.expect("the burst is detected");
        assert!(first >= 9, "not before 5× baseline: {first}");
        assert_eq!(newly, 1, "one report per burst window");
    }

    #[test]
    fn a_new_identity_needs_burst_min() {
        let start = Instant::now();
        let mut h = History {
            first: start,
            times: VecDeque::new(),
            last_burst: None,
        };
        let w = Duration::from_secs(60);
        let base = Duration::from_secs(3600);
        for i in 0..4u64 {
            assert!(
                !burst_step(&mut h, start + Duration::from_millis(i), w, base, 3.0, 5).bursting
            );
        }
        assert!(burst_step(&mut h, start + Duration::from_millis(5), w, base, 3.0, 5).bursting);
    }
}
