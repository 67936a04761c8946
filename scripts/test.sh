#!/usr/bin/env bash
# usage: scripts/test.sh [nextest args…]   — runs the whole test suite against real peers.
# Sets up the peers that need no root on first use (npm deps of the test IdP,
# a Python venv with moto/awscli/hvac, the OpenBao binary); the apt packages
# (PostgreSQL, MariaDB, Redis, RabbitMQ, sshd, sudo) come from .ci/run.
# Run as root: the SSH tests create accounts inside private mount namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d testbed/oidc-idp/node_modules ]; then
  (cd testbed/oidc-idp && npm ci --no-audit --no-fund --loglevel=error)
fi
# Python peers (moto = the AWS emulator, awscli, hvac = a Vault client) in a
# private venv, and OpenBao's `bao` (a real Vault-API client): both idempotent.
if [ ! -x .venv-testbed/bin/moto_server ] || [ ! -x .venv-testbed/bin/aws ] \
   || ! .venv-testbed/bin/python -c 'import hvac' 2>/dev/null; then
  [ -x .venv-testbed/bin/python ] || python3 -m venv .venv-testbed
  .venv-testbed/bin/pip install -q --disable-pip-version-check 'moto[server]==5.2.5' awscli boto3 hvac
fi
scripts/install-openbao.sh >/dev/null
# sshd's privilege-separation directory (the SSH tests run sshd as root in
# private mount namespaces).
if [ "$(id -u)" = 0 ]; then mkdir -p /run/sshd; fi
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast "$@"
else
  exec cargo test --workspace "$@"
fi
