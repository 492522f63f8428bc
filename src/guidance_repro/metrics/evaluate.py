"""Reference statistics and the evaluation of a samples file (FID, KID, IS, precision/recall).

File formats (shared by every stage):

* samples ``.npz``: ``images`` uint8 (N, H, W, C), C in {1, 3}; ``labels`` int64 (N,) (-1: none);
  optional ``captions`` (N,) str and ``meta_json`` (0-d str, sampler settings). A prepared dataset
  file is read the same way with ``split_key``: ``{split}_images`` / ``{split}_labels``.
* reference stats ``.npz``: ``mu`` float64 (D,), ``sigma`` float64 (D, D), ``features`` float32
  (M, D) (a seeded subset of at most ``max_features``, for precision/recall and KID) and
  ``meta_json`` (evaluator, evaluator_sha256, dataset, split, count, resolution, seed, ...);
  ``pr_radii`` float32 (M,): each kept feature's distance to its ``pr_radii_k``-th neighbour
  (the real manifold of precision/recall, computed once here instead of in every evaluation).
* metrics ``.json``: the values plus a ``protocol`` object saying how they were computed.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from guidance_repro.errors import ReproError
from guidance_repro.metrics import fid as fid_mod
from guidance_repro.metrics.features import FeatureExtractor
from guidance_repro.metrics.inception_score import ADM_SPLIT_SIZE, inception_score
from guidance_repro.metrics.precision_recall import ADM_K, knn_radii, precision_recall

ALL_METRICS = ("fid", "kid", "is", "pr")
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError)
DEFAULT_MAX_FEATURES = 10_000  # the ADM reference batch holds 10k images for precision/recall


def _open_npz(path: Path):
    try:
        data = np.load(path, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise ReproError(f"{path}: not a readable .npz archive ({type(exc).__name__})") from exc
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ReproError(f"{path}: not an .npz archive")
    return data


def load_images(path: str | os.PathLike, split_key: str | None = None) -> dict:
    """Read a samples-format (or, with ``split_key``, a prepared dataset) ``.npz``."""
    path = Path(path)
    if not path.is_file():
        raise ReproError(f"{path}: file not found")
    prefix = f"{split_key}_" if split_key else ""
    try:
        with _open_npz(path) as data:
            if f"{prefix}images" not in data:
                raise ReproError(f"{path}: no array '{prefix}images' (keys: {', '.join(data.files)})")
            images = data[f"{prefix}images"]
            labels = data[f"{prefix}labels"] if f"{prefix}labels" in data else None
            meta = json.loads(str(data["meta_json"])) if "meta_json" in data else {}
    except _READ_ERRORS as exc:
        raise ReproError(f"{path}: unreadable array in .npz ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if images.dtype != np.uint8:
        raise ReproError(f"{path}: images must be uint8, got {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or len(images) == 0:
        raise ReproError(f"{path}: images must be (N > 0, H, W, C) with C in {{1, 3}}, got {images.shape}")
    if labels is None:
        labels = np.full(len(images), -1, dtype=np.int64)
    if len(labels) != len(images):
        raise ReproError(f"{path}: {len(labels)} labels for {len(images)} images")
    return {"images": images, "labels": labels.astype(np.int64), "meta": meta}


def load_reference(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ReproError(f"{path}: reference stats file not found")
    try:
        with _open_npz(path) as data:
            missing = [k for k in ("mu", "sigma", "features", "meta_json") if k not in data]
            if missing:
                raise ReproError(f"{path}: not a reference-stats file (missing {', '.join(missing)})")
            ref = {k: data[k] for k in ("mu", "sigma", "features")}
            ref["meta"] = json.loads(str(data["meta_json"]))
            if "pr_radii" in data:
                ref["pr_radii"] = data["pr_radii"]
    except _READ_ERRORS as exc:
        raise ReproError(f"{path}: unreadable array in .npz ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    return ref


def reference_stats(images: np.ndarray, extractor: FeatureExtractor, *, dataset: str, split: str,
                    max_features: int = DEFAULT_MAX_FEATURES, seed: int = 0,
                    source: str = "") -> dict:
    """Arrays of a reference-stats file for ``images`` (uint8 NHWC)."""
    feats = np.asarray(extractor.features(images), dtype=np.float32)
    mu, sigma = fid_mod.feature_stats(feats)
    kept = feats
    if len(feats) > max_features:
        idx = np.sort(np.random.default_rng(seed).choice(len(feats), max_features, replace=False))
        kept = feats[idx]
    with torch.no_grad():
        radii = knn_radii(torch.as_tensor(kept, dtype=torch.float32), ADM_K).numpy()
    meta = {
        "evaluator": extractor.name, "evaluator_sha256": extractor.sha256,
        "evaluator_resolution": extractor.resolution, "dataset": dataset, "split": split,
        "count": int(len(images)), "resolution": [int(images.shape[1]), int(images.shape[2])],
        "channels": int(images.shape[3]), "feature_dim": int(feats.shape[1]),
        "features_kept": int(len(kept)), "max_features": int(max_features), "seed": int(seed),
        "source": source, "fid_implementation": f"clean-fid {fid_mod.cleanfid_version()}",
        "pr_radii_k": ADM_K,
    }
    return {"mu": mu, "sigma": sigma, "features": kept, "pr_radii": radii,
            "meta_json": np.array(json.dumps(meta))}


def parse_metrics(spec: str) -> list[str]:
    names = [m.strip().lower() for m in spec.split(",") if m.strip()]
    bad = [m for m in names if m not in ALL_METRICS]
    if bad or not names:
        raise ReproError(f"--metrics: unknown {bad or spec!r} (choose from {', '.join(ALL_METRICS)})")
    return names


def check_compatible(samples_path: str, images: np.ndarray, ref: dict, ref_path: str,
                     extractor: FeatureExtractor) -> None:
    """Evaluator and resolution of the reference must match those of this evaluation."""
    meta = ref["meta"]
    if meta.get("evaluator") != extractor.name or meta.get("evaluator_sha256") != extractor.sha256:
        raise ReproError(
            f"{ref_path}: made with evaluator {meta.get('evaluator')} "
            f"(sha256 {str(meta.get('evaluator_sha256'))[:12]}), not {extractor.name} "
            f"(sha256 {extractor.sha256[:12]}); recompute the reference stats")
    resolution = [int(images.shape[1]), int(images.shape[2])]
    if list(meta.get("resolution", [])) != resolution:
        raise ReproError(f"{samples_path}: resolution {resolution[0]}x{resolution[1]} differs from "
                         f"the reference {ref_path} ({meta.get('resolution')})")


def select_samples(images: np.ndarray, num: int | None, seed: int, path: str) -> np.ndarray:
    """All images, or a seeded random subset of ``num`` (edm2: fewer is an error)."""
    if num is None or num == len(images):
        return images
    if num < 1:
        raise ReproError(f"--num: must be positive, got {num}")
    if len(images) < num:
        raise ReproError(f"{path}: {len(images)} samples, fewer than --num {num}")
    idx = np.sort(np.random.default_rng(seed).choice(len(images), num, replace=False))
    return images[idx]


def evaluate(images: np.ndarray, ref: dict, extractor: FeatureExtractor, metrics: list[str], *,
             seed: int = 0, is_split_size: int = ADM_SPLIT_SIZE, pr_k: int = ADM_K,
             device: str | torch.device = "cpu", samples_path: str = "", ref_path: str = "",
             sampler_meta: dict | None = None) -> dict:
    """Metrics of ``images`` against reference stats ``ref``; returns the metrics JSON object."""
    want_logits = "is" in metrics
    if want_logits and not getattr(extractor, "has_logits", hasattr(extractor, "logits")):
        raise ReproError(f"--metrics: evaluator {extractor.name} has no classifier head, drop 'is'")
    if want_logits and hasattr(extractor, "features_and_logits"):
        feats, logits = extractor.features_and_logits(images)
    else:
        feats = extractor.features(images)
        logits = extractor.logits(images) if want_logits else None
    feats = np.asarray(feats, dtype=np.float32)
    if feats.shape[1] != ref["mu"].shape[0]:
        raise ReproError(f"{ref_path}: feature dimension {ref['mu'].shape[0]} differs from the "
                         f"evaluator's {feats.shape[1]}")
    out: dict = {}
    protocol = {
        "evaluator": extractor.name, "evaluator_sha256": extractor.sha256,
        "evaluator_resolution": extractor.resolution, "reference": ref_path,
        "reference_dataset": ref["meta"].get("dataset"), "reference_split": ref["meta"].get("split"),
        "reference_count": ref["meta"].get("count"), "samples": samples_path,
        "num_samples": int(len(images)), "seed": int(seed),
        "resolution": [int(images.shape[1]), int(images.shape[2])], "metrics": list(metrics),
    }
    if "fid" in metrics:
        mu, sigma = fid_mod.feature_stats(feats)
        out["fid"] = fid_mod.fid_from_stats(mu, sigma, ref["mu"], ref["sigma"])
        protocol["fid_implementation"] = (f"clean-fid {fid_mod.cleanfid_version()} frechet_distance "
                                          f"on {extractor.name} features")
    if "kid" in metrics:
        out["kid"] = fid_mod.kid(feats, ref["features"], seed=seed)
        protocol["kid_implementation"] = (f"clean-fid {fid_mod.cleanfid_version()} kernel_distance, "
                                          "100 subsets of <= 1000, seeded")
        protocol["kid_reference_features"] = int(len(ref["features"]))
    if "is" in metrics:
        out["is_mean"], out["is_std"], splits = inception_score(np.asarray(logits), is_split_size)
        protocol.update(is_split_size=int(is_split_size), is_splits=int(splits))
    if "pr" in metrics:
        cached = ref.get("pr_radii") if ref["meta"].get("pr_radii_k") == pr_k else None
        out["precision"], out["recall"] = precision_recall(ref["features"], feats, k=pr_k,
                                                           device=device, real_radii=cached)
        protocol.update(pr_k=int(pr_k), pr_reference_features=int(len(ref["features"])),
                        pr_implementation="k-NN manifolds as the ADM evaluator (torch cdist)")
    if sampler_meta:
        protocol["sampler"] = sampler_meta
    out["protocol"] = protocol
    return out
