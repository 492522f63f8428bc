#!/usr/bin/env bash
# Re-resolve pyproject.toml in a scratch environment and write the exact pins to requirements.lock.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
python3.11 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q -e ".[dev]"
"$tmp/venv/bin/pip" check
{ echo "# Exact versions of the main environment (pip constraints), produced by 'make lock' from pyproject.toml."
  echo "# Python 3.11, Linux x86_64. torch is the registry's CUDA build (runs on CPU as well)."
  "$tmp/venv/bin/pip" freeze --exclude-editable | sort -f; } > requirements.lock
rm -rf "$tmp"
echo "requirements.lock rewritten; commit it with pyproject.toml"
