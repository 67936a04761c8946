//! `idmint agent`: the host agent that turns the server's SSH grants into
//! just-in-time Unix accounts and removes them without residue.
//!
//! The agent runs as root on an SSH host. It pulls the host's desired state
//! from the server ([`transport::ServerLink`], signed requests), and
//! [`reconcile::GrantReconciler`] makes the host match it: one `wl_<hex>`
//! account per grant ([`accounts::HostAccounts`]) with a per-grant sudoers
//! drop-in ([`sudo_rules::SudoRules`]), removed when the session ends
//! ([`sessions::SessionWatcher`]), the grant expires (enforced locally even
//! while the server is unreachable) or is revoked. Every removal ends with a
//! residue check ([`residue`]) whose result is reported to the server.
//!
//! Every operating-system effect goes through [`host::HostSystem`], which
//! can point at another mount namespace (`nsenter` for commands,
//! `/proc/PID/root` for files): that is how the integration tests run the
//! real `useradd`, `visudo`, `sshd` and `sudo` without touching the host.

pub mod account_name;
pub mod accounts;
pub mod enroll;
pub mod error;
pub mod host;
pub mod install;
pub mod outbox;
pub mod passwd;
pub mod processes;
pub mod reconcile;
pub mod residue;
pub mod runtime;
pub mod sessions;
pub mod signing;
pub mod state;
pub mod sudo_rules;
pub mod transport;
pub mod uid_allocator;

pub use account_name::AccountName;
pub use accounts::{AccountSpec, CreatedAccount, HostAccounts};
pub use enroll::{enroll, EnrollOutcome};
pub use error::{AgentError, Result};
pub use host::HostSystem;
pub use install::{InstallCheck, InstallPlan};
pub use outbox::EventOutbox;
pub use reconcile::{DesiredState, GrantReconciler};
pub use runtime::{run_agent, AgentConfig};
pub use sessions::{SessionChange, SessionWatcher};
pub use signing::AgentKey;
pub use state::{Enrollment, StateDir};
pub use sudo_rules::SudoRules;
pub use transport::ServerLink;
pub use uid_allocator::{UidAllocator, UidRange};

/// Re-exported wire types of the agent protocol.
pub use idmint_proto::ssh as proto;
