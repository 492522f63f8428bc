"""`export-split`: a dataset split as a samples file (reference sets for the metrics)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from guidance_repro.data import compositions, fashion_mnist, samples
from guidance_repro.errors import ReproError


def class_balanced_subset(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Indices of ``limit`` examples with classes as balanced as the data allow (seeded)."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    order = np.stack([idx[: min(len(i) for i in per_class)] for idx in per_class], axis=1).ravel()
    if limit > len(order):
        raise ReproError(f"--limit {limit}: only {len(order)} class-balanced examples available")
    return np.sort(order[:limit])


def _export(args: argparse.Namespace) -> None:
    if args.dataset == "fashion_mnist":
        images, labels = fashion_mnist.load(args.input).split(args.split)
        captions = None
    else:
        split = compositions.load(args.input, args.split)
        # The label of a composition is the class of its first item (per-category FID, like
        # MJHQ's categories); the caption carries the rest.
        images, labels, captions = split["images"], split["item_class"][:, 0], split["captions"]
    idx = np.arange(len(images))
    if args.limit:
        idx = class_balanced_subset(labels, args.limit, args.seed) if args.dataset == "fashion_mnist" \
            else np.sort(np.random.default_rng(args.seed).permutation(len(images))[: args.limit])
    samples.write(args.out, images[idx], labels[idx], None if captions is None else captions[idx],
                  meta={"dataset": args.dataset, "split": args.split, "source": str(args.input),
                        "count": int(len(idx)), "seed": args.seed})
    print(f"[export-split] {len(idx)} images of {args.dataset}/{args.split} -> {args.out}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-split", help="write a dataset split as a samples file")
    p.add_argument("--dataset", choices=["fashion_mnist", "compositions"], required=True)
    p.add_argument("--input", type=Path, required=True, help="the prepared dataset artifact")
    p.add_argument("--split", required=True)
    p.add_argument("--limit", type=int, default=0, help="keep this many (class-balanced), 0 = all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_export)
