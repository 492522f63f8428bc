"""The toy tier's feature networks: a Fashion-MNIST classifier and a composition evaluator.

Both are small CNNs trained with the shared loop (``guidance_repro.train``) on data the generators
never see as training data, and both are registered as feature extractors for FID/KID/PR (features
= the penultimate layer, after its ReLU) and, for the classifier, IS (logits = its last layer).

Tasks (``python -m guidance_repro train --task NAME``):

* ``fmnist-classifier``: input ``data`` = the prepared Fashion-MNIST ``.npz``; trains on the train
  split. Params: ``model`` = {channels: [c1, c2], hidden}, optional ``subset`` (first N images).
* ``composition-evaluator``: input ``data`` = the compositions ``.npz``; trains on its ``clip``
  split (never the generators' ``train`` split). Params: ``model`` = {channels: [c1, c2, c3],
  hidden}, optional ``subset``, optional ``split`` (default ``clip``). One softmax head per
  (item slot, attribute); see ``toy_composition.py``.

Extractors (``metrics.extractors.get_extractor``): ``toy-classifier`` and ``toy-composition``.
The conv network and the parameter checks both evaluators use are ``toy_conv_net.py``'s.

Input handling of the classifier extractor: uint8 (N, 28, 28), (N, 28, 28, 1) or (N, 28, 28, 3).
Grey images are used as they are. RGB images are converted to grey with the ITU-R BT.601 luma
weights (0.299 R + 0.587 G + 0.114 B, what PIL's ``convert('L')`` uses, kept in float, no
rounding), so a grey image repeated to RGB maps back to itself (up to float rounding) and the
conversion is deterministic. Other sizes are refused: the classifier never resizes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from guidance_repro.errors import ReproError
from guidance_repro.metrics.features import TorchExtractor, file_sha256
from guidance_repro.metrics.toy_conv_net import (ConvFeatureNet, check_params, load_trained, model_params,
                                                 required_input, subset_size)

LUMA = (0.299, 0.587, 0.114)
FMNIST_SIZE = 28
NUM_CLASSES = 10


def build_classifier(cfg: dict) -> ConvFeatureNet:
    return ConvFeatureNet(1, FMNIST_SIZE, list(cfg["channels"]), int(cfg["hidden"]), [NUM_CLASSES],
                          float(cfg.get("dropout", 0.0)))


# --- Fashion-MNIST classifier task ----------------------------------------------------------------

CLASSIFIER_TASK = "fmnist-classifier"
CLASSIFIER_DEFAULTS = {"channels": [32, 64], "hidden": 128, "dropout": 0.0}


def images_to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W) or (B, C, H, W) -> float32 (B, C, H, W) in [0, 1]."""
    if images.ndim == 3:
        images = images[:, None]
    return images.to(torch.float32) / 255


class ClassifierTask:
    name = CLASSIFIER_TASK
    cpu_channels_last = True  # a small CNN: the loop trains it in NHWC on CPU (faster kernels)

    def __init__(self, images: np.ndarray, labels: np.ndarray, model_cfg: dict):
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.cfg = model_cfg

    def build_model(self) -> nn.Module:
        return build_classifier(self.cfg)

    def model_config(self) -> dict:
        return dict(self.cfg)

    def num_examples(self) -> int:
        return len(self.labels)

    def get_batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.from_numpy(np.asarray(indices, dtype=np.int64))
        return self.images[idx], self.labels[idx]

    def loss(self, model: nn.Module, batch: Any, step: int):
        x, y = batch
        logits = model(images_to_unit(x))
        loss = F.cross_entropy(logits, y)
        return loss, {"acc": (logits.argmax(1) == y).float().mean().item()}


def make_classifier_task(params: dict, inputs: dict[str, Path]) -> ClassifierTask:
    from guidance_repro.data import fashion_mnist

    key = CLASSIFIER_TASK
    check_params(params, key, {"model", "subset"})
    model_cfg = model_params(params, key, CLASSIFIER_DEFAULTS, FMNIST_SIZE)
    data = fashion_mnist.load(required_input(inputs, "data", key))
    n = subset_size(params, key, len(data.train_labels))
    return ClassifierTask(data.train_images[:n], data.train_labels[:n], model_cfg)


# --- the classifier as a feature extractor --------------------------------------------------------

def rgb_to_grey(x: torch.Tensor) -> torch.Tensor:
    """float (B, 3, H, W) -> (B, 1, H, W) with the BT.601 luma weights (see module docstring)."""
    w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def to_grey(x: torch.Tensor) -> torch.Tensor:
    """(B, 1 or 3, H, W) -> (B, 1, H, W): images whose three channels are equal keep that channel
    exactly; the others go through :func:`rgb_to_grey`."""
    if x.shape[1] == 1:
        return x
    same = ((x[:, 0] == x[:, 1]) & (x[:, 0] == x[:, 2])).flatten(1).all(dim=1).view(-1, 1, 1, 1)
    return torch.where(same, x[:, :1], rgb_to_grey(x))


def classifier_predict(model: nn.Module, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits (N, 10) of a trained classifier for uint8 grey images (N, 28, 28)."""
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch_size):
            out.append(model(images_to_unit(torch.from_numpy(images[s:s + batch_size]))).numpy())
    return np.concatenate(out)


def classifier_extractor(checkpoint: Path | None, device: torch.device) -> TorchExtractor:
    key = "evaluation.toy_classifier.weights"
    model, _ = load_trained(checkpoint, CLASSIFIER_TASK, build_classifier, key)
    model = model.to(device)

    def feature_fn(x: torch.Tensor) -> torch.Tensor:
        # TorchExtractor hands over float (B, 3, H, W) in [0, 255]; grey inputs arrive repeated.
        if x.shape[-2:] != (FMNIST_SIZE, FMNIST_SIZE):
            raise ReproError(f"toy-classifier: images must be {FMNIST_SIZE}x{FMNIST_SIZE}, got "
                             f"{tuple(x.shape[-2:])}")
        return model.features(to_grey(x) / 255)

    def logits_fn(_x: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        return model.head_logits(feats)

    return TorchExtractor("toy-classifier", file_sha256(checkpoint), FMNIST_SIZE, feature_fn=feature_fn,
                          logits_fn=logits_fn, device=device, feature_dim=model.fc.out_features)
