"""Test-only toy tasks for the training loop (imported as ``train_toy_tasks:make_toy``)."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn


class ToyRegression:
    """A small MLP regressing a fixed random linear target; optional dropout, a sleep per loss
    call (so a subprocess can be killed mid-run), a failure at a given step, and a record of the
    parameters seen at the start of each step (in-process EMA checks)."""

    name = "toy-regression"

    def __init__(self, params: dict, inputs: dict):
        self.n = int(params.get("n", 48))
        self.dim = int(params.get("dim", 4))
        self.hidden = int(params.get("hidden", 16))
        self.dropout = float(params.get("dropout", 0.0))
        self.sleep = float(params.get("sleep", 0.0))
        self.fail_at_step = params.get("fail_at_step")
        self.record = bool(params.get("record", False))
        self.trajectory: list[dict] = []
        g = torch.Generator().manual_seed(int(params.get("data_seed", 123)))
        self.x = torch.randn(self.n, self.dim, generator=g)
        w = torch.randn(self.dim, 1, generator=g)
        self.y = self.x @ w + 0.1 * torch.randn(self.n, 1, generator=g)
        self.device = torch.device("cpu")

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(self.dim, self.hidden), nn.Tanh(), nn.Dropout(self.dropout),
                             nn.Linear(self.hidden, 1))

    def model_config(self) -> dict:
        return {"dim": self.dim, "hidden": self.hidden, "dropout": self.dropout}

    def num_examples(self) -> int:
        return self.n

    def get_batch(self, indices: np.ndarray):
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.x[idx], self.y[idx]

    def on_device(self, device: torch.device) -> None:
        self.device = device

    def loss(self, model: nn.Module, batch, step: int):
        if self.fail_at_step is not None and step == int(self.fail_at_step):
            raise RuntimeError(f"toy failure at step {step}")
        if self.record and (not self.trajectory or self.trajectory[-1]["step"] != step):
            self.trajectory.append({"step": step, **{k: v.detach().clone()
                                                     for k, v in model.state_dict().items()}})
        if self.sleep:
            time.sleep(self.sleep)
        x, y = batch
        pred = model(x)
        return ((pred - y) ** 2).mean(), {"mae": float((pred - y).detach().abs().mean())}


class ToyWithGroups(ToyRegression):
    """The toy with ``param_groups``: layer 0 gets its own lr (``first_layer_lr``) and no decay."""

    def __init__(self, params: dict, inputs: dict):
        super().__init__(params, inputs)
        self.first_layer_lr = float(params["first_layer_lr"])

    def param_groups(self, model: nn.Module, weight_decay: float) -> list[dict]:
        first = list(model[0].parameters())
        rest = [p for p in model.parameters() if all(p is not q for q in first)]
        return [{"params": rest, "weight_decay": weight_decay},
                {"params": first, "weight_decay": 0.0, "lr": self.first_layer_lr}]


def make_toy(params: dict, inputs: dict) -> ToyRegression:
    return (ToyWithGroups if "first_layer_lr" in params else ToyRegression)(params, inputs)


def make_not_a_task(params: dict, inputs: dict) -> object:
    return object()
