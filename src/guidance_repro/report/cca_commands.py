"""CLI commands of the CCA report (any family): ``cca-table``, ``cca-figures``, ``cca-claims``,
``sample-grid``.

    guidance-repro cca-table --metrics a.json b.json ... --out results/cca/var/table.csv
    guidance-repro cca-figures --table table.csv --bars f1.png --tradeoff f4.png --beta beta.png
    guidance-repro cca-claims --table table.csv [--benchmark bench.json] [--noise s1.json ...] \
        --out claims.json --markdown claims.md --csv claims.csv
    guidance-repro sample-grid --samples a.npz b.npz --titles A B --out grid.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from guidance_repro.errors import ReproError
from guidance_repro.io import atomic_path, write_json
from guidance_repro.report import cca_figures as cf


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
    rows = cf.read_table(args.table)
    bench = None
    if args.benchmark:
        try:
            bench = json.loads(Path(args.benchmark).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ReproError(f"{args.benchmark}: not a readable benchmark JSON ({exc})") from None
    c = cf.claims(rows, bench, [cf.row_from_metrics(p) for p in args.noise])
    md_extra = ""
    if getattr(args, "reconstruction", ""):  # tokenizer reconstruction FID: the floor of every model
        try:
            rec = json.loads(Path(args.reconstruction).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ReproError(f"{args.reconstruction}: not a readable metrics JSON ({exc})") from None
        c["tokenizer_reconstruction"] = {"fid": rec.get("fid"), "is_mean": rec.get("is_mean"),
                                         "metrics": str(args.reconstruction)}
        md_extra = f"\nTokenizer reconstruction FID (test images through encode/decode): {rec.get('fid'):.4g}\n"
    write_json(args.out, c)
    with atomic_path(args.markdown, suffix=".md.tmp") as tmp:
        tmp.write_text(cf.claims_markdown(c) + md_extra)
    if args.csv:
        from guidance_repro.report.claims import write_slice_csv
        write_slice_csv(cf.claims_rows(c), args.csv)
    print(f"[cca-claims] {sum(x['holds'] for x in c['claims'])}/{len(c['claims'])} hold -> {args.out}")


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

    p = sub.add_parser("cca-claims", help="the CCA claims with measured numbers (JSON + markdown)")
    p.add_argument("--table", required=True)
    p.add_argument("--benchmark", default="", help="sampling benchmark JSON (cost claim)")
    p.add_argument("--reconstruction", default="", help="metrics JSON of the tokenizer reconstruction")
    p.add_argument("--noise", nargs="*", default=[],
                   help="metrics JSONs of table points re-sampled with other seeds (FID seed noise)")
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
