"""The composition evaluator: a CNN that reads every cell of a composition canvas.

Target encoding. A composition (``data/compositions.py``) puts at most one item in each cell of a
``grid``x``grid`` layout, so the image is fully described cell by cell. For each cell p the network
has three softmax heads:

* ``class``: 11-way, the Fashion-MNIST class of the item in p, or "empty" (index 10); its
  empty/non-empty decision is the item's *position*;
* ``color``: one of the palette colors, trained and scored only where p holds an item;
* ``size``: small / large, trained and scored only where p holds an item.

The loss is the sum of the three cross-entropies averaged over cells (color and size over occupied
cells). Features for FID on compositions = the penultimate layer (after its ReLU). Trained on the
``clip`` split (task ``composition-evaluator``), scored on ``eval`` with :func:`attribute_accuracy`.
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

COMPOSITION_TASK = "composition-evaluator"
COMPOSITION_DEFAULTS = {"channels": [32, 64, 128], "hidden": 256, "dropout": 0.0}
NUM_CLASSES = 10
EMPTY = NUM_CLASSES  # the class index meaning "no item in this cell"


def head_sizes(cfg: dict) -> list[int]:
    """Per cell: class-or-empty, color, size (concatenated in that order, cell by cell)."""
    return [NUM_CLASSES + 1, int(cfg["n_colors"]), int(cfg["n_sizes"])] * int(cfg["n_cells"])


def build_composition_net(cfg: dict) -> ConvFeatureNet:
    return ConvFeatureNet(3, int(cfg["canvas"]), list(cfg["channels"]), int(cfg["hidden"]),
                          head_sizes(cfg), float(cfg.get("dropout", 0.0)))


def cell_targets(attrs: dict[str, np.ndarray], n_cells: int) -> np.ndarray:
    """Per-slot item attributes -> per-cell targets (N, n_cells, 3): class (EMPTY if none),
    color and size (-1 if none)."""
    n = len(attrs["item_class"])
    out = np.full((n, n_cells, 3), -1, dtype=np.int64)
    out[:, :, 0] = EMPTY
    img, slot = np.nonzero(attrs["item_class"] >= 0)
    pos = attrs["item_position"][img, slot]
    if len(pos) and (pos.min() < 0 or pos.max() >= n_cells):
        raise ReproError(f"compositions: item position outside 0..{n_cells - 1}")
    for j, key in enumerate(("item_class", "item_color", "item_size")):
        out[img, pos, j] = attrs[key][img, slot]
    return out


def split_logits(logits: torch.Tensor, cfg: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, sum of heads) -> class (B, cells, 11), color (B, cells, C), size (B, cells, S)."""
    n_cells, n_col, n_size = int(cfg["n_cells"]), int(cfg["n_colors"]), int(cfg["n_sizes"])
    per = logits.view(len(logits), n_cells, NUM_CLASSES + 1 + n_col + n_size)
    return (per[..., :NUM_CLASSES + 1], per[..., NUM_CLASSES + 1:NUM_CLASSES + 1 + n_col],
            per[..., NUM_CLASSES + 1 + n_col:])


def composition_loss(logits: torch.Tensor, targets: torch.Tensor, cfg: dict):
    cls, col, size = split_logits(logits, cfg)
    t_cls, t_col, t_size = targets[..., 0], targets[..., 1], targets[..., 2]
    l_cls = F.cross_entropy(cls.flatten(0, 1), t_cls.flatten())
    # ignore_index=-1 skips empty cells; an all-empty batch cannot happen (every image has an item)
    l_col = F.cross_entropy(col.flatten(0, 1), t_col.flatten(), ignore_index=-1)
    l_size = F.cross_entropy(size.flatten(0, 1), t_size.flatten(), ignore_index=-1)
    occupied = t_cls != EMPTY
    metrics = {"acc_class": (cls.argmax(-1) == t_cls).float().mean().item(),
               "acc_color": (col.argmax(-1) == t_col)[occupied].float().mean().item()}
    return l_cls + l_col + l_size, metrics


class CompositionTask:
    name = COMPOSITION_TASK
    cpu_channels_last = True  # a small CNN: the loop trains it in NHWC on CPU (faster kernels)

    def __init__(self, images: np.ndarray, targets: np.ndarray, model_cfg: dict):
        # uint8 (N, H, W, 3) -> (N, 3, H, W) once, so get_batch is a plain index.
        self.images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        self.targets = torch.from_numpy(targets)
        self.cfg = model_cfg

    def build_model(self) -> nn.Module:
        return build_composition_net(self.cfg)

    def model_config(self) -> dict:
        return dict(self.cfg)

    def num_examples(self) -> int:
        return len(self.targets)

    def get_batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.from_numpy(np.asarray(indices, dtype=np.int64))
        return self.images[idx], self.targets[idx]

    def loss(self, model: nn.Module, batch: Any, step: int):
        x, t = batch
        return composition_loss(model(x.to(torch.float32) / 255), t, self.cfg)


