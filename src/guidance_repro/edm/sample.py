"""Sampling a trained Fashion-MNIST denoiser with a guidance method (one sweep point).

Labels are class-balanced (i mod 10, shuffled with the seed); the initial noise is drawn from one
seeded generator, so every method and weight at the same seed starts from the same noise.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from guidance_repro.edm.task import to_uint8
from guidance_repro.guidance.autoguidance import for_method
from guidance_repro.sampling.edm import HeunConfig, heun_sample


def balanced_labels(n: int, seed: int, classes: int = 10) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.arange(n) % classes).astype(np.int64)


def generate(main, guide, method: str, w: float, n: int, sampler: HeunConfig, seed: int,
             batch: int = 250, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (n, 28, 28, 1) and their labels."""
    labels = balanced_labels(n, seed)
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, 1, 28, 28, generator=g)
    den = for_method(method, main, guide, w)
    out = []
    starts = range(0, n, batch)
    for lo in (tqdm(starts, desc=f"sample {method} w={w:g}", unit="batch") if progress else starts):
        lab = torch.from_numpy(labels[lo:lo + batch])
        out.append(to_uint8(heun_sample(den, noise[lo:lo + batch], sampler, lab)))
    return np.concatenate(out), labels
