"""Feature extractors for the metrics: the interface, a clean-fid-style helper, Inception, DINOv2.

An extractor is any object with

* ``name: str`` (e.g. ``"inception-clean"``), ``resolution: int`` (input size the network sees),
  ``sha256: str`` (of its weights file), ``feature_dim: int``;
* ``features(images) -> float32 (N, D)`` for uint8 images (N, H, W, C), C in {1, 3};
* optionally ``logits(images) -> float32 (N, K)`` (a classifier head, used for IS) and
  ``features_and_logits(images)`` (both in one pass); ``has_logits`` says whether it has a head.

Kinds are chosen by name through metrics/extractors.py (``get_extractor``); the factories of two
of them are here: ``inception`` (clean-fid's TorchScript Inception-v3, option ``mode`` = ``clean`` |
``legacy_tensorflow``) and ``dinov2`` (FD_DINOv2 as in edm2).

``TorchExtractor`` is the helper most extractors should be: it wraps two clean-fid-style callables,
``feature_fn`` (float32 (B, 3, H, W) in [0, 255] -> (B, D), clean-fid's ``custom_feat_extractor``)
and ``fn_resize`` (numpy HWC -> numpy HWC, clean-fid's ``custom_fn_resize``; None = no resize),
plus an optional head ``logits_fn(batch, features) -> (B, K)``, and prepares images
exactly as clean-fid's folder loader does, so that the same callables given to
``cleanfid.fid.compute_fid`` on PNG files of the same arrays give the same features.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from tqdm import tqdm

from guidance_repro.errors import ReproError


class FeatureExtractor(Protocol):
    name: str
    resolution: int
    sha256: str
    feature_dim: int
    has_logits: bool

    def features(self, images: np.ndarray) -> np.ndarray: ...


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def as_nhwc_rgb(images: np.ndarray, source: str = "images") -> np.ndarray:
    """uint8 (N, H, W[, C]) -> uint8 (N, H, W, 3); grey is repeated as PIL's convert('RGB') does."""
    if images.dtype != np.uint8:
        raise ReproError(f"{source}: images must be uint8, got {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ReproError(f"{source}: images must be (N, H, W, C) with C in {{1, 3}}, got {images.shape}")
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


class _ArrayResizeDataset(torch.utils.data.Dataset):
    """clean-fid's ``ResizeDataset.__getitem__`` for in-memory images (same resize, same ToTensor)."""

    def __init__(self, images: np.ndarray, fn_resize: Callable):
        self.images, self.fn_resize = images, fn_resize
        self.to_tensor = torchvision.transforms.ToTensor()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        out = self.fn_resize(self.images[i])
        if out.dtype == np.uint8:
            return self.to_tensor(np.array(out)) * 255
        return self.to_tensor(out.astype(np.float32, copy=False))


class TorchExtractor:
    """An extractor made of clean-fid-style callables (see the module docstring)."""

    def __init__(self, name: str, sha256: str, resolution: int, feature_fn: Callable,
                 logits_fn: Callable | None = None, fn_resize: Callable | None = None,
                 device: torch.device | str = "cpu", batch_size: int = 256, num_workers: int = 0,
                 feature_dim: int | None = None):
        self.name, self.sha256, self.resolution = name, sha256, int(resolution)
        self.feature_fn, self.logits_fn, self.fn_resize = feature_fn, logits_fn, fn_resize
        self.device = torch.device(device)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.feature_dim = feature_dim
        self.progress = True

    @property
    def has_logits(self) -> bool:
        return self.logits_fn is not None

    @property
    def cleanfid_fn_resize(self) -> Callable:
        """The ``custom_fn_resize`` to give clean-fid for the same preprocessing."""
        return self.fn_resize if self.fn_resize is not None else (lambda x: x)

    def _batches(self, images: np.ndarray):
        images = as_nhwc_rgb(images)
        n = len(images)
        bar = tqdm(total=n, desc=f"features [{self.name}]", unit="img", disable=not self.progress,
                   leave=False)
        if self.fn_resize is None:
            # Vectorised form of clean-fid's per-image ToTensor()(uint8) * 255: the same elementwise
            # float ops (to float32, /255, *255), so the values are bit-identical, only faster.
            # Contiguous NCHW as ToTensor gives: a permuted (channels-last) batch would make the
            # network's convolutions take another CPU kernel and round differently.
            for start in range(0, n, self.batch_size):
                chunk = torch.from_numpy(images[start:start + self.batch_size]).permute(0, 3, 1, 2).contiguous()
                yield chunk.to(torch.float32).div(255) * 255
                bar.update(len(chunk))
        else:
            loader = torch.utils.data.DataLoader(_ArrayResizeDataset(images, self.fn_resize),
                                                 batch_size=self.batch_size, shuffle=False,
                                                 num_workers=self.num_workers)
            for batch in loader:
                yield batch
                bar.update(len(batch))
        bar.close()

    def _run(self, images: np.ndarray, want_logits: bool) -> tuple[np.ndarray, np.ndarray | None]:
        if want_logits and self.logits_fn is None:
            raise ReproError(f"evaluator {self.name} has no classifier head (IS needs logits)")
        feats, logits = [], []
        with torch.no_grad():
            for batch in self._batches(images):
                f = self.feature_fn(batch.to(self.device))
                feats.append(f.detach().cpu().numpy().astype(np.float32, copy=False))
                if want_logits:
                    logits.append(self.logits_fn(batch.to(self.device), f).detach().cpu().numpy()
                                  .astype(np.float32, copy=False))
        if not feats:
            raise ReproError("images: no images to extract features from")
        return np.concatenate(feats), (np.concatenate(logits) if want_logits else None)

    def features(self, images: np.ndarray) -> np.ndarray:
        return self._run(images, False)[0]

    def logits(self, images: np.ndarray) -> np.ndarray:
        return self._run(images, True)[1]

    def features_and_logits(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._run(images, True)


# --- Inception-v3 (clean-fid) -------------------------------------------------------------------

INCEPTION_FILE = "inception-2015-12-05.pt"


def inception_extractor(checkpoint: Path | None, device: torch.device,
                       mode: str = "clean") -> TorchExtractor:
    from cleanfid.inception_torchscript import InceptionV3W
    from cleanfid.resize import build_resizer

    key = "evaluation.inception.weights"
    if mode not in ("clean", "legacy_tensorflow"):
        raise ReproError(f"evaluation.inception.mode: {mode!r} is not clean or legacy_tensorflow")
    if checkpoint is None or not checkpoint.is_file():
        raise ReproError(f"{key}: Inception TorchScript file {checkpoint} not found (place "
                         f"{INCEPTION_FILE} locally; nothing is downloaded at run time)")
    # clean-fid's builder (features.build_feature_extractor) hard-codes /tmp and downloads; its
    # InceptionV3W takes a folder holding a file of the canonical name, so we give it one that
    # holds our local file under that name, with download=False.
    with tempfile.TemporaryDirectory(prefix="inception-") as tmp:
        folder = checkpoint.parent
        if checkpoint.name != INCEPTION_FILE:
            folder = Path(tmp)
            (folder / INCEPTION_FILE).symlink_to(checkpoint.resolve())
        try:
            model = InceptionV3W(str(folder), download=False,
                                 resize_inside=(mode == "legacy_tensorflow")).to(device).eval()
        except RuntimeError as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ReproError(f"{key}: {checkpoint} is not a readable TorchScript file ({msg})") from exc

    def logits_fn(_x, feats):
        # The ADM and StyleGAN evaluators take the softmax logits without the output bias.
        output = getattr(model.base, "output", None)
        if output is None or not hasattr(output, "weight"):
            raise ReproError(f"{key}: {checkpoint} has no 'output' layer for IS logits")
        return F.linear(feats, output.weight)

    resizer = build_resizer(mode)
    return TorchExtractor(f"inception-{mode}", file_sha256(checkpoint), 299, feature_fn=model,
                          logits_fn=logits_fn, fn_resize=resizer, device=device, feature_dim=2048)


# --- DINOv2 (FD_DINOv2, edm2 protocol) ----------------------------------------------------------

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def dinov2_extractor(checkpoint: Path | None, device: torch.device) -> TorchExtractor:
    key = "evaluation.dinov2.weights"
    if checkpoint is None or not checkpoint.is_file():
        raise ReproError(f"{key}: DINOv2 TorchScript file {checkpoint} not found (nothing is "
                         "downloaded at run time)")
    # Only TorchScript: a plain state dict would need the DINOv2 model code, which is not on PyPI
    # (edm2 gets it through torch.hub from GitHub at run time). Export once where the network is
    # reachable: torch.jit.trace(torch.hub.load(...,'dinov2_vitl14'), torch.zeros(1,3,224,224)).save(p)
    try:
        model = torch.jit.load(str(checkpoint), map_location=device).eval()
    except RuntimeError as exc:
        raise ReproError(f"{key}: {checkpoint} is not a TorchScript file; export dinov2_vitl14 with "
                         f"torch.jit.trace (state dicts are not supported: no local model code)") from exc
    mean = torch.tensor(_IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(_IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def feature_fn(x):
        # edm2 calculate_metrics.py: bicubic to 224 (torch, antialias), /255, ImageNet mean/std.
        x = F.interpolate(x.to(torch.float32), size=(224, 224), mode="bicubic", antialias=True)
        return model((x / 255 - mean) / std)

    return TorchExtractor("dinov2", file_sha256(checkpoint), 224, feature_fn=feature_fn,
                          device=device)

