"""A VAR-style class-conditional next-scale transformer, readable in one screen.

Sequence: L = Σ pn² tokens, scale by scale (coarse to fine). Position 0 (scale 0, pn = 1) is the
start token: class embedding + ``pos_start``; scale k > 0 is fed the word-embedded multi-scale VQ
input built from scales < k (var/msvq.py). Every token gets a level (scale) embedding and a
learned position embedding. Attention is block-causal: a token sees its own scale and all coarser
ones (buffer ``attn_bias_for_masking``, 0 or −inf).

Blocks (VAR's AdaLNSelfAttn): non-affine LayerNorm (eps 1e-6); SiLU + Linear(C → 6C) of the class
embedding gives γ1, γ2, scale1, scale2, shift1, shift2;
x += drop_path(γ1·attn(LN(x)·(1 + scale1) + shift1)); x += drop_path(γ2·ffn(LN(x)·(1 + scale2) + shift2)).
Attention with QK L2-norm (``attn_l2_norm``): q, k unit vectors, q scaled by a learned per-head
exp(scale_mul_1H11) (init log 4, clamped at log 100), softmax without 1/√d. qkv bias = [q_bias, 0, v_bias].
FFN: fc1 → GELU(tanh) → fc2. Head: AdaLN (scale, shift) then Linear(C → V).
Class table: num_classes + 1 rows (last = null class, for CFG and 10 % class dropout).

Module and buffer names equal the official ``var_d*.pth`` keys (cca.md §4.2): var/official.py
loads those files strictly. Width C = width_per_depth·depth, heads = C / head_dim (VAR: 64 and 64).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from guidance_repro.errors import ReproError
from guidance_repro.nn.config import build_config
from guidance_repro.nn.fast_linear import linear
from guidance_repro.nn.rope2d import apply_rope


class ScaleWiseShape:
    """Shape properties and checks shared by the scale-wise transformers' configs (VAR, STAR):
    width = width_per_depth · depth, heads = width / head_dim, one token per cell of every scale."""

    def check_shape(self, key: str) -> None:
        if self.width % self.head_dim or self.depth < 1:
            raise ReproError(f"{key}.head_dim: width {self.width} is not a multiple of head_dim {self.head_dim}")
        if not self.patch_nums or self.patch_nums[0] != 1:
            raise ReproError(f"{key}.patch_nums: the first scale must be 1x1 (the start token)")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["patch_nums"] = list(self.patch_nums)
        return d

    @property
    def width(self) -> int:
        return self.width_per_depth * self.depth

    @property
    def heads(self) -> int:
        return self.width // self.head_dim

    @property
    def seq_len(self) -> int:
        return sum(p * p for p in self.patch_nums)

    @property
    def drop_path_rate(self) -> float:
        return 0.1 * self.depth / 24 if self.drop_path < 0 else self.drop_path


@dataclass
class VARConfig(ScaleWiseShape):
    vocab_size: int = 256
    code_dim: int = 16                         # Cvae of the tokenizer (word_embed input)
    patch_nums: tuple[int, ...] = (1, 2, 3, 4, 5, 7)
    num_classes: int = 10
    depth: int = 4
    width_per_depth: int = 32                  # VAR: 64
    head_dim: int = 32                         # VAR: 64 (heads = depth)
    mlp_ratio: float = 4.0
    drop_path: float = -1.0                    # max drop-path rate; < 0: VAR's 0.1·depth/24
    class_dropout: float = 0.1                 # VAR cond_drop_rate
    attn_l2_norm: bool = True
    shared_aln: bool = False                   # VAR-d36: one AdaLN linear for all blocks + per-block ada_gss

    @classmethod
    def from_dict(cls, d: dict, key: str = "model") -> "VARConfig":
        d = dict(d)
        cfg = build_config(cls, d, key, "VAR", tuple_keys=("patch_nums",), sizes=SIZES)
        cfg.check_shape(key)
        return cfg


_PAPER = dict(vocab_size=4096, code_dim=32, patch_nums=(1, 2, 3, 4, 5, 6, 8, 10, 13, 16), num_classes=1000,
              width_per_depth=64, head_dim=64)
SIZES = {f"d{d}": dict(_PAPER, depth=d) for d in (16, 20, 24, 30)}
# The 512 px var_d36.pth: shared AdaLN (VAR's --saln=1) on the 512 px schedule (L = 2240).
SIZES["d36"] = dict(_PAPER, depth=36, patch_nums=(1, 2, 3, 4, 6, 9, 13, 18, 24, 32), shared_aln=True)


def scalewise_init(model: nn.Module, width: int, positional) -> None:
    """VAR's initialisation, shared by STAR: truncated normal (std √(1/(3·width))) for every linear,
    embedding and positional parameter, zero biases, the head scaled by 0.02. The residual-branch
    scaling of each block is the caller's (its blocks differ)."""
    std = math.sqrt(1 / width / 3)  # VAR's init_std
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.trunc_normal_(m.weight, std=std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
    for p in positional:
        nn.init.trunc_normal_(p, std=std)
    model.head.weight.data.mul_(0.02)


def block_causal_mask(patch_nums) -> torch.Tensor:
    """(1, 1, L, L) additive mask: 0 where the key's scale <= the query's scale, else −inf."""
    lvl = torch.cat([torch.full((p * p,), i) for i, p in enumerate(patch_nums)])
    ok = lvl[:, None] >= lvl[None, :]
    return torch.where(ok, 0.0, float("-inf"))[None, None]


class DropPath(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p <= 0:
            return x
        keep = (torch.rand(x.shape[0], 1, 1, device=x.device) >= self.p).to(x.dtype)
        return x * keep / (1 - self.p)


class SelfAttention(nn.Module):
    plain_scale = 0.25  # without the QK L2-norm VAR's basic_var.py scales by 0.25 / √head_dim, not 1 / √head_dim

    def __init__(self, cfg: VARConfig):
        super().__init__()
        C, self.H, self.hd, self.l2 = cfg.width, cfg.heads, cfg.head_dim, cfg.attn_l2_norm
        self.mat_qkv = nn.Linear(C, 3 * C, bias=False)
        self.q_bias, self.v_bias = nn.Parameter(torch.zeros(C)), nn.Parameter(torch.zeros(C))
        self.register_buffer("zero_k_bias", torch.zeros(C))
        self.proj = nn.Linear(C, C)
        if self.l2:
            self.scale_mul_1H11 = nn.Parameter(torch.full((1, self.H, 1, 1), math.log(4.0)))
        self.kv = None  # (k, v) of the scales seen so far, while sampling with the cache

    def q_scale(self) -> torch.Tensor:
        """Per-head multiplier of the unit-norm q: exp(min(s, log 100))."""
        return self.scale_mul_1H11.clamp(max=math.log(100)).exp()

    def forward(self, x, mask, rope=None):
        """``rope``: rotation angles (L, head_dim / 2) of x's positions (STAR's normalized 2-D
        RoPE, nn/rope2d.py) applied to q and k; VAR itself passes none."""
        B, L, C = x.shape
        bias = torch.cat([self.q_bias, self.zero_k_bias, self.v_bias])
        q, k, v = linear(x, self.mat_qkv.weight, bias).view(B, L, 3, self.H, self.hd).permute(2, 0, 3, 1, 4)
        if self.l2:
            q = F.normalize(q, dim=-1) * self.q_scale()
            k, scale = F.normalize(k, dim=-1), 1.0
        else:
            scale = self.plain_scale * self.hd ** -0.5
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        if self.kv is not None:  # sampling: a new scale sees the cached coarser scales and itself
            if self.kv[0] is not None:
                k, v = torch.cat([self.kv[0], k], 2), torch.cat([self.kv[1], v], 2)
            self.kv = (k, v)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
        return linear(y.transpose(1, 2).reshape(B, L, C), self.proj.weight, self.proj.bias)


class FFN(nn.Module):
    def __init__(self, cfg: VARConfig):
        super().__init__()
        h = round(cfg.width * cfg.mlp_ratio)
        self.fc1, self.fc2 = nn.Linear(cfg.width, h), nn.Linear(h, cfg.width)

    def forward(self, x):
        # nn/fast_linear.py: inside a sampling pass on the CPU, oneDNN applies the GELU in fc1's kernel
        h = linear(x, self.fc1.weight, self.fc1.bias, gelu_tanh=True)
        return linear(h, self.fc2.weight, self.fc2.bias)


class AdaLNSelfAttn(nn.Module):
    """``cond``: the class embedding (B, C), or with ``shared_aln`` the output (B, 1, 6, C) of the
    model's ``shared_ada_lin``, to which the block adds its own ``ada_gss`` (1, 1, 6, C)."""

    def __init__(self, cfg: VARConfig, drop_path: float):
        super().__init__()
        C = cfg.width
        self.attn, self.ffn = SelfAttention(cfg), FFN(cfg)
        self.ln = nn.LayerNorm(C, eps=1e-6, elementwise_affine=False)
        if cfg.shared_aln:
            self.ada_gss = nn.Parameter(torch.randn(1, 1, 6, C) / C ** 0.5)
        else:
            self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(C, 6 * C))
        self.drop_path = DropPath(drop_path)

    def modulation(self, cond):
        """(γ1, γ2, 1 + scale1, 1 + scale2, shift1, shift2), each (B, 1, C)."""
        m = self.ada_gss + cond if hasattr(self, "ada_gss") else \
            self.ada_lin(cond).view(-1, 1, 6, self.ln.normalized_shape[0])
        g1, g2, s1, s2, b1, b2 = m.unbind(2)
        return g1, g2, 1 + s1, 1 + s2, b1, b2

    def forward(self, x, mod, mask):
        """``mod``: this block's :meth:`modulation` of the conditioning."""
        g1, g2, s1, s2, b1, b2 = mod
        x = x + self.drop_path(self.attn(self.ln(x).mul_(s1).add_(b1), mask) * g1)
        return x + self.drop_path(self.ffn(self.ln(x).mul_(s2).add_(b2)) * g2)


class AdaLNBeforeHead(nn.Module):
    def __init__(self, C: int):
        super().__init__()
        self.ln = nn.LayerNorm(C, eps=1e-6, elementwise_affine=False)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(C, 2 * C))

    def modulation(self, cond):
        """(1 + scale, shift), each (B, 1, C)."""
        scale, shift = self.ada_lin(cond).view(-1, 1, 2, self.ln.normalized_shape[0]).unbind(2)
        return 1 + scale, shift

    def forward(self, x, mod):
        scale, shift = mod
        return self.ln(x).mul_(scale).add_(shift)


