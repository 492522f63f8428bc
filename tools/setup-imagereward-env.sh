#!/usr/bin/env bash
# Create or refresh the isolated ImageReward environment .venv-imagereward (idempotent).
#
# Why a second environment: image-reward 1.5 cannot join .venv. It pins timm==0.6.13 while
# open-clip-torch needs timm >= 1.0.17; it breaks on transformers >= 4.56; it imports the
# undeclared openai `clip` package (which needs setuptools < 81) and, through ReFL.py,
# diffusers/accelerate/datasets. Only the ImageReward rule uses this environment, through
# src/guidance_repro/metrics/_imagereward_worker.py run by file path.
#
# - envs/imagereward/requirements.in says what we ask for; requirements.lock holds the exact pins
#   (every distribution, pip-freeze style). This script installs the lock with --no-deps, so the
#   environment is exactly the lock, and removes whatever the lock does not name.
# - A stamp holds the hash of the lock: when it did not change, a second run returns at once.
# - `--relock` re-resolves requirements.in (image-reward included, so the resolver checks its
#   declared pins against ours) in a scratch environment, checks it and rewrites the lock.
# - `pip check` must be clean: here image-reward gets its own timm==0.6.13 (see requirements.in).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${GUIDANCE_REPRO_IMAGEREWARD_VENV:-.venv-imagereward}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
IN=envs/imagereward/requirements.in
LOCK=envs/imagereward/requirements.lock
stamp="$VENV/.imagereward-stamp"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1

pip_quiet() {  # pip, minus its notes about this machine's local index folders (pipefail keeps its status)
  "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }
}

check_env() {  # $1: the environment's python
  "$1" -m pip check || { echo "[setup-imagereward] pip check failed" >&2; return 1; }
  # The check import: the package (with ReFL.py's diffusers/accelerate/datasets), the openai clip
  # package its CLIPScore imports, and the model class the worker builds.
  "$1" -I -W "ignore:pkg_resources is deprecated" -c 'import ImageReward, clip, torch, numpy, PIL; assert callable(ImageReward.ImageReward)' ||
    { echo "[setup-imagereward] the environment does not import ImageReward" >&2; return 1; }
}

if [ "${1:-}" = "--relock" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$PY" -m venv "$tmp/venv"
  pip_quiet "$tmp/venv/bin/python" -m pip install -q -r "$IN"
  check_env "$tmp/venv/bin/python"
  { echo "# Exact versions of .venv-imagereward, from envs/imagereward/requirements.in"
    echo "# (bash tools/setup-imagereward-env.sh --relock). Python 3.11, Linux x86_64."
    echo "# Installed with --no-deps (exactly this set), then checked with pip check."
    "$tmp/venv/bin/python" -m pip freeze --all | grep -v -E '^(pip|wheel)==' | sort -f; } > "$LOCK"
  echo "[setup-imagereward] $LOCK rewritten; commit it with $IN"
  exit 0
fi

want=$(sha256sum "$LOCK" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  echo "[setup-imagereward] environment $VENV is up to date"
  exit 0
fi

"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' ||
  { echo "[setup-imagereward] Python 3.11 is required (found $("$PY" --version))" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
rm -f "$stamp"
echo "[setup-imagereward] installing the pinned set into $VENV (first run: a few minutes)"
pip_quiet "$VENV/bin/python" -m pip install -q --no-deps -r "$LOCK"
# Remove what an earlier lock installed and this one does not name (a refresh equals a fresh build).
extra=$("$VENV/bin/python" - "$LOCK" <<'EOF'
import re, sys, importlib.metadata as md
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
locked = {norm(l.split("==")[0]) for l in open(sys.argv[1]) if "==" in l and not l.startswith("#")}
keep = locked | {"pip"}
print(" ".join(sorted({norm(d.metadata["Name"]) for d in md.distributions()} - keep)))
EOF
)
if [ -n "$extra" ]; then
  echo "[setup-imagereward] removing packages the lock does not name: $extra"
  # shellcheck disable=SC2086
  pip_quiet "$VENV/bin/python" -m pip uninstall -q -y $extra
fi
check_env "$VENV/bin/python"
echo "$want" > "$stamp"
echo "[setup-imagereward] environment ready: $VENV"
