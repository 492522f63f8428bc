"""STAR's released text-to-image transformer under its official state-dict names, so that
``star_d30_*.pth`` loads strictly (star/official.py) and is sampled by sampling/next_scale.py.

The computation is star/model.py's (star.md §1: start token from the pooled text, per block
self-attention with normalized 2-D RoPE, cross-attention on the text with a padding mask, FFN,
non-affine LayerNorms, no AdaLN), with the names and the details of the official code that the
toy model does not have. Per block ``blocks.{i}.`` (d30: C = 1920, H = 30 heads, text width 1024):

- ``attn.mat_qkv.weight`` (3C, C), ``attn.q_bias`` / ``attn.v_bias`` (C,), the zero buffer
  ``attn.zero_k_bias`` (C,), ``attn.proj.weight`` (C, C) + ``.bias``, ``attn.scale_mul_1H11``
  (1, H, 1, 1);
- ``cross_attn.mat_q.weight`` (C, C), ``cross_attn.mat_kv.weight`` (2C, 1024), ``cross_attn.q_bias``
  / ``v_bias`` (C,), the zero buffer ``cross_attn.zero_k_bias`` (C,), ``cross_attn.proj.*``,
  ``cross_attn.scale_mul_1H11`` (1, H, 1, 1);
- ``ffn.fc1.*`` (4C, C) + (4C,), ``ffn.fc2.*`` (C, 4C) + (C,);

and outside the blocks ``word_embed.*`` (C, 32), ``class_emb.weight`` (1001, C; allocated by the
official code, never used: the start token comes from the text), ``pos_start`` (1, 1, C),
``lvl_embed.weight`` (S, C), ``encoder_proj.*`` (C, 1024) (the start token's Linear on the pooled
text), ``head_logits.*`` (4096, C); ``pos_1LC`` (1, L, C) only in absolute-position models. The
``scale_mul_1H11`` keys exist only with the QK L2-norm (``attn_l2_norm``, the released configs).
d16 has 274,934,272 parameters and d30 1,678,731,016 (star.md: ≈ 275 M and ≈ 1.68 B).

Official details kept here: the cross-attention uses the QK L2-norm too when it is on (its own
learned per-head scale; k bias = the zero buffer). ``qk_scale_clamp`` says how the scale s is
bounded: ``log`` (default): exp(min(s, log 100)) as in VAR (star.md: "clamp ≤ 100"); ``exp``:
min(exp(s), log 100), what a derivative of STAR's code does. Which one the release uses is
UNVERIFIED; it matters once a learned scale exceeds 4.6. Without the L2-norm the softmax scale is
0.25/√head_dim (VAR's code) instead of 1/√head_dim; ``logit_norm`` (``enable_logit_norm``, on in
the released configs) is a non-affine LayerNorm before the head and holds no tensors, so it is a
loader argument. The level index, the block-causal mask and the RoPE angles are plain attributes
of the official model, not in its files: here they are non-persistent buffers.

Not reproduced: the ⚠ bug of star.md §1 (the released block adds the cross-attention output
indexed ``[0]``, i.e. batch element 0, to every sample): the whole (B, L, C) output is added.
Not built: drop-path (inference only), ``shared_aln`` and the 1024 px mask sampler
(``feat_extract_blocks``, ``head_logits2``, …, ``w_mask=True``): checkpoints with them are refused.
The key names come from the STAR-T2I code (``models/var_drop.py``) and, for the block internals, a
derivative of its ``basic_var.py``; the real file has never been loaded here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from guidance_repro.errors import ReproError
from guidance_repro.nn.rope2d import rope_angles
from guidance_repro.star.model import STARConfig, TextCond, TextScaleWise
from guidance_repro.var.model import FFN, SelfAttention, block_causal_mask
from guidance_repro.var.vqvae import PATCH_NUMS

MAX_LOG_SCALE = math.log(100.0)
QK_SCALE_CLAMPS = ("log", "exp")


def qk_scale(s: torch.Tensor, clamp: str) -> torch.Tensor:
    """The multiplier of the unit-norm q from the learned per-head ``scale_mul_1H11`` (docstring)."""
    return s.clamp(max=MAX_LOG_SCALE).exp() if clamp == "log" else s.exp().clamp(max=MAX_LOG_SCALE)


@dataclass
class OfficialSTARConfig(STARConfig):
    vocab_size: int = 4096
    code_dim: int = 32
    patch_nums: tuple[int, ...] = PATCH_NUMS[512]
    depth: int = 30
    width_per_depth: int = 64
    head_dim: int = 64                         # heads = depth
    drop_path: float = 0.0
    text_dim: int = 1024
    text_len: int = 77
    num_classes: int = 1000                    # rows of the unused class_emb, minus 1
    logit_norm: bool = True                    # enable_logit_norm
    qk_scale_clamp: str = "log"                # log: exp(min(s, log 100)); exp: min(exp(s), log 100)

    @classmethod
    def from_dict(cls, d: dict, key: str = "star") -> "OfficialSTARConfig":
        cfg = super().from_dict(d, key)
        if cfg.qk_scale_clamp not in QK_SCALE_CLAMPS:
            raise ReproError(f"{key}.qk_scale_clamp: one of {', '.join(QK_SCALE_CLAMPS)}, got {cfg.qk_scale_clamp!r}")
        if cfg.heads != cfg.depth:
            raise ReproError(f"{key}.head_dim: STAR has heads = depth ({cfg.depth}), "
                             f"width {cfg.width} / head_dim {cfg.head_dim} gives {cfg.heads}")
        return cfg


class OfficialSelfAttention(SelfAttention):
    def __init__(self, cfg: OfficialSTARConfig):
        super().__init__(cfg)
        self.clamp = cfg.qk_scale_clamp

    def q_scale(self) -> torch.Tensor:
        return qk_scale(self.scale_mul_1H11, self.clamp)


class OfficialCrossAttention(nn.Module):
    def __init__(self, cfg: OfficialSTARConfig):
        super().__init__()
        C, self.H, self.hd, self.l2 = cfg.width, cfg.heads, cfg.head_dim, cfg.attn_l2_norm
        self.clamp = cfg.qk_scale_clamp
        self.mat_q = nn.Linear(C, C, bias=False)
        self.mat_kv = nn.Linear(cfg.text_dim, 2 * C, bias=False)
        self.q_bias, self.v_bias = nn.Parameter(torch.zeros(C)), nn.Parameter(torch.zeros(C))
        self.register_buffer("zero_k_bias", torch.zeros(C))
        self.proj = nn.Linear(C, C)
        if self.l2:
            self.scale_mul_1H11 = nn.Parameter(torch.full((1, self.H, 1, 1), math.log(4.0)))

    def forward(self, x: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        T = text.shape[1]
        q = F.linear(x, self.mat_q.weight, self.q_bias).view(B, L, self.H, self.hd).transpose(1, 2)
        kv = F.linear(text, self.mat_kv.weight, torch.cat([self.zero_k_bias, self.v_bias]))
        k, v = kv.view(B, T, 2, self.H, self.hd).permute(2, 0, 3, 1, 4)
        if self.l2:
            q = F.normalize(q, dim=-1) * qk_scale(self.scale_mul_1H11, self.clamp)
            k, scale = F.normalize(k, dim=-1), 1.0
        else:
            scale = 0.25 / math.sqrt(self.hd)
        bias = torch.zeros(B, 1, 1, T, dtype=q.dtype, device=q.device)
        bias = bias.masked_fill(~text_mask.view(B, 1, 1, T), float("-inf"))
        y = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=bias, scale=scale)
        return self.proj(y.transpose(1, 2).reshape(B, L, C))


class OfficialBlock(nn.Module):
    def __init__(self, cfg: OfficialSTARConfig):
        super().__init__()
        self.ln = nn.LayerNorm(cfg.width, eps=1e-6, elementwise_affine=False)
        self.attn, self.cross_attn, self.ffn = OfficialSelfAttention(cfg), OfficialCrossAttention(cfg), FFN(cfg)

    def forward(self, x, cond: TextCond, mask, rope):
        x = x + self.attn(self.ln(x), mask, rope)
        x = x + self.cross_attn(self.ln(x), cond.hidden, cond.mask)  # all B samples (not [0], star.md ⚠)
        return x + self.ffn(self.ln(x))


class OfficialSTAR(TextScaleWise):
    """Same sampler interface as star/model.py's STAR: ``embed``, ``run``, ``set_cache``."""

    def __init__(self, cfg: OfficialSTARConfig):
        super().__init__()
        self.cfg = cfg
        C, L, S = cfg.width, cfg.seq_len, len(cfg.patch_nums)
        self.word_embed = nn.Linear(cfg.code_dim, C)
        self.class_emb = nn.Embedding(cfg.num_classes + 1, C)
        self.pos_start = nn.Parameter(torch.zeros(1, 1, C))
        if cfg.positions == "absolute":
            self.pos_1LC = nn.Parameter(torch.zeros(1, L, C))
        self.lvl_embed = nn.Embedding(S, C)
        self.blocks = nn.ModuleList(OfficialBlock(cfg) for _ in range(cfg.depth))
        self.encoder_proj = nn.Linear(cfg.text_dim, C)
        self.head_logits = nn.Linear(C, cfg.vocab_size)
        self.logit_norm = nn.LayerNorm(C, eps=1e-6, elementwise_affine=False) if cfg.logit_norm else nn.Identity()
        with torch.device("cpu"):  # schedule buffers are never on the meta device the loader uses
            lvl = torch.cat([torch.full((p * p,), i) for i, p in enumerate(cfg.patch_nums)])
            mask = block_causal_mask(cfg.patch_nums)
            rope = rope_angles(cfg.patch_nums, cfg.head_dim, cfg.rope_norm, cfg.rope_theta) \
                if cfg.positions == "rope" else torch.zeros(0)
        self.register_buffer("lvl_1L", lvl[None].long(), persistent=False)
        self.register_buffer("attn_bias_for_masking", mask, persistent=False)
        self.register_buffer("rope_angles", rope, persistent=False)

    def start_token(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.encoder_proj(pooled)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.head_logits(self.logit_norm(h.float())).float()

