//! Shared server state: everything a request handler needs, built once at
//! start-up (see `startup.rs`).

use crate::config::SessionSection;
use crate::demo_idp::DemoIdp;
use crate::metrics::Metrics;
use arc_swap::ArcSwap;
use idmint_audit::{AuditLog, Fingerprinter};
use idmint_authn::OidcAuthenticator;
use idmint_core::session::SessionSealer;
use idmint_core::{Identity, IdentityKind, PolicyBundle, Ttl, UnixTime};
use idmint_issuers::{Issuer, KeyRing};
use idmint_store::Store;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Longest session a person gets (8 h): a working day, so a stolen laptop's
/// cached session dies overnight.
pub const MAX_HUMAN_SESSION_SECS: u64 = 8 * 3600;

pub struct AppState {
    /// The active policy bundle. Swapped atomically: a request loads one
    /// snapshot and uses it throughout, so it never sees a mix of versions.
    pub bundle: ArcSwap<PolicyBundle>,
    pub oidc: OidcAuthenticator,
    pub sessions: SessionSealer,
    pub denylist: Denylist,
    pub issuers: HashMap<String, Arc<dyn Issuer>>,
    pub store: Arc<dyn Store>,
    pub audit: AuditLog,
    pub fingerprints: Fingerprinter,
    pub keys: Arc<KeyRing>,
    /// Seals secrets at rest (target admin passwords on rotation).
    pub envelope: idmint_store::Envelope,
    /// `iss` of tokens idmint signs, base of the discovery document.
    pub public_url: String,
    pub session: SessionSection,
    pub metrics: Metrics,
    pub demo_idp: Option<DemoIdp>,
    /// The audit file, for `audit trace` over the API.
    pub audit_file: Option<std::path::PathBuf>,
    /// Policy drafts and approvals (`[governance]`).
    pub governance: crate::governance::Governance,
    /// Issuance rate limits and lease quotas (`[limits]`).
    pub limits: crate::limits::Limiter,
    /// Anomaly signals at issuance and their approvals (`[anomaly]`).
    pub anomalies: crate::anomaly::Anomalies,
    /// Groups from the IdP's userinfo for people whose ID token has none.
    pub userinfo: idmint_authn::userinfo::Userinfo,
    /// SSH issuers: CAs, hosts, grant boards, enrolled agents.
    pub ssh: crate::ssh::SshRuntime,
    /// `[[auth.approle]]` roles, the secret-id hasher and login throttle.
    pub approles: idmint_authn::AppRoles,
    /// `[[auth.mtls]]` methods (CA sets and CRLs), also the source of the
    /// TLS listener's client-certificate verifier.
    pub mtls: Arc<idmint_authn::MtlsMethods>,
    /// Trust bundles of the `[[issuer.x509]]` CAs (`GET /api/v1/x509/bundle`).
    pub x509_bundles: idmint_proto::X509Bundles,
    /// `[[auth.aws_iam]]` methods and the client that forwards to STS.
    pub aws_iam: crate::aws_iam::AwsIamLogins,
    /// `[[auth.unix]]` methods: local-socket and host-attested process logins.
    pub unix: idmint_authn::UnixMethods,
    /// Reads the peers of the Unix socket (`[server] unix_socket`) from /proc.
    pub procfs: Arc<idmint_procid::ProcFs>,
    /// This machine's host name: the issuer of local-socket identities
    /// (`unix://HOST`).
    pub host_name: String,
}

impl AppState {
    /// Session lifetime for an identity. For a person, policy decides
    /// first: the `@session_ttl` of the active bundle's policies that
    /// permit `Action::"login"` on `Server::"idmint"` for them (the
    /// shortest when several do), so session length changes only through
    /// a reviewed draft. Otherwise the auth method's `session_ttl`, else
    /// `[session]` by kind. A person's session never exceeds
    /// [`MAX_HUMAN_SESSION_SECS`] whatever policy or configuration says
    /// (and, like every session, never outlives the ID token it came from).
    pub fn session_ttl(&self, identity: &Identity) -> Ttl {
        if identity.kind == IdentityKind::Human {
            let bundle = self.bundle.load();
            let ctx = idmint_core::RequestContext {
                now: UnixTime::now().secs(),
                ..Default::default()
            };
            let decision = bundle.evaluate(identity, "login", None, &ctx);
            if let Some(ttl) = bundle.session_ttl(&decision) {
                return ttl.min(Ttl::clamped(MAX_HUMAN_SESSION_SECS));
            }
        }
        let per_auth = self
            .oidc
            .verifiers()
            .iter()
            .find(|v| v.name() == identity.auth)
            .and_then(|v| v.config().session_ttl);
        let ttl = per_auth.unwrap_or(match identity.kind {
            IdentityKind::Human => self.session.human_ttl,
            _ => self.session.machine_ttl,
        });
        match identity.kind {
            IdentityKind::Human => ttl.min(Ttl::clamped(MAX_HUMAN_SESSION_SECS)),
            _ => ttl,
        }
    }
}

/// Revoked session tokens that have not expired yet.
///
/// Checked on every authenticated request, so it lives in memory (read-mostly
/// lock); it is persisted in the store so that a restart does not resurrect a
/// revoked token. Entries leave when the token would have expired anyway,
/// which keeps it small.
#[derive(Default)]
pub struct Denylist {
    entries: RwLock<HashMap<String, i64>>,
}

impl Denylist {
    pub fn load(entries: Vec<(String, UnixTime)>) -> Self {
        Self {
            entries: RwLock::new(entries.into_iter().map(|(k, v)| (k, v.secs())).collect()),
        }
    }
    pub fn contains(&self, token_id: &str) -> bool {
        self.entries
            .read()
            .map(|m| m.contains_key(token_id))
            .unwrap_or(true) // a poisoned lock fails closed
    }
    pub fn insert(&self, token_id: &str, expires_at: UnixTime) {
        if let Ok(mut m) = self.entries.write() {
            m.insert(token_id.to_string(), expires_at.secs());
        }
    }
    pub fn purge(&self, now: UnixTime) {
        if let Ok(mut m) = self.entries.write() {
            m.retain(|_, exp| *exp > now.secs());
        }
    }
}
