"""CLI commands of the toy STAR reports (report/star_report.py).

    guidance-repro star-table --metrics results/star/metrics/*.json --scores results/star/scores/*.json --out table.csv
    guidance-repro star-figures --table table.csv --clip-fid a.png --category b.png --rope c.png
    guidance-repro star-grid --samples s1.npz s2.npz --titles "cfg 0" "cfg 3" --out grid.png
    guidance-repro star-claims --table table.csv --csv claims.csv --markdown claims.md \
        --claim-cfg 3 --claim-lam 10
"""

from __future__ import annotations

import argparse


def _table(args: argparse.Namespace) -> None:
    from guidance_repro.report import star_report as sr
    rows = sr.build_table(args.metrics, args.scores)
    sr.write_table(rows, args.out)
    print(f"[star-table] {len(rows)} points -> {args.out}")


def _figures(args: argparse.Namespace) -> None:
    from guidance_repro.report import star_report as sr
    rows = sr.sweep_rows(sr.read_table(args.table))
    sr.figure_clip_fid(rows, args.clip_fid)
    sr.figure_category(rows, args.category)
    sr.figure_rope(rows, args.rope)
    print(f"[star-figures] -> {args.clip_fid}, {args.category}, {args.rope}")


def _grid(args: argparse.Namespace) -> None:
    from guidance_repro.report import star_report as sr
    sr.sample_grid(args.samples, args.titles, args.out, args.per_row)
    print(f"[star-grid] -> {args.out}")


def _claims(args: argparse.Namespace) -> None:
    from guidance_repro.report import star_claims as sc
    from guidance_repro.report import star_report as sr
    sc.write_claims(sr.read_table(args.table), args.csv, args.markdown, args.claim_cfg, args.claim_lam)
    print(f"[star-claims] -> {args.csv}, {args.markdown}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("star-table", help="tidy CSV of the toy STAR points")
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--scores", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_table)

    p = sub.add_parser("star-figures", help="toy STAR figures from the tidy CSV")
    p.add_argument("--table", required=True)
    p.add_argument("--clip-fid", required=True)
    p.add_argument("--category", required=True)
    p.add_argument("--rope", required=True)
    p.set_defaults(func=_figures)

    p = sub.add_parser("star-grid", help="STAR samples with their prompts, one row per samples file")
    p.add_argument("--samples", nargs="+", required=True)
    p.add_argument("--titles", nargs="+", required=True)
    p.add_argument("--per-row", type=int, default=6)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_grid)

    p = sub.add_parser("star-claims", help="the toy STAR claims (CSV + markdown)")
    p.add_argument("--table", required=True)
    p.add_argument("--csv", required=True)
    p.add_argument("--markdown", required=True)
    p.add_argument("--claim-cfg", type=float, required=True,
                   help="the CFG scale of the CFG claim (fixed a priori: star.sampling.cfgs' largest)")
    p.add_argument("--claim-lam", type=float, required=True,
                   help="the CCA lambda of the CCA claims (fixed a priori: star.cca.lams' first)")
    p.set_defaults(func=_claims)
