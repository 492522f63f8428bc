"""A LlamaGen-style class-conditional GPT over VQ codes (next-token AR), readable in one screen.

Llama blocks: RMSNorm (eps 1e-5), attention with one fused qkv projection, SwiGLU FFN, no biases.
The sequence is [class token, x_0, ..., x_{N-2}]; position t predicts x_t. The class table has
num_classes + 1 rows; the last is the null class used by CFG and by class dropout.

2-D RoPE, LlamaGen's convention: the head dimension is read as head_dim/2 interleaved pairs
(dims 2j, 2j+1); the first half of the pairs rotates with the token's row, the second half with its
column (row-major grid, base 10000). Image token x_k sits at sequence position 1 + k and is rotated
by the grid position of k. The class position is not rotated: with ``prefix_rope = "zero"`` (the
official cache, whose class row is all zeros) q and k there are zeroed, as the official code does;
``"identity"`` leaves them as they are. Module names equal the official checkpoint keys (cca.md §4.1).
"""

from __future__ import annotations

import math

import numpy as np
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from guidance_repro.errors import ReproError
from guidance_repro.nn.config import build_config


@dataclass
class GPTConfig:
    vocab_size: int = 512           # = the VQ tokenizer codebook_size (default 512)
    grid: int = 7                  # image is grid x grid tokens
    num_classes: int = 10
    dim: int = 128
    n_layer: int = 4
    n_head: int = 4
    multiple_of: int = 32          # SwiGLU hidden = int(8*dim/3) rounded up to this (LlamaGen: 256)
    rope_base: float = 10000.0
    prefix_rope: str = "zero"      # "zero" (official) | "identity"
    token_dropout: float = 0.1
    resid_dropout: float = 0.1
    ffn_dropout: float = 0.1
    class_dropout: float = 0.1

    @classmethod
    def from_dict(cls, d: dict, key: str = "model") -> "GPTConfig":
        d = dict(d)
        cfg = build_config(cls, d, key, "GPT", sizes=SIZES)
        if cfg.dim % cfg.n_head or (cfg.dim // cfg.n_head) % 4:
            raise ReproError(f"{key}.n_head: head_dim = dim / n_head must be a multiple of 4 for 2-D RoPE")
        if cfg.prefix_rope not in ("zero", "identity"):
            raise ReproError(f"{key}.prefix_rope: must be 'zero' or 'identity', got {cfg.prefix_rope!r}")
        return cfg

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def seq_len(self) -> int:
        return self.grid * self.grid

    @property
    def ffn_hidden(self) -> int:
        h = int(2 * 4 * self.dim / 3)
        return self.multiple_of * math.ceil(h / self.multiple_of)


_PAPER = dict(vocab_size=16384, grid=24, num_classes=1000, multiple_of=256)
SIZES = {
    "toy-S": dict(dim=96, n_layer=4, n_head=4),     # ~0.5M parameters (vocab 512)
    "toy-M": dict(dim=192, n_layer=5, n_head=6),    # ~2.4M
    "B": dict(_PAPER, dim=768, n_layer=12, n_head=12),
    "L": dict(_PAPER, dim=1024, n_layer=24, n_head=16),
    "XL": dict(_PAPER, dim=1280, n_layer=36, n_head=20),
    "XXL": dict(_PAPER, dim=1536, n_layer=48, n_head=24),
    "3B": dict(_PAPER, dim=3200, n_layer=24, n_head=32),
}


def rope_2d(grid: int, head_dim: int, base: float = 10000.0, prefix: str = "zero") -> torch.Tensor:
    """Cache (1 + grid^2, head_dim/2, 2) of (cos, sin): row 0 the class position, then row-major."""
    quarter = head_dim // 4  # frequencies per axis
    freqs = 1.0 / base ** (torch.arange(quarter, dtype=torch.float64) * 2 / (head_dim // 2))
    t = torch.arange(grid, dtype=torch.float64)
    rows = torch.outer(t, freqs)[:, None, :].expand(grid, grid, quarter)  # angle from the row
    cols = torch.outer(t, freqs)[None, :, :].expand(grid, grid, quarter)  # angle from the column
    angles = torch.cat([rows, cols], dim=-1).reshape(grid * grid, 2 * quarter)
    cache = torch.stack([angles.cos(), angles.sin()], dim=-1)
    first = torch.zeros(1, 2 * quarter, 2, dtype=torch.float64)
    if prefix == "identity":
        first[..., 0] = 1.0
    return torch.cat([first, cache]).float()


def apply_rope(x: torch.Tensor, cache: torch.Tensor) -> torch.Tensor:
    """x (B, S, H, hd) rotated pairwise by cache (S, hd/2, 2): pair (x[2j], x[2j+1]) is the complex
    number x[2j] + i x[2j+1], multiplied by cos + i sin (the cache may also be given as complex)."""
    rot = cache if cache.is_complex() else torch.view_as_complex(cache.contiguous())
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(xc * rot[None, :, None]).flatten(3).type_as(x)


def apply_rope_real(x: torch.Tensor, cache: torch.Tensor) -> torch.Tensor:
    """:func:`apply_rope` in real arithmetic, (a cos - b sin, a sin + b cos) per pair, for the
    compiled decode step: inductor generates no code for complex ops (it falls back to eager)."""
    xr = x.float().reshape(*x.shape[:-1], -1, 2)
    cos, sin = cache[None, :, None, :, 0], cache[None, :, None, :, 1]
    a, b = xr[..., 0], xr[..., 1]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(3).type_as(x)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.head_dim = cfg.n_head, cfg.dim // cfg.n_head
        self.wqkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.resid_dropout = nn.Dropout(cfg.resid_dropout)
        self.kv = None  # (k, v) cache, each (B, H, max_len, hd), while decoding
        self.static_kv = None  # StaticKV of the fixed-shape decode path

    def forward(self, x, rope, start: int):
        B, S, _ = x.shape
        q, k, v = self.wqkv(x).view(B, S, 3, self.n_head, self.head_dim).unbind(2)
        q, k = apply_rope(q, rope), apply_rope(k, rope)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        if self.kv is not None:
            self.kv[0][:, :, start:start + S], self.kv[1][:, :, start:start + S] = k, v
            k, v = self.kv[0][:, :, :start + S], self.kv[1][:, :, :start + S]
        if S == 1:
            y = F.scaled_dot_product_attention(q, k, v)  # one query sees every cached key
        else:  # query at position start+i sees keys 0..start+i
            mask = torch.ones(S, start + S, dtype=torch.bool, device=x.device).tril(diagonal=start)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.resid_dropout(self.wo(y.transpose(1, 2).reshape(B, S, -1)))

    def forward_static(self, x, rope, pos: torch.Tensor, mask: torch.Tensor):
        """One token (B, 1, D) at position ``pos`` (a 1-element tensor): written into the static
        cache, attending over the whole padded cache under ``mask`` (B, 1, 1, L). Every shape is
        fixed, so one compiled graph serves every position."""
        B = x.shape[0]
        q, k, v = self.wqkv(x).view(B, 1, 3, self.n_head, self.head_dim).unbind(2)
        q, k = apply_rope_real(q, rope), apply_rope_real(k, rope)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        cache = self.static_kv
        cache.k.index_copy_(2, pos, k)
        cache.v.index_copy_(2, pos, v)
        y = F.scaled_dot_product_attention(q, cache.k, cache.v, attn_mask=mask)
        return self.resid_dropout(self.wo(y.transpose(1, 2).reshape(B, 1, -1)))


class StaticKV(nn.Module):
    """A KV cache preallocated to the padded length, held as non-persistent buffers: they move with
    the module and count as static inputs for CUDA graphs, and stay out of the state dict."""

    def __init__(self, shape: tuple, device, dtype):
        super().__init__()
        self.register_buffer("k", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v", torch.zeros(shape, device=device, dtype=dtype), persistent=False)


class FeedForward(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        h = cfg.ffn_hidden
        self.w1 = nn.Linear(cfg.dim, h, bias=False)
        self.w3 = nn.Linear(cfg.dim, h, bias=False)
        self.w2 = nn.Linear(h, cfg.dim, bias=False)
        self.ffn_dropout = nn.Dropout(cfg.ffn_dropout)

    def forward(self, x):
        return self.ffn_dropout(self.w2(F.silu(self.w1(x)) * self.w3(x)))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.attention_norm, self.attention = RMSNorm(cfg.dim), Attention(cfg)
        self.ffn_norm, self.feed_forward = RMSNorm(cfg.dim), FeedForward(cfg)

    def forward(self, x, rope, start):
        # Each branch is dropped once, inside its module (attention: resid_dropout, FFN:
        # ffn_dropout), as in the official block; a second dropout here would keep 0.81, not 0.9.
        x = x + self.attention(self.attention_norm(x), rope, start)
        return x + self.feed_forward(self.ffn_norm(x))

    def forward_static(self, x, rope, pos, mask):
        x = x + self.attention.forward_static(self.attention_norm(x), rope, pos, mask)
        return x + self.feed_forward(self.ffn_norm(x))


class LabelEmbedder(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.embedding_table = nn.Embedding(cfg.num_classes + 1, cfg.dim)  # last row: null class


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.cls_embedding = LabelEmbedder(cfg)
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.tok_dropout = nn.Dropout(cfg.token_dropout)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.dim)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        # A plain attribute, not a buffer: it is not in the state dict (as in the official files).
        self.freqs_cis = rope_2d(cfg.grid, cfg.dim // cfg.n_head, cfg.rope_base, cfg.prefix_rope)
        # freqs_cis on the device, set up with the static cache (non-persistent: not in the state dict)
        self.register_buffer("static_rope", None, persistent=False)
        self.apply(self._init)
        # The official init: N(0, 0.02) everywhere, then the output layer zeroed (the first logits
        # are uniform). Zeroing after the normal draw keeps the RNG stream of the other layers.
        nn.init.zeros_(self.output.weight)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    @property
    def null_class(self) -> int:
        return self.cfg.num_classes

    def drop_labels(self, labels: torch.Tensor, p: float | None = None, generator=None) -> torch.Tensor:
        """Class dropout: each label becomes the null class with probability p (training only)."""
        p = self.cfg.class_dropout if p is None else p
        if not self.training or p <= 0:
            return labels
        drop = torch.rand(labels.shape, generator=generator, device=labels.device if generator is None else "cpu")
        drop = drop.to(labels.device) < p
        return torch.where(drop, torch.full_like(labels, self.null_class), labels)

    def _run(self, h: torch.Tensor, start: int) -> torch.Tensor:
        rope = torch.view_as_complex(self.freqs_cis[start:start + h.shape[1]].contiguous()).to(h.device)
        for layer in self.layers:
            h = layer(h, rope, start)
        return self.output(self.norm(h)).float()

    def forward(self, codes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: codes (B, N) with N <= grid^2, labels (B,) -> logits (B, N, V) for codes."""
        h = torch.cat([self.cls_embedding.embedding_table(labels)[:, None],
                       self.tok_embeddings(codes[:, :-1])], dim=1)
        return self._run(self.tok_dropout(h), 0)

    # --- incremental decoding -------------------------------------------------------------------
    def setup_cache(self, batch: int, device=None, dtype=torch.float32, static: bool = False) -> None:
        """The growing cache (``step``) or, with ``static``, the fixed-shape one (``static_step``)
        padded to a multiple of 8 as the official ``setup_caches``. A static cache of the same
        shape is reused (zeroed), so a compiled step (CUDA graphs) keeps its buffers' addresses."""
        hd, n = self.cfg.dim // self.cfg.n_head, self.cfg.seq_len
        if not static:
            shape = (batch, self.cfg.n_head, n, hd)
            for layer in self.layers:
                layer.attention.kv = (torch.zeros(shape, device=device, dtype=dtype),
                                      torch.zeros(shape, device=device, dtype=dtype))
            return
        shape = (batch, self.cfg.n_head, 8 * math.ceil(n / 8), hd)
        device = torch.empty(0, device=device).device  # "cuda" -> "cuda:0", to compare
        for layer in self.layers:
            old = layer.attention.static_kv
            if old is not None and (old.k.shape, old.k.dtype, old.k.device) == (shape, dtype, device):
                old.k.zero_(), old.v.zero_()
            else:
                layer.attention.static_kv = StaticKV(shape, device, dtype)
        rope = self.static_rope
        if rope is None or rope.device != device or rope.dtype != torch.float32:  # (.to() may cast it)
            self.register_buffer("static_rope", self.freqs_cis.to(device), persistent=False)

    def clear_cache(self, keep_static: bool = False) -> None:
        """Drop the caches; ``keep_static`` keeps the static one for the next batch of this shape."""
        for layer in self.layers:
            layer.attention.kv = None
            if not keep_static:
                layer.attention.static_kv = None

    def _static_body(self, h: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Embedded token (B, 1, D) at position ``pos`` (1-element long tensor) -> logits (B, V)."""
        length = self.layers[0].attention.static_kv.k.shape[2]
        mask = (torch.arange(length, device=h.device) <= pos).view(1, 1, 1, length)
        rope = self.static_rope.index_select(0, pos)
        for layer in self.layers:
            h = layer.forward_static(h, rope, pos, mask)
        return self.output(self.norm(h)).float()[:, -1]

    def compiled_body(self):
        """``_static_body`` under torch.compile, built once per model and device type: CUDA graphs
        (reduce-overhead, fullgraph) on a GPU, the default inductor on the CPU."""
        dev = next(self.parameters()).device.type
        cache = self.__dict__.setdefault("_compiled", {})
        if dev not in cache:
            mode = "reduce-overhead" if dev == "cuda" else None
            cache[dev] = torch.compile(self._static_body, mode=mode, fullgraph=True)
        return cache[dev]

    def static_step(self, labels: torch.Tensor | None, token: torch.Tensor | None, pos: int,
                    compiled: bool = False) -> torch.Tensor:
        """``step`` on the static cache: the same logits (B, V), from one fixed-shape function."""
        h = self._embed_step(labels, token, pos)
        at = torch.tensor([pos], device=h.device)
        if not compiled:
            return self._static_body(h, at)
        # a CUDA graph overwrites its output on the next replay: keep a copy
        return self.compiled_body()(h, at).clone()

    def step(self, labels: torch.Tensor | None, token: torch.Tensor | None, pos: int) -> torch.Tensor:
        """Logits (B, V) for code ``pos`` given the cache; pos 0 feeds the class, else code pos-1."""
        return self._run(self._embed_step(labels, token, pos), pos)[:, -1]

    def _embed_step(self, labels, token, pos: int) -> torch.Tensor:
        """The one input (B, 1, D) of a decoding step: the class at pos 0, else code pos-1."""
        if pos == 0:
            h = self.cls_embedding.embedding_table(labels)[:, None]
        else:
            h = self.tok_embeddings(token)[:, None]
        return self.tok_dropout(h)


def sequence_logp(model: GPT, codes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sequence log-likelihood: the sum over tokens of log-softmax at the true code (B,)."""
    logp = torch.log_softmax(model(codes, labels), dim=-1)
    return logp.gather(-1, codes[..., None]).squeeze(-1).sum(-1)


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_gpt(path) -> GPT:
    """Load a GPT model file written by the training loop (tasks llamagen-pretrain / llamagen-cca)."""
    from guidance_repro.train.checkpoint import load_model_file, load_state_strict
    obj = load_model_file(path)
    if "model" not in obj or "model_config" not in obj:
        raise ReproError(f"{path}: not a model file (needs 'model' and 'model_config')")
    model = GPT(GPTConfig.from_dict(obj["model_config"], key=f"{path}:model_config"))
    load_state_strict(model, obj["model"], path)
    return model.eval()


# --- training data and the pretraining task ------------------------------------------------------
def unwrap(model: nn.Module) -> nn.Module:
    """The GPT inside a DDP wrapper (the loop may hand the task either)."""
    return getattr(model, "module", model)


def load_codes(inputs: dict, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(codes (N, grid*grid) int64, labels (N,) int64) from ``inputs``.

    Either ``inputs['codes']``: an .npz with ``codes`` (N, h, w) and ``labels`` (N,), or
    ``inputs['data']`` (the Fashion-MNIST artifact) + ``inputs['tokenizer']`` (a vq-tokenizer model
    file): the ``split`` images are encoded once, here.
    """
    if "codes" in inputs:
        path = inputs["codes"]
        try:
            with np.load(path) as z:
                codes, labels = z["codes"], z["labels"]
        except (OSError, KeyError, ValueError) as exc:
            raise ReproError(f"{path}: not a codes file with 'codes' and 'labels' ({exc})") from None
    elif "data" in inputs and "tokenizer" in inputs:
        from guidance_repro.data.fashion_mnist import load
        from guidance_repro.llamagen.tokenizer import load_vq
        images, labels = load(inputs["data"]).split(split)
        codes = load_vq(inputs["tokenizer"]).encode(images)
    else:
        raise ReproError("inputs: need 'codes', or 'data' and 'tokenizer'")
    codes = np.asarray(codes, dtype=np.int64).reshape(len(codes), -1)
    return codes, np.asarray(labels, dtype=np.int64)


class PretrainTask:
    """TrainTask ``llamagen-pretrain``: next-token cross-entropy on VQ codes with class dropout.

    params: ``model`` (GPTConfig fields or ``size``: toy-S, toy-M, B, ...; vocab_size and grid are
    checked against the codes), ``weight_decay_min_dim`` (default 2: decay only >= 2-D weights, as
    LlamaGen). Random draws (class dropout) use the global torch RNG, which the loop reseeds
    per (seed, step, rank).
    inputs: see :func:`load_codes`.
    """

    name = "llamagen-pretrain"

    def __init__(self, params: dict, inputs: dict):
        params = dict(params)
        self.wd_min_dim = int(params.pop("weight_decay_min_dim", 2))
        model = params.pop("model", {})
        if params:
            raise ReproError(f"params.{sorted(params)[0]}: unknown {self.name} parameter")
        self.cfg = GPTConfig.from_dict(model, key="params.model")
        self.codes, self.labels = load_codes(inputs)
        check_codes(self.codes, self.labels, self.cfg)

    def build_model(self) -> nn.Module:
        return GPT(self.cfg)

    def model_config(self) -> dict:
        return self.cfg.to_dict()

    def num_examples(self) -> int:
        return len(self.codes)

    def get_batch(self, indices: np.ndarray):
        return {"codes": torch.from_numpy(self.codes[indices]), "labels": torch.from_numpy(self.labels[indices])}

    def param_groups(self, model: nn.Module, wd: float) -> list[dict]:
        decay = [p for p in model.parameters() if p.ndim >= self.wd_min_dim]
        other = [p for p in model.parameters() if p.ndim < self.wd_min_dim]
        return [{"params": decay, "weight_decay": wd}, {"params": other, "weight_decay": 0.0}]

    def loss(self, model, batch, step):
        dev = next(model.parameters()).device
        codes, labels = batch["codes"].to(dev), batch["labels"].to(dev)
        logits = model(codes, unwrap(model).drop_labels(labels))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), codes.reshape(-1))
        return loss, {"ce": loss.item()}


def check_codes(codes: np.ndarray, labels: np.ndarray, cfg: GPTConfig) -> None:
    if codes.shape[1] != cfg.seq_len:
        raise ReproError(f"params.model.grid: codes have {codes.shape[1]} tokens, the model "
                         f"{cfg.seq_len} ({cfg.grid}x{cfg.grid})")
    if codes.size and (codes.min() < 0 or codes.max() >= cfg.vocab_size):
        raise ReproError(f"params.model.vocab_size: codes range {codes.min()}..{codes.max()}, "
                         f"vocab_size {cfg.vocab_size}")
    if labels.size and (labels.min() < 0 or labels.max() >= cfg.num_classes):
        raise ReproError(f"params.model.num_classes: labels range {labels.min()}..{labels.max()}")
    if len(labels) != len(codes):
        raise ReproError(f"inputs: {len(codes)} code sequences but {len(labels)} labels")


def make_pretrain_task(params: dict, inputs: dict) -> PretrainTask:
    return PretrainTask(params, inputs)
