"""A small EDM-preconditioned U-Net for 28×28 grayscale images, class-conditional or not.

Preconditioning (EDM, Karras et al. 2022, Table 1; kept by EDM2), σ_data = 0.5:
    D(x; σ, c) = c_skip·x + c_out·F(c_in·x; c_noise, c)
    c_skip = σd²/(σ²+σd²), c_out = σ·σd/√(σ²+σd²), c_in = 1/√(σ²+σd²), c_noise = ¼·ln σ
Loss weight λ(σ) = (σ²+σd²)/(σ·σd)², σ ~ log-normal(P_mean, P_std).

The network F is a plain residual U-Net (28 → 14 → 7) with GroupNorm, SiLU, a Fourier embedding of
c_noise and a learned label embedding added to it; the label embedding is absent when
``label_dim = 0`` (unconditional: labels are ignored, like edm2's networks). Smaller than EDM2's
magnitude-preserving U-Net on purpose: it has to train and sample in minutes on 2 CPU cores.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SIGMA_DATA = 0.5


def _groups(c: int) -> int:
    return max(1, min(8, c // 4))


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(_groups(cin), cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, 2 * cout)
        self.norm2, self.conv2 = nn.GroupNorm(_groups(cout), cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        return self.skip(x) + self.conv2(h)


class UNet(nn.Module):
    """F(x; c_noise, labels): (B, 1, 28, 28) → (B, 1, 28, 28)."""

    def __init__(self, channels: tuple[int, int, int] = (32, 64, 64), emb: int = 128, label_dim: int = 10):
        super().__init__()
        c0, c1, c2 = channels
        self.label_dim = label_dim
        self.register_buffer("freqs", torch.randn(emb // 2, generator=torch.Generator().manual_seed(0)) * 4)
        self.noise_mlp = nn.Sequential(nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.label_emb = nn.Embedding(label_dim, emb) if label_dim else None
        self.inp = nn.Conv2d(1, c0, 3, padding=1)
        self.enc0, self.down0 = ResBlock(c0, c0, emb), nn.Conv2d(c0, c1, 3, stride=2, padding=1)
        self.enc1, self.down1 = ResBlock(c1, c1, emb), nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.mid = ResBlock(c2, c2, emb)
        self.up1, self.dec1 = nn.ConvTranspose2d(c2, c1, 2, stride=2), ResBlock(2 * c1, c1, emb)
        self.up0, self.dec0 = nn.ConvTranspose2d(c1, c0, 2, stride=2), ResBlock(2 * c0, c0, emb)
        self.out_norm, self.out = nn.GroupNorm(_groups(c0), c0), nn.Conv2d(c0, 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        f = c_noise.reshape(-1, 1) * self.freqs[None] * 2 * math.pi
        emb = self.noise_mlp(torch.cat([f.cos(), f.sin()], dim=1))
        if self.label_emb is not None:
            if labels is None:
                raise ValueError("a class-conditional network needs labels")
            emb = emb + self.label_emb(labels)
        emb = F.silu(emb)
        h0 = self.enc0(self.inp(x), emb)
        h1 = self.enc1(self.down0(h0), emb)
        h = self.mid(self.down1(h1), emb)
        h = self.dec1(torch.cat([self.up1(h), h1], dim=1), emb)
        h = self.dec0(torch.cat([self.up0(h), h0], dim=1), emb)
        return self.out(F.silu(self.out_norm(h)))


class EDMDenoiser(nn.Module):
    """D(x; σ, labels) with EDM preconditioning around ``UNet``; x in [-1, 1] pixel units."""

    def __init__(self, channels=(32, 64, 64), emb: int = 128, label_dim: int = 10,
                 sigma_data: float = SIGMA_DATA):
        super().__init__()
        self.sigma_data = sigma_data
        self.label_dim = label_dim
        self.net = UNet(tuple(channels), emb, label_dim)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1, 1, 1, 1)
        sigma = sigma.expand(x.shape[0], 1, 1, 1)
        sd2, s2 = self.sigma_data ** 2, sigma ** 2
        c_skip = sd2 / (s2 + sd2)
        c_out = sigma * self.sigma_data / (s2 + sd2).sqrt()
        c_in = 1 / (s2 + sd2).sqrt()
        c_noise = sigma.log().reshape(-1) / 4
        f = self.net((c_in * x).float(), c_noise, labels if self.label_dim else None)
        return c_skip * x + c_out * f.to(x.dtype)

    def loss_weight(self, sigma: torch.Tensor) -> torch.Tensor:
        return (sigma ** 2 + self.sigma_data ** 2) / (sigma * self.sigma_data) ** 2
