"""CLI commands of the data stage."""

from __future__ import annotations

import argparse
from pathlib import Path

from guidance_repro.data import compositions, fashion_mnist, tree_gaussians
from guidance_repro.errors import ReproError


def _prepare_fashion_mnist(args: argparse.Namespace) -> None:
    source = Path(args.source)
    if args.download_url:
        fashion_mnist.download(source, args.download_url)
    elif not source.is_dir():
        hint = " (install the Debian package dataset-fashion-mnist, or set download: true)"
        raise ReproError(f"data.fashion_mnist.dir: {source} does not exist{hint}")
    arrays = fashion_mnist.prepare(source, Path(args.out))
    print(f"[fashion_mnist] {len(arrays['train_labels'])} train + {len(arrays['test_labels'])} test "
          f"images verified from {source} -> {args.out}")


def _build_compositions(args: argparse.Namespace) -> None:
    layout = compositions.Layout(canvas=args.canvas, grid=args.grid, small=args.small, large=args.large,
                                 max_items=args.max_items)
    splits, elapsed = compositions.build_and_save(
        fashion_mnist.load(args.fashion_mnist), args.out, seed=args.seed, layout=layout,
        n_train=args.n_train, n_clip=args.n_clip, n_eval=args.n_eval, clip_pool=args.clip_pool)
    if args.preview:
        compositions.preview(args.preview, splits["train"]["images"], splits["train"]["captions"])
    sizes = ", ".join(f"{k} {len(v['captions'])}" for k, v in splits.items())
    print(f"[compositions] {sizes} images ({args.canvas}x{args.canvas}) built in {elapsed:.1f} s -> {args.out}")


def _describe_tree_gaussians(args: argparse.Namespace) -> None:
    from guidance_repro.io import write_json
    summary = tree_gaussians.describe(args.seed)
    write_json(args.out, summary)
    print(f"[tree_gaussians] mean {summary['both']['mean']}, std {summary['both']['std']} -> {args.out}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare-fashion-mnist", help="verify the IDX files and write the train/test artifact")
    p.add_argument("--source", required=True, help="folder with the four *-ubyte.gz files")
    p.add_argument("--download-url", default="",
                   help="fetch the original release from this base URL first (only if the config asks)")
    p.add_argument("--out", required=True, help="output .npz")
    p.set_defaults(func=_prepare_fashion_mnist)

    p = sub.add_parser("build-compositions", help="build the captioned Fashion-MNIST compositions (train/clip/eval)")
    p.add_argument("--fashion-mnist", required=True, help="prepared Fashion-MNIST .npz (prepare-fashion-mnist)")
    p.add_argument("--out", required=True, help="output .npz with <split>_<key> arrays")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--canvas", type=int, default=32, help="canvas side in pixels")
    p.add_argument("--grid", type=int, default=2, choices=(2, 3), help="positions: 2x2 or 3x3 cells")
    p.add_argument("--small", type=int, default=10, help="side of a small item in pixels")
    p.add_argument("--large", type=int, default=16, help="side of a large item in pixels (<= cell)")
    p.add_argument("--max-items", type=int, default=3)
    p.add_argument("--n-train", type=int, default=20000)
    p.add_argument("--n-clip", type=int, default=10000)
    p.add_argument("--n-eval", type=int, default=2000)
    p.add_argument("--clip-pool", type=int, default=10000,
                   help="Fashion-MNIST train images reserved for the clip split (disjoint from train's)")
    p.add_argument("--preview", default="", help="also write a PNG grid of train examples here")
    p.set_defaults(func=_build_compositions)

    p = sub.add_parser("describe-tree-gaussians", help="summary statistics of the 2-D tree-of-Gaussians (JSON)")
    p.add_argument("--out", required=True, help="output .json")
    p.add_argument("--seed", type=int, default=tree_gaussians.SEED)
    p.set_defaults(func=_describe_tree_gaussians)
