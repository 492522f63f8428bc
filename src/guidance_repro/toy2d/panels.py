"""Figure 1 of the autoguidance paper on the exact 2-D toy: panels and their numbers (the claims
over the replicates: ``toy2d/claims.py``).

Panels (class A, the paper's Fig. 1 settings by default): ground truth (exact samples), unguided
(main model), CFG (guide = the unconditional model trained on both classes), naive score scaling
(score × 1.40), autoguidance (guide = the smaller, shorter-trained class-A model).

Numbers, all with the exact density p(x | A) of the data (σ = 0):

- ``outlier_share``: share of samples with log p(x | A) below τ, where τ is the ``outlier_quantile``
  (default 1 %) quantile of log p(y | A) over exact samples y ~ p(· | A) drawn with a separate seed.
  By construction the ground truth panel scores ≈ ``outlier_quantile``.
- ``mean_log_likelihood``: mean of log p(x | A) over the samples.
- ``branch_coverage``: share of class A's 127 branches that are the nearest branch of at least
  ``coverage_min_count`` *inlier* samples (outliers are not counted, so a point far off the
  tree does not "cover" a branch).
"""

from __future__ import annotations

import numpy as np
import torch

from guidance_repro.data import tree_gaussians as tg
from guidance_repro.guidance.autoguidance import for_method
from guidance_repro.sampling.edm import HeunConfig, heun_sample

CLASS_A = 0
PANELS = (  # (key, title, method)
    ("ground_truth", "Ground truth", None),
    ("unguided", "Unguided", "none"),
    ("cfg", "CFG", "cfg"),
    ("score_scaling", "Naive score scaling", "score-scaling"),
    ("autoguidance", "Autoguidance", "autoguidance"),
)


def outlier_threshold(quantile: float, n: int = 100_000, seed: int = 12345, tree_seed: int = tg.SEED) -> float:
    y, _, _ = tg.sample(n, cls=CLASS_A, rng=seed, seed=tree_seed)
    return float(np.quantile(tg.log_prob(y, 0.0, cls=CLASS_A, seed=tree_seed), quantile))


def panel_metrics(x: np.ndarray, tau: float, min_count: int, tree_seed: int = tg.SEED) -> dict:
    logp = tg.log_prob(x, 0.0, cls=CLASS_A, seed=tree_seed)
    inlier = logp >= tau
    _, b, _ = tg.nearest_branch(x[inlier], cls=CLASS_A, seed=tree_seed)
    counts = np.bincount(b, minlength=tg.BRANCHES_PER_CLASS)
    return {"n": int(len(x)), "outlier_share": float((~inlier).mean()),
            "mean_log_likelihood": float(logp.mean()),
            "branch_coverage": float((counts >= min_count).mean()),
            "branches_covered": int((counts >= min_count).sum())}


def draw_panels(main, autoguide, uncond, n: int, sampler: HeunConfig, weights: dict, seed: int,
                tree_seed: int = tg.SEED) -> dict[str, np.ndarray]:
    """Samples of every panel; the same initial noise for every model-based panel."""
    out = {"ground_truth": tg.sample(n, cls=CLASS_A, rng=seed + 1, seed=tree_seed)[0]}
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, 2, generator=g, dtype=torch.float32)
    labels = torch.full((n,), CLASS_A, dtype=torch.long)
    guides = {"none": None, "cfg": uncond, "score-scaling": None, "autoguidance": autoguide}
    for key, _, method in PANELS[1:]:
        w = weights.get(key, 1.0)
        den = for_method(method, main, guides[method], w)
        out[key] = heun_sample(den, noise, sampler, labels).double().numpy()
    return out


def figure(samples: dict[str, np.ndarray], metrics: dict, weights: dict, path, tree_seed: int = tg.SEED) -> None:
    """The panels side by side, each titled with its numbers, over the exact density's contours."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mix = tg.mixture(tree_seed)
    pts = np.concatenate([mix.branch_start[CLASS_A], mix.branch_end[CLASS_A]])
    lo, hi = pts.min(0) - 0.15, pts.max(0) + 0.15
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 120), np.linspace(lo[1], hi[1], 120))
    logp = tg.log_prob(np.stack([gx, gy], -1), 0.0, cls=CLASS_A, seed=tree_seed)
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 4.4))
    for ax, (key, title, _) in zip(axes, PANELS):
        ax.contour(gx, gy, logp, levels=np.linspace(logp.max() - 12, logp.max(), 7),
                   colors="0.75", linewidths=0.5)
        x = samples[key]
        ax.scatter(x[:, 0], x[:, 1], s=0.6, c="C0" if key == "ground_truth" else "C3", alpha=0.5,
                   linewidths=0)
        w = f" (w = {weights[key]:g})" if key in weights and key != "unguided" else ""
        mm = metrics[key]
        ax.set_title(f"{title}{w}\noutliers {100 * mm['outlier_share']:.1f} %, "
                     f"log p {mm['mean_log_likelihood']:.2f}\nbranches {mm['branches_covered']}/127",
                     fontsize=9)
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
