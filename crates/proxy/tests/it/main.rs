//! One test binary for the whole crate: each integration test file is a
//! module here, so the suite links once instead of once per file (link
//! time and disk space dominate a cold build on 2 cores).

mod common;

mod egress;
mod keepalive;
mod rust_upstream;
mod sigv4_moto;
mod transparent;
mod vault_kv;
