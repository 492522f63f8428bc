"""CLI commands of the reviewers' report: ``claims`` (the claims table across the papers) and
``matrix`` (the cross-method matrix).

    guidance-repro claims --tier toy --slice a/claims.csv b/claims.csv ... \\
        --out-csv results/claims.csv --out-md results/claims.md --out-html results/claims.html
    guidance-repro matrix --ar llamagen:S=results/cca_llamagen/table.csv \\
        --ar var:d6=results/cca_var/table.csv --na "var:autoguidance=reason" \\
        --diffusion fmnist=results/autoguidance/fmnist/report/points.csv \\
        --out-csv results/matrix.csv --out-md results/matrix.md --out-figure results/figures/matrix.png
"""

from __future__ import annotations

import argparse

from guidance_repro.errors import ReproError


def _claims(args: argparse.Namespace) -> None:
    from guidance_repro.report import claims, verdict

    rows = claims.write_all(args.slice, args.tier, args.out_csv, args.out_md, args.out_html)
    tally = verdict.counts_text(r["verdict"] for r in rows)
    print(f"[claims] {len(args.slice)} slices, {len(rows)} claims: {tally} -> {args.out_md}")


def _matrix(args: argparse.Namespace) -> None:
    from guidance_repro.report import matrix

    na: dict[str, dict[str, str]] = {}
    for spec in args.na:
        key, sep, reason = spec.partition("=")
        family, _, method = key.partition(":")
        if not sep or method not in matrix.METHODS:
            raise ReproError(f"--na: expected FAMILY:METHOD=REASON with METHOD one of "
                             f"{', '.join(matrix.METHODS)}, got {spec!r}")
        na.setdefault(family, {})[method] = reason
    rows = []
    for spec in args.ar:
        family, model, path = matrix.parse_spec(spec, "--ar")
        if not model:
            raise ReproError(f"--ar: {spec!r} names no model (FAMILY:MODEL=PATH)")
        rows += matrix.ar_family(path, family, model, na.get(family))
    for spec in args.diffusion:
        family, _, path = matrix.parse_spec(spec, "--diffusion")
        rows += matrix.diffusion_family(path, family, guide=args.guide)
    if not rows:
        raise ReproError("matrix: give at least one --ar or --diffusion table")
    matrix.write_all(rows, args.out_csv, args.out_md, args.out_figure, args.out_html)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("claims", help="the claims table across the papers (CSV, markdown, HTML)")
    p.add_argument("--slice", nargs="+", required=True, help="the slices' claims CSVs")
    p.add_argument("--tier", required=True, help="smoke | toy | paper (decides what is comparable)")
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-md", required=True)
    p.add_argument("--out-html", required=True)
    p.set_defaults(func=_claims)

    p = sub.add_parser("matrix", help="cross-method matrix: best point of each method per family")
    p.add_argument("--ar", action="append", default=[], metavar="FAMILY:MODEL=TABLE",
                   help="an AR family's CCA table (cca-table) and the model to compare on")
    p.add_argument("--diffusion", action="append", default=[], metavar="FAMILY=POINTS",
                   help="the autoguidance points table (autoguidance-report)")
    p.add_argument("--guide", default="autoguide", help="the diffusion family's autoguidance guide")
    p.add_argument("--na", action="append", default=[], metavar="FAMILY:METHOD=REASON",
                   help="why a method is missing from a family")
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-md", required=True)
    p.add_argument("--out-figure", required=True)
    p.add_argument("--out-html", default="")
    p.set_defaults(func=_matrix)
