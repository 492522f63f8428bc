#!/usr/bin/env bash
# Create or refresh the project's Python environment (idempotent).
#
# - .venv/ is built from pyproject.toml (the one list of dependencies) under the exact pins of
#   requirements.lock (pip constraints), then checked with `pip check`.
# - A stamp records the hash of both files: when neither changed, this script returns in about a
#   second, so `make reproduce` / `make test` reach their real work at once on a second run.
# - Where it runs as root on Debian and the Fashion-MNIST files are missing, it installs the
#   Debian package `dataset-fashion-mnist` (the data rule also accepts the original download).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${GUIDANCE_REPRO_VENV:-.venv}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
stamp="$VENV/.guidance-repro-stamp"
want=$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)

fmnist_dir=/usr/share/datasets/fashion-mnist
if [ ! -f "$fmnist_dir/train-images-idx3-ubyte.gz" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "[setup] installing the Debian package dataset-fashion-mnist"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; then
    apt-get update -q >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 ||
      echo "[setup] warning: could not install dataset-fashion-mnist; set data.fashion_mnist in the config" >&2
  fi
fi

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  echo "[setup] environment $VENV is up to date"
  exit 0
fi

"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' ||
  { echo "[setup] Python 3.11 is required (found $("$PY" --version))" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
echo "[setup] installing the pinned environment into $VENV (first run: a few minutes)"
# (the grep drops pip's notes about this machine's local index folders; pipefail keeps pip's status)
"$VENV/bin/python" -m pip install -q -c requirements.lock -e ".[dev]" 2>&1 | { grep -v "^WARNING: Location" || true; }
"$VENV/bin/python" -m pip check
"$VENV/bin/python" -c "import guidance_repro, torch, torchvision, cleanfid, open_clip, snakemake, dvc" ||
  { echo "[setup] the environment does not import; see the pip output above" >&2; exit 1; }
echo "$want" > "$stamp"
echo "[setup] environment ready: $VENV"
