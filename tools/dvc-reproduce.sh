#!/usr/bin/env bash
# The command of the single DVC stage (dvc.yaml, pattern A in ../shared/reference/pipeline.md):
# DVC wraps Snakemake, which stays the only orchestrator. Outputs are `persist: true`, so DVC does
# not delete results/ before running and Snakemake reruns only what is out of date.
# GUIDANCE_REPRO_TARGETS restricts the run to some rules (the DVC round-trip test uses it).
set -euo pipefail
cd "$(dirname "$0")/.."
py=python
[ -x .venv/bin/python ] && py=.venv/bin/python
# shellcheck disable=SC2086
"$py" -m snakemake --cores "${GUIDANCE_REPRO_CORES:-all}" ${GUIDANCE_REPRO_TARGETS:-}
# The whole DAG (no target restriction): also the HTML report of the run, as `make reproduce` does.
if [ -z "${GUIDANCE_REPRO_TARGETS:-}" ]; then
    "$py" -m snakemake --report results/report.html --cores 1
fi
