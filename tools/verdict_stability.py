#!/usr/bin/env python
"""Issue 23's acceptance measurement: run the default (toy) tier with every run-time seed shifted
by K (K = 0, 1, ...; data seeds fixed, the mechanism of tools/measure_regression_bands.py) and set
the claims' verdicts side by side. A claim whose verdict differs between K's is a design fault of
its experiment (too little signal for its noise), not something to fix by choosing seeds.

    .venv/bin/python tools/verdict_stability.py --shifts 0 1 --workroot /tmp/vstab     # ~2 x 30 min
    .venv/bin/python tools/verdict_stability.py --shifts 1 --run 0=/path/to/clone/results \\
        --workroot /tmp/vstab --out docs/verdict_stability.md

`--run K=RESULTS` takes a finished run's results/ for shift K instead of running it (e.g. the
fresh clone whose `make reproduce` was timed for the budget). `--recorded JSON:I` takes the I-th
run of an earlier report's JSON (its verdicts and measured cells; the results/ may be gone), e.g.
to set the same shift on two machines side by side. Each run is labelled with its shift and the
CPU of its run_record.json. The runs share one snapshot of the
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
from job_times import parsed_runs, summarise  # noqa: E402
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
    summaries = [summarise(run) for run in parsed_runs(results.parent / ".snakemake" / "log")]
    times = max(summaries, key=lambda t: t["job_minutes"], default={})
    return {"shift": k, "results": str(results), "cpu": cpu_of(results), "commit": commit_of(results),
            "wall_minutes": times.get("wall_minutes"), "job_minutes": times.get("job_minutes")}


def cpu_of(results: Path) -> str | None:
    """'<model>, AMX' / '<model>, no AMX' from the run's run_record.json (None without one)."""
    try:
        cpu = json.loads((results / "run_record.json").read_text())["hardware"]["cpu"]
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        return None
    return f"{cpu.get('model', '?')}, {'AMX' if cpu.get('flags', {}).get('amx_tile') else 'no AMX'}"


def commit_of(results: Path) -> str | None:
    try:
        return json.loads((results / "run_record.json").read_text())["git_commit"]
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        return None


