"""LlamaGen's VQ-16 image tokenizer network (``vq_ds16_c2i.pt``), for the paper tier.

Written from the architecture's description (cca.md §4.1 and LlamaGen's tokenizer config; no code
copied), with the official module names so that the released state dict loads strictly:

- a taming-style conv encoder/decoder, ``ch`` 128, ``ch_mult`` (1, 1, 2, 2, 4) → ×16
  downsampling, 2 ResNet blocks per encoder level and 3 per decoder level, GroupNorm(32, eps 1e-6)
  and SiLU, one single-head attention block after every ResNet block of the coarsest level and
  one in the middle (ResNet, attention, ResNet), ``z_channels`` 256;
- names: ``encoder.conv_blocks.{level}.res.{j}`` / ``.attn.{j}`` / ``.downsample.conv``,
  ``decoder.conv_blocks.{k}`` stored coarse to fine (k = 0 is the coarsest level) with
  ``.upsample.conv``, ``{encoder,decoder}.mid.{0,1,2}``, attention as separate 1x1 ``q``, ``k``,
  ``v`` and ``proj_out`` convs (VAR's VQVAE fuses them into ``qkv``: nn/vqgan_blocks.py);
- 1x1 ``quant_conv`` (256 → 8) and ``post_quant_conv`` (8 → 256) around the quantizer, whose
  16384 x 8 codebook is compared on the unit sphere (codes and encoder outputs L2-normalised), plus
  the ``quantize.codebook_used`` buffer the release carries (usage statistics, unused here).

The full configuration has 344 tensors (144 ``encoder.*``, 194 ``decoder.*``), the layout
llamagen/official.py checks before loading; smaller widths give the same key layout for offline
tests. Decoding follows LlamaGen's class-conditional sampler: codes → normalised code vectors →
``post_quant_conv`` → decoder → (optionally) bicubic resize to the evaluation size on the
unclamped output → clamp(127.5 x + 128) to uint8. The paper evaluates 384 px generations at 256 px.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from guidance_repro.errors import ReproError
from guidance_repro.llamagen import tokenizer
from guidance_repro.nn.config import build_config
from guidance_repro.nn.toy_conv import tensor_to_images
from guidance_repro.nn.vqgan_blocks import Downsample, ResnetBlock, Upsample


@dataclass
class VQ16Config:
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    z_channels: int = 256
    codebook_size: int = 16384
    code_dim: int = 8
    usage_buffer: int = 65536     # length of quantize.codebook_used in the release
    norm_groups: int = 32
    image_size: int = 384

    @classmethod
    def from_dict(cls, d: dict, key: str = "vq16") -> "VQ16Config":
        cfg = build_config(cls, d, key, "VQ-16 tokenizer", tuple_keys=("ch_mult",))
        widths = [cfg.ch * m for m in cfg.ch_mult]
        if not widths or cfg.num_res_blocks < 1 or any(w % cfg.norm_groups for w in widths):
            raise ReproError(f"{key}: needs >= 1 level, num_res_blocks >= 1 and widths {widths} "
                             f"divisible by norm_groups {cfg.norm_groups}")
        if cfg.image_size % cfg.downsample:
            raise ReproError(f"{key}.image_size: {cfg.image_size} is not a multiple of {cfg.downsample}")
        return cfg

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def grid(self) -> int:
        return self.image_size // self.downsample


class AttnBlock(nn.Module):
    """Single-head attention over the h·w positions (softmax scale C^-1/2), residual."""

    def __init__(self, c: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c, eps=1e-6)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.norm(x)
        q, k, v = (f(h).flatten(2).transpose(1, 2)[:, None] for f in (self.q, self.k, self.v))  # (B,1,HW,C)
        out = F.scaled_dot_product_attention(q, k, v)[:, 0].transpose(1, 2).reshape(B, C, H, W)
        return x + self.proj_out(out)


def _level(cin: int, cout: int, n: int, attn: bool, groups: int) -> nn.Module:
    level = nn.Module()
    level.res = nn.ModuleList(ResnetBlock(cin if j == 0 else cout, cout, groups) for j in range(n))
    level.attn = nn.ModuleList(AttnBlock(cout, groups) for _ in range(n) if attn)
    return level


def _mid(c: int, groups: int) -> nn.ModuleList:
    return nn.ModuleList([ResnetBlock(c, c, groups), AttnBlock(c, groups), ResnetBlock(c, c, groups)])


def _run(level: nn.Module, h: torch.Tensor) -> torch.Tensor:
    for j, res in enumerate(level.res):
        h = res(h)
        if len(level.attn):
            h = level.attn[j](h)
    return h


class Encoder(nn.Module):
    def __init__(self, cfg: VQ16Config):
        super().__init__()
        g, last = cfg.norm_groups, len(cfg.ch_mult) - 1
        self.conv_in = nn.Conv2d(3, cfg.ch, 3, padding=1)
        self.conv_blocks = nn.ModuleList()
        cin = cfg.ch
        for i, m in enumerate(cfg.ch_mult):
            level = _level(cin, cfg.ch * m, cfg.num_res_blocks, i == last, g)
            cin = cfg.ch * m
            if i != last:
                level.downsample = Downsample(cin)
            self.conv_blocks.append(level)
        self.mid = _mid(cin, g)
        self.norm_out = nn.GroupNorm(g, cin, eps=1e-6)
        self.conv_out = nn.Conv2d(cin, cfg.z_channels, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.conv_blocks:
            h = _run(level, h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        for block in self.mid:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg: VQ16Config):
        super().__init__()
        g, last = cfg.norm_groups, len(cfg.ch_mult) - 1
        cin = cfg.ch * cfg.ch_mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, cin, 3, padding=1)
        self.mid = _mid(cin, g)
        self.conv_blocks = nn.ModuleList()
        for i in reversed(range(len(cfg.ch_mult))):  # stored coarse to fine, as in the release
            level = _level(cin, cfg.ch * cfg.ch_mult[i], cfg.num_res_blocks + 1, i == last, g)
            cin = cfg.ch * cfg.ch_mult[i]
            if i != 0:
                level.upsample = Upsample(cin)
            self.conv_blocks.append(level)
        self.norm_out = nn.GroupNorm(g, cin, eps=1e-6)
        self.conv_out = nn.Conv2d(cin, 3, 3, padding=1)

    def forward(self, z):
        h = self.conv_in(z)
        for block in self.mid:
            h = block(h)
        for level in self.conv_blocks:
            h = _run(level, h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Quantizer(tokenizer.Quantizer):
    """The toy tokenizer's L2-normalised quantizer (nearest code on the unit sphere), plus the
    release's usage buffer."""

    def __init__(self, cfg: VQ16Config):
        super().__init__(cfg.codebook_size, cfg.code_dim)
        self.register_buffer("codebook_used", torch.zeros(cfg.usage_buffer))


