"""CLI commands of the data stage."""

from __future__ import annotations

import argparse
from pathlib import Path

from guidance_repro.data import fashion_mnist
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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare-fashion-mnist", help="verify the IDX files and write the train/test artifact")
    p.add_argument("--source", required=True, help="folder with the four *-ubyte.gz files")
    p.add_argument("--download-url", default="",
                   help="fetch the original release from this base URL first (only if the config asks)")
    p.add_argument("--out", required=True, help="output .npz")
    p.set_defaults(func=_prepare_fashion_mnist)
