"""STAR's normalized 2-D rotary position embedding (star.md §1, "Normalized 2-D RoPE").

Every scale's pn x pn grid is mapped onto the same range [0, N] (N = ``rope_norm``), so a token
at the same relative place in a coarse and a fine map gets the same angles, at any resolution:

- grid, row-major: flat index t -> x = t mod pn, y = t div pn;
- normalise: pn > 1: (x, y) <- (x, y) · N / (pn − 1); pn = 1 -> (0, 0);
- axial frequencies f_k = θ^(−4k / head_dim), k = 0 … head_dim/4 − 1 (STAR, head_dim 64: 16);
- rotation: channel pairs (2j, 2j+1) of the first half of a head rotate by x·f_j, those of the
  second half by y·f_j (angles in float32); the scales are concatenated to (L, head_dim / 2).

Written from that definition (no code copied). ``apply_rope`` rotates q or k (B, H, L, head_dim).
"""

from __future__ import annotations

import torch

from guidance_repro.errors import ReproError


def normalized_grid(pn: int, norm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) float32 (pn²,) of a pn x pn map, row-major, scaled onto [0, norm]."""
    t = torch.arange(pn * pn)
    x, y = (t % pn).to(torch.float32), (t // pn).to(torch.float32)
    if pn > 1:
        x, y = x * (norm / (pn - 1)), y * (norm / (pn - 1))
    else:
        x, y = torch.zeros(1), torch.zeros(1)
    return x, y


def axial_frequencies(head_dim: int, theta: float) -> torch.Tensor:
    """f_k = θ^(−4k / head_dim), k = 0 … head_dim/4 − 1 (float32)."""
    if head_dim % 4:
        raise ReproError(f"model.head_dim: 2-D RoPE needs a multiple of 4, got {head_dim}")
    k = torch.arange(head_dim // 4, dtype=torch.float32)
    return theta ** (-4.0 * k / head_dim)


def rope_angles(patch_nums, head_dim: int, norm: float, theta: float) -> torch.Tensor:
    """Angles (L, head_dim / 2) of every token of the schedule: [x·f, y·f] per token."""
    f = axial_frequencies(head_dim, theta)
    rows = []
    for pn in patch_nums:
        x, y = normalized_grid(int(pn), norm)
        rows.append(torch.cat([x[:, None] * f, y[:, None] * f], 1))
    return torch.cat(rows, 0)


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (2j, 2j+1) of x (..., L, D) by angles (L, D/2) (complex multiply)."""
    xf = x.float().reshape(*x.shape[:-1], -1, 2)
    cos, sin = torch.cos(angles), torch.sin(angles)
    a, b = xf[..., 0], xf[..., 1]
    out = torch.stack([a * cos - b * sin, a * sin + b * cos], -1)
    return out.reshape(x.shape).to(x.dtype)
