"""CLI commands of the CCA report (any family): ``cca-table``, ``cca-figures``, ``cca-claims``,
``sample-grid``.

    guidance-repro cca-table --metrics a.json b.json ... --out results/cca/var/table.csv
    guidance-repro cca-figures --table table.csv --bars f1.png --tradeoff f4.png --beta beta.png
    guidance-repro cca-claims --points m0.json m1.json ... [--benchmark bench.json] \
        [--reconstruction rec.json] [--evaluator-quality q.json] --out claims.json \
        --markdown claims.md --csv claims.csv
    guidance-repro sample-grid --samples a.npz b.npz --titles A B --out grid.png
"""

from __future__ import annotations

import argparse
from guidance_repro.errors import ReproError
from guidance_repro.io import atomic_path, write_json
from guidance_repro.report import cca_claims as cc
from guidance_repro.report import cca_figures as cf
from guidance_repro.report import verdict as vd


def _table(args):
    rows = [cf.row_from_metrics(p) for p in args.metrics]
    cf.write_table(rows, args.out)
    print(f"[cca-table] {len(rows)} points -> {args.out}")


def _figures(args):
    rows = cf.read_table(args.table)
    cf.plot_bars(rows, args.bars)
    cf.plot_tradeoff(rows, args.tradeoff)
    cf.plot_beta(rows, args.beta)
    print(f"[cca-figures] {args.bars}, {args.tradeoff}, {args.beta}")


def _claims(args):
    points = [cc.point_from_metrics(p) for p in args.points]
    benches = [{**cc.read_json(p, "benchmark"), "source": str(p)} for p in args.benchmark]
    rec = cc.read_json(args.reconstruction, "metrics") if args.reconstruction else None
    ev = cc.read_json(args.evaluator_quality, "evaluator quality") if args.evaluator_quality else None
    c = cc.claims(points, benches, cc.floor_text(rec, ev))
    c["inputs"] = {"points": list(args.points), "benchmarks": list(args.benchmark),
                   "reconstruction": args.reconstruction, "evaluator_quality": args.evaluator_quality}
    write_json(args.out, c)
    with atomic_path(args.markdown, suffix=".md.tmp") as tmp:
        tmp.write_text(cc.claims_markdown(c))
    if args.csv:
        from guidance_repro.report.claims import write_slice_csv
        write_slice_csv(cc.claims_rows(c), args.csv)
    print(f"[cca-claims] {vd.counts_text(x['verdict'] for x in c['claims'])} -> {args.out}")


def _grid(args):
    if len(args.titles) != len(args.samples):
        raise ReproError(f"--titles: {len(args.titles)} titles for {len(args.samples)} samples files")
    cf.sample_grid(args.samples, args.titles, args.out, per_class=args.per_class)
    print(f"[sample-grid] {len(args.samples)} sets -> {args.out}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cca-table", help="tidy CSV of CCA/CFG points from metrics JSONs")
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_table)

    p = sub.add_parser("cca-figures", help="CCA paper-style figures from the tidy CSV")
    p.add_argument("--table", required=True)
    p.add_argument("--bars", required=True, help="Figure 1 style bars (.png)")
    p.add_argument("--tradeoff", required=True, help="Figure 4 style FID-IS curves (.png)")
    p.add_argument("--beta", required=True, help="β ablation (.png)")
    p.set_defaults(func=_figures)

    p = sub.add_parser("cca-claims", help="the CCA claims over replicates (JSON + markdown + CSV)")
    p.add_argument("--points", nargs="+", required=True,
                   help="metrics JSONs of the claim points of every replicate (report/cca_claims.py)")
    p.add_argument("--benchmark", nargs="*", default=[], help="sampling benchmark JSON(s) (cost claim)")
    p.add_argument("--reconstruction", default="", help="metrics JSON of the tokenizer reconstruction (floor)")
    p.add_argument("--evaluator-quality", default="", help="the evaluator's quality JSON (floor)")
    p.add_argument("--out", required=True)
    p.add_argument("--markdown", required=True)
    p.add_argument("--csv", default="", help="the claims as a slice claims CSV (report/claims.py)")
    p.set_defaults(func=_claims)

    p = sub.add_parser("sample-grid", help="grid of class-balanced samples, one block per file")
    p.add_argument("--samples", nargs="+", required=True)
    p.add_argument("--titles", nargs="+", required=True)
    p.add_argument("--per-class", type=int, default=4)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_grid)
