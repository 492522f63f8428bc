"""Small CLIP models for the toy tier, built from open_clip's own classes and trained with its
``ClipLoss`` on captioned compositions (``data/compositions.py``). Nothing is downloaded: the model
is ``open_clip.CLIP`` built from a config dict, the tokenizer is open_clip's bundled BPE
``SimpleTokenizer`` (``open_clip.tokenize``), so ``vocab_size`` stays 49408.

One builder, several CLIPs: the task name, the split and the seed (``train.seed``) are parameters,
so the judge CLIP (task ``judge-clip``, split ``clip``) and any other small CLIP (e.g. a text
encoder for the toy STAR, trained on another split or seed) come from the same code. A trained
model is rebuilt anywhere with :func:`load_clip` (the model file's ``model_config`` holds
everything :func:`build_clip` needs).

Training parameters (``--params``): ``model`` = {embed_dim, vision: {...}, text: {...},
image_mean, image_std} (keys merged over :data:`CLIP_DEFAULTS`), ``split`` (default ``clip``; the
generators' ``train`` split is refused), ``subset`` (first N examples). Input: ``data`` = the
compositions ``.npz``. The contrastive loss sees the whole global batch as negatives, also under
torchrun (ClipLoss gathers the features across ranks with gradients); keep ``train.accumulation``
at 1, since micro-batches would each have their own, smaller set of negatives.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from guidance_repro.errors import ReproError

JUDGE_TASK = "judge-clip"
CLIP_KIND = "open_clip.CLIP"
MAX_LOGIT_SCALE = 100.0  # open_clip's training clamps logit_scale to ln(100); we clamp its exp
CLIP_DEFAULTS: dict[str, Any] = {
    "embed_dim": 128,
    "vision": {"image_size": 32, "patch_size": 8, "width": 128, "layers": 4, "head_width": 32,
               "mlp_ratio": 2.0},
    "text": {"context_length": 36, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 3,
             "mlp_ratio": 2.0},
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
}


def clip_config(model_params: dict | None, key: str) -> dict:
    """Merge ``model_params`` over :data:`CLIP_DEFAULTS` and check it builds; the result is the
    model file's ``model_config``."""
    cfg = copy.deepcopy(CLIP_DEFAULTS)
    given = model_params or {}
    if not isinstance(given, dict):
        raise ReproError(f"{key}.model: must be a mapping, got {type(given).__name__}")
    for name, value in given.items():
        if name not in cfg:
            raise ReproError(f"{key}.model.{name}: unknown key (known: {', '.join(cfg)})")
        if isinstance(cfg[name], dict):
            if not isinstance(value, dict):
                raise ReproError(f"{key}.model.{name}: must be a mapping")
            cfg[name].update(value)
        else:
            cfg[name] = value
    if cfg["text"]["vocab_size"] != 49408:
        raise ReproError(f"{key}.model.text.vocab_size: must be 49408 (open_clip's SimpleTokenizer)")
    for name in ("image_mean", "image_std"):
        if not (isinstance(cfg[name], list) and len(cfg[name]) == 3):
            raise ReproError(f"{key}.model.{name}: must be a list of 3 numbers")
    cfg["kind"] = CLIP_KIND
    try:
        build_clip(cfg)
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        raise ReproError(f"{key}.model: open_clip.CLIP cannot be built from it ({exc})") from None
    return cfg


def build_clip(cfg: dict) -> nn.Module:
    """An ``open_clip.CLIP`` from a model_config written by :func:`clip_config`."""
    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    return open_clip.CLIP(embed_dim=int(cfg["embed_dim"]), vision_cfg=CLIPVisionCfg(**cfg["vision"]),
                          text_cfg=CLIPTextCfg(**cfg["text"]))


def tokenize(captions, context_length: int) -> torch.Tensor:
    """open_clip's bundled BPE tokenizer (no download); long captions are truncated (EOT kept)."""
    import open_clip

    return open_clip.tokenize([str(c) for c in captions], context_length=context_length)


