"""Command-line options the token families share, in one place so their commands cannot drift
apart: the samplers (sample-ar, var-sample, star-sample) and the tokenizers' encode / reconstruct
commands."""

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


def add_tokenizer_args(p: argparse.ArgumentParser, split: str, reconstruct: bool) -> None:
    """--tokenizer, --data, --split, [--num], --threads, --out: the encode / reconstruct commands of
    both tokenizer families (encode-codes, vq-reconstruct, msvq-encode, msvq-reconstruct)."""
    p.add_argument("--tokenizer", required=True, help="a trained tokenizer model file")
    p.add_argument("--data", required=True, help="dataset .npz with {split}_images/{split}_labels")
    p.add_argument("--split", default=split)
    if reconstruct:
        p.add_argument("--num", type=int, default=0, help="first NUM images (0 = all)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", required=True)
