#!/usr/bin/env python3
"""Where a Snakemake run spent its time: wall time, and job-minutes per slice and per rule.

Reads a Snakemake log (default: the newest `.snakemake/log/*.snakemake.log` of the working
directory that ran jobs: `make reproduce` ends with a report step whose log has none), pairs each
job's start timestamp with its "Finished jobid" line, and groups the jobs into the slices of the
DAG (by rule-name prefix). Job-minutes are the sum of job durations; with `--cores 2` the wall
time is at least half of them. Written by hand because Snakemake's own
`benchmark:` files would have to be declared on every rule and do not record when a job started.

    python tools/job_times.py [LOG] [--json results/run_times.json]
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import re
import sys
from pathlib import Path

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]")
RULE = re.compile(r"^(?:local)?rule (\w+):")
JOBID = re.compile(r"^\s+jobid: (\d+)")
WILDCARDS = re.compile(r"^\s+wildcards: (.*)")
FINISHED = re.compile(r"^Finished jobid: (\d+)|^Finished job (\d+)\.")

SLICES = (("cca_llamagen", "cca_llamagen"), ("cca_var", "cca_var"), ("autoguidance", "autoguidance"),
          ("star", "star"), ("report", "report"), ("reference_stats", "data+evaluators"),
          ("train_", "data+evaluators"), ("evaluator", "data+evaluators"), ("training_curve", "data+evaluators"))


def slice_of(rule: str) -> str:
    for prefix, name in SLICES:
        if rule.startswith(prefix):
            return name
    return "data+evaluators" if rule in {"fashion_mnist", "compositions", "tree_gaussians", "export_split",
                                         "data_all", "evaluators_all"} else "other"


def parse(log: Path) -> dict:
    now = None
    first = last = None
    pending: dict | None = None
    started: dict[str, dict] = {}
    jobs = []
    for line in log.read_text().splitlines():
        m = STAMP.match(line)
        if m:
            now = dt.datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
            first = first or now
            last = now
            continue
        m = RULE.match(line)
        if m:
            pending = {"rule": m.group(1), "start": now, "wildcards": ""}
            continue
        if pending is not None:
            m = JOBID.match(line)
            if m:
                started[m.group(1)] = pending
                pending["jobid"] = m.group(1)
                continue
            m = WILDCARDS.match(line)
            if m:
                pending["wildcards"] = m.group(1)
                continue
        m = FINISHED.match(line)
        if m:
            job = started.pop(m.group(1) or m.group(2), None)
            if job and job["start"] is not None and now is not None:
                jobs.append({"rule": job["rule"], "wildcards": job["wildcards"],
                             "seconds": (now - job["start"]).total_seconds(),
                             "slice": slice_of(job["rule"])})
    if not jobs:
        raise SystemExit(f"error: {log}: no finished jobs found (is it a Snakemake log?)")
    return {"log": str(log), "wall_seconds": (last - first).total_seconds(), "jobs": jobs}


def parsed_runs(log_dir: Path):
    """The parsed logs in log_dir that finished jobs, newest first (Snakemake names them by start
    time, so name order is time order). Logs without jobs (a report step, a dry or aborted run) are
    passed over."""
    for log in sorted(log_dir.glob("*.snakemake.log"), reverse=True):
        try:
            yield parse(log)
        except SystemExit:
            continue


def summarise(run: dict) -> dict:
    by_slice = collections.defaultdict(lambda: {"jobs": 0, "job_minutes": 0.0})
    by_rule = collections.defaultdict(lambda: {"jobs": 0, "job_minutes": 0.0})
    for j in run["jobs"]:
        for table, key in ((by_slice, j["slice"]), (by_rule, j["rule"])):
            table[key]["jobs"] += 1
            table[key]["job_minutes"] += j["seconds"] / 60
    total = sum(v["job_minutes"] for v in by_slice.values())
    for v in by_slice.values():
        v["share"] = v["job_minutes"] / total if total else 0.0
    return {"log": run["log"], "wall_minutes": run["wall_seconds"] / 60, "job_minutes": total,
            "jobs": len(run["jobs"]), "by_slice": dict(by_slice), "by_rule": dict(by_rule)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log", nargs="?", help="a .snakemake/log/*.snakemake.log (default: the newest that ran jobs)")
    ap.add_argument("--json", help="also write the summary here")
    args = ap.parse_args(argv)
    if args.log:
        s = summarise(parse(Path(args.log)))
    else:
        run = next(parsed_runs(Path(".snakemake/log")), None)
        if run is None:
            print("error: no .snakemake/log/*.snakemake.log here with finished jobs", file=sys.stderr)
            return 2
        s = summarise(run)
    print(f"{s['log']}: wall {s['wall_minutes']:.1f} min, {s['jobs']} jobs, {s['job_minutes']:.1f} job-min")
    for name, v in sorted(s["by_slice"].items(), key=lambda kv: -kv[1]["job_minutes"]):
        print(f"  {name:18s} {v['jobs']:4d} jobs {v['job_minutes']:6.1f} job-min ({100 * v['share']:4.1f} %)")
    print("  by rule:")
    for name, v in sorted(s["by_rule"].items(), key=lambda kv: -kv[1]["job_minutes"])[:15]:
        print(f"    {name:32s} {v['jobs']:4d} jobs {v['job_minutes']:6.1f} job-min")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(s, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
