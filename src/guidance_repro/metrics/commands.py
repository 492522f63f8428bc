"""CLI commands of the metrics stage: ``reference-stats`` and ``evaluate``."""

from __future__ import annotations

import argparse
from pathlib import Path

from guidance_repro.errors import ReproError
from guidance_repro.io import paired_outputs, save_npz, split_timing, timing_path, write_json
from guidance_repro.metrics.inception_score import ADM_SPLIT_SIZE

# torch / clean-fid are imported inside the commands: building the CLI parser stays fast.
DEFAULT_MAX_FEATURES = 10000


def _options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ReproError(f"--evaluator-option: expected KEY=VALUE, got {pair!r}")
        options[key] = value
    return options


def build_extractor(args: argparse.Namespace):
    from guidance_repro.metrics.extractors import get_extractor

    extractor = get_extractor(args.evaluator, args.evaluator_checkpoint, args.device,
                              _options(args.evaluator_option))
    if args.batch_size and hasattr(extractor, "batch_size"):
        extractor.batch_size = args.batch_size
    if args.workers and hasattr(extractor, "num_workers"):
        extractor.num_workers = args.workers  # DataLoader workers for per-image resizing
    return extractor


def _reference_stats(args: argparse.Namespace) -> None:
    from guidance_repro.metrics import evaluate as ev

    if args.adm_batch:  # the images of the ADM reference batch (arr_0), validated as a whole
        if args.split_key:
            raise ReproError("--adm-batch: the reference batch has no splits (drop --split-key)")
        from guidance_repro.data.imagenet import load_reference_batch
        data = {"images": load_reference_batch(args.images).images}
    else:
        data = ev.load_images(args.images, args.split_key)
    extractor = build_extractor(args)
    arrays = ev.reference_stats(data["images"], extractor,
                                dataset=args.dataset or Path(args.images).stem,
                                split=args.split_key or "samples", max_features=args.max_features,
                                seed=args.seed, source=str(args.images))
    save_npz(args.out, **arrays)
    print(f"[reference-stats] {len(data['images'])} images, {extractor.name} -> {args.out}")


def _evaluate(args: argparse.Namespace) -> None:
    """Metrics of one or more samples files against one reference, with one loaded evaluator.

    A sweep's points are evaluated in one process: a point takes well under a second, while
    starting Python with torch and clean-fid (which imports torchvision) takes about 4 s. Every
    point is computed before any file is written, so a bad input leaves no metrics file behind.
    """
    from guidance_repro.metrics import evaluate as ev

    pairs = paired_outputs(args.samples, args.out, "metrics")
    metrics = ev.parse_metrics(args.metrics)
    ref = ev.load_reference(args.reference)
    extractor = build_extractor(args)
    results, timings = [], []
    for path, _ in pairs:
        data = ev.load_images(path)
        ev.check_compatible(str(path), data["images"], ref, str(args.reference), extractor)
        images = ev.select_samples(data["images"], args.num, args.seed, str(path))
        sampler_meta, timing = split_timing(data["meta"])
        results.append(ev.evaluate(images, ref, extractor, metrics, seed=args.seed,
                                   is_split_size=args.is_split_size, pr_k=args.pr_k,
                                   device=args.device, samples_path=str(path),
                                   ref_path=str(args.reference), sampler_meta=sampler_meta))
        timings.append(timing)
    for (path, out), result, timing in zip(pairs, results, timings):
        write_json(out, result)
        if timing:  # the sampling job's cost, read by the tables beside this metrics file
            write_json(timing_path(out), timing)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in result.items() if k != "protocol")
        print(f"[evaluate] {path}: {shown} -> {out}")


def add_extractor_args(p: argparse.ArgumentParser) -> None:
    """The feature-extractor options every metrics command shares."""
    p.add_argument("--evaluator", required=True, help="extractor kind (inception, dinov2, toy kinds)")
    p.add_argument("--evaluator-checkpoint", default="", help="weights of the evaluator (local path)")
    p.add_argument("--evaluator-option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra extractor option, e.g. mode=legacy_tensorflow for inception")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=0, help="feature batch size (0: extractor's)")
    p.add_argument("--workers", type=int, default=0, help="resize workers (inception/clean)")
    p.add_argument("--seed", type=int, default=0)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reference-stats", help="feature mean/covariance (+ kept features) of a set")
    p.add_argument("--images", required=True, help="samples-format .npz (or dataset .npz + --split-key)")
    p.add_argument("--split-key", default="", help="read {KEY}_images/{KEY}_labels (e.g. test)")
    p.add_argument("--adm-batch", action="store_true",
                   help="--images is the ADM reference batch (VIRTUAL_imagenet256_labeled.npz: arr_0)")
    p.add_argument("--dataset", default="", help="dataset name for the metadata (default: file stem)")
    p.add_argument("--max-features", type=int, default=DEFAULT_MAX_FEATURES,
                   help="features kept for precision/recall and KID (seeded subset)")
    p.add_argument("--out", required=True, help="output reference-stats .npz")
    add_extractor_args(p)
    p.set_defaults(func=_reference_stats)

    p = sub.add_parser("evaluate", help="FID/KID/IS/precision/recall of samples files")
    p.add_argument("--samples", required=True, nargs="+", help="samples-format .npz file(s)")
    p.add_argument("--reference", required=True, help="reference-stats .npz")
    p.add_argument("--num", type=int, default=None, help="use this many samples (seeded subset)")
    p.add_argument("--metrics", default="fid,is,pr", help="comma list of fid,kid,is,pr")
    p.add_argument("--is-split-size", type=int, default=ADM_SPLIT_SIZE,
                   help="IS split size (ADM evaluator: 5000)")
    p.add_argument("--pr-k", type=int, default=3,
                   help="k of the k-NN manifolds for precision/recall (ADM evaluator: 3)")
    p.add_argument("--out", required=True, nargs="+",
                   help="output metrics .json, one per --samples file in the same order")
    add_extractor_args(p)
    p.set_defaults(func=_evaluate)