def recorded_run(spec: str) -> dict:
    """The I-th run of an earlier report (JSON:I, or JSON:I=CPU where that report did not record
    the CPU), with its per-claim cells in ``claims``."""
    spec, _, cpu = spec.partition("=")
    path, sep, index = spec.rpartition(":")
    if not sep or not index.isdigit():
        sys.exit(f"error: --recorded {spec!r}: expected JSON:INDEX")
    try:
        old = json.loads(Path(path).read_text())
        run = dict(old["runs"][int(index)])
    except (OSError, json.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
        sys.exit(f"error: --recorded {spec!r}: not a run of a verdict-stability JSON ({exc!r})")
    i = int(index)
    run.setdefault("commit", old.get("code", {}).get("git_commit"))
    if cpu:
        run["cpu"] = cpu
    run["claims"] = {tuple(r.get(k) or "" for k in KEY): {"verdict": r["verdicts"][i], "measured": r["measured"][i]}
                     for r in old.get("rows", []) if r["verdicts"][i] != "missing"}
    run["recorded_in"] = path
    return run


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
    tables = [r["claims"] if "claims" in r else read_verdicts(Path(r["results"])) for r in runs]
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
    labels = [label(r) for r in runs]
    lines = [f"# {meta.get('title') or 'Verdict stability: the toy tier with its run-time seeds shifted'}", "",
             f"Made by `tools/verdict_stability.py` on {meta['date']}"
             + (f"; the runs it started ran commit `{(meta['code'].get('git_commit') or 'unknown')[:7]}`"
                f"{' (dirty tree)' if meta['code'].get('git_dirty') else ''}" if meta.get("ran") else "")
             + ". Run K shifts every run-time seed "
             "key by K (training, sampling, evaluators; data seeds fixed). Verdicts by the rule of "
             "report/verdict.py over each run's own replicates.", "",
             f"**{cmp['agree']} of {cmp['claims']} claims have the same verdict in every run.**", "",
             "| run | CPU | commit | results | wall min | job-min |", "|---|---|---|---|---|---|"]
    for r, name in zip(runs, labels):
        wall = f"{r['wall_minutes']:.1f}" if r.get("wall_minutes") else "—"
        job = f"{r['job_minutes']:.1f}" if r.get("job_minutes") else "—"
        where = f"`{r['results']}`" + (f" (recorded in `{r['recorded_in']}`)" if r.get("recorded_in") else "")
        lines.append(f"| {name} | {r.get('cpu') or '—'} | {(r.get('commit') or '—')[:7]} | {where} | {wall} | {job} |")
    head = " | ".join(f"{k}: this run | {k}: verdict" for k in labels)
    lines += ["", f"| experiment | model | claim | {head} | same |",
              "|---|---|---|" + "---|---|" * len(labels) + "---|"]
    for r in cmp["rows"]:
        cells = " | ".join(f"{m.replace('|', '/') or '—'} | {v or 'not measured'}"
                           for m, v in zip(r["measured"], r["verdicts"]))
        lines.append(f"| {r['experiment']} | {r['model'] or '—'} | {r['claim']} | {cells} | "
                     f"{'yes' if r['agree'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def label(run: dict) -> str:
    """'K = 0', or 'K = 0 (run 2)' where another run has the same shift (two machines)."""
    return f"K = {run['shift']}" + (f" (run {run['index']})" if run.get("index") else "")


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
    p.add_argument("--shifts", type=int, nargs="*", default=[0, 1], help="seed shifts K to run (none: compare given runs only)")
    p.add_argument("--run", action="append", default=[], metavar="K=RESULTS",
                   help="a finished run's results/ for shift K (not re-run)")
    p.add_argument("--recorded", action="append", default=[], metavar="JSON:INDEX",
                   help="the INDEX-th run of an earlier verdict-stability JSON (its results/ may be gone)")
    p.add_argument("--config", type=Path, default=TOY_CONFIG)
    p.add_argument("--workroot", type=Path, required=True)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--nice", type=int, default=5)
    p.add_argument("--reuse", action="store_true", help="keep the snapshot and run folders")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "verdict_stability.md")
    p.add_argument("--title", help="the page's title (default: the seed-shift comparison's)")
    args = p.parse_args()
    given = parse_given(args.run)
    os.nice(args.nice)
    code = args.workroot / "code"
    if not args.reuse and code.exists():
        shutil.rmtree(code)
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="minutes"), "code": snapshot(code),
            "config": str(args.config), "title": args.title}
    runs = [given_run(k, path) for k, path in sorted(given.items())]
    runs += [recorded_run(spec) for spec in args.recorded]
    to_run = [k for k in args.shifts if k not in given]
    meta["ran"] = to_run
    runs += [{**run_shift(code, args.workroot / f"shift-{k}", k, args.config, args.cores, args.reuse),
              "commit": meta["code"].get("git_commit")} for k in to_run]
    runs.sort(key=lambda r: r["shift"])
    for k in {r["shift"] for r in runs}:
        same = [r for r in runs if r["shift"] == k]
        for i, r in enumerate(same[1:], start=2):
            r["index"] = i
    if len(runs) < 2:
        sys.exit("error: need at least two runs (shifts and/or --run) to compare")
    cmp = compare(runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(runs, cmp, meta))
    kept = [{k: v for k, v in r.items() if k != "claims"} for r in runs]
    args.out.with_suffix(".json").write_text(json.dumps({**meta, "runs": kept, **cmp}, indent=1) + "\n")
    print(f"{cmp['agree']} of {cmp['claims']} claims agree -> {args.out}")


if __name__ == "__main__":
    main()