def images_to_input(images: np.ndarray | torch.Tensor, cfg: dict) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised float (N, 3, S, S), S = the vision tower's image_size.
    Other sizes are resized (bicubic, antialiased), grey (C = 1) is repeated to RGB."""
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8 or x.ndim not in (3, 4):
        raise ReproError(f"CLIP: images must be uint8 (N, H, W[, C]), got {x.dtype} {tuple(x.shape)}")
    if x.ndim == 3:
        x = x[..., None]
    x = x.permute(0, 3, 1, 2).to(torch.float32) / 255
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    size = int(cfg["vision"]["image_size"])
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    mean = torch.tensor(cfg["image_mean"], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(cfg["image_std"], dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std


def _clip_loss_fn():
    """open_clip's ClipLoss; across torchrun ranks it gathers features with their gradients."""
    import torch.distributed as dist
    from open_clip import ClipLoss

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return ClipLoss(local_loss=False, gather_with_grad=True, rank=dist.get_rank(),
                        world_size=dist.get_world_size())
    return ClipLoss()


class ClipTask:
    """A TrainTask (see ``train/loop.py``) for one small CLIP on one split of the compositions."""

    def __init__(self, name: str, images: np.ndarray, captions: np.ndarray, cfg: dict):
        self.name, self.cfg = name, cfg
        self.images = images_to_input(images, cfg)  # normalised once: the data set is small
        self.tokens = tokenize(captions, int(cfg["text"]["context_length"]))
        self._loss = None

    def build_model(self) -> nn.Module:
        return build_clip(self.cfg)

    def model_config(self) -> dict:
        return copy.deepcopy(self.cfg)

    def num_examples(self) -> int:
        return len(self.tokens)

    def get_batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.from_numpy(np.asarray(indices, dtype=np.int64))
        return self.images[idx], self.tokens[idx]

    def param_groups(self, model: nn.Module, weight_decay: float) -> list[dict]:
        # As open_clip's training: no weight decay on gains, biases, embeddings' scale.
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            exclude = p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
            (no_decay if exclude else decay).append(p)
        return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]

    def loss(self, model: nn.Module, batch: Any, step: int):
        if self._loss is None:
            self._loss = _clip_loss_fn()
        images, tokens = batch
        img_f, txt_f, scale = model(images, tokens)
        scale = scale.clamp(max=MAX_LOGIT_SCALE)
        loss = self._loss(img_f, txt_f, scale)
        with torch.no_grad():
            top1 = ((img_f @ txt_f.T).argmax(1) == torch.arange(len(img_f), device=img_f.device))
        return loss, {"i2t_top1": top1.float().mean().item(), "logit_scale": float(scale.detach())}


def make_clip_task(params: dict, inputs: dict[str, Path], name: str = JUDGE_TASK) -> ClipTask:
    """Factory for any small CLIP task (``name`` is the task name recorded in the model file)."""
    from guidance_repro.data import compositions

    unknown = sorted(set(params) - {"model", "split", "subset"})
    if unknown:
        raise ReproError(f"{name}.{unknown[0]}: unknown parameter (known: model, split, subset)")
    split = params.get("split", "clip")
    if split == "train":
        raise ReproError(f"{name}.split: a CLIP judge must not train on the generators' train split")
    if "data" not in inputs:
        raise ReproError(f"--input data=PATH: task {name} needs the compositions artifact")
    cfg = clip_config(params.get("model"), name)
    data = compositions.load(inputs["data"], split)
    n = len(data["images"])
    sub = params.get("subset")
    if sub is not None:
        if not isinstance(sub, int) or isinstance(sub, bool) or sub < 1:
            raise ReproError(f"{name}.subset: must be a positive integer, got {sub!r}")
        n = min(n, sub)
    return ClipTask(name, data["images"][:n], data["captions"][:n], cfg)


def make_judge_task(params: dict, inputs: dict[str, Path]) -> ClipTask:
    return make_clip_task(params, inputs, JUDGE_TASK)


def load_clip(path: str | Path, key: str = "evaluation.clip.weights",
              task: str | None = None) -> tuple[nn.Module, dict]:
    """Rebuild a small CLIP written by the training loop: (model in eval mode, model_config)."""
    from guidance_repro.train.checkpoint import load_model_file, load_state_strict

    path = Path(path)
    if not path.is_file():
        raise ReproError(f"{key}: CLIP model file {path} not found")
    obj = load_model_file(path)
    cfg = obj.get("model_config")
    if not isinstance(cfg, dict) or cfg.get("kind") != CLIP_KIND or "model" not in obj:
        raise ReproError(f"{key}: {path} is not a small open_clip CLIP written by the train command")
    if task is not None and obj.get("task") != task:
        raise ReproError(f"{key}: {path} was trained as task {obj.get('task')!r}, not {task!r}")
    model = build_clip(cfg)
    load_state_strict(model, obj["model"], path)
    return model.eval(), cfg

