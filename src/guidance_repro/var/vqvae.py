"""VAR's multi-scale VQVAE network: the conv encoder/decoder of ``vae_ch160v4096z32.pth``.

The quantizer between them is var/msvq.py's :class:`MultiScaleQuantizer` (VAR's residual
multi-scale VQ with shared φ convs); this module adds the convolutional halves VAR took from the
latent-diffusion "vq-f16" autoencoder, written from their description (no code copied; the
blocks themselves are nn/vqgan_blocks.py's, shared with LlamaGen's VQ-16):

- widths ``ch · ch_mult`` per level, VAR: ch 160, ch_mult (1, 1, 2, 2, 4) → ×16 downsampling,
  2 ResNet blocks per encoder level (3 per decoder level), z = Cvae = 32 channels;
- ResNet block: GroupNorm(32, eps 1e-6) → SiLU → 3x3 conv → GroupNorm → SiLU → 3x3 conv, plus the
  input (through a 1x1 ``nin_shortcut`` when the width changes);
- attention block (single head over the h·w positions, softmax scale C^-1/2): GroupNorm → 1x1 conv
  to q, k, v (``qkv``, 3C) → attention → 1x1 ``proj_out`` → residual. One after every ResNet block
  of the coarsest level, and one in the middle (``mid.block_1``, ``mid.attn_1``, ``mid.block_2``);
- downsampling: zero-pad right/bottom by 1, 3x3 conv with stride 2; upsampling: nearest ×2, 3x3 conv;
- encoder: ``conv_in`` → levels → mid → GroupNorm → SiLU → ``conv_out`` (to z);
  decoder: ``conv_in`` (z → widest) → mid → levels coarse to fine → GroupNorm → SiLU → ``conv_out``;
- 3x3 ``quant_conv`` after the encoder and ``post_quant_conv`` before the decoder.

Module names are the official state-dict keys (``encoder.down.{i}.block.{j}.conv1.weight``,
``decoder.up.{i}.attn.{j}.qkv.weight``, ``decoder.up.{i}.upsample.conv.weight``, …; ``up.{i}`` is
indexed by level, finest = 0, as in the official file). The official configuration has 324
tensors and 108,948,355 values (cca.md §4.2); var/official.py loads it strictly. Smaller
widths (``ch``, ``norm_groups``) give the same key layout for offline tests.

Tokens → pixels (VAR's ``idxBl_to_img``): per-scale index maps (B, pn, pn) of a schedule that ends
at the latent side → f̂ = Σ φ(bicubic-upsampled code vectors) → ``post_quant_conv`` → decoder →
image clamped to [-1, 1]. The schedule is not stored in the file: 256 px uses VAR's
(1, 2, 3, 4, 5, 6, 8, 10, 13, 16), 512 px STAR's released (1, 2, 3, 4, 6, 9, 13, 18, 24, 32).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from guidance_repro.errors import ReproError
from guidance_repro.nn.config import build_config
from guidance_repro.nn.vqgan_blocks import AttnBlock, Downsample, ResnetBlock, Upsample, conv3, group_norm
from guidance_repro.var.msvq import MSVQConfig, MultiScaleQuantizer, split_scales

PATCH_NUMS = {  # star.md §1 "Scale schedules"; 256 = VAR's
    256: (1, 2, 3, 4, 5, 6, 8, 10, 13, 16),
    512: (1, 2, 3, 4, 6, 9, 13, 18, 24, 32),
    1024: (1, 2, 3, 4, 5, 7, 9, 12, 16, 21, 27, 36, 48, 64),
}


@dataclass
class VQVAEConfig:
    ch: int = 160
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    code_dim: int = 32                          # Cvae = z_channels
    codebook_size: int = 4096
    in_channels: int = 3
    norm_groups: int = 32
    phi_count: int = 4                          # share_quant_resi
    phi_ratio: float = 0.5                      # quant_resi
    patch_nums: tuple[int, ...] = PATCH_NUMS[256]

    @classmethod
    def from_dict(cls, d: dict, key: str = "vqvae") -> "VQVAEConfig":
        cfg = build_config(cls, d, key, "VQVAE", tuple_keys=("ch_mult", "patch_nums"))
        if not cfg.ch_mult or cfg.num_res_blocks < 1 or cfg.ch < 1:
            raise ReproError(f"{key}.ch_mult: needs >= 1 level, ch >= 1 and num_res_blocks >= 1")
        bad = [c for c in cfg.widths if c % cfg.norm_groups]
        if bad:
            raise ReproError(f"{key}.norm_groups: width {bad[0]} is not a multiple of {cfg.norm_groups}")
        pn = cfg.patch_nums
        if not pn or list(pn) != sorted(set(pn)) or pn[0] < 1:
            raise ReproError(f"{key}.patch_nums: must increase strictly from >= 1, got {list(pn)}")
        return cfg

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.ch * m for m in self.ch_mult)

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def grid(self) -> int:
        """Side of the latent map = the last scale of the schedule."""
        return self.patch_nums[-1]

    @property
    def image_size(self) -> int:
        return self.grid * self.downsample

    @property
    def seq_len(self) -> int:
        return sum(p * p for p in self.patch_nums)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ch_mult"], d["patch_nums"] = list(self.ch_mult), list(self.patch_nums)
        return d

    def quantizer_config(self) -> MSVQConfig:
        return MSVQConfig(channels=self.widths, codebook_size=self.codebook_size, code_dim=self.code_dim,
                          patch_nums=self.patch_nums, phi_count=self.phi_count, phi_ratio=self.phi_ratio,
                          znorm=False, in_channels=self.in_channels, image_size=self.image_size)


def _level(blocks: list[ResnetBlock], attn: list[AttnBlock]) -> nn.Module:
    level = nn.Module()
    level.block, level.attn = nn.ModuleList(blocks), nn.ModuleList(attn)
    return level


def _mid(c: int, groups: int) -> nn.Module:
    mid = nn.Module()
    mid.block_1, mid.attn_1, mid.block_2 = ResnetBlock(c, c, groups), AttnBlock(c, groups), ResnetBlock(c, c, groups)
    return mid


def _run_level(level: nn.Module, h):
    for i, block in enumerate(level.block):
        h = block(h)
        if len(level.attn):
            h = level.attn[i](h)
    return h


def _run_mid(mid: nn.Module, h):
    return mid.block_2(mid.attn_1(mid.block_1(h)))


class Encoder(nn.Module):
    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        g, widths, last = cfg.norm_groups, cfg.widths, len(cfg.ch_mult) - 1
        self.conv_in = conv3(cfg.in_channels, cfg.ch)
        self.down = nn.ModuleList()
        cin = cfg.ch
        for i, w in enumerate(widths):
            blocks = []
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResnetBlock(cin, w, g))
                cin = w
            level = _level(blocks, [AttnBlock(w, g) for _ in blocks] if i == last else [])
            if i != last:
                level.downsample = Downsample(w)
            self.down.append(level)
        self.mid = _mid(cin, g)
        self.norm_out = group_norm(cin, g)
        self.conv_out = conv3(cin, cfg.code_dim)

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.down:
            h = _run_level(level, h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        return self.conv_out(F.silu(self.norm_out(_run_mid(self.mid, h))))


class Decoder(nn.Module):
    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        g, widths, last = cfg.norm_groups, cfg.widths, len(cfg.ch_mult) - 1
        cin = widths[-1]
        self.conv_in = conv3(cfg.code_dim, cin)
        self.mid = _mid(cin, g)
        levels = {}
        for i in reversed(range(len(widths))):  # built coarse to fine, stored by level index
            blocks = []
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResnetBlock(cin, widths[i], g))
                cin = widths[i]
            levels[i] = _level(blocks, [AttnBlock(cin, g) for _ in blocks] if i == last else [])
            if i != 0:
                levels[i].upsample = Upsample(cin)
        self.up = nn.ModuleList(levels[i] for i in range(len(widths)))
        self.norm_out = group_norm(cin, g)
        self.conv_out = conv3(cin, cfg.in_channels)

    def forward(self, z):
        h = _run_mid(self.mid, self.conv_in(z))
        for level in reversed(self.up):
            h = _run_level(level, h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h), inplace=True))


class VQVAE(nn.Module):
    """Images in [-1, 1] (B, 3, H, W) <-> per-scale index maps; ``cfg.grid`` / ``cfg.code_dim`` /
    ``quantize.next_input`` are what the next-scale sampler (sampling/next_scale.py) uses."""

    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder, self.decoder = Encoder(cfg), Decoder(cfg)
        self.quantize = MultiScaleQuantizer(cfg.quantizer_config())
        self.quant_conv = conv3(cfg.code_dim, cfg.code_dim)
        self.post_quant_conv = conv3(cfg.code_dim, cfg.code_dim)

    def _check_images(self, x: torch.Tensor) -> None:
        s = self.cfg.image_size
        if x.ndim != 4 or x.shape[1] != self.cfg.in_channels or tuple(x.shape[2:]) != (s, s):
            raise ReproError(f"VQVAE: images of shape {tuple(x.shape)}, the schedule "
                             f"{list(self.cfg.patch_nums)} needs (B, {self.cfg.in_channels}, {s}, {s})")

    @torch.no_grad()
    def encode_indices(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Images (B, 3, H, W) in [-1, 1] -> [(B, pn, pn) per scale] (VAR's ``img_to_idxBl``)."""
        self._check_images(x)
        return self.quantize(self.quant_conv(self.encoder(x)))[1]

    def fhat_from_indices(self, idx_list: list[torch.Tensor]) -> torch.Tensor:
        pn = self.cfg.patch_nums
        shapes = [tuple(i.shape[1:]) for i in idx_list]
        if shapes != [(p, p) for p in pn]:
            raise ReproError(f"VQVAE: index maps of sides {shapes} do not match patch_nums {list(pn)}")
        return self.quantize.fhat_from_idx(idx_list)

    def decode_fhat(self, f_hat: torch.Tensor) -> torch.Tensor:
        """f̂ (B, Cvae, G, G) -> image (B, 3, 16G, 16G) clamped to [-1, 1] (VAR's ``fhat_to_img``).

        The decoder runs channels-last: oneDNN's convolutions then read and write the maps as they
        are instead of reordering every 42 MB map to and from its blocked layout (CPU, one thread,
        batch 4: benchmarks/var_vs_official.py); the image comes back in the standard layout."""
        h = self.post_quant_conv(f_hat).contiguous(memory_format=torch.channels_last)
        return self.decoder(h).clamp_(-1, 1).contiguous()

    @torch.no_grad()
    def decode_indices(self, idx_list: list[torch.Tensor]) -> torch.Tensor:
        return self.decode_fhat(self.fhat_from_indices(idx_list))

    @torch.no_grad()
    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Flat tokens (B, L), scales concatenated coarse to fine -> images in [-1, 1]."""
        return self.decode_indices(split_scales(tokens, self.cfg.patch_nums))

