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
  3x3 conv (computed without building the ×2 map: ``upsample_conv``).
"""

from __future__ import annotations

import torch
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
        # In place where the tensor is a fresh GroupNorm / conv output: at 256 px a decoder map is
        # 42 MB an image, and every extra buffer is page-faulted in again (autograd-safe: GroupNorm's
        # backward reads its input, not its output).
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        h = self.conv2(F.silu(self.norm2(h), inplace=True))
        return h.add_(self.nin_shortcut(x))


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
        return self.proj_out(h.transpose(1, 2).reshape(B, C, H, W)).add_(x)


class Downsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = conv3(c, c, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


def phase_kernels(w: torch.Tensor) -> torch.Tensor:
    """The 3x3 kernel ``w`` (O, I, 3, 3) of a conv that follows a nearest ×2 upsampling, as four 2x2
    kernels (4·O, I, 2, 2), one per output phase (row parity a, column parity b; block 2a + b).

    Output row 2i + a of the conv reads upsampled rows 2i + a − 1 … 2i + a + 1, which are input rows
    (i − 1, i, i) for a = 0 and (i, i, i + 1) for a = 1: the taps that read the same input row add
    up, (w0, w1 + w2) and (w0 + w1, w2); the same for columns."""
    def fold(k: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        k0, k1, k2 = k.unbind(dim)
        return torch.stack([k0, k1 + k2], dim), torch.stack([k0 + k1, k2], dim)
    return torch.cat([kc for kr in fold(w, 2) for kc in fold(kr, 3)])


def upsample_conv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(nearest ×2 upsampling of x)`` for a 3x3, padding-1 ``conv``, from four 2x2 convs of x:
    16 instead of 36 multiply-adds per input pixel and channel pair, and no ×2 map in memory. The
    result keeps x's memory format (channels-last stays channels-last)."""
    B, _, H, W = x.shape
    O = conv.out_channels
    # padding 1 with a 2x2 kernel: (H + 1) x (W + 1) outputs; phase (a, b) is the window at (a, b).
    bias = None if conv.bias is None else conv.bias.repeat(4)
    out = F.conv2d(x, phase_kernels(conv.weight), bias, padding=1)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        y = out.new_empty(B, H, 2, W, 2, O)
        for p, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            y[:, :, a, :, b] = out[:, p * O:(p + 1) * O, a:a + H, b:b + W].permute(0, 2, 3, 1)
        return y.view(B, 2 * H, 2 * W, O).permute(0, 3, 1, 2)
    y = out.new_empty(B, O, H, 2, W, 2)
    for p, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        y[:, :, :, a, :, b] = out[:, p * O:(p + 1) * O, a:a + H, b:b + W]
    return y.view(B, O, 2 * H, 2 * W)


class Upsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = conv3(c, c)

    def forward(self, x):
        return upsample_conv(x, self.conv)