def read_meta(path: Path) -> dict:
    """Layout facts the network's shape depends on, from the compositions artifact."""
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in ("layout", "color_names", "size_names") if k not in z.files]
        if missing:
            raise ReproError(f"{path}: not a compositions artifact (missing {', '.join(missing)})")
        canvas, grid = int(z["layout"][0]), int(z["layout"][1])
        return {"canvas": canvas, "n_cells": grid * grid, "n_colors": len(z["color_names"]),
                "n_sizes": len(z["size_names"])}


def make_composition_task(params: dict, inputs: dict[str, Path]) -> CompositionTask:
    from guidance_repro.data import compositions

    key = COMPOSITION_TASK
    check_params(params, key, {"model", "subset", "split"})
    split = params.get("split", "clip")
    if split == "train":
        raise ReproError(f"{key}.split: the evaluator must not train on the generators' train split")
    path = required_input(inputs, "data", key)
    data = compositions.load(path, split)
    meta = read_meta(path)
    cfg = {**model_params(params, key, COMPOSITION_DEFAULTS, meta["canvas"]), **meta}
    n = subset_size(params, key, len(data["images"]))
    targets = cell_targets({k: v[:n] for k, v in data.items() if k.startswith("item_")}, cfg["n_cells"])
    return CompositionTask(data["images"][:n], targets, cfg)


def predict(model: ConvFeatureNet, images: np.ndarray, cfg: dict, batch_size: int = 500) -> np.ndarray:
    """Predicted per-cell (class-or-EMPTY, color, size) (N, n_cells, 3) for uint8 (N, H, W, 3)."""
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch_size):
            x = torch.from_numpy(images[s:s + batch_size]).permute(0, 3, 1, 2).to(torch.float32) / 255
            out.append(torch.stack([h.argmax(-1) for h in split_logits(model(x), cfg)], dim=-1).numpy())
    return np.concatenate(out)


def attribute_accuracy(pred: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Per-attribute accuracy of per-cell predictions against :func:`cell_targets`.

    ``position``: per cell, occupied vs empty; ``class``/``color``/``size``: over the occupied
    cells (class also needs the cell to be called occupied); ``item``: all three right;
    ``image``: every cell of the image right (empty cells: predicted empty)."""
    occ = targets[..., 0] != EMPTY
    cls_ok, col_ok, size_ok = (pred[..., j] == targets[..., j] for j in range(3))
    item_ok = cls_ok & col_ok & size_ok
    cell_ok = np.where(occ, item_ok, pred[..., 0] == EMPTY)
    return {"position": float(((pred[..., 0] != EMPTY) == occ).mean()),
            "class": float(cls_ok[occ].mean()), "color": float(col_ok[occ].mean()),
            "size": float(size_ok[occ].mean()), "item": float(item_ok[occ].mean()),
            "image": float(cell_ok.all(axis=1).mean())}


def evaluate_file(model_path: Path, data_path: Path, split: str = "eval") -> dict[str, float]:
    """Per-attribute accuracy of a trained evaluator on a split of a compositions artifact."""
    from guidance_repro.data import compositions

    model, obj = load_trained(model_path, COMPOSITION_TASK, build_composition_net,
                              "evaluation.toy_composition.weights")
    cfg = obj["model_config"]
    data = compositions.load(data_path, split)
    targets = cell_targets(data, cfg["n_cells"])
    return attribute_accuracy(predict(model, data["images"], cfg), targets)


def composition_extractor(checkpoint: Path | None, device: torch.device) -> TorchExtractor:
    model, obj = load_trained(checkpoint, COMPOSITION_TASK, build_composition_net,
                              "evaluation.toy_composition.weights")
    model = model.to(device)
    canvas = int(obj["model_config"]["canvas"])

    def feature_fn(x: torch.Tensor) -> torch.Tensor:
        # float (B, 3, H, W) in [0, 255] from TorchExtractor (grey inputs arrive repeated to RGB)
        if x.shape[-2:] != (canvas, canvas):
            raise ReproError(f"toy-composition: images must be {canvas}x{canvas}, got {tuple(x.shape[-2:])}")
        return model.features(x / 255)

    return TorchExtractor("toy-composition", file_sha256(checkpoint), canvas, feature_fn=feature_fn,
                          device=device, feature_dim=model.fc.out_features)
