# Entry points. Each target first creates or refreshes the pinned environment (tools/setup-env.sh,
# a no-op taking about a second when nothing changed), then runs inside it.
SHELL := /bin/bash
VENV ?= .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export GUIDANCE_REPRO_VENV := $(VENV)
CORES ?= all
RESULTS ?= results

.PHONY: env reproduce smoke mini-paper test lint lock pull report docs clean-env

env:
	@bash tools/setup-env.sh

## reproduce: the default (toy) tier, every experiment, tables and figures in results/, then the
## HTML report of that run (every figure with its caption, the claims table, the matrix)
reproduce: env
	snakemake --cores $(CORES)
	snakemake --report results/report.html --cores 1

## smoke: the smoke tier on small subsets (what CI runs inside the test suite)
smoke: env
	snakemake --cores $(CORES) --directory .test --snakefile Snakefile

## mini-paper: the paper-shaped mini tier (the paper tier's rules on TEST STAND-IN files it writes first)
mini-paper: env
	guidance-repro mini-paper-fixtures --out .test/paper/fixtures
	guidance-repro var-mini-fixtures --out .test/paper/fixtures
	snakemake --cores $(CORES) --directory .test/paper --snakefile Snakefile

## test: the whole test suite (unit tests + one smoke run of the DAG)
test: env
	python -m pytest

## lint: snakefmt + snakemake --lint (the per-rule software-environment lint is expected; see config/README.md)
lint: env
	snakefmt --check Snakefile workflow/rules
	python tools/lint_workflow.py

## lock: re-resolve pyproject.toml and rewrite requirements.lock (exact pins)
lock:
	bash tools/relock.sh

## pull: restore DVC-versioned artifacts and mark them up to date for Snakemake
pull: env
	dvc pull
	snakemake --touch --cores 1

## report: the Snakemake HTML report of the last run
report: env
	snakemake --report results/report.html --cores 1

## docs: docs/results.md, docs/figures/ and the README's results block from a finished run's
## results/ (RESULTS=path/to/results for another run, e.g. .test/results)
docs: env
	python tools/write_results_doc.py --results $(RESULTS)

clean-env:
	rm -rf $(VENV)
