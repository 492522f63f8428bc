"""The EDM deterministic Heun sampler (Karras et al. 2022, Alg. 1 with S_churn = 0), shared by the
autoguidance toy, the image models and the paper tier (autoguidance.md §3).

Time steps: σ_i = (σmax^(1/ρ) + i/(N−1)·(σmin^(1/ρ) − σmax^(1/ρ)))^ρ for i < N, then σ_N = 0. Each
step is a Heun (2nd order) step except the last, an Euler step to σ = 0, so N steps cost 2N − 1
denoiser evaluations. Written by hand: it is a dozen lines and must accept any denoiser callable
(guided combinations included), which no library sampler does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from guidance_repro.errors import ReproError

# denoiser(x, sigma, labels) -> D(x; sigma, labels); sigma is a 0-d tensor (one level per step).
Denoiser = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


@dataclass(frozen=True)
class HeunConfig:
    steps: int = 32
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0

    def __post_init__(self):
        if self.steps < 1:
            raise ReproError(f"sampler.steps: must be >= 1, got {self.steps}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ReproError(f"sampler.sigma_min/sigma_max: need 0 < sigma_min < sigma_max, "
                             f"got {self.sigma_min}, {self.sigma_max}")
        if not self.rho > 0:
            raise ReproError(f"sampler.rho: must be > 0, got {self.rho}")

    @classmethod
    def from_dict(cls, d: dict | None, key: str = "sampler") -> "HeunConfig":
        d = dict(d or {})
        unknown = sorted(set(d) - {"steps", "sigma_min", "sigma_max", "rho"})
        if unknown:
            raise ReproError(f"{key}.{unknown[0]}: unknown key (steps, sigma_min, sigma_max, rho)")
        return cls(**{k: (int(v) if k == "steps" else float(v)) for k, v in d.items()})


def time_steps(cfg: HeunConfig, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The N + 1 noise levels σ_0 > … > σ_{N−1} > σ_N = 0."""
    i = torch.arange(cfg.steps, dtype=torch.float64)
    span = max(cfg.steps - 1, 1)
    lo, hi = cfg.sigma_min ** (1 / cfg.rho), cfg.sigma_max ** (1 / cfg.rho)
    t = (hi + i / span * (lo - hi)) ** cfg.rho
    return torch.cat([t, torch.zeros(1, dtype=torch.float64)]).to(dtype)


@torch.no_grad()
def heun_sample(denoiser: Denoiser, noise: torch.Tensor, cfg: HeunConfig,
                labels: torch.Tensor | None = None, progress: Callable | None = None) -> torch.Tensor:
    """Integrate the probability-flow ODE from x = σ_0·noise down to σ = 0.

    ``noise`` is standard normal of the output shape; the denoiser may enable autograd inside
    (the toy models' score is a gradient). Arithmetic runs in ``noise.dtype``.
    """
    t = time_steps(cfg, noise.dtype).to(noise.device)
    x = noise * t[0]
    steps = range(cfg.steps)
    for i in (progress(steps) if progress else steps):
        t_cur, t_next = t[i], t[i + 1]
        d_cur = (x - denoiser(x, t_cur, labels)) / t_cur
        x_next = x + (t_next - t_cur) * d_cur
        if i < cfg.steps - 1:  # Heun correction (skipped on the final step to σ = 0)
            d_next = (x_next - denoiser(x_next, t_next, labels)) / t_next
            x_next = x + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_next)
        x = x_next
    return x
