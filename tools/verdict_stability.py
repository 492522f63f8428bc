#!/usr/bin/env python
"""Issue 23's acceptance measurement: run the default (toy) tier with every run-time seed shifted
by K (K = 0, 1, ...; data seeds fixed, the mechanism of tools/measure_regression_bands.py) and set
the claims' verdicts side by side. A claim whose verdict differs between K's is a design fault of
its experiment (too little signal for its noise), not something to fix by choosing seeds.

    .venv/bin/python tools/verdict_stability.py --shifts 0 1 --workroot /tmp/vstab     # ~2 x 30 min
    .venv/bin/python tools/verdict_stability.py --shifts 1 --run 0=/path/to/clone/results \\
        --workroot /tmp/vstab --out docs/verdict_stability.md

`--run K=RESULTS` takes a finished run's results/ for shift K instead of running it (e.g. the
fresh clone whose `make reproduce` was timed for the budget). The runs share one snapshot of the
code (measure_regression_bands.snapshot), go one after the other, niced, and each records its wall
time and job-minutes (tools/job_times.py on its Snakemake log). Output: a markdown page with the
two verdict tables side by side and the agreement count, and the same as JSON beside it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from job_times import parse, summarise  # noqa: E402
from measure_regression_bands import seed_variant, snakemake, snapshot  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOY_CONFIG = ROOT / "config" / "config.yaml"
KEY = ("experiment", "model", "claim")


def run_shift(code: Path, workdir: Path, k: int, config: Path, cores: int, reuse: bool) -> dict:
    """The DAG of ``config`` with every run-time seed + k, in ``workdir``; its timing figures."""
    cfg = yaml.safe_load(config.read_text())
    variant, shifted = seed_variant(cfg, k, code / "workflow" / "schemas" / "config.schema.yaml")
    if not reuse and workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    head = f"# {config.name}, every run-time seed shifted by {k} (tools/verdict_stability.py)\n"
    (workdir / "config" / "config.yaml").write_text(head + yaml.safe_dump(variant, sort_keys=False))
    start = time.time()
    proc = snakemake(code, workdir, "--cores", str(cores), "--rerun-incomplete")
    if proc.returncode != 0:
        sys.exit(f"error: the DAG failed for shift {k} in {workdir}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    print(f"shift {k}: DAG done in {time.time() - start:.0f} s ({workdir})", flush=True)
    return {**given_run(k, workdir / "results"), "seeds_set": shifted}


def given_run(k: int, results: Path) -> dict:
    """A finished run for shift k; its timing from the largest Snakemake log beside its results/
    (a `make reproduce` also leaves a short log of its report step)."""
    summaries = []
    for log in (results.parent / ".snakemake" / "log").glob("*.snakemake.log"):
        try:
            summaries.append(summarise(parse(log)))
        except SystemExit:  # a log without finished jobs (an aborted or dry run) has no timing
            continue
    times = max(summaries, key=lambda t: t["job_minutes"], default={})
    return {"shift": k, "results": str(results),
            "wall_minutes": times.get("wall_minutes"), "job_minutes": times.get("job_minutes")}


def read_verdicts(results: Path) -> dict[tuple, dict]:
    path = results / "claims.csv"
    if not path.is_file():
        sys.exit(f"error: {path}: missing (not a finished run's results/)")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "verdict" not in rows[0]:
        sys.exit(f"error: {path}: no claims with a 'verdict' column (a run older than the three-outcome rule?)")
    return {tuple(r[k] for k in KEY): r for r in rows}


def compare(runs: list[dict]) -> dict:
    tables = [read_verdicts(Path(r["results"])) for r in runs]
    keys = list(dict.fromkeys(k for t in tables for k in t))
    rows = []
    for key in keys:
        cells = [t.get(key) for t in tables]
        verdicts = [c["verdict"] if c else "missing" for c in cells]
        rows.append({**dict(zip(KEY, key)), "verdicts": verdicts,
                     "measured": [c["measured"] if c else "" for c in cells],
                     "agree": len(set(verdicts)) == 1 and "missing" not in verdicts})
    return {"rows": rows, "agree": sum(r["agree"] for r in rows), "claims": len(rows)}


def markdown(runs: list[dict], cmp: dict, meta: dict) -> str:
    shifts = [r["shift"] for r in runs]
    lines = ["# Verdict stability: the toy tier with its run-time seeds shifted", "",
             f"Made by `tools/verdict_stability.py` on {meta['date']} from commit "
             f"`{(meta['code'].get('git_commit') or 'unknown')[:7]}`"
             f"{' (dirty tree)' if meta['code'].get('git_dirty') else ''}. Run K shifts every run-time seed "
             "key by K (training, sampling, evaluators; data seeds fixed). Verdicts by the rule of "
             "report/verdict.py over each run's own replicates.", "",
             f"**{cmp['agree']} of {cmp['claims']} claims have the same verdict in every run.**", "",
             "| run | results | wall min | job-min |", "|---|---|---|---|"]
    for r in runs:
        wall = f"{r['wall_minutes']:.1f}" if r.get("wall_minutes") else "—"
        job = f"{r['job_minutes']:.1f}" if r.get("job_minutes") else "—"
        lines.append(f"| K = {r['shift']} | `{r['results']}` | {wall} | {job} |")
    head = " | ".join(f"K = {k}: this run | K = {k}: verdict" for k in shifts)
    lines += ["", f"| experiment | model | claim | {head} | same |",
              "|---|---|---|" + "---|---|" * len(shifts) + "---|"]
    for r in cmp["rows"]:
        cells = " | ".join(f"{m.replace('|', '/') or '—'} | {v or 'not measured'}"
                           for m, v in zip(r["measured"], r["verdicts"]))
        lines.append(f"| {r['experiment']} | {r['model'] or '—'} | {r['claim']} | {cells} | "
                     f"{'yes' if r['agree'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def parse_given(specs: list[str]) -> dict[int, Path]:
    out = {}
    for spec in specs:
        k, sep, path = spec.partition("=")
        if not sep or not k.strip().lstrip("-").isdigit():
            sys.exit(f"error: --run {spec!r}: expected K=RESULTS_DIR")
        out[int(k)] = Path(path)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shifts", type=int, nargs="+", default=[0, 1], help="seed shifts K to run")
    p.add_argument("--run", action="append", default=[], metavar="K=RESULTS",
                   help="a finished run's results/ for shift K (not re-run)")
    p.add_argument("--config", type=Path, default=TOY_CONFIG)
    p.add_argument("--workroot", type=Path, required=True)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--nice", type=int, default=5)
    p.add_argument("--reuse", action="store_true", help="keep the snapshot and run folders")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "verdict_stability.md")
    args = p.parse_args()
    given = parse_given(args.run)
    os.nice(args.nice)
    code = args.workroot / "code"
    if not args.reuse and code.exists():
        shutil.rmtree(code)
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="minutes"), "code": snapshot(code),
            "config": str(args.config)}
    runs = [given_run(k, path) for k, path in sorted(given.items())]
    runs += [run_shift(code, args.workroot / f"shift-{k}", k, args.config, args.cores, args.reuse)
             for k in args.shifts if k not in given]
    runs.sort(key=lambda r: r["shift"])
    if len(runs) < 2:
        sys.exit("error: need at least two runs (shifts and/or --run) to compare")
    cmp = compare(runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(runs, cmp, meta))
    args.out.with_suffix(".json").write_text(json.dumps({**meta, "runs": runs, **cmp}, indent=1) + "\n")
    print(f"{cmp['agree']} of {cmp['claims']} claims agree -> {args.out}")


if __name__ == "__main__":
    main()
