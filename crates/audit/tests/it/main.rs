//! One test binary for the whole crate: each integration test file is a
//! module here, so the suite links once instead of once per file (link
//! time and disk space dominate a cold build on 2 cores).

mod common;

mod append;
mod fail_closed;
mod sinks;
mod tamper;
mod trace;
mod trace_kinds;
