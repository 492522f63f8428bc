"""Next-token sampling for LlamaGen-style GPTs: KV cache, temperature, top-k, top-p, CFG.

One code path for every guidance method: ``Guidance(method="cfg")`` doubles the batch as
[cond; uncond] (uncond = the null class) and combines logits with ``guidance.cfg`` before
temperature and truncation, as LlamaGen does; ``none`` (also how a CCA model is sampled) runs the
batch once; ``autoguidance`` (scale = w) runs a second, smaller GPT (the guide) on the same labels
and tokens, with its own KV cache, and combines logits = guide + w·(main − guide) with
``guidance.autoguidance.combine``. ``static_cache`` decodes on a cache preallocated to the padded
length with one fixed-shape step (the official sampler's layout), which ``compile`` runs under
torch.compile (CUDA graphs on a GPU). ``use_cache=False`` recomputes the whole prefix at every step (for the equality test
and the speed benchmark); with the same seed both paths draw the same tokens.

Randomness: one ``torch.Generator`` (CPU) seeded per call draws a uniform number per image and
step, and tokens are drawn by inverse CDF, so the draws do not depend on the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from guidance_repro.errors import ReproError
from guidance_repro.guidance.autoguidance import combine as autoguidance_combine
from guidance_repro.guidance.cfg import Guidance, split_and_combine


@dataclass(frozen=True)
class SamplerConfig:
    temperature: float = 1.0
    top_k: int = 0        # 0 = off
    top_p: float = 1.0    # 1.0 = off
    batch_size: int = 500
    use_cache: bool = True
    static_cache: bool = False  # the fixed-shape cache padded to a multiple of 8 (as the official)
    compile: bool = False       # torch.compile the static-cache step (implies static_cache)

    def __post_init__(self):
        if not self.temperature > 0:
            raise ReproError(f"sampler.temperature: must be > 0, got {self.temperature!r}")
        if self.top_k < 0:
            raise ReproError(f"sampler.top_k: must be >= 0, got {self.top_k!r}")
        if not 0 < self.top_p <= 1:
            raise ReproError(f"sampler.top_p: must be in (0, 1], got {self.top_p!r}")
        if self.batch_size < 1:
            raise ReproError(f"sampler.batch_size: must be >= 1, got {self.batch_size!r}")
        if (self.static_cache or self.compile) and not self.use_cache:
            raise ReproError("sampler.use_cache: static_cache and compile need the KV cache")

    @property
    def static(self) -> bool:
        return self.static_cache or self.compile


def top_k_mask(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits per row (ties at the k-th value are kept); others -> -inf."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_mask(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus: keep the smallest set of largest-probability tokens whose mass reaches p."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = probs.cumsum(-1) - probs  # mass of the strictly more likely tokens
    drop_sorted = mass_before >= p          # the top token always stays (mass_before = 0 < p)
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def _inverse_cdf(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Column j (B,) of logits (B, n) where the CDF of their softmax (float64) first reaches u·total."""
    cdf = torch.softmax(logits.double(), dim=-1).cumsum(-1)
    idx = torch.searchsorted(cdf, (u.double() * cdf[:, -1]).unsqueeze(-1).to(cdf.device))
    return idx.squeeze(-1).clamp_(max=logits.shape[-1] - 1)


def _draw_top_k(logits: torch.Tensor, k: int, p: float, u: torch.Tensor) -> torch.Tensor | None:
    """:func:`draw`'s tokens computed on the k largest logits only, or None where a tie at the
    k-th value would keep more than k (the full path then decides).

    The same distribution as masking all V logits: outside the top k every probability is 0, so
    the softmax and the nucleus cut over the k sorted values (what ``topk`` returns) are those of
    the masked vocabulary, without sorting all V logits or building (B, V) masks (VAR: k = 900 of
    V = 4096, B·pn² rows per scale). The kept tokens are put back in vocabulary order before the
    inverse CDF, so a uniform u picks the token the full path picks (up to float rounding)."""
    vals, idx = torch.topk(logits, k + 1, dim=-1)  # sorted, largest first
    if bool((vals[:, k] == vals[:, k - 1]).any()):
        return None
    vals, idx = vals[:, :k], idx[:, :k]
    if p < 1.0:
        probs = torch.softmax(vals, dim=-1)
        vals = vals.masked_fill(probs.cumsum(-1) - probs >= p, float("-inf"))  # as top_p_mask
    idx, order = idx.sort(dim=-1)
    j = _inverse_cdf(vals.gather(-1, order), u)
    return idx.gather(-1, j.unsqueeze(-1)).squeeze(-1)


def draw(logits: torch.Tensor, cfg: SamplerConfig, u: torch.Tensor) -> torch.Tensor:
    """Tokens (B,) from logits (B, V): temperature, top-k, top-p, then inverse CDF at u (B,)."""
    logits = logits / cfg.temperature
    if 0 < cfg.top_k < logits.shape[-1]:
        fast = _draw_top_k(logits, cfg.top_k, cfg.top_p, u)
        if fast is not None:
            return fast
    logits = top_p_mask(top_k_mask(logits, cfg.top_k), cfg.top_p)
    return _inverse_cdf(logits, u)


