"""Paper-tier data commands of the LlamaGen family: ImageNet codes for CCA, and the mini tier's fixtures.

    guidance-repro llamagen-imagenet-codes --data imagenet/train --vq vq_ds16_c2i.pt \
        --out codes-shards --shard 0 --num-shards 8 [--device cuda] [--skip-unreadable]
    guidance-repro llamagen-merge-codes --shards codes-shards/shard-* --out codes
    guidance-repro mini-paper-fixtures --out fixtures

One shard is one Snakemake job (``--shard I --num-shards N``) or, under ``torchrun`` without
``--shard``, one rank (RANK / WORLD_SIZE); it writes ``<out>/shard-I-of-N/`` and resumes from
its finished chunks. ``--vq-config`` (JSON of llamagen/vq16.py's VQ16Config keys) is for the
tiny test files; without it the file must have the official full-size layout.
"""

from __future__ import annotations

import argparse
import json
import os

from guidance_repro.errors import ReproError


def _vq_config(text: str | None, image_size: int) -> dict:
    if not text:
        return {"image_size": image_size}
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReproError(f"--vq-config: not valid JSON ({exc})") from None
    if not isinstance(d, dict):
        raise ReproError("--vq-config: must be a JSON object of VQ16Config keys")
    return {**d, "image_size": image_size}


def _shard_of(args) -> tuple[int, int]:
    if args.shard is not None:
        return args.shard, args.num_shards
    if "WORLD_SIZE" in os.environ:  # torchrun: one rank per shard
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if args.num_shards != 1:
        raise ReproError("--shard: required with --num-shards > 1 (outside torchrun)")
    return 0, 1


def _device(name: str):
    import torch
    if name == "cuda" and not torch.cuda.is_available():
        raise ReproError("--device: cuda requested but no CUDA device is available")
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device(name)


def _codes(args: argparse.Namespace) -> None:
    import torch
    from guidance_repro.data import imagenet, shards
    from guidance_repro.llamagen import imagenet_codes as ic
    from guidance_repro.llamagen.official import load_official_vq
    from guidance_repro.llamagen.vq16 import VQ16Config
    from guidance_repro.metrics.features import file_sha256
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    shard, num_shards = _shard_of(args)
    transform = ic.TenCropTransform(args.image_size, args.crop_range)
    folder = imagenet.scan(args.data, args.labels_file)
    cfg_dict = _vq_config(args.vq_config, args.image_size)
    cfg = VQ16Config.from_dict(cfg_dict, key="--vq-config") if args.vq_config else None
    device = _device(args.device)
    tf32 = device.type == "cuda" and not args.no_tf32
    # The official script turns TF32 on for matmuls and convolutions; on a GPU it changes which
    # code wins near ties, so the default follows it and --no-tf32 records the exact-fp32 variant.
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    vq = load_official_vq(args.vq, image_size=args.image_size, cfg=cfg).to(device)
    encoder = ic.CodeEncoder(folder, vq, transform, batch_size=args.batch_size, workers=args.workers,
                             skip_unreadable=args.skip_unreadable)
    meta = ic.shard_meta(folder, transform, args.vq, file_sha256(args.vq), cfg_dict,
                         args.skip_unreadable, num_shards)
    meta["tf32"] = tf32
    lo, hi = shards.shard_range(len(folder), shard, num_shards)
    directory = shards.shard_dir(args.out, shard, num_shards)
    shards.run_shard(directory, lo, hi, args.chunk_size, encoder, meta,
                     log=lambda m: print(f"[llamagen-imagenet-codes] {m}", flush=True))
    print(f"[llamagen-imagenet-codes] shard {shard}/{num_shards}: items [{lo}, {hi}) -> {directory}")


def _merge(args: argparse.Namespace) -> None:
    from guidance_repro.llamagen.imagenet_codes import write_merged
    m = write_merged(args.shards, args.out)
    print(f"[llamagen-merge-codes] {m['count']} samples, codes {m['codes']['shape']}, "
          f"{len(m['skipped'])} skipped -> {args.out}")


def _fixtures(args: argparse.Namespace) -> None:
    from guidance_repro.llamagen.mini_fixtures import write_fixtures
    manifest = write_fixtures(args.out, seed=args.seed, classes=args.classes,
                              images_per_class=args.images_per_class, image_size=args.image_size,
                              ref_images=args.ref_images, ref_size=args.ref_size)
    print(f"[mini-paper-fixtures] TEST STAND-IN fixtures ({len(manifest['files'])} files) -> {args.out}")


def register(sub) -> None:
    p = sub.add_parser("llamagen-imagenet-codes", help="VQ-16 ten-crop+flip codes of one ImageNet shard (CCA data)")
    p.add_argument("--data", required=True, help="ImageNet train folder (train/<wnid>/*.JPEG)")
    p.add_argument("--labels-file", default=None, help="class order file (default: sorted wnid folders)")
    p.add_argument("--vq", required=True, help="vq_ds16_c2i.pt (official layout)")
    p.add_argument("--vq-config", default=None, help="JSON VQ16Config widths for tiny test files")
    p.add_argument("--out", required=True, help="shards directory; this shard writes shard-I-of-N/")
    p.add_argument("--shard", type=int, default=None)
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--image-size", type=int, default=384)
    p.add_argument("--crop-range", type=float, default=1.1)
    p.add_argument("--chunk-size", type=int, default=1024, help="images per atomically written chunk")
    p.add_argument("--batch-size", type=int, default=16, help="images per VQ forward (x10 views)")
    p.add_argument("--workers", type=int, default=0, help="image decoding worker processes")
    p.add_argument("--skip-unreadable", action="store_true",
                   help="skip (and list in the manifest) images that cannot be decoded; default: fail naming them")
    p.add_argument("--device", default="cpu", help="cpu | cuda (the local rank's GPU under torchrun)")
    p.add_argument("--no-tf32", action="store_true", help="exact fp32 on GPU (the official script uses TF32)")
    p.add_argument("--threads", type=int, default=0)
    p.set_defaults(func=_codes)

    p = sub.add_parser("llamagen-merge-codes", help="merge finished code shards into one artifact + manifest")
    p.add_argument("--shards", nargs="+", required=True, help="shard-I-of-N directories")
    p.add_argument("--out", required=True, help="output directory (codes.npy, labels.npy, manifest.json)")
    p.set_defaults(func=_merge)

    p = sub.add_parser("mini-paper-fixtures", help="TEST STAND-IN files for the paper-shaped mini tier")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--images-per-class", type=int, default=6)
    p.add_argument("--image-size", type=int, default=64, help="side of the ImageNet-layout JPEGs")
    p.add_argument("--ref-images", type=int, default=32, help="images in the reference batch's arr_0")
    p.add_argument("--ref-size", type=int, default=64, help="side of the reference batch images")
    p.set_defaults(func=_fixtures)
