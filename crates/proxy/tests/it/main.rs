//! One test binary for the whole crate: each integration test file is a
//! module here, so the suite links once instead of once per file (link
//! time and disk space dominate a cold build on 2 cores).

mod common;

mod egress;
mod sigv4_moto;
