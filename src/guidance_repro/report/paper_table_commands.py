"""CLI command of the paper tier's CCA table: ``cca-paper-table`` (report/paper_table.py).

    guidance-repro cca-paper-table --metrics m1.json ... --family llamagen --models B L XL XXL 3B \
        --out table.csv --markdown table.md --figure figure1.png --claims claims_paper.csv
"""

from __future__ import annotations

import argparse

from guidance_repro.io import atomic_path


def _table(args: argparse.Namespace) -> None:
    from guidance_repro.report import paper_table as pt
    points = [pt.read_point(p) for p in args.metrics]
    rows = pt.build_rows(points, args.family, args.models)
    pt.write_csv(rows, args.out)
    with atomic_path(args.markdown, suffix=".md.tmp") as tmp:
        tmp.write_text(pt.markdown(rows, args.family))
    pt.plot_figure1(rows, args.figure, args.family)
    claims = pt.claims_rows(rows, args.family)
    pt.write_claims(claims, args.claims)
    run = sum(r["fid"] is not None for r in rows)
    print(f"[cca-paper-table] {run} of {len(rows)} rows run, {len(claims)} claims -> {args.out}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cca-paper-table", help="paper-tier CCA table: ours beside the paper's, verdicts, "
                       "Figure 1 bars, claims at tier paper")
    p.add_argument("--metrics", nargs="+", required=True, help="adm-evaluate metrics JSONs")
    p.add_argument("--family", default="llamagen", help="llamagen or var")
    p.add_argument("--models", nargs="+", default=["B", "L", "XL", "XXL", "3B"],
                   help="the sizes, in table order (every size gets its rows, run or not)")
    p.add_argument("--out", required=True, help="table .csv")
    p.add_argument("--markdown", required=True, help="table .md")
    p.add_argument("--figure", required=True, help="Figure 1 style bars (.png)")
    p.add_argument("--claims", required=True, help="claims at tier paper (slice claims CSV)")
    p.set_defaults(func=_table)
