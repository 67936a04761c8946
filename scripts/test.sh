#!/usr/bin/env bash
# usage: scripts/test.sh [nextest args…]   — runs the whole test suite against real peers.
# Installs the test IdP's npm dependencies on first use (node + npm required).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d testbed/oidc-idp/node_modules ]; then
  (cd testbed/oidc-idp && npm ci --no-audit --no-fund --loglevel=error)
fi
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast "$@"
else
  exec cargo test --workspace "$@"
fi