class VAR(nn.Module):
    def __init__(self, cfg: VARConfig):
        super().__init__()
        self.cfg = cfg
        C, L, S = cfg.width, cfg.seq_len, len(cfg.patch_nums)
        self.pos_start = nn.Parameter(torch.empty(1, 1, C))
        self.pos_1LC = nn.Parameter(torch.empty(1, L, C))
        self.word_embed = nn.Linear(cfg.code_dim, C)
        self.class_emb = nn.Embedding(cfg.num_classes + 1, C)
        self.lvl_embed = nn.Embedding(S, C)
        lvl = torch.cat([torch.full((p * p,), i) for i, p in enumerate(cfg.patch_nums)])
        self.register_buffer("lvl_1L", lvl[None].long())
        self.register_buffer("attn_bias_for_masking", block_causal_mask(cfg.patch_nums))
        dpr = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        if cfg.shared_aln:
            self.shared_ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(C, 6 * C))
        self.blocks = nn.ModuleList(AdaLNSelfAttn(cfg, p) for p in dpr)
        self.head_nm = AdaLNBeforeHead(C)
        self.head = nn.Linear(C, cfg.vocab_size)
        self._pass_modulations = None  # (blocks, head) of the sampling pass under way (run)
        self._init()

    def _init(self):
        scalewise_init(self, self.cfg.width, (self.pos_start, self.pos_1LC))
        ada = [self.shared_ada_lin[-1]] if self.cfg.shared_aln else [b.ada_lin[-1] for b in self.blocks]
        for lin in ada:  # residual branches start small (VAR scales γ by 1e-5, scale/shift by 0.5)
            lin.weight.data[:2 * self.cfg.width].mul_(1e-5)
            lin.weight.data[2 * self.cfg.width:].mul_(0.5)
        for b in self.blocks:
            b.attn.proj.weight.data.div_(math.sqrt(2 * self.cfg.depth))
            b.ffn.fc2.weight.data.div_(math.sqrt(2 * self.cfg.depth))

    @property
    def null_class(self) -> int:
        return self.cfg.num_classes

    def drop_labels(self, labels: torch.Tensor, p: float | None = None) -> torch.Tensor:
        p = self.cfg.class_dropout if p is None else p
        if not self.training or p <= 0:
            return labels
        drop = torch.rand(labels.shape, device=labels.device) < p
        return torch.where(drop, torch.full_like(labels, self.null_class), labels)

    def embed(self, cond: torch.Tensor, x_in: torch.Tensor | None, start: int) -> torch.Tensor:
        """Token embeddings of positions start..start+n: the start token (start = 0) and/or the
        word-embedded inputs ``x_in`` (B, n, code_dim), plus level and position embeddings."""
        parts = [] if start else [(cond[:, None] + self.pos_start)]
        if x_in is not None and x_in.shape[1]:
            parts.append(self.word_embed(x_in))
        h = torch.cat(parts, 1)
        end = start + h.shape[1]
        return h + self.lvl_embed(self.lvl_1L[:, start:end]) + self.pos_1LC[:, start:end]

    def modulations(self, cond: torch.Tensor) -> tuple[list, tuple]:
        """Every block's AdaLN modulation and the head's, for class embeddings ``cond`` (B, C)."""
        block_cond = self.shared_ada_lin(cond).view(-1, 1, 6, self.cfg.width) if self.cfg.shared_aln else cond
        return [b.modulation(block_cond) for b in self.blocks], self.head_nm.modulation(cond)

    def run(self, h, cond, mask):
        """Blocks + head for h (B, n, C). While the KV cache is on (one sampling pass, one batch of
        conditions: the cached keys belong to it) the modulations are computed at the first scale
        and reused: they depend on the class only, and each block's Linear(C -> 6C) is a third of
        its weights, streamed again at every scale otherwise (VAR recomputes it)."""
        mods = self._pass_modulations
        if mods is None:
            mods = self.modulations(cond)
            if self.blocks[0].attn.kv is not None:
                self._pass_modulations = mods
        blocks, head = mods
        for b, mod in zip(self.blocks, blocks):
            h = b(h, mod, mask)
        return linear(self.head_nm(h, head), self.head.weight, self.head.bias).float()

    def forward(self, labels: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: labels (B,), inputs (B, L' − 1, code_dim) -> logits (B, L', V)."""
        cond = self.class_emb(labels)
        h = self.embed(cond, x_in, 0)
        L = h.shape[1]
        return self.run(h, cond, self.attn_bias_for_masking[:, :, :L, :L])

    def set_cache(self, on: bool) -> None:
        """KV cache on (a sampling pass begins) or off; either way the pass's modulations go."""
        self._pass_modulations = None
        for b in self.blocks:
            b.attn.kv = (None, None) if on else None


def sequence_logp(model: VAR, codes: torch.Tensor, x_in: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sequence log-likelihood: sum over all L tokens of log-softmax at the true code (B,)."""
    logp = torch.log_softmax(model(labels, x_in), dim=-1)
    return logp.gather(-1, codes[..., None]).squeeze(-1).sum(-1)


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
