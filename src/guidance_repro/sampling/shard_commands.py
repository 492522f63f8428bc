"""CLI command of sharded sampling (any family): ``merge-shards``.

    guidance-repro merge-shards --shards shard_00.json ... shard_09.json --out point.npz \
        --manifest point.json

The shards are the manifests the family's shard command wrote (``llamagen-sample-shard``); the
output is one ADM-format batch (``arr_0`` uint8 N x H x W x 3, ``arr_1`` labels) and its manifest.
"""

from __future__ import annotations

import argparse


def _merge(args: argparse.Namespace) -> None:
    from guidance_repro.sampling.shards import merge
    m = merge(args.shards, args.out, args.manifest)
    print(f"[merge-shards] {len(m['shards'])} shards, {m['count']} images -> {args.out}, {args.manifest}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge-shards", help="finished sampling shards -> one ADM-format batch + manifest")
    p.add_argument("--shards", nargs="+", required=True, help="shard manifests (.json), every shard once")
    p.add_argument("--out", required=True, help="the ADM batch (.npz: arr_0 images, arr_1 labels)")
    p.add_argument("--manifest", required=True, help="its manifest (.json)")
    p.set_defaults(func=_merge)
