//! One test binary for the whole crate: each integration test file is a
//! module here, so the suite links once instead of once per file (link
//! time and disk space dominate a cold build on 2 cores).

mod support;

mod hostile;
mod jwks_cache;
mod mtls;
mod verify;
