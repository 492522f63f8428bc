"""CLI command of the ADM evaluation protocol: ``adm-evaluate`` (metrics/adm.py).

    guidance-repro adm-evaluate --samples point.npz --sample-manifest point.json \
        --reference VIRTUAL_imagenet256_labeled.npz --inception inception-2015-12-05.pt \
        [--sfid-network mixed6.pt] --device cuda --out point.metrics.json

The sampler settings of each batch's manifest (merge-shards) are copied into the metrics JSON
(``protocol.sampler``: family, model, method, cfg, beta, lam), which is what the tables read.
"""

from __future__ import annotations

import argparse

from guidance_repro.errors import ReproError
from guidance_repro.io import paired_outputs, read_json, write_json


def _manifest_settings(path: str) -> dict:
    try:
        m = read_json(path)
    except (OSError, ValueError) as exc:
        raise ReproError(f"{path}: not a readable batch manifest ({exc})") from None
    if not isinstance(m, dict) or m.get("kind") != "adm-batch":
        raise ReproError(f"{path}: not a batch manifest of merge-shards (kind 'adm-batch')")
    return {**m.get("settings", {}), "manifest": str(path), "class_balanced": m.get("class_balanced"),
            "seed": m.get("seeds", {}).get("seed")}


def _evaluate(args: argparse.Namespace) -> None:
    from guidance_repro.metrics.adm import SpatialNetwork, evaluate_batches
    from guidance_repro.metrics.extractors import get_extractor
    from guidance_repro.metrics.inception_standin import STANDIN_NOTE, is_standin
    pairs = paired_outputs(args.samples, args.out, "metrics")
    if args.sample_manifest and len(args.sample_manifest) != len(args.samples):
        raise ReproError(f"--sample-manifest: {len(args.sample_manifest)} manifests for "
                         f"{len(args.samples)} --samples files")
    meta = [_manifest_settings(p) for p in args.sample_manifest] or None
    extractor = get_extractor("inception", args.inception, args.device, {"mode": "legacy_tensorflow"})
    extractor.progress = not args.no_progress
    if args.batch_size:
        extractor.batch_size = args.batch_size
    spatial = SpatialNetwork(args.sfid_network, args.device) if args.sfid_network else None
    results = evaluate_batches([p for p, _ in pairs], args.reference, extractor, spatial, pr_k=args.pr_k,
                               is_split_size=args.is_split_size, device=args.device, sampler_meta=meta)
    if is_standin(args.inception):  # the mini tier: say so in every metrics file, never pass it off
        for result in results:
            result["protocol"].update(test_standin=STANDIN_NOTE, inception_note=STANDIN_NOTE)
    for (path, out), result in zip(pairs, results):
        write_json(out, result)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in result.items() if isinstance(v, float))
        print(f"[adm-evaluate] {path}: {shown} -> {out}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("adm-evaluate", help="FID/sFID/IS/precision/recall of ADM batches, ADM protocol")
    p.add_argument("--samples", nargs="+", required=True, help="ADM batches (.npz: arr_0, arr_1)")
    p.add_argument("--sample-manifest", nargs="*", default=[],
                   help="their merge-shards manifests, same order (sampler settings for the tables)")
    p.add_argument("--reference", required=True,
                   help="the ADM reference batch with stored statistics (VIRTUAL_imagenet256_labeled.npz)")
    p.add_argument("--inception", required=True,
                   help="clean-fid's Inception TorchScript file (inception-2015-12-05.pt), local")
    p.add_argument("--sfid-network", default="",
                   help="TorchScript spatial-feature network for sFID (metrics/adm.py); without it sFID "
                        "is recorded as not computed")
    p.add_argument("--pr-k", type=int, default=3)
    p.add_argument("--is-split-size", type=int, default=5000)
    p.add_argument("--batch-size", type=int, default=0, help="Inception batch size (0: the extractor's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", nargs="+", required=True, help="metrics .json, one per --samples file")
    p.set_defaults(func=_evaluate)
