//! idmint's egress proxy.
//!
//! Workloads on this host reach the outside world through it
//! (`HTTPS_PROXY`/`http_proxy`). For each connection the proxy finds the
//! calling process through `/proc` ([`peer`]), maps it to an identity
//! ([`bindings`]), allows only the destinations the identity's rules name
//! ([`rules`]), and injects credentials the workload never sees
//! ([`inject`]), terminating TLS with a local CA where it must
//! ([`tls_ca`]). Every request is audited, metadata only ([`audit`]).

pub mod audit;
pub mod bindings;
pub mod config;
mod conn;
pub mod creds;
pub mod forward;
pub mod head;
pub mod inject;
pub mod net;
pub mod peer;
pub mod response;
pub mod rules;
pub mod server;
pub mod sources;
pub mod tls_ca;
pub mod transparent;
pub mod tunnel;
pub mod upstream;

pub use config::{ConfigError, ProxyConfig};
pub use server::{BoundProxy, Proxy, ProxyError};
pub use tls_ca::{init_ca, CaError};
