//! OpenBao, the peer idmint is compared with: launching it
//! ([`launch`]), configuring it like idmint ([`setup`]) and a small setup
//! client ([`api`]).

pub mod api;
pub mod launch;
pub mod setup;

pub use launch::OpenBao;
