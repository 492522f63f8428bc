"""Commands of the golden values (golden/values.py, docs/regression.md):

    guidance-repro golden-values --out results/golden/values.json
    guidance-repro golden-tolerance --out tests/regression/golden.json --threads 1 2

`golden-values` recomputes the values (the smoke DAG's ``golden_values`` rule; the regression
check compares them with the golden file, kind ``golden``). `golden-tolerance` computes them at
each thread count (torch's intra-op threads split reductions differently, so the float rounding
differs) and writes the golden file: the values at the first count, each with
``tol = max(safety x the largest difference between thread counts, ulps x float32 eps x |value|)``.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import platform
import subprocess
import time
from pathlib import Path

from guidance_repro.errors import ReproError

RESULTS_FILE = "golden/values.json"  # where the smoke DAG writes them, under results/
SAFETY = 10.0
ULPS = 16
FLOAT32_EPS = 2.0 ** -23


def tolerance(values: list[float], safety: float = SAFETY, ulps: float = ULPS) -> tuple[float, float]:
    """(tol, measured spread) of one value computed at several thread counts."""
    spread = max(abs(a - b) for a, b in itertools.combinations(values, 2)) if len(values) > 1 else 0.0
    return max(safety * spread, ulps * FLOAT32_EPS * abs(values[0])), spread


def golden_entries(runs: list[dict], results_file: str = RESULTS_FILE, safety: float = SAFETY,
                   ulps: float = ULPS) -> dict[str, dict]:
    """{<results_file>:<key>: {value, tol, thread_spread}} from the flattened runs (one per thread count)."""
    names = set(runs[0])
    if any(set(r) != names for r in runs[1:]):
        raise ReproError("golden-tolerance: the thread counts gave different sets of values")
    out = {}
    for name in sorted(names):
        vals = [r[name] for r in runs]
        tol, spread = tolerance(vals, safety, ulps)
        out[f"{results_file}:{name}"] = {"value": vals[0], "tol": tol, "thread_spread": spread}
    return out


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def cmd_values(args: argparse.Namespace) -> None:
    from guidance_repro.io import timing_path, write_json
    from guidance_repro.golden import values as golden_values
    t0 = time.perf_counter()
    values = golden_values.compute(args.threads)
    write_json(args.out, {**values, "protocol": {"steps": golden_values.STEPS, "threads": args.threads}})
    write_json(timing_path(Path(args.out)), {"seconds": round(time.perf_counter() - t0, 3)})
    print(f"wrote the golden values to {args.out}")


def cmd_tolerance(args: argparse.Namespace) -> None:
    import torch

    from guidance_repro.io import write_json
    from guidance_repro.golden import values as golden_values
    from guidance_repro.report.regression import flatten
    if len(args.threads) < 2:
        raise ReproError("--threads: at least two thread counts are needed to measure a tolerance")
    t0 = time.perf_counter()
    runs = [flatten(golden_values.compute(n)) for n in args.threads]
    golden = golden_entries(runs, RESULTS_FILE, args.safety, args.ulps)
    doc = {
        "about": "Golden values of fixed computations on seeded tiny weights (golden/values.py), "
                 "checked by `regression-check --golden` against `guidance-repro golden-values` "
                 "(results/golden/values.json in the smoke DAG). Re-measure with `guidance-repro "
                 "golden-tolerance` after a deliberate change of the maths.",
        "tolerance_rule": {
            "rule": "tol = max(safety * thread_spread, ulps * float32_eps * |value|); thread_spread = the "
                    "largest difference of the value between the thread counts (torch intra-op threads "
                    "reorder reductions, so the rounding differs as between CPUs)",
            "safety": args.safety, "ulps": args.ulps, "float32_eps": FLOAT32_EPS,
            "threads": list(args.threads)},
        "made": {"date": datetime.date.today().isoformat(), "git_commit": _commit(), "torch": torch.__version__,
                 "machine": platform.machine(), "processor": platform.processor() or None,
                 "seconds": round(time.perf_counter() - t0, 1)},
        "golden": golden,
    }
    write_json(args.out, doc)
    moved = sum(e["thread_spread"] > 0 for e in golden.values())
    print(f"wrote {len(golden)} golden values to {args.out} ({moved} differ between threads "
          f"{' and '.join(map(str, args.threads))})")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("golden-values", help="recompute the golden values (seeded tiny weights)")
    p.add_argument("--out", required=True, help="values JSON to write (results/golden/values.json)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.set_defaults(func=cmd_values)

    p = sub.add_parser("golden-tolerance", help="measure the golden values' tolerances across thread counts")
    p.add_argument("--out", required=True, help="golden file to write (tests/regression/golden.json)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to compare")
    p.add_argument("--safety", type=float, default=SAFETY, help="tol = safety x the thread spread ...")
    p.add_argument("--ulps", type=float, default=ULPS, help="... at least ulps float32 ulps of |value|")
    p.set_defaults(func=cmd_tolerance)
