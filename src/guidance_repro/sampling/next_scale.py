"""Next-scale sampling for VAR-style models: one transformer pass per scale, CFG ramp, top-k/top-p.

Per scale si (of S): logits for all pn² tokens of the scale at once; with CFG the batch is doubled
as [cond; uncond] (uncond = the null class) and combined with VAR's ramp

    t = cfg · si / (S − 1),   logits = (1 + t)·cond − t·uncond

(guidance/cfg.py's ``cfg_combine`` with scale 1 + t; ``Guidance(method="cfg", scale=cfg)`` where
``scale`` is VAR's ``--cfg``, so cfg = 0 is no guidance). Then temperature, top-k, top-p (VAR's
paper protocol: 900 / 0.96) and a draw by inverse CDF from uniforms drawn up front per image and
token from one seeded CPU generator, so the cached and the recomputing path draw the same tokens.
The drawn codes update f̂ and give the next scale's input (var/msvq.py ``next_input``).

``use_cache=True`` keeps each block's keys/values of the coarser scales (VAR's KV cache);
``False`` reruns the whole prefix at every scale. Next-scale AR has only S passes, so the prefix
recompute costs Σ_k L_k instead of L token-passes (≈ 2x at 1,2,3,4,5,7); benchmarks/var_sampling.py
measures both.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from guidance_repro.errors import ReproError
from guidance_repro.guidance.cfg import Guidance, cfg_combine
from guidance_repro.nn.fast_linear import inference_linears
from guidance_repro.sampling.ar import SamplerConfig, class_balanced_labels, draw


def cfg_ramp(cfg: float, si: int, num_scales: int) -> float:
    """VAR's guidance strength t at scale si: cfg · si / (S − 1)."""
    return cfg * si / (num_scales - 1) if num_scales > 1 else cfg


@torch.no_grad()
def sample_batch(model, tokenizer, labels: torch.Tensor, guidance: Guidance, cfg: SamplerConfig,
                 generator: torch.Generator, return_logits: bool = False):
    """(tokens (B, L), f̂ (B, d, G, G)) for labels (B,); with ``return_logits`` also the guided
    logits (B, L, V)."""
    B, labels = len(labels), labels.to(next(model.parameters()).device)
    if guidance.doubled:
        labels = torch.cat([labels, torch.full_like(labels, model.null_class)])
    return sample_scales(model, tokenizer, model.class_emb(labels), B, guidance, cfg, generator, return_logits)


@torch.no_grad()
def sample_scales(model, tokenizer, cond, B: int, guidance: Guidance, cfg: SamplerConfig,
                  generator: torch.Generator | None, return_logits: bool = False,
                  uniforms: torch.Tensor | None = None):
    """The next-scale loop for any conditioning ``cond`` the model's ``embed``/``run`` take (VAR:
    class embeddings; STAR: star/model.py TextCond), batch B; with guidance ``cond`` already holds
    [cond; uncond] (2B rows). ``uniforms`` (B, L): the draws' uniforms given per image (e.g. seeded
    per prompt, so that an image does not depend on its batch); by default drawn from ``generator``."""
    if guidance.method == "autoguidance":  # a guide path exists only for next-token AR (sampling/ar.py)
        raise ReproError("next-scale sampler: autoguidance is not implemented for VAR-style models")
    model.eval()
    dev = next(model.parameters()).device
    pn = model.cfg.patch_nums
    S, L = len(pn), model.cfg.seq_len
    doubled = guidance.doubled
    if uniforms is None:
        uniforms = torch.rand(B, L, generator=generator)
    elif tuple(uniforms.shape) != (B, L):
        raise ReproError(f"next-scale sampler: uniforms of shape {tuple(uniforms.shape)}, expected ({B}, {L})")
    G = tokenizer.cfg.grid
    f_hat = torch.zeros(B, tokenizer.cfg.code_dim, G, G, device=dev)
    tokens = torch.zeros(B, L, dtype=torch.long, device=dev)
    inputs: list[torch.Tensor] = []  # word inputs of scales 1..si (B, pn², d)
    all_logits, pos = [], 0
    model.set_cache(cfg.use_cache)
    # the blocks' linears through oneDNN on the CPU: same maths, a faster kernel (nn/fast_linear.py)
    try:
        with inference_linears():
            for si, p in enumerate(pn):
                n = p * p
                if cfg.use_cache:
                    x = inputs[-1] if si else None
                    if x is not None and doubled:
                        x = torch.cat([x, x])
                    h = model.embed(cond, x, pos)
                    logits = model.run(h, cond, None)
                else:
                    x = torch.cat(inputs, 1) if si else None
                    if x is not None and doubled:
                        x = torch.cat([x, x])
                    h = model.embed(cond, x, 0)
                    mask = model.attn_bias_for_masking[:, :, :pos + n, :pos + n]
                    logits = model.run(h, cond, mask)[:, pos:]
                if doubled:
                    c, u = logits.chunk(2)
                    logits = cfg_combine(c, u, 1.0 + cfg_ramp(guidance.scale, si, S))
                V = logits.shape[-1]
                idx = draw(logits.reshape(B * n, V), cfg, uniforms[:, pos:pos + n].reshape(-1)).view(B, n)
                tokens[:, pos:pos + n] = idx
                f_hat, nxt = tokenizer.quantize.next_input(si, f_hat, idx.view(B, p, p))
                if nxt is not None:
                    inputs.append(nxt)
                if return_logits:
                    all_logits.append(logits)
                pos += n
    finally:
        model.set_cache(False)
    if return_logits:
        return tokens, f_hat, torch.cat(all_logits, 1)
    return tokens, f_hat


def sample_images(model, tokenizer, labels: np.ndarray, guidance: Guidance, cfg: SamplerConfig,
                  seed: int, progress: bool = True) -> dict[str, np.ndarray]:
    """{'images': uint8 (n, H, W, C), 'labels', 'tokens' (n, L)} for ``labels``, batch by batch."""
    from guidance_repro.nn.toy_conv import tensor_to_images
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= model.cfg.num_classes):
        raise ReproError(f"labels outside 0..{model.cfg.num_classes - 1}")
    if tuple(tokenizer.cfg.patch_nums) != tuple(model.cfg.patch_nums):
        raise ReproError(f"tokenizer patch_nums {list(tokenizer.cfg.patch_nums)} differ from the "
                         f"model's {list(model.cfg.patch_nums)}")
    g = torch.Generator().manual_seed(seed)
    images, tokens = [], []
    for i in tqdm(range(0, len(labels), cfg.batch_size), desc="sample", disable=not progress):
        lab = torch.from_numpy(labels[i:i + cfg.batch_size])
        tok, f_hat = sample_batch(model, tokenizer, lab, guidance, cfg, g)
        with torch.no_grad():
            images.append(tensor_to_images(tokenizer.decode_fhat(f_hat).cpu()))
        tokens.append(tok.cpu().numpy())
    s, c = tokenizer.cfg.image_size, tokenizer.cfg.in_channels
    return {"images": np.concatenate(images) if images else np.zeros((0, s, s, c), np.uint8),
            "labels": labels,
            "tokens": np.concatenate(tokens) if tokens else np.zeros((0, model.cfg.seq_len), np.int64)}


__all__ = ["cfg_ramp", "sample_batch", "sample_scales", "sample_images", "class_balanced_labels", "SamplerConfig"]
