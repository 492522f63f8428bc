"""TrainTasks of the 2-D toy (run by the shared loop: ``guidance-repro train --task toy2d-density``).

Params: ``width`` (64 main, 32 guides), ``layers`` (4), ``classes`` ("A": class 0 only, "B", or
"AB": both classes, the CFG guide), ``p_mean`` (−2.3), ``p_std`` (1.5), ``tree_seed`` (2).

The data is the exact mixture: every step draws a fresh batch from it (torch's generator, which
the loop reseeds from (seed, step) at every step, so resuming is exact). ``num_examples`` is
therefore nominal, and the loop's indices only set the batch size. Loss: exact score matching,
σ²‖∇log p_θ(x; σ) − ∇log p(x; σ)‖² averaged over the batch, with the data's exact score at σ.
"""

from __future__ import annotations

import numpy as np
import torch

from guidance_repro.errors import ReproError
from guidance_repro.toy2d.exact import TorchTree
from guidance_repro.toy2d.model import ToyLogDensity, log_normal_sigma

CLASSES = {"A": 0, "B": 1, "AB": None}
NOMINAL_EXAMPLES = 1 << 16  # the loop permutes this many indices per "epoch": keep it small


class ToyDensityTask:
    name = "toy2d-density"

    def __init__(self, params: dict, inputs: dict):
        known = {"width", "layers", "classes", "p_mean", "p_std", "tree_seed"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ReproError(f"params.{unknown[0]}: unknown key for toy2d-density ({', '.join(sorted(known))})")
        self.width = int(params.get("width", 64))
        self.layers = int(params.get("layers", 4))
        self.classes = str(params.get("classes", "A"))
        if self.classes not in CLASSES:
            raise ReproError(f"params.classes: must be A, B or AB, got {self.classes!r}")
        if self.width < 1 or self.layers < 1:
            raise ReproError("params.width/layers: must be >= 1")
        self.p_mean = float(params.get("p_mean", -2.3))
        self.p_std = float(params.get("p_std", 1.5))
        self.tree_seed = int(params.get("tree_seed", 2))
        self.tree = TorchTree(CLASSES[self.classes], seed=self.tree_seed)

    def build_model(self) -> torch.nn.Module:
        return ToyLogDensity(self.width, self.layers)

    def model_config(self) -> dict:
        return {"kind": "toy2d-density", "width": self.width, "layers": self.layers,
                "classes": self.classes, "p_mean": self.p_mean, "p_std": self.p_std,
                "tree_seed": self.tree_seed}

    def num_examples(self) -> int:
        return NOMINAL_EXAMPLES

    def on_device(self, device: torch.device) -> None:
        self.tree.to(device)

    def get_batch(self, indices: np.ndarray) -> torch.Tensor:
        return self.tree.sample(len(indices))

    def loss(self, model: torch.nn.Module, batch: torch.Tensor, step: int):
        y = batch
        sigma = log_normal_sigma(len(y), self.p_mean, self.p_std, device=y.device)
        x = (y + sigma[:, None] * torch.randn_like(y)).requires_grad_(True)
        g = model(x, sigma, None, True).sum()  # G through the (possibly DDP-wrapped) forward
        (score,) = torch.autograd.grad(g, x, create_graph=True)
        with torch.no_grad():
            target = self.tree.score(x.detach(), sigma)
        per = (sigma[:, None] ** 2 * (score - target) ** 2).sum(1)
        return per.mean()


def make_task(params: dict, inputs: dict) -> ToyDensityTask:
    return ToyDensityTask(params, inputs)


def load_denoiser(path) -> ToyLogDensity:
    """A trained toy model (the loop's output file; EMA weights) in eval mode."""
    from guidance_repro.train.checkpoint import load_model_file, load_state_strict

    obj = load_model_file(path)
    cfg = obj.get("model_config", {})
    if cfg.get("kind") != "toy2d-density":
        raise ReproError(f"{path}: not a toy2d-density model (model_config.kind={cfg.get('kind')!r})")
    model = ToyLogDensity(int(cfg["width"]), int(cfg["layers"]))
    load_state_strict(model, obj["model"], path)
    return model.eval()
