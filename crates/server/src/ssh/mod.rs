//! SSH access on the server: the CA of each `[[issuer.ssh]]`, the grant
//! boards its host agents pull, agent authentication and enrollment, and
//! the two ways to get a certificate (`sessions`: just-in-time account on
//! one host; `sign`: certificate-mode roles, no agent).
//!
//! Pure certificate work lives in [`idmint_issuers::ssh`]; this module owns
//! the state that needs the server (waiting for agents, the store).

pub mod agent_auth;
pub mod grant_board;
pub mod host_registry;
pub mod issuer;
pub mod session;
pub mod sign;

use grant_board::GrantBoard;
use host_registry::HostRegistry;
use idmint_core::{LeaseState, PolicyBundle, UnixTime};
use idmint_issuers::ssh::{
    SshAuthority, SshCaKey, SshHostConfig, SshIssuerConfig, SSH_ACCOUNT_HANDLE,
};
use idmint_proto::ssh::HostGrant;
use idmint_store::{Envelope, LeaseFilter, Store, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One configured host: where it is, what the client must trust, and its
/// grant board.
pub struct HostEntry {
    pub config: SshHostConfig,
    /// `@cert-authority` line for the host CA, for this host.
    pub known_hosts: String,
    pub board: GrantBoard,
}

/// One `[[issuer.ssh]]`.
pub struct SshService {
    pub config: SshIssuerConfig,
    pub authority: SshAuthority,
    pub hosts: BTreeMap<String, HostEntry>,
}

impl SshService {
    pub fn new(config: SshIssuerConfig, authority: SshAuthority) -> Self {
        let hosts = config
            .hosts
            .iter()
            .map(|h| {
                (
                    h.name.clone(),
                    HostEntry {
                        config: h.clone(),
                        known_hosts: authority.known_hosts_line(h),
                        board: GrantBoard::new(),
                    },
                )
            })
            .collect();
        Self {
            config,
            authority,
            hosts,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }
}

/// Every ssh issuer, indexed by host (host names are unique across ssh
/// issuers: the config refuses duplicates).
#[derive(Default)]
pub struct SshRuntime {
    pub services: Vec<Arc<SshService>>,
    by_host: HashMap<String, Arc<SshService>>,
    pub registry: HostRegistry,
    pub nonces: agent_auth::NonceCache,
}

impl SshRuntime {
    pub fn new(services: Vec<Arc<SshService>>, registry: HostRegistry) -> Self {
        let mut by_host = HashMap::new();
        for s in &services {
            for h in s.hosts.keys() {
                by_host.insert(h.clone(), s.clone());
            }
        }
        Self {
            services,
            by_host,
            registry,
            nonces: Default::default(),
        }
    }

    /// The issuer and entry of a configured host.
    pub fn host(&self, name: &str) -> Option<(&Arc<SshService>, &HostEntry)> {
        let service = self.by_host.get(name)?;
        Some((service, service.hosts.get(name)?))
    }

    pub fn service(&self, issuer: &str) -> Option<&Arc<SshService>> {
        self.services.iter().find(|s| s.name() == issuer)
    }

    /// Put every live, unexpired just-in-time lease back on its host's
    /// board (server start), so agents keep the accounts that are still
    /// granted and remove the rest. The grant's shell and sudo come from
    /// the lease's role in the active bundle; a lease whose role is gone is
    /// left off, so its account is removed.
    pub async fn rebuild_boards(
        &self,
        store: &dyn Store,
        bundle: &PolicyBundle,
    ) -> Result<usize, StoreError> {
        if self.services.is_empty() {
            return Ok(0);
        }
        let now = UnixTime::now();
        // Only just-in-time roles have accounts to keep; asking per role
        // keeps the query small even with millions of live certificate or
        // token leases.
        let mut leases = vec![];
        for role in bundle.roles.values() {
            let jit = role
                .ssh
                .as_ref()
                .is_some_and(|t| t.mode == idmint_core::role::SshMode::Jit);
            if !jit || self.service(&role.issuer).is_none() {
                continue;
            }
            let found = store
                .list_leases(&LeaseFilter {
                    role_prefix: Some(role.name.clone()),
                    live_only: true,
                    limit: LeaseFilter::MAX_LIMIT,
                    ..Default::default()
                })
                .await?;
            leases.extend(found.into_iter().filter(|l| l.role == role.name));
        }
        let mut n = 0;
        for lease in leases {
            if lease.revocation.kind != SSH_ACCOUNT_HANDLE
                || lease.expires_at <= now
                || !matches!(lease.state, LeaseState::Pending | LeaseState::Active)
            {
                continue;
            }
            let Some((host, account)) = lease.revocation.value.split_once('/') else {
                continue;
            };
            let Some((service, entry)) = self.host(host) else {
                continue;
            };
            if service.name() != lease.issuer {
                continue;
            }
            let Some(template) = bundle.role(&lease.role).and_then(|r| r.ssh.as_ref()) else {
                tracing::warn!(lease = %lease.id, role = %lease.role, "ssh lease's role no longer exists; its account will be removed");
                continue;
            };
            let grant = HostGrant {
                lease_id: lease.id.to_string(),
                account: account.to_string(),
                shell: template.shell().to_string(),
                sudo: template.sudo.clone(),
                created_at: lease.created_at.secs(),
                expires_at: lease.expires_at.secs(),
                key_id: format!("{} {}", lease.request_id, lease.principal),
            };
            let was_ready = lease.state == LeaseState::Active;
            if entry.board.publish(grant).is_ok() {
                if was_ready {
                    entry.board.mark_ready(account);
                }
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Load or create (sealed, first start) the two CA keys of `cfg`.
pub async fn load_authority(
    cfg: &SshIssuerConfig,
    store: &dyn Store,
    envelope: &Envelope,
) -> Result<SshAuthority, String> {
    let key = |kind: &'static str| {
        let name = format!("ssh-{kind}-ca/{}", cfg.name);
        async move {
            let pkcs8 = idmint_store::get_or_create_secret(store, envelope, &name, || {
                SshCaKey::generate_pkcs8()
                    .map(|k| k.to_vec())
                    .map_err(|e| StoreError::Backend(e.to_string()))
            })
            .await
            .map_err(|e| format!("secret {name:?}: {e} (is [seal] the same root key that created this database?)"))?;
            SshCaKey::from_pkcs8(&pkcs8).map_err(|e| e.to_string())
        }
    };
    let user = key("user").await?;
    let host = key("host").await?;
    Ok(SshAuthority::new(&cfg.name, user, host))
}
