//! One test binary for the whole crate: each integration test file is a
//! module here, so the suite links once instead of once per file (link
//! time and disk space dominate a cold build on 2 cores).

mod aws_sigv4_moto;
mod mysql;
mod postgres;
mod rabbitmq;
mod redis;
