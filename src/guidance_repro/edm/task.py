"""TrainTask ``edm-fmnist``: the EDM denoiser on the Fashion-MNIST train split.

Input ``data`` = the prepared Fashion-MNIST ``.npz``. Params: ``channels`` ([c0, c1, c2]), ``emb``,
``conditional`` (true: class labels through an embedding; false: the unconditional CFG guide),
``p_mean``, ``p_std`` (log-normal σ), optional ``subset`` (first N training images).
Loss: λ(σ)·‖D(y + σn; σ, c) − y‖² averaged over pixels and the batch (EDM).
"""

from __future__ import annotations

import numpy as np
import torch

from guidance_repro.data import fashion_mnist
from guidance_repro.edm.network import EDMDenoiser
from guidance_repro.errors import ReproError

KNOWN = {"channels", "emb", "conditional", "p_mean", "p_std", "subset"}


def to_model_space(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) → float (N, 1, 28, 28) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).float().div(127.5).sub(1).unsqueeze(1)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Model space → uint8 (N, 28, 28, 1), as edm2 does for pixels: x·127.5 + 128, clipped."""
    return (x * 127.5 + 128).clip(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


class EDMFashionMNISTTask:
    name = "edm-fmnist"
    cpu_channels_last = True  # a small CNN: the loop trains it in NHWC on CPU (faster kernels)

    def __init__(self, params: dict, inputs: dict):
        unknown = sorted(set(params) - KNOWN)
        if unknown:
            raise ReproError(f"params.{unknown[0]}: unknown key for edm-fmnist ({', '.join(sorted(KNOWN))})")
        if "data" not in inputs:
            raise ReproError("--input data=PATH: the prepared Fashion-MNIST .npz is required")
        self.channels = [int(c) for c in params.get("channels", [32, 64, 64])]
        if len(self.channels) != 3 or min(self.channels) < 4:
            raise ReproError(f"params.channels: three widths >= 4 expected, got {self.channels}")
        self.emb = int(params.get("emb", 128))
        self.conditional = bool(params.get("conditional", True))
        self.p_mean = float(params.get("p_mean", -1.2))
        self.p_std = float(params.get("p_std", 1.2))
        images, labels = fashion_mnist.load(inputs["data"]).split("train")
        subset = params.get("subset")
        if subset is not None:
            images, labels = images[:int(subset)], labels[:int(subset)]
        self.images = to_model_space(images)
        self.labels = torch.from_numpy(labels.astype(np.int64))

    def build_model(self) -> EDMDenoiser:
        return EDMDenoiser(self.channels, self.emb, 10 if self.conditional else 0)

    def model_config(self) -> dict:
        return {"kind": "edm-fmnist", "channels": self.channels, "emb": self.emb,
                "label_dim": 10 if self.conditional else 0, "p_mean": self.p_mean, "p_std": self.p_std}

    def num_examples(self) -> int:
        return len(self.images)

    def get_batch(self, indices: np.ndarray):
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.images[idx], self.labels[idx]

    def loss(self, model, batch, step: int):
        y, labels = batch
        net = model.module if hasattr(model, "module") else model
        sigma = (torch.randn(len(y), device=y.device) * self.p_std + self.p_mean).exp()
        x = y + sigma[:, None, None, None] * torch.randn_like(y)
        d = model(x, sigma, labels)
        per = net.loss_weight(sigma) * ((d - y) ** 2).mean(dim=(1, 2, 3))
        return per.mean()


def make_task(params: dict, inputs: dict) -> EDMFashionMNISTTask:
    return EDMFashionMNISTTask(params, inputs)


def load_denoiser(path) -> EDMDenoiser:
    """A trained model file of this task (EMA weights), in eval mode."""
    from guidance_repro.train.checkpoint import load_model_file, load_state_strict

    obj = load_model_file(path)
    cfg = obj.get("model_config", {})
    if cfg.get("kind") != "edm-fmnist":
        raise ReproError(f"{path}: not an edm-fmnist model (model_config.kind={cfg.get('kind')!r})")
    model = EDMDenoiser(cfg["channels"], int(cfg["emb"]), int(cfg["label_dim"]))
    load_state_strict(model, obj["model"], path)
    return model.eval()
