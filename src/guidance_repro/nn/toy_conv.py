"""The toy conv encoder/decoder of the 28x28 tokenizers, and their image <-> tensor conversions.

Shared by LlamaGen's toy VQ tokenizer (llamagen/tokenizer.py), VAR's toy multi-scale tokenizer
(var/msvq.py, STAR's too) and the next-scale sampler (sampling/next_scale.py). Encoder: a 3x3 conv,
then per resolution level a stride-2 conv (from the second level on) and ``res_blocks`` residual
blocks (GroupNorm, SiLU, 3x3 conv, twice), then GroupNorm, SiLU and a 1x1 conv to ``code_dim``
channels. The decoder mirrors it with nearest x2 upsampling. ``VQConfig`` is the tokenizer config
these read (config key ``cca_llamagen.tokenizer.model``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from guidance_repro.errors import ReproError
from guidance_repro.nn.config import build_config


@dataclass
class VQConfig:
    channels: tuple[int, ...] = (16, 32, 64)  # per resolution level; len-1 stride-2 downsamplings
    res_blocks: int = 1                       # residual blocks per level
    codebook_size: int = 512
    code_dim: int = 8
    commit_weight: float = 0.25               # LlamaGen's beta for the commitment term
    codebook_weight: float = 1.0
    in_channels: int = 1
    image_size: int = 28

    @classmethod
    def from_dict(cls, d: dict, key: str = "vq") -> "VQConfig":
        cfg = build_config(cls, d, key, "tokenizer", tuple_keys=("channels",))
        if cfg.image_size % cfg.downsample:
            raise ReproError(f"{key}.channels: image size {cfg.image_size} is not divisible by the "
                             f"downsampling factor {cfg.downsample}")
        if cfg.codebook_size < 2 or cfg.code_dim < 1:
            raise ReproError(f"{key}.codebook_size: needs >= 2 codes of dimension >= 1")
        return cfg

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.channels) - 1)

    @property
    def grid(self) -> int:
        return self.image_size // self.downsample

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, c), c)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Encoder(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        ch = cfg.channels
        layers: list[nn.Module] = [nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)]
        for i, c in enumerate(ch):
            cin = ch[max(i - 1, 0)]
            if i > 0:
                layers.append(nn.Conv2d(cin, c, 3, stride=2, padding=1))  # downsample
            layers += [ResBlock(c, c) for _ in range(cfg.res_blocks)]
        layers += [_norm(ch[-1]), nn.SiLU(), nn.Conv2d(ch[-1], cfg.code_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        ch = cfg.channels[::-1]
        layers: list[nn.Module] = [nn.Conv2d(cfg.code_dim, ch[0], 3, padding=1)]
        for i, c in enumerate(ch):
            if i > 0:
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch[i - 1], c, 3, padding=1)]
            layers += [ResBlock(c, c) for _ in range(cfg.res_blocks)]
        layers += [_norm(ch[-1]), nn.SiLU(), nn.Conv2d(ch[-1], cfg.in_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)


def images_to_tensor(images: np.ndarray, cfg: VQConfig) -> torch.Tensor:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[1:] != (cfg.image_size, cfg.image_size, cfg.in_channels):
        raise ReproError(f"images of shape {images.shape}, the tokenizer expects "
                         f"(N, {cfg.image_size}, {cfg.image_size}, {cfg.in_channels}) uint8")
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def tensor_to_images(x: torch.Tensor) -> np.ndarray:
    # Same rounding as LlamaGen's sampler: clamp(127.5 x + 128) to [0, 255].
    return torch.clamp(127.5 * x + 128.0, 0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
