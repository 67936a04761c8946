//! One test binary for the whole crate: each integration test file is a
//! module here, so the suite links once instead of once per file (link
//! time and disk space dominate a cold build on 2 cores).

mod aws_support;
mod common;
mod db_support;
mod ssh_support;
mod vault_support;

mod anomaly_signals;
mod approle;
mod audit_fail_closed;
mod audit_sinks;
mod audit_trace_kinds;
mod aws_assumed_role;
mod aws_credential_process;
mod aws_federated;
mod aws_iam_login;
mod aws_iam_user;
mod azure_fake_graph;
mod cli_flow;
mod db_mariadb;
mod db_postgres;
mod db_rabbitmq;
mod db_redis;
mod draft_pruning;
mod examples;
mod hostile;
mod issuance_limits;
mod jwks_resilience;
mod login_flow;
mod multi_server;
mod policy_governance;
mod proxy;
mod proxy_idmint;
mod session_policy;
mod ssh_agent_protocol;
mod ssh_cert_mode;
mod ssh_jit_e2e;
mod ssh_jit_session;
mod sso_login;
mod static_secrets;
mod unix_login;
mod vault_compat;
mod x509_csr;
