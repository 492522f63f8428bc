"""Magnitude-preserving building blocks of EDM2 (Karras et al. 2024, "Analyzing and improving the
training dynamics of diffusion models"), used by the autoguidance toy and image models.

Written by hand (torch has no magnitude-preserving layers):

- ``MPLinear`` / ``MPConv2d``: each output unit's weight vector is normalised to unit L2 norm on
  every forward pass, so unit-variance, uncorrelated inputs give unit-variance outputs. In training
  the stored weights are also re-normalised in place ("forced weight normalisation", EDM2 §2.6), so
  their magnitude cannot drift and the effective learning rate stays put.
- ``mp_silu``: SiLU divided by its output RMS for a standard-normal input (0.596), so the
  nonlinearity keeps unit magnitude.
- ``mp_sum``: a weighted sum of two unit-magnitude tensors rescaled back to unit magnitude.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SILU_RMS = 0.596  # E[silu(z)^2]^(1/2) for z ~ N(0, 1): computed (0.5958...)


def normalize(w: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Scale every output unit (dim 0) of ``w`` to RMS 1 over its fan-in elements."""
    dims = list(range(1, w.ndim))
    norm = torch.linalg.vector_norm(w, dim=dims, keepdim=True, dtype=torch.float32)
    norm = eps + norm / math.sqrt(w[0].numel())
    return w / norm.to(w.dtype)


def mp_silu(x: torch.Tensor) -> torch.Tensor:
    return F.silu(x) / SILU_RMS


def mp_sum(a: torch.Tensor, b: torch.Tensor, t: float = 0.5) -> torch.Tensor:
    """(1-t)·a + t·b, rescaled to unit magnitude for independent unit-magnitude a and b."""
    return a.lerp(b, t) / math.sqrt((1 - t) ** 2 + t ** 2)


class _MPWeight(nn.Module):
    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(shape))

    def effective_weight(self, gain: float | torch.Tensor = 1.0) -> torch.Tensor:
        w = self.weight.float()
        if self.training:
            with torch.no_grad():
                self.weight.copy_(normalize(w))  # forced weight normalisation
        w = normalize(w)
        return w * (gain / math.sqrt(w[0].numel()))  # unit L2 norm per output unit


class MPLinear(_MPWeight):
    def __init__(self, in_features: int, out_features: int):
        super().__init__((out_features, in_features))

    def forward(self, x: torch.Tensor, gain: float | torch.Tensor = 1.0) -> torch.Tensor:
        return x @ self.effective_weight(gain).to(x.dtype).t()


class MPConv2d(_MPWeight):
    def __init__(self, in_channels: int, out_channels: int, kernel: int):
        super().__init__((out_channels, in_channels, kernel, kernel))

    def forward(self, x: torch.Tensor, gain: float | torch.Tensor = 1.0) -> torch.Tensor:
        w = self.effective_weight(gain).to(x.dtype)
        return F.conv2d(x, w, padding=w.shape[-1] // 2)
