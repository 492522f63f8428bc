"""A STAR-style text-to-image next-scale transformer (star.md §1), readable in one screen.

The VAR sequence (L = Σ pn² tokens, coarse to fine, block-causal mask, var/model.py) with text in
place of the class, and no AdaLN:

- start token (position 0) = Linear(text_dim → C)(pooled text) + learned ``pos_start``
  (+ ``lvl_embed[0]`` like every token of scale 0);
- block: x += SelfAttn(LN(x)); x += CrossAttn(LN(x), text hidden states, padding mask);
  x += FFN(LN(x)), with non-affine LayerNorms (eps 1e-6). Self-attention is VAR's (QK L2-norm
  with a learned per-head scale, var/model.py ``SelfAttention``) with STAR's normalized 2-D RoPE
  on q and k (nn/rope2d.py). Cross-attention: q = Linear(C, C), k, v = Linear(text_dim, 2C)
  without bias, separate q/v biases, −inf on padded text positions, no RoPE. The WHOLE (B, L, C)
  cross-attention output is added: the released code indexes it with ``[0]`` (batch element 0
  broadcast to the batch, star.md §1 ⚠), which is not reproduced;
- head: non-affine LN → Linear(C, V).

``positions`` chooses the position code: ``rope`` (STAR) or ``absolute`` (VAR's learned
``pos_1LC`` per token, no RoPE: the ablation). Both keep VAR's learned per-scale ``lvl_embed``.
:func:`change_schedule` carries a model to another scale schedule (the resolution step, star.md
256 → 512): RoPE needs no new parameters; absolute embeddings of a new scale are bicubically
resized from the nearest old scale's grid, level embeddings copied from the nearest old scale.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from guidance_repro.errors import ReproError
from guidance_repro.nn.config import build_config
from guidance_repro.nn.rope2d import rope_angles
from guidance_repro.var.model import (FFN, DropPath, ScaleWiseShape, SelfAttention, block_causal_mask,
                                      scalewise_init)

POSITIONS = ("rope", "absolute")


@dataclass
class STARConfig(ScaleWiseShape):
    vocab_size: int = 256
    code_dim: int = 16
    patch_nums: tuple[int, ...] = (1, 2, 3, 4, 6, 8)
    depth: int = 4
    width_per_depth: int = 16                  # STAR: 64
    head_dim: int = 16                         # STAR: 64 (heads = depth)
    mlp_ratio: float = 4.0
    drop_path: float = 0.0                     # STAR: 0.1·depth/24 (< 0 selects that)
    text_dim: int = 64                         # hidden width of the text encoder (SD-2.1: 1024)
    text_len: int = 36                         # padded text length (SD-2.1: 77)
    positions: str = "rope"                    # rope (STAR) | absolute (VAR-style ablation)
    rope_norm: float = 64.0                    # N: every grid is mapped onto [0, N]
    rope_theta: float = 10000.0
    attn_l2_norm: bool = True
    text_dropout: float = 0.1                  # prompt -> "" during training

    @classmethod
    def from_dict(cls, d: dict, key: str = "model") -> "STARConfig":
        cfg = build_config(cls, dict(d), key, "STAR", tuple_keys=("patch_nums",))
        cfg.check_shape(key)
        if cfg.positions not in POSITIONS:
            raise ReproError(f"{key}.positions: one of {', '.join(POSITIONS)}, got {cfg.positions!r}")
        if cfg.positions == "rope" and cfg.head_dim % 4:
            raise ReproError(f"{key}.head_dim: 2-D RoPE needs a multiple of 4, got {cfg.head_dim}")
        if not 0 <= cfg.text_dropout < 1:
            raise ReproError(f"{key}.text_dropout: must be in [0, 1), got {cfg.text_dropout}")
        return cfg


class TextCond(NamedTuple):
    """Frozen text-encoder output: hidden states (B, T, D), valid-token mask (B, T) bool, pooled (B, D)."""

    hidden: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor

    def to(self, device) -> "TextCond":
        return TextCond(*(t.to(device) for t in self))

    def take(self, index: torch.Tensor) -> "TextCond":
        return TextCond(*(t[index] for t in self))

    @staticmethod
    def cat(conds) -> "TextCond":
        return TextCond(*(torch.cat(ts) for ts in zip(*conds)))

    def where(self, pick: torch.Tensor, other: "TextCond") -> "TextCond":
        """Per sample: ``other`` where ``pick`` (B,) is true, else self (other may have batch 1)."""
        return TextCond(*(torch.where(pick.view(-1, *[1] * (a.ndim - 1)), b, a) for a, b in zip(self, other)))


def drop_text(cond: TextCond, empty: TextCond, p: float) -> TextCond:
    """STAR's CFG dropout: each prompt becomes the empty prompt "" with probability p."""
    if p <= 0:
        return cond
    pick = torch.rand(cond.pooled.shape[0], device=cond.pooled.device) < p
    return cond.where(pick, empty)


