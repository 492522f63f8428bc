"""Training curves as CSV (DVC plots read CSV/JSON/YAML, not the loop's JSON-lines log)."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from guidance_repro.errors import ReproError
from guidance_repro.io import atomic_path


def jsonl_to_csv(log: Path, out: Path) -> int:
    """Write the rows of a training log (one JSON object per line) as CSV; return the row count."""
    if not log.is_file():
        raise ReproError(f"{log}: training log not found (written beside the model by `train`)")
    rows = []
    for n, line in enumerate(log.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ReproError(f"{log}:{n}: not JSON ({exc.msg})") from None
    if not rows:
        raise ReproError(f"{log}: empty training log")
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_path(out, suffix=".csv.tmp") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def _curve(args: argparse.Namespace) -> None:
    n = jsonl_to_csv(Path(args.log), Path(args.out))
    print(f"[training-curve] {n} rows -> {args.out}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("training-curve", help="a training log (.log.jsonl) as CSV for DVC plots")
    p.add_argument("--log", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_curve)
