"""The command-line options every token sampler shares (sample-ar, var-sample, star-sample), in one
place so the three commands cannot drift apart."""

from __future__ import annotations

import argparse


def add_sampler_args(p: argparse.ArgumentParser, cfg_default: float, cfg_help: str,
                     temperature: bool = True, cache: bool = True) -> None:
    """--cfg, --top-k, --top-p, [--temperature], --batch-size, --seed, [--no-cache], --tag,
    --threads, --no-progress, --out (the family-specific inputs are added by the caller)."""
    p.add_argument("--cfg", type=float, default=cfg_default, help=cfg_help)
    p.add_argument("--top-k", type=int, default=0, help="0 = off")
    p.add_argument("--top-p", type=float, default=1.0, help="1 = off")
    if temperature:
        p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    if cache:
        p.add_argument("--no-cache", action="store_true", help="recompute the prefix at every token/scale")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                   help="recorded in the samples file's meta_json (model, method, beta, lam, ...)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", required=True)