def _check_guide(model, guide, guidance: Guidance):
    if guidance.method != "autoguidance":
        if guide is not None:
            raise ReproError(f"guide model given for guidance method {guidance.method!r} (autoguidance only)")
        return None
    if guide is None:
        raise ReproError("guidance method autoguidance: a guide model is required")
    for key in ("vocab_size", "grid", "num_classes"):
        if getattr(guide.cfg, key) != getattr(model.cfg, key):
            raise ReproError(f"autoguidance: guide {key} {getattr(guide.cfg, key)} != main model's "
                             f"{getattr(model.cfg, key)}")
    guide.eval()
    return guide


@torch.no_grad()
def sample_batch(model, labels: torch.Tensor, guidance: Guidance, cfg: SamplerConfig,
                 generator: torch.Generator | None, return_logits: bool = False, guide=None,
                 uniforms: torch.Tensor | None = None):
    """Codes (B, N) for labels (B,); with ``return_logits`` also the guided logits (B, N, V).
    ``guide``: the guide GPT of ``Guidance("autoguidance", w)`` (same labels, same tokens).
    ``uniforms`` (B, N): the draws to use instead of ``generator``'s (sharded sampling gives each
    image its own, so that an image does not depend on the batch it was drawn in)."""
    model.eval()
    guide = _check_guide(model, guide, guidance)
    dev = next(model.parameters()).device
    labels = labels.to(dev)
    B, N = len(labels), model.cfg.seq_len
    if guidance.doubled:
        labels = torch.cat([labels, torch.full_like(labels, model.null_class)])
    if uniforms is None:
        uniforms = torch.rand(B, N, generator=generator)  # drawn up front: independent of the path
    elif tuple(uniforms.shape) != (B, N):
        raise ReproError(f"sampler: uniforms of shape {tuple(uniforms.shape)} for {B} images of {N} tokens")
    codes = torch.zeros(B, N, dtype=torch.long, device=dev)
    all_logits = []
    nets = [model] if guide is None else [model, guide]
    if cfg.use_cache:
        for net in nets:
            net.setup_cache(len(labels), device=dev, dtype=next(net.parameters()).dtype, static=cfg.static)
    try:
        for t in range(N):
            prev = codes[:, t - 1] if t > 0 else None
            if guidance.doubled and prev is not None:
                prev = torch.cat([prev, prev])
            if cfg.static:
                out = [net.static_step(labels, prev, t, compiled=cfg.compile) for net in nets]
            elif cfg.use_cache:
                out = [net.step(labels, prev, t) for net in nets]
            else:  # recompute everything: feed codes[:, :t] plus a dummy slot for position t
                seq = codes[:, :t + 1]
                if guidance.doubled:
                    seq = torch.cat([seq, seq])
                out = [net(seq, labels)[:, -1] for net in nets]
            logits = out[0]
            if guidance.doubled:
                logits = split_and_combine(logits, guidance.scale)
            elif guide is not None:
                logits = autoguidance_combine(out[1], logits, guidance.scale)
            codes[:, t] = draw(logits, cfg, uniforms[:, t])
            if return_logits:
                all_logits.append(logits)
    finally:
        for net in nets:  # a compiled step keeps its buffers for the next batch (CUDA graphs)
            net.clear_cache(keep_static=cfg.compile)
    return (codes, torch.stack(all_logits, 1)) if return_logits else codes


def class_balanced_labels(n: int, num_classes: int, seed: int) -> np.ndarray:
    """n labels, each class n // num_classes or one more times, in a seeded random order."""
    labels = np.arange(n) % num_classes
    return np.random.default_rng(seed).permutation(labels).astype(np.int64)


def sample_codes(model, labels: np.ndarray, guidance: Guidance, cfg: SamplerConfig, seed: int,
                 progress: bool = True, guide=None) -> np.ndarray:
    """Codes (n, N) int64 for ``labels``, in batches, from one seeded generator."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= model.cfg.num_classes):
        raise ReproError(f"labels outside 0..{model.cfg.num_classes - 1}")
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in tqdm(range(0, len(labels), cfg.batch_size), desc="sample", disable=not progress):
        batch = torch.from_numpy(labels[i:i + cfg.batch_size])
        out.append(sample_batch(model, batch, guidance, cfg, g, guide=guide).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, model.cfg.seq_len), np.int64)


def sample_images(model, tokenizer, n: int, guidance: Guidance, cfg: SamplerConfig, seed: int,
                  progress: bool = True, guide=None) -> dict[str, np.ndarray]:
    """Class-balanced samples decoded by the VQ tokenizer: the samples-file arrays
    {'images': uint8 (n, H, W, C), 'labels': int64 (n,)}."""
    labels = class_balanced_labels(n, model.cfg.num_classes, seed)
    codes = sample_codes(model, labels, guidance, cfg, seed, progress, guide=guide)
    return {"images": tokenizer.decode(codes), "labels": labels}
