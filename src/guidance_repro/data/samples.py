"""The samples file: the one format images travel in between samplers, datasets and metrics.

``.npz`` with ``images`` uint8 (N, H, W, C), C in {1, 3}; ``labels`` int64 (N,) (-1 if none);
optional ``captions`` (N,) str; optional ``meta_json`` (0-d str: how the images were made).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from guidance_repro.errors import ReproError
from guidance_repro.io import save_npz


@dataclass
class Samples:
    images: np.ndarray
    labels: np.ndarray
    captions: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def resolution(self) -> int:
        return int(self.images.shape[1])


def check(images: np.ndarray, labels: np.ndarray, captions: np.ndarray | None, source: str) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ReproError(f"{source}: images must be uint8 (N,H,W,C) with C in (1,3), "
                         f"got {images.dtype} {images.shape}")
    if labels.shape != (len(images),):
        raise ReproError(f"{source}: labels shape {labels.shape} does not match {len(images)} images")
    if captions is not None and captions.shape != (len(images),):
        raise ReproError(f"{source}: captions shape {captions.shape} does not match {len(images)} images")


def write(path: str | Path, images: np.ndarray, labels: np.ndarray | None = None,
          captions: np.ndarray | list[str] | None = None, meta: dict[str, Any] | None = None) -> None:
    """Write a samples file atomically (grayscale (N,H,W) images get a channel axis)."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    labels = np.full(len(images), -1, np.int64) if labels is None else np.asarray(labels, np.int64)
    caps = None if captions is None else np.asarray(captions, dtype=str)
    check(images, labels, caps, str(path))
    arrays = {"images": images, "labels": labels,
              "meta_json": np.array(json.dumps(meta or {}, sort_keys=True))}
    if caps is not None:
        arrays["captions"] = caps
    save_npz(path, **arrays)


def read(path: str | Path) -> Samples:
    path = Path(path)
    if not path.is_file():
        raise ReproError(f"{path}: samples file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "images" not in z.files:
                raise ReproError(f"{path}: not a samples file (no 'images' array)")
            images = z["images"]
            labels = z["labels"] if "labels" in z.files else np.full(len(images), -1, np.int64)
            captions = z["captions"] if "captions" in z.files else None
            meta = json.loads(str(z["meta_json"])) if "meta_json" in z.files else {}
    except (OSError, ValueError) as exc:
        raise ReproError(f"{path}: unreadable samples file ({exc})") from None
    if images.ndim == 3:
        images = images[..., None]
    check(images, labels, captions, str(path))
    return Samples(images, labels.astype(np.int64), captions, meta)


NUMERIC_TAGS = ("beta", "lam", "cfg")


def parse_tags(pairs: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` pairs (a sampler's ``--tag``) for a samples file's meta; beta, lam and cfg
    are numbers, so the tidy tables built from the metrics can sort and plot them."""
    tags: dict[str, Any] = {}
    for pair in pairs or []:
        k, sep, v = pair.partition("=")
        if not sep or not k:
            raise ReproError(f"--tag: expected KEY=VALUE, got {pair!r}")
        try:
            tags[k] = float(v) if k in NUMERIC_TAGS and v != "" else v
        except ValueError:
            raise ReproError(f"--tag {k}: not a number: {v!r}") from None
    return tags
