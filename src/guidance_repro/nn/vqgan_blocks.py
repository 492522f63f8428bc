"""The VQGAN-style conv blocks of the official tokenizers (VAR's VQVAE, LlamaGen's VQ-16).

Both releases build their encoder/decoder from the latent-diffusion "vq-f16" blocks, with the same
module names inside a block (so that the state dicts load strictly); written from their
description (no code copied):

- ``ResnetBlock``: GroupNorm(eps 1e-6) → SiLU → 3x3 conv → GroupNorm → SiLU → 3x3 conv, plus the
  input (through a 1x1 ``nin_shortcut`` when the width changes);
- ``AttnBlock``: single head over the h·w positions (softmax scale C^-1/2), GroupNorm → one fused
  1x1 conv to q, k, v (``qkv``, 3C) → attention → 1x1 ``proj_out`` → residual (VAR's layout;
  LlamaGen's VQ-16 keeps separate ``q``/``k``/``v`` convs: llamagen/vq16.py);
- ``Downsample``: zero-pad right/bottom by 1, 3x3 conv with stride 2; ``Upsample``: nearest ×2,
  3x3 conv.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn


def group_norm(c: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, c, eps=1e-6)


def conv3(cin: int, cout: int, stride: int = 1, padding: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=padding)


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = group_norm(cin, groups), conv3(cin, cout)
        self.norm2, self.conv2 = group_norm(cout, groups), conv3(cout, cout)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    def __init__(self, c: int, groups: int):
        super().__init__()
        self.norm = group_norm(c, groups)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x):
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).view(B, 3, C, H * W).transpose(2, 3).unbind(1)  # (B, HW, C)
        h = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]      # scale C^-1/2
        return x + self.proj_out(h.transpose(1, 2).reshape(B, C, H, W))


class Downsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = conv3(c, c, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = conv3(c, c)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))
