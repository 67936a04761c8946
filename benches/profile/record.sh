#!/usr/bin/env bash
# Profile the idmint server under one benchmark scenario and attribute its
# CPU time to components (JWT verify, Cedar, audit, SQLite, HTTP, ...).
#
# usage: benches/profile/record.sh SCENARIO [idmint-bench args...]
#   e.g. benches/profile/record.sh exchange --alg rs256 --sign-alg eddsa
#
# Needs `perf` (Debian: apt-get install linux-perf) and a server binary with
# line tables for DWARF unwinding, built into its own target dir so the
# normal release build is untouched:
#   RUSTFLAGS="-C force-frame-pointers=yes" CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
#     cargo build --release -p idmint --target-dir target/profiling
set -euo pipefail
scenario=${1:?usage: record.sh SCENARIO [idmint-bench args...]}
shift
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${IDMINT_PROFILING_BIN:-$root/target/profiling/release/idmint}
out=${PROFILE_OUT:-$root/target/bench/profile}
seconds=${PROFILE_SECONDS:-8}
mkdir -p "$out"
[ -x "$bin" ] || { echo "no profiling build at $bin (see the header of $0)" >&2; exit 1; }

"$root/target/release/idmint-bench" login-exchange --scenarios "$scenario" --concurrency 64 \
  --duration $((seconds + 6))s --warmup 2s --idmint-bin "$bin" "$@" \
  >"$out/$scenario.out" 2>"$out/$scenario.err" &
bench=$!
trap 'kill $bench 2>/dev/null || true' EXIT

# The server pid is printed at startup, "running ..." when the load starts
# (after minting tokens and, with --wait-quiet, after the machine settled).
pid=""
for _ in $(seq 1 6000); do
  pid=$(grep -o 'server pid [0-9]*' "$out/$scenario.err" | awk '{print $3}' || true)
  [ -n "$pid" ] && grep -q '^running ' "$out/$scenario.err" && break
  kill -0 $bench 2>/dev/null || { cat "$out/$scenario.err" >&2; exit 1; }
  sleep 0.2
done
sleep 3   # past the warm-up, into the measured window
perf record -F 499 --call-graph dwarf,16384 -p "$pid" -o "$out/$scenario.perf.data" -- sleep "$seconds" \
  >"$out/$scenario.perf.log" 2>&1
wait $bench
trap - EXIT
tail -n 4 "$out/$scenario.out"
perf script -i "$out/$scenario.perf.data" -F comm,ip,sym,dso 2>/dev/null | python3 "$(dirname "$0")/attribute.py"
