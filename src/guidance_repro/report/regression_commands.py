"""Commands of the regression check (guidance_repro.report.regression):

    guidance-repro regression-check --results results --expected tests/regression/expected.json \
        --golden tests/regression/golden.json
    guidance-repro regression-bands --runs R0/results R1/results ... --out tests/regression/expected.json

`regression-check` exits 2 when an entry fails: a metric outside its band or missing, a golden value
moved, a mechanism rule broken; each failure is printed with its kind (`FAIL [band] ...`).
`regression-bands` is what tools/measure_regression_bands.py calls after the seed runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from guidance_repro.errors import ReproError
from guidance_repro.report import regression  # light: json/math/statistics only


def cmd_check(args: argparse.Namespace) -> None:
    bands, golden, rules = regression.load_entries(args.expected)
    for path in args.golden:
        more = regression.load_golden(path)
        twice = sorted(set(golden) & set(more))
        if twice:
            raise ReproError(f"--golden {path}: {twice[0]} is also a golden value of {args.expected}")
        golden = {**golden, **more}
    result = regression.check(regression.collect_metrics(args.results), bands, golden, rules)
    for name in result.unchecked:
        print(f"unchecked (not in {args.expected}): {name}")
    for kind, msg in result.failures:
        print(f"FAIL [{kind}] {msg}", file=sys.stderr)
    if not result.ok:
        by_kind = ", ".join(f"{result.count(k)} {k}" for k in regression.KINDS if result.count(k))
        kind, first = result.failures[0]
        raise ReproError(f"regression check of {args.results}: {len(result.failures)} of "
                         f"{len(result.checked)} entries failed ({by_kind}); first: [{kind}] {first}")
    print(f"regression check of {args.results}: {len(bands)} metrics in their band, "
          f"{len(golden)} golden values, {len(rules)} mechanism rules hold, "
          f"{len(result.unchecked)} unchecked")


def cmd_bands(args: argparse.Namespace) -> None:
    from guidance_repro.io import write_json
    if args.seeds and len(args.seeds) != len(args.runs):
        raise ReproError(f"--seeds: {len(args.seeds)} seeds for {len(args.runs)} --runs")
    try:
        meta = json.loads(args.meta) if args.meta else {}
    except json.JSONDecodeError as exc:
        raise ReproError(f"--meta: not valid JSON ({exc})") from exc
    runs = [regression.collect_metrics(r) for r in args.runs]
    bands = regression.measure_bands(runs, args.margin, args.rel_floor, args.abs_floor, args.min_runs)
    kept = _hand_written_sections(args.out)
    doc = {
        "about": "Expected smoke-tier metrics and their tolerance bands (guidance_repro.report.regression). "
                 "Re-measure with tools/measure_regression_bands.py.",
        "band_rule": {"margin": args.margin, "rel_floor": args.rel_floor, "abs_floor": args.abs_floor,
                      "rule": "band = [min - m, max + m] over the seed runs, "
                              "m = max(margin * (max - min), rel_floor * |mean|, abs_floor)"},
        "made": {**meta, "seeds": args.seeds or list(range(len(args.runs))), "runs": meta.get("runs", args.runs)},
        "metrics": bands,
        **kept,
    }
    write_json(args.out, doc)
    print(f"wrote {len(bands)} bands from {len(runs)} seed runs to {args.out}"
          + (f", kept its {', '.join(sorted(kept))}" if kept else ""))


# Sections of an expected file that no seed run measures: the mechanism rules are written by hand
# (docs/regression.md), so re-measuring the bands must carry them over, never drop them.
MEASURED_SECTIONS = ("about", "band_rule", "made", "metrics")


def _hand_written_sections(path: str) -> dict:
    if not Path(path).exists():
        return {}
    try:
        old = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ReproError(f"--out {path}: exists but is not valid JSON ({exc}); its mechanism rules "
                         "would be lost, so fix or remove it first") from exc
    if not isinstance(old, dict):
        raise ReproError(f"--out {path}: exists but is not a JSON object")
    return {k: v for k, v in old.items() if k not in MEASURED_SECTIONS}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("regression-check", help="compare a run's metrics with the expected bands")
    p.add_argument("--results", required=True, help="the run's results folder")
    p.add_argument("--expected", required=True, help="expected bands (tests/regression/expected.json)")
    p.add_argument("--golden", action="append", default=[],
                   help="golden file whose values are checked too (tests/regression/golden.json); repeatable")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("regression-bands", help="measure metric bands from several seed runs")
    p.add_argument("--runs", nargs="+", required=True, help="results folder of each seed run")
    p.add_argument("--seeds", nargs="+", type=int, default=[], help="the seed of each run (recorded)")
    p.add_argument("--out", required=True, help="expected-bands JSON to write")
    p.add_argument("--margin", type=float, default=regression.MARGIN,
                   help="m = margin * (max - min) beyond min and max")
    p.add_argument("--rel-floor", type=float, default=regression.REL_FLOOR, help="least m, relative to |mean|")
    p.add_argument("--abs-floor", type=float, default=regression.ABS_FLOOR, help="least m, absolute")
    p.add_argument("--min-runs", type=int, default=4, help="fewest seed runs accepted")
    p.add_argument("--meta", default="", help="JSON recorded under 'made' (how the runs were made)")
    p.set_defaults(func=cmd_bands)
