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


def add_shard_args(p: argparse.ArgumentParser) -> None:
    """The arguments every paper-tier sampling-shard command shares (sampling/shards.py): which
    shard of which point, its chunking, the point's seed and tags, and where it goes."""
    p.add_argument("--num", type=int, default=50000, help="images in the whole point (50 per class)")
    p.add_argument("--num-shards", type=int, default=10)
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--chunk-size", type=int, default=250, help="images per atomically written chunk")
    p.add_argument("--max-chunks", type=int, default=0,
                   help="stop after this many new chunks (a time-limited job; 0 = finish the shard)")
    p.add_argument("--work", default="", help="chunk folder (default: OUT.chunks)")
    p.add_argument("--seed", type=int, default=0, help="the point's one seed (labels and every image)")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                   help="recorded in the settings (model, method, beta, lam)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", required=True, help="the shard manifest (.json), written when the shard is whole")
