"""What the two toy evaluators (toy_evaluators.py, toy_composition.py) share: the conv feature
network, the checks of their task parameters, and loading a trained evaluator back.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from guidance_repro.errors import ReproError


class ConvFeatureNet(nn.Module):
    """conv-BN-ReLU-maxpool blocks, then Linear -> ReLU (the features), then the heads.

    Input: float (B, C, H, W) in [0, 1]; it is centred to [-1, 1] inside. ``head_sizes`` are the
    output sizes of the heads; their logits are concatenated along dim 1 by ``forward``.
    """

    def __init__(self, in_channels: int, image_size: int, channels: list[int], hidden: int,
                 head_sizes: list[int], dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        c, size = in_channels, image_size
        for width in channels:
            layers += [nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c, size = width, size // 2
        if size < 1:
            raise ReproError(f"model.channels: {len(channels)} pooling blocks are too many for "
                             f"{image_size}x{image_size} images")
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Linear(c * size * size, hidden)
        self.drop = nn.Dropout(dropout)
        self.heads = nn.ModuleList(nn.Linear(hidden, k) for k in head_sizes)
        self.head_sizes = list(head_sizes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x * 2 - 1)
        return F.relu(self.fc(x.flatten(1)))

    def head_logits(self, feats: torch.Tensor) -> torch.Tensor:
        feats = self.drop(feats)
        return torch.cat([h(feats) for h in self.heads], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_logits(self.features(x))


def model_params(params: dict, key: str, defaults: dict, image_size: int) -> dict:
    """The ``model`` section of a task's params, validated; unknown keys are refused."""
    model = dict(defaults)
    given = params.get("model", {})
    if not isinstance(given, dict):
        raise ReproError(f"{key}.model: must be a mapping, got {type(given).__name__}")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ReproError(f"{key}.model.{unknown[0]}: unknown key (known: {', '.join(defaults)})")
    model.update(given)
    ch = model["channels"]
    if not isinstance(ch, (list, tuple)) or not ch or not all(isinstance(c, int) and c > 0 for c in ch):
        raise ReproError(f"{key}.model.channels: must be a list of positive integers, got {ch!r}")
    if not isinstance(model["hidden"], int) or model["hidden"] < 1:
        raise ReproError(f"{key}.model.hidden: must be a positive integer, got {model['hidden']!r}")
    if not 0 <= float(model["dropout"]) < 1:
        raise ReproError(f"{key}.model.dropout: must be in [0, 1), got {model['dropout']!r}")
    if image_size >> len(ch) < 1:
        raise ReproError(f"{key}.model.channels: {len(ch)} pooling blocks are too many for "
                         f"{image_size}x{image_size} images")
    model["channels"] = list(ch)
    model["dropout"] = float(model["dropout"])
    return model


def check_params(params: dict, key: str, allowed: set[str]) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ReproError(f"{key}.{unknown[0]}: unknown parameter (known: {', '.join(sorted(allowed))})")


def subset_size(params: dict, key: str, n: int) -> int:
    sub = params.get("subset")
    if sub is None:
        return n
    if not isinstance(sub, int) or isinstance(sub, bool) or sub < 1:
        raise ReproError(f"{key}.subset: must be a positive integer, got {sub!r}")
    return min(sub, n)


def required_input(inputs: dict[str, Path], name: str, task: str) -> Path:
    if name not in inputs:
        raise ReproError(f"--input {name}=PATH: task {task} needs it (got: {', '.join(inputs) or 'none'})")
    return Path(inputs[name])


def load_trained(path: str | Path, task: str, builder, key: str) -> tuple[nn.Module, dict]:
    """Rebuild the model a ``train`` run of ``task`` wrote to ``path``, in eval mode on the CPU."""
    from guidance_repro.train.checkpoint import load_model_file, load_state_strict

    if path is None or not Path(path).is_file():
        raise ReproError(f"{key}: trained {task} model {path} not found")
    obj = load_model_file(path)
    if obj.get("task") != task or "model" not in obj or "model_config" not in obj:
        raise ReproError(f"{key}: {path} is not a trained {task} model (task {obj.get('task')!r})")
    model = builder(obj["model_config"])
    load_state_strict(model, obj["model"], path)
    return model.eval(), obj