class CrossAttention(nn.Module):
    def __init__(self, cfg: STARConfig):
        super().__init__()
        C, self.H, self.hd = cfg.width, cfg.heads, cfg.head_dim
        self.mat_q = nn.Linear(C, C, bias=False)
        self.mat_kv = nn.Linear(cfg.text_dim, 2 * C, bias=False)
        self.q_bias, self.v_bias = nn.Parameter(torch.zeros(C)), nn.Parameter(torch.zeros(C))
        self.proj = nn.Linear(C, C)

    def forward(self, x: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        T = text.shape[1]
        q = F.linear(x, self.mat_q.weight, self.q_bias).view(B, L, self.H, self.hd).transpose(1, 2)
        k, v = self.mat_kv(text).view(B, T, 2, self.H, self.hd).permute(2, 0, 3, 1, 4)
        v = v + self.v_bias.view(1, self.H, 1, self.hd)
        bias = torch.zeros(B, 1, 1, T, dtype=q.dtype, device=q.device)
        bias = bias.masked_fill(~text_mask.view(B, 1, 1, T), float("-inf"))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(y.transpose(1, 2).reshape(B, L, C))


class STARBlock(nn.Module):
    def __init__(self, cfg: STARConfig, drop_path: float):
        super().__init__()
        self.ln = nn.LayerNorm(cfg.width, eps=1e-6, elementwise_affine=False)
        self.attn, self.cross, self.ffn = SelfAttention(cfg), CrossAttention(cfg), FFN(cfg)
        self.drop_path = DropPath(drop_path)

    def forward(self, x, cond: TextCond, mask, rope):
        x = x + self.drop_path(self.attn(self.ln(x), mask, rope))
        x = x + self.cross(self.ln(x), cond.hidden, cond.mask)  # all B samples (not [0], star.md ⚠)
        return x + self.drop_path(self.ffn(self.ln(x)))


class TextScaleWise(nn.Module, abc.ABC):
    """What the toy STAR and the official layout (star/official_model.py) share: the embeddings of
    the start token and the inputs, the block loop with RoPE offsets under the KV cache, teacher
    forcing and the cache switch. A subclass has ``blocks``, ``word_embed``, ``pos_start``,
    ``lvl_embed`` (+ ``pos_1LC``), the schedule buffers, and defines :meth:`start_token` and
    :meth:`logits` (their parameter names differ between the two layouts)."""

    cfg: STARConfig

    @abc.abstractmethod
    def start_token(self, pooled: torch.Tensor) -> torch.Tensor:
        """The start token's content (B, C) from the pooled text vector (B, text_dim)."""

    @abc.abstractmethod
    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Head: hidden states (B, n, C) -> float logits (B, n, V)."""

    def embed(self, cond: TextCond, x_in: torch.Tensor | None, start: int) -> torch.Tensor:
        """Embeddings of positions start..start+n: the start token (start = 0) and/or the
        word-embedded inputs ``x_in`` (B, n, code_dim), plus level (and absolute) embeddings."""
        parts = [] if start else [self.start_token(cond.pooled)[:, None] + self.pos_start]
        if x_in is not None and x_in.shape[1]:
            parts.append(self.word_embed(x_in))
        h = torch.cat(parts, 1)
        end = start + h.shape[1]
        h = h + self.lvl_embed(self.lvl_1L[:, start:end])
        if self.cfg.positions == "absolute":
            h = h + self.pos_1LC[:, start:end]
        return h

    def _cached_len(self) -> int:
        kv = self.blocks[0].attn.kv
        return 0 if kv is None or kv[0] is None else kv[0].shape[2]

    def run(self, h: torch.Tensor, cond: TextCond, mask) -> torch.Tensor:
        """Blocks + head for h (B, n, C); h starts after the cached positions (0 without cache)."""
        start = self._cached_len()
        rope = self.rope_angles[start:start + h.shape[1]] if self.cfg.positions == "rope" else None
        for b in self.blocks:
            h = b(h, cond, mask, rope)
        return self.logits(h)

    def forward(self, cond: TextCond, x_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: text cond (batch B), inputs (B, L' − 1, code_dim) -> logits (B, L', V)."""
        h = self.embed(cond, x_in, 0)
        L = h.shape[1]
        return self.run(h, cond, self.attn_bias_for_masking[:, :, :L, :L])

    def set_cache(self, on: bool) -> None:
        for b in self.blocks:
            b.attn.kv = (None, None) if on else None


class STAR(TextScaleWise):
    def __init__(self, cfg: STARConfig):
        super().__init__()
        self.cfg = cfg
        C, L, S = cfg.width, cfg.seq_len, len(cfg.patch_nums)
        self.text_proj = nn.Linear(cfg.text_dim, C)
        self.pos_start = nn.Parameter(torch.empty(1, 1, C))
        self.word_embed = nn.Linear(cfg.code_dim, C)
        self.lvl_embed = nn.Embedding(S, C)
        if cfg.positions == "absolute":
            self.pos_1LC = nn.Parameter(torch.empty(1, L, C))
        lvl = torch.cat([torch.full((p * p,), i) for i, p in enumerate(cfg.patch_nums)])
        # schedule-derived buffers are not saved: change_schedule rebuilds them for a new schedule
        self.register_buffer("lvl_1L", lvl[None].long(), persistent=False)
        self.register_buffer("attn_bias_for_masking", block_causal_mask(cfg.patch_nums), persistent=False)
        rope = rope_angles(cfg.patch_nums, cfg.head_dim, cfg.rope_norm, cfg.rope_theta) \
            if cfg.positions == "rope" else torch.zeros(0)
        self.register_buffer("rope_angles", rope, persistent=False)
        dpr = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(STARBlock(cfg, p) for p in dpr)
        self.head_nm = nn.LayerNorm(C, eps=1e-6, elementwise_affine=False)
        self.head = nn.Linear(C, cfg.vocab_size)
        self._init()

    def _init(self):
        scalewise_init(self, self.cfg.width,
                       (self.pos_start, self.pos_1LC) if self.cfg.positions == "absolute" else (self.pos_start,))
        for b in self.blocks:  # residual branches start small, as VAR's
            for lin in (b.attn.proj, b.cross.proj, b.ffn.fc2):
                lin.weight.data.div_(math.sqrt(2 * self.cfg.depth))

    def start_token(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.text_proj(pooled)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_nm(h)).float()


def sequence_logp(model: STAR, codes: torch.Tensor, x_in: torch.Tensor, cond: TextCond) -> torch.Tensor:
    """Per-sequence log-likelihood: sum over all L tokens of log-softmax at the true code (B,)."""
    logp = torch.log_softmax(model(cond, x_in), dim=-1)
    return logp.gather(-1, codes[..., None]).squeeze(-1).sum(-1)


def _nearest(old: tuple[int, ...], pn: int) -> int:
    return min(range(len(old)), key=lambda i: (abs(old[i] - pn), -old[i]))


def change_schedule(state: dict, cfg: STARConfig, patch_nums) -> tuple[dict, STARConfig]:
    """The resolution step: (state dict, config) of the same model on another scale schedule.

    Level embeddings: a scale of the new schedule takes the level embedding of the old scale with
    the nearest side (equal side: that scale). Absolute embeddings (``positions: absolute``): the
    old grid of the nearest side, resized bicubically to pn x pn when the side differs (the usual
    way a learned grid embedding is carried to a new resolution). RoPE: nothing to carry.
    """
    new_pn = tuple(int(p) for p in patch_nums)
    new_cfg = STARConfig.from_dict({**cfg.to_dict(), "patch_nums": list(new_pn)}, key="patch_nums")
    old_pn, C = cfg.patch_nums, cfg.width
    state = dict(state)
    lvl = state["lvl_embed.weight"]
    state["lvl_embed.weight"] = torch.stack([lvl[_nearest(old_pn, p)] for p in new_pn])
    if cfg.positions == "absolute":
        pos, starts, parts = state["pos_1LC"], [0], []
        for p in old_pn:
            starts.append(starts[-1] + p * p)
        for p in new_pn:
            i = _nearest(old_pn, p)
            q = old_pn[i]
            grid = pos[0, starts[i]:starts[i + 1]].T.reshape(1, C, q, q)
            if q != p:
                grid = F.interpolate(grid, size=(p, p), mode="bicubic", align_corners=False)
            parts.append(grid.reshape(C, p * p).T)
        state["pos_1LC"] = torch.cat(parts)[None].contiguous()
    return state, new_cfg


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
