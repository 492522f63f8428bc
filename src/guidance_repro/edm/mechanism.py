"""Mechanism metrics of image-level autoguidance / CFG (EDM denoisers), tested by rules in the
regression check (report/regression_rules.py, docs/regression.md):

- ``guided_distance.<guide>.w<w>``: at fixed (x, σ, labels), the RMS of D_w − D_1 where D_w is the
  guided denoiser built by ``guidance.autoguidance.for_method`` (what the sampler runs). D_w − D_1 =
  (w − 1)(D1 − D0), so it is 0 at w = 1 and linear in w − 1; a sampler that ignores w gives 0 at
  every w, and a guide replaced by the main model gives D0 = D1, i.e. 0 too.
- ``ema_gap.<model>``: the RMS difference between the EMA weights a model file is sampled with and
  its raw weights. Any EMA of a few steps differs from the last raw weights; an EMA that is
  disabled (or copies the raw weights) gives 0.
"""

from __future__ import annotations

import torch

from guidance_repro.guidance.autoguidance import for_method

WEIGHTS = (1.0, 1.5, 2.0, 3.0)
SIGMA = 1.0  # mid-range noise level: both networks' outputs depend on x and the label there


def fixed_inputs(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 28, 28, generator=g) * SIGMA
    return x, torch.tensor(SIGMA, dtype=torch.float32), torch.arange(n) % 10


@torch.no_grad()
def guided_distances(main, guide, method: str, x, sigma, labels) -> dict[str, float]:
    base = main(x, sigma, labels)
    return {f"w{w:g}": float((for_method(method, main, guide, w)(x, sigma, labels) - base)
                             .double().pow(2).mean().sqrt()) for w in WEIGHTS}


def ema_gap(model_file: dict) -> float:
    """RMS over every float weight of EMA − raw (0 when the file has no raw weights)."""
    raw = model_file.get("model_raw")
    if raw is None:
        return 0.0
    sq, n = 0.0, 0
    for key, value in model_file["model"].items():
        if value.is_floating_point():
            sq += float((value.double() - raw[key].double()).pow(2).sum())
            n += value.numel()
    return (sq / max(n, 1)) ** 0.5
