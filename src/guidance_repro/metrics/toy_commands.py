"""CLI commands of the toy evaluators and the CLIP score.

    python -m guidance_repro evaluator-quality --kind classifier --model M.pt --data fmnist.npz --out q.json
    python -m guidance_repro evaluator-quality --kind composition --model M.pt --data comp.npz --out q.json
    python -m guidance_repro evaluator-quality --kind judge --model M.pt --data comp.npz --out q.json
    python -m guidance_repro clip-score --samples S.npz --model toy-judge --weights M.pt --out s.json

``evaluator-quality`` measures a trained evaluator on held-out data: the classifier's test accuracy,
IS of the test set and FID(train, test) with its own features (the floor of every FID measured
with it); the composition evaluator's per-attribute accuracy on ``eval``; the judge CLIP's CLIP
score of matching vs shuffled captions and its retrieval top-1 on ``eval``.
``clip-score`` scores a samples file (``images`` + ``captions``, see ``metrics/evaluate.py``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from guidance_repro.errors import ReproError
from guidance_repro.io import timing_path, write_json


def classifier_quality(model: Path, data: Path, seed: int = 0) -> dict:
    from guidance_repro.data import fashion_mnist
    from guidance_repro.metrics.extractors import get_extractor
    from guidance_repro.metrics.fid import fid_from_features
    from guidance_repro.metrics.inception_score import inception_score

    fm = fashion_mnist.load(data)
    ex = get_extractor("toy-classifier", model)
    test_f, test_logits = ex.features_and_logits(fm.test_images)
    # FID floor: 10,000 training images (a seeded draw) against the 10,000 test images.
    pick = np.random.default_rng(seed).choice(len(fm.train_images), size=len(fm.test_images), replace=False)
    train_f = ex.features(fm.train_images[pick])
    is_mean, is_std, _ = inception_score(test_logits)
    return {"kind": "classifier", "test_accuracy": float((test_logits.argmax(1) == fm.test_labels).mean()),
            "is_test": is_mean, "is_test_std": is_std,
            "fid_train10k_vs_test": fid_from_features(train_f, test_f),
            "feature_dim": int(test_f.shape[1]), "evaluator_sha256": ex.sha256}


def composition_quality(model: Path, data: Path, split: str = "eval") -> dict:
    from guidance_repro.metrics.toy_composition import evaluate_file

    return {"kind": "composition", "split": split, "accuracy": evaluate_file(model, data, split)}


def judge_quality(model: Path, data: Path, split: str = "eval", group_size: int = 100,
                  seed: int = 0) -> dict:
    from guidance_repro.data import compositions
    from guidance_repro.metrics.clip_score import clip_score, load_scorer, retrieval_top1

    d = compositions.load(data, split)
    scorer = load_scorer("toy-judge", model)
    shuffled = np.random.default_rng(seed).permutation(d["captions"])
    return {"kind": "judge", "split": split,
            "clip_score_matched": clip_score(scorer, d["images"], d["captions"])["clip_score"],
            "clip_score_shuffled": clip_score(scorer, d["images"], shuffled)["clip_score"],
            "retrieval": retrieval_top1(scorer, d["images"], d["captions"], group_size)}


def _quality(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    model, data = Path(args.model), Path(args.data)
    if args.kind == "classifier":
        result = classifier_quality(model, data)
    elif args.kind == "composition":
        result = composition_quality(model, data)
    else:
        result = judge_quality(model, data)
    result.update(model=str(model), data=str(data))
    write_json(args.out, result)  # no wall-clock inside: identical runs give identical files
    write_json(timing_path(args.out), {"seconds": time.perf_counter() - t0})
    print(f"[evaluator-quality {args.kind}] -> {args.out}")


def _clip_score(args: argparse.Namespace) -> None:
    from guidance_repro.metrics.clip_score import clip_score, load_scorer, retrieval_top1

    path = Path(args.samples)
    if not path.is_file():
        raise ReproError(f"{path}: samples file not found")
    with np.load(path, allow_pickle=False) as z:
        if "images" not in z.files or "captions" not in z.files:
            raise ReproError(f"{path}: needs arrays 'images' and 'captions' for a CLIP score")
        images, captions = z["images"], z["captions"]
    scorer = load_scorer(args.model, args.weights, args.device, quick_gelu=not args.no_quick_gelu)
    result = clip_score(scorer, images, captions, args.variant)
    if args.retrieval_group:
        result["retrieval"] = retrieval_top1(scorer, images, captions, args.retrieval_group)
    result["samples"] = str(path)
    write_json(args.out, result)
    print(f"[clip-score] {result['clip_score']:.4f} ({args.variant}, n={result['n']}) -> {args.out}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluator-quality", help="held-out quality of a trained toy evaluator")
    p.add_argument("--kind", required=True, choices=["classifier", "composition", "judge"])
    p.add_argument("--model", required=True, help="model file written by the train command")
    p.add_argument("--data", required=True, help="Fashion-MNIST (classifier) or compositions .npz")
    p.add_argument("--out", required=True, help="output .json")
    p.set_defaults(func=_quality)

    p = sub.add_parser("clip-score", help="CLIP score of a samples file against its captions")
    p.add_argument("--samples", required=True, help="samples .npz with images and captions")
    p.add_argument("--model", required=True, help="evaluation.clip.model: toy-judge or an open_clip name")
    p.add_argument("--weights", required=True, help="evaluation.clip.weights: a local weights file")
    p.add_argument("--variant", default="raw", choices=["raw", "clamp100"])
    p.add_argument("--retrieval-group", type=int, default=0, help="also retrieval top-1 in groups of N")
    p.add_argument("--no-quick-gelu", action="store_true", help="weights trained with plain GELU")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True, help="output .json")
    p.set_defaults(func=_clip_score)
