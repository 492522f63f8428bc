"""Inception Score from classifier logits, split as the ADM (guided-diffusion) evaluator does.

The ADM evaluator (cca.md §3) cuts the predictions into consecutive chunks of ``split_size`` = 5000
(the last one may be shorter), computes exp(E_x KL(p(y|x) || p(y))) per chunk with p(y) the chunk's
mean prediction, and reports the mean over chunks; we also report the standard deviation.
Written by hand because that evaluator is TensorFlow code that no maintained package provides.
"""

from __future__ import annotations

import numpy as np

from guidance_repro.errors import ReproError

ADM_SPLIT_SIZE = 5000


def inception_score(logits: np.ndarray, split_size: int = ADM_SPLIT_SIZE) -> tuple[float, float, int]:
    """Return (mean, std, number of splits) of the IS of ``logits`` (N, K)."""
    if logits.ndim != 2 or len(logits) == 0:
        raise ReproError(f"IS: logits must be (N > 0, K), got {logits.shape}")
    if split_size < 1:
        raise ReproError(f"IS: split size must be positive, got {split_size}")
    from scipy.special import log_softmax  # here, not at import: the CLI parser imports this module

    log_p = log_softmax(logits.astype(np.float64), axis=1)
    p = np.exp(log_p)
    scores = []
    for start in range(0, len(p), split_size):
        part_p, part_log_p = p[start:start + split_size], log_p[start:start + split_size]
        log_marginal = np.log(part_p.mean(axis=0, keepdims=True))
        kl = np.sum(part_p * (part_log_p - log_marginal), axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores)), len(scores)