class VQ16(nn.Module):
    """Images (B, 3, H, W) in [-1, 1] <-> code grids (B, H/16, W/16). ``out_size`` (0 = none): the
    side that :meth:`decode` resizes to, bicubic, before rounding (the paper's 384 -> 256)."""

    def __init__(self, cfg: VQ16Config, out_size: int = 0):
        super().__init__()
        self.cfg, self.out_size = cfg, int(out_size)
        self.encoder, self.decoder, self.quantize = Encoder(cfg), Decoder(cfg), Quantizer(cfg)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.code_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.code_dim, cfg.z_channels, 1)

    def encode_indices(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantize.indices(self.quant_conv(self.encoder(x)))

    def decode_indices(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, h, w) -> decoder output (B, 3, H, W), not clamped (LlamaGen's ``decode_code``)."""
        return self.decoder(self.post_quant_conv(self.quantize.lookup(idx)))

    @torch.no_grad()
    def encode(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """uint8 RGB images (N, S, S, 3), S = cfg.image_size -> int64 codes (N, S/16, S/16)."""
        s = self.cfg.image_size
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.shape[1:] != (s, s, 3):
            raise ReproError(f"VQ-16: images {images.dtype} {images.shape}, expected uint8 (N, {s}, {s}, 3)")
        dev = next(self.parameters()).device
        out = []
        for i in range(0, len(images), batch_size):
            # contiguous NCHW, as the official ToTensor gives (a permuted view runs channels-last)
            x = torch.from_numpy(images[i:i + batch_size]).to(dev).permute(0, 3, 1, 2).contiguous()
            x = x.float() / 127.5 - 1.0
            out.append(self.encode_indices(x).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.cfg.grid, self.cfg.grid), np.int64)

    @torch.no_grad()
    def decode(self, codes, batch_size: int = 32) -> np.ndarray:
        """Codes (N, g, g) or (N, g*g) -> uint8 images (N, S, S, 3), S = out_size or cfg.image_size."""
        g, n_codes = self.cfg.grid, self.cfg.codebook_size
        idx = torch.as_tensor(np.asarray(codes), dtype=torch.long)
        if idx.ndim == 2:
            idx = idx.reshape(len(idx), g, -1)
        if tuple(idx.shape[1:]) != (g, g) or (idx.numel() and (idx.min() < 0 or idx.max() >= n_codes)):
            raise ReproError(f"VQ-16: codes of shape {tuple(idx.shape)} do not fit a {g}x{g} grid of {n_codes} codes")
        dev, side = next(self.parameters()).device, self.out_size or self.cfg.image_size
        out = []
        for i in range(0, len(idx), batch_size):
            x = self.decode_indices(idx[i:i + batch_size].to(dev))
            if side != x.shape[-1]:
                x = F.interpolate(x, size=(side, side), mode="bicubic")
            out.append(tensor_to_images(x.float().cpu()))
        return np.concatenate(out) if out else np.zeros((0, side, side, 3), np.uint8)
