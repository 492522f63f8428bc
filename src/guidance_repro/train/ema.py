"""Exponential and power-function EMA of the model parameters.

Power-function EMA (Karras et al. 2024, "Analyzing and improving the training dynamics of
diffusion models", EDM2): after optimizer step t (1-based) the average is updated with
``beta_t = (1 - 1/t) ** (gamma + 1)``, which weights the parameters of step t by
``t**(gamma+1) - (t-1)**(gamma+1)``, i.e. a profile ~ t**gamma. Its relative width is
``sigma_rel = sqrt((gamma + 1) / ((gamma + 2)**2 * (gamma + 3)))``; ``gamma_from_sigma_rel``
inverts that definition. Hand-written: torch has no power-function EMA, and torch's
AveragedModel would add a module copy to the checkpoint instead of plain tensors.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from guidance_repro.train.config import TrainConfig


def sigma_rel_from_gamma(gamma: float) -> float:
    return float(np.sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3))))


def gamma_from_sigma_rel(sigma_rel: float) -> float:
    """Solve sigma_rel**2 * (g+2)**2 * (g+3) = g+1 for the largest real root g > -1.

    Expanded: g**3 + 7 g**2 + (16 - 1/s**2) g + (12 - 1/s**2) = 0.
    """
    inv = 1.0 / sigma_rel ** 2
    roots = np.roots([1.0, 7.0, 16.0 - inv, 12.0 - inv])
    real = [r.real for r in roots if abs(r.imag) < 1e-9 and r.real > -1]
    if not real:
        raise ValueError(f"no power-EMA exponent for sigma_rel={sigma_rel}")
    return float(max(real))


class EMA:
    """EMA of the trainable parameters (float32); buffers are taken from the live model."""

    def __init__(self, model: nn.Module, cfg: TrainConfig):
        self.kind = cfg.ema
        self.decay = cfg.ema_decay
        self.gamma = gamma_from_sigma_rel(cfg.ema_std) if cfg.ema == "power" else None
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        params = dict(model.named_parameters())
        self.shadow = {n: params[n].detach().float().clone() for n in self.names}

    def beta(self, t: int) -> float:
        """Weight of the old average at optimizer step t (1-based)."""
        if self.kind == "exp":
            return self.decay
        return (1.0 - 1.0 / t) ** (self.gamma + 1)

    @torch.no_grad()
    def update(self, model: nn.Module, t: int) -> None:
        params = dict(model.named_parameters())
        beta = self.beta(t)
        for n in self.names:
            self.shadow[n].lerp_(params[n].detach().float(), 1.0 - beta)

    def state_dict(self) -> dict:
        return {n: t.detach().cpu().clone(memory_format=torch.contiguous_format)
                for n, t in self.shadow.items()}

    def load_state_dict(self, state: dict, source: str) -> None:
        from guidance_repro.errors import ReproError
        if sorted(state) != sorted(self.names):
            raise ReproError(f"{source}: EMA keys do not match the model's parameters")
        for n in self.names:
            self.shadow[n].copy_(state[n])

    def model_state(self, model: nn.Module) -> dict:
        """The model's state_dict with the averaged parameters in place of the raw ones."""
        out = {}
        for k, v in model.state_dict().items():
            out[k] = (self.shadow[k].to(v.dtype) if k in self.shadow else v).detach().cpu().clone(
                memory_format=torch.contiguous_format)
        return out
