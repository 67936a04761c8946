//! Prometheus metrics at `/metrics`.
//!
//! Counters are updated on the request path (lock-free atomics); values that
//! other components already count (JWKS fetches, audit queue) are copied into
//! gauges at scrape time instead of being double-counted.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuerLabel {
    pub issuer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabel {
    pub auth: String,
}

/// A secondary audit sink, by its configured name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    pub sink: String,
}

/// An anomaly signal and what it did.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnomalyLabel {
    pub kind: &'static str,
    pub action: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub logins: Family<OutcomeLabel, Counter>,
    pub decisions: Family<OutcomeLabel, Counter>,
    pub token_exchanges: Family<OutcomeLabel, Counter>,
    pub issuance_seconds: Family<IssuerLabel, Histogram>,
    pub revocations: Family<OutcomeLabel, Counter>,
    pub jwks_fetches: Family<AuthLabel, Gauge>,
    pub jwks_fetch_failures: Family<AuthLabel, Gauge>,
    pub jwks_stale: Family<AuthLabel, Gauge>,
    pub audit_queue: Gauge,
    pub audit_written: Gauge,
    pub audit_failures: Gauge,
    /// Secondary audit sinks (copied from the audit log at scrape time):
    /// failed deliveries, dropped batches, spooled bytes, 0/1 health.
    pub audit_sink_failures: Family<SinkLabel, Counter>,
    pub audit_sink_dropped: Family<SinkLabel, Counter>,
    pub audit_sink_spool_bytes: Family<SinkLabel, Gauge>,
    pub audit_sink_healthy: Family<SinkLabel, Gauge>,
    pub policy_version: Gauge,
    /// Governance actions by kind (`draft_created`, `activated`,
    /// `break_glass`, `break_glass_reverted`, …): break-glass is alerted on.
    pub governance: Family<OutcomeLabel, Counter>,
    /// Anomaly signals at issuance by kind and action.
    pub anomalies: Family<AnomalyLabel, Counter>,
}

fn latency_histogram() -> Histogram {
    // 50µs … ~1.6s
    Histogram::new(exponential_buckets(0.00005, 2.0, 16))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("idmint");
        let logins = Family::<OutcomeLabel, Counter>::default();
        let decisions = Family::<OutcomeLabel, Counter>::default();
        let token_exchanges = Family::<OutcomeLabel, Counter>::default();
        let issuance_seconds = Family::<IssuerLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let revocations = Family::<OutcomeLabel, Counter>::default();
        let jwks_fetches = Family::<AuthLabel, Gauge>::default();
        let jwks_fetch_failures = Family::<AuthLabel, Gauge>::default();
        let jwks_stale = Family::<AuthLabel, Gauge>::default();
        let audit_queue = Gauge::default();
        let audit_written = Gauge::default();
        let audit_failures = Gauge::default();
        let audit_sink_failures = Family::<SinkLabel, Counter>::default();
        let audit_sink_dropped = Family::<SinkLabel, Counter>::default();
        let audit_sink_spool_bytes = Family::<SinkLabel, Gauge>::default();
        let audit_sink_healthy = Family::<SinkLabel, Gauge>::default();
        let policy_version = Gauge::default();
        let governance = Family::<OutcomeLabel, Counter>::default();
        let anomalies = Family::<AnomalyLabel, Counter>::default();
        registry.register("logins", "Login attempts by outcome", logins.clone());
        registry.register(
            "decisions",
            "Policy decisions by outcome",
            decisions.clone(),
        );
        registry.register(
            "token_exchanges",
            "RFC 8693 token exchanges by outcome",
            token_exchanges.clone(),
        );
        registry.register(
            "issuance_seconds",
            "Credential issuance latency (policy + mint + lease + audit)",
            issuance_seconds.clone(),
        );
        registry.register(
            "revocations",
            "Lease revocations by outcome",
            revocations.clone(),
        );
        registry.register(
            "jwks_fetches",
            "JWKS fetches per auth config",
            jwks_fetches.clone(),
        );
        registry.register(
            "jwks_fetch_failures",
            "Failed JWKS fetches per auth config",
            jwks_fetch_failures.clone(),
        );
        registry.register(
            "jwks_stale",
            "1 when an auth config is serving stale keys",
            jwks_stale.clone(),
        );
        registry.register(
            "audit_queue_depth",
            "Audit events waiting to be made durable",
            audit_queue.clone(),
        );
        registry.register(
            "audit_events_written",
            "Audit events made durable",
            audit_written.clone(),
        );
        registry.register(
            "audit_write_failures",
            "Audit write failures (fail-closed)",
            audit_failures.clone(),
        );
        registry.register(
            "audit_sink_failures",
            "Failed deliveries to a secondary audit sink (best-effort; the primary log is unaffected)",
            audit_sink_failures.clone(),
        );
        registry.register(
            "audit_sink_dropped",
            "Batches a secondary audit sink dropped (queue or spool full)",
            audit_sink_dropped.clone(),
        );
        registry.register(
            "audit_sink_spool_bytes",
            "Bytes waiting in a webhook sink's on-disk spool",
            audit_sink_spool_bytes.clone(),
        );
        registry.register(
            "audit_sink_healthy",
            "1 when the last delivery to a secondary audit sink succeeded",
            audit_sink_healthy.clone(),
        );
        registry.register(
            "policy_bundle_version",
            "Active policy bundle version",
            policy_version.clone(),
        );
        registry.register(
            "policy_governance",
            "Policy governance actions by kind; alert on outcome=\"break_glass\"",
            governance.clone(),
        );
        registry.register(
            "anomalies",
            "Anomaly signals at issuance by kind (first_role_use, new_network, burst) and action (audit, require_approval)",
            anomalies.clone(),
        );
        Self {
            registry,
            logins,
            decisions,
            token_exchanges,
            issuance_seconds,
            revocations,
            jwks_fetches,
            jwks_fetch_failures,
            jwks_stale,
            audit_queue,
            audit_written,
            audit_failures,
            audit_sink_failures,
            audit_sink_dropped,
            audit_sink_spool_bytes,
            audit_sink_healthy,
            policy_version,
            governance,
            anomalies,
        }
    }

    pub fn count(family: &Family<OutcomeLabel, Counter>, outcome: &'static str) {
        family.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
