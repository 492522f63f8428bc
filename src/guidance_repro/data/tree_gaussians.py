"""The 2-D tree-of-Gaussians of the autoguidance paper (Karras et al. 2024, §3 and App. C).

Two classes, each a fractal tree grown from one root with trunk angle π/4 (class 0, "A") or 5π/4
(class 1, "B"). A branch at depth d = 0..6 has

- length      ℓ = 0.292 · 0.8^d · (1 + 0.2·n₁),  n₁ ~ N(0, 1)
- weight      ℓ · 0.5^d (per component, before normalisation)
- thickness   τ = 0.2 · 0.8^d / ℓ
- two children at depth d+1, starting at its tip, at angles θ ± 0.7^d · (1 + 0.2·n₂)

and is drawn as 8 Gaussians centred at t ∈ linspace(0.07, 0.93, 8) along it, so each class has
127 branches × 8 = 1016 components. In unscaled coordinates a component's standard deviation is
0.06·ℓ along the branch and 0.06·ℓ·τ = 0.012·0.8^d across it; the whole tree (means and
covariances) is then multiplied per axis by scale = (1.3136, 1.3844), with the roots at the
unscaled origin (0.0030, 0.0325), which puts the two-class mixture at mean ≈ 0 and σ_data ≈ 0.5.

Facts beyond the fact sheet (``reference/autoguidance.md`` §4 does not state them) were taken from
the released ``toy_example.py`` (NVlabs/edm2 @ 4bf8162): the 0.06·ℓ component size, that the
scale multiplies positions *and* covariances (Σ ∘ s sᵀ), that the root sits at ``origin`` before
scaling, and the random draw order:

- one ``numpy.random.RandomState(2)`` stream, ``randn()`` draws in depth-first pre-order;
- per branch: first its length draw; then for the child with sign +1 its angle draw followed by
  that child's whole subtree, then the same for the sign −1 child. Depth-6 branches still draw
  their two (unused) child angles;
- class A's tree is drawn completely, then class B's from the same stream.

With the same order the mixture matches the original's up to float rounding. Branch ids are
0..126 per class in that pre-order (id 0 = trunk).

Deviations from the original, on purpose: everything is float64 and log-sum-exp stabilised (the
original evaluates densities in float32 without it), and sampling draws components with their
exact probabilities (the original uses a 65536-entry lookup table).

Conditional densities ``p(x | class)`` normalise the weights within the class; the
unconditional density (``cls=None``) normalises over both classes, like the original's 'AB'.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from guidance_repro.errors import ReproError

SEED = 2
DEPTHS = 7                      # depths 0..6
BRANCHES_PER_CLASS = 2 ** DEPTHS - 1   # 127
COMPONENTS_PER_BRANCH = 8
T_POSITIONS = np.linspace(0.07, 0.93, COMPONENTS_PER_BRANCH)
ORIGIN = (0.0030, 0.0325)
SCALE = (1.3136, 1.3844)
TRUNK_ANGLES = (np.pi * 0.25, np.pi * 1.25)
SIGMA_DATA = 0.5
_CHUNK = 2048                   # points per block when evaluating (bounds memory to ~N·K floats)


@dataclass(frozen=True)
class TreeMixture:
    """Gaussian mixture parameters of both classes (components of class 0 first)."""
    means: np.ndarray        # (K, 2) float64
    covs: np.ndarray         # (K, 2, 2) float64
    weights: np.ndarray      # (K,) float64, raw (unnormalised) ℓ·0.5^d
    cls: np.ndarray          # (K,) int64, 0 or 1
    branch: np.ndarray       # (K,) int64, 0..126 within the class (pre-order)
    depth: np.ndarray        # (K,) int64, 0..6
    branch_start: np.ndarray  # (2, 127, 2) scaled start point of each branch
    branch_end: np.ndarray    # (2, 127, 2) scaled end point of each branch

    def select(self, cls: int | None) -> np.ndarray:
        """Indices of the components of ``cls`` (all components when None)."""
        if cls is None:
            return np.arange(len(self.weights))
        if cls not in (0, 1):
            raise ReproError(f"tree_gaussians: class must be 0, 1 or None, got {cls!r}")
        return np.flatnonzero(self.cls == cls)

    def log_weights(self, cls: int | None) -> tuple[np.ndarray, np.ndarray]:
        idx = self.select(cls)
        w = self.weights[idx]
        return idx, np.log(w / w.sum())


@functools.lru_cache(maxsize=4)
def mixture(seed: int = SEED) -> TreeMixture:
    """Build the mixture (deterministic; cached)."""
    rnd = np.random.RandomState(seed)
    scale = np.asarray(SCALE)
    means, covs, weights, cls_ids, branch_ids, depths = [], [], [], [], [], []
    starts = np.zeros((2, BRANCHES_PER_CLASS, 2))
    ends = np.zeros((2, BRANCHES_PER_CLASS, 2))

    # Depth-first recursion; a child's angle is drawn right before its subtree is grown (the draw
    # order fixes the tree: see the module docstring).
    for c, trunk in enumerate(TRUNK_ANGLES):
        counter = 0

        def grow(depth: int, start: np.ndarray, angle: float) -> None:
            nonlocal counter
            if depth >= DEPTHS:
                return
            b = counter
            counter += 1
            u = np.array([np.cos(angle), np.sin(angle)])
            length = 0.292 * 0.8 ** depth * (1.0 + 0.2 * rnd.randn())
            thick = 0.2 * 0.8 ** depth / length
            size = scale * length * 0.06
            along = np.outer(u, u)
            cov = (along + (np.eye(2) - along) * thick ** 2) * np.outer(size, size)
            for t in T_POSITIONS:
                means.append((start + u * length * t) * scale)
                covs.append(cov)
                weights.append(length * 0.5 ** depth)
                cls_ids.append(c)
                branch_ids.append(b)
                depths.append(depth)
            tip = start + u * length
            starts[c, b], ends[c, b] = start * scale, tip * scale
            for sign in (1.0, -1.0):
                child_angle = angle + sign * 0.7 ** depth * (1.0 + 0.2 * rnd.randn())
                grow(depth + 1, tip, child_angle)

        grow(0, np.asarray(ORIGIN, dtype=np.float64), trunk)
    return TreeMixture(np.array(means), np.array(covs), np.array(weights),
                       np.array(cls_ids, dtype=np.int64), np.array(branch_ids, dtype=np.int64),
                       np.array(depths, dtype=np.int64), starts, ends)


def _as_points(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 1 or x.shape[-1] != 2:
        raise ReproError(f"tree_gaussians: points must have shape (..., 2), got {x.shape}")
    return x


def _terms(x: np.ndarray, sigma: np.ndarray, mix: TreeMixture, idx: np.ndarray, logw: np.ndarray):
    """Per-(point, component) log(w_k N(x; μ_k, Σ_k + σ²I)) and Σ'^{-1}(μ_k − x), for x (n, 2)."""
    cov = mix.covs[idx]                                   # (K, 2, 2)
    s2 = (sigma ** 2)[:, None]                            # (n, 1)
    a = cov[None, :, 0, 0] + s2                           # (n, K)
    b = np.broadcast_to(cov[None, :, 0, 1], a.shape)
    c = cov[None, :, 1, 1] + s2
    det = a * c - b * b
    y = mix.means[idx][None] - x[:, None, :]              # μ − x: (n, K, 2)
    z0 = (c * y[..., 0] - b * y[..., 1]) / det            # closed-form 2×2 inverse
    z1 = (a * y[..., 1] - b * y[..., 0]) / det
    maha = y[..., 0] * z0 + y[..., 1] * z1
    logn = logw[None] - 0.5 * maha - 0.5 * np.log(det) - np.log(2.0 * np.pi)
    return logn, z0, z1


def _iterate(x, sigma, cls, seed):
    x = _as_points(x)
    flat = x.reshape(-1, 2)
    sig = np.broadcast_to(np.asarray(sigma, dtype=np.float64), x.shape[:-1]).reshape(-1)
    if np.any(sig < 0):
        raise ReproError("tree_gaussians: sigma must be >= 0")
    mix = mixture(seed)
    idx, logw = mix.log_weights(cls)
    for lo in range(0, len(flat), _CHUNK):
        sl = slice(lo, lo + _CHUNK)
        yield sl, _terms(flat[sl], sig[sl], mix, idx, logw)


def _logsumexp(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = v.max(axis=1, keepdims=True)
    e = np.exp(v - m)
    s = e.sum(axis=1, keepdims=True)
    return (m + np.log(s))[:, 0], e / s


def log_prob(x: np.ndarray, sigma: float | np.ndarray = 0.0, cls: int | None = None,
             seed: int = SEED) -> np.ndarray:
    """Exact log p(x | cls; σ) of the data convolved with N(0, σ²I); x (..., 2) → (...)."""
    x = _as_points(x)
    out = np.empty(int(np.prod(x.shape[:-1])))
    for sl, (logn, _, _) in _iterate(x, sigma, cls, seed):
        out[sl] = _logsumexp(logn)[0]
    return out.reshape(x.shape[:-1])


def score(x: np.ndarray, sigma: float | np.ndarray = 0.0, cls: int | None = None,
          seed: int = SEED) -> np.ndarray:
    """Exact ∇_x log p(x | cls; σ) = Σ_k r_k(x) (Σ_k + σ²I)^{-1}(μ_k − x); x (..., 2) → (..., 2)."""
    x = _as_points(x)
    out = np.empty((int(np.prod(x.shape[:-1])), 2))
    for sl, (logn, z0, z1) in _iterate(x, sigma, cls, seed):
        r = _logsumexp(logn)[1]
        out[sl, 0] = (r * z0).sum(axis=1)
        out[sl, 1] = (r * z1).sum(axis=1)
    return out.reshape(x.shape)


def denoise(x: np.ndarray, sigma: float | np.ndarray, cls: int | None = None,
            seed: int = SEED) -> np.ndarray:
    """Exact denoiser D(x; σ) = E[y | x] = x + σ² ∇_x log p(x; σ) (Tweedie)."""
    x = _as_points(x)
    sig = np.broadcast_to(np.asarray(sigma, dtype=np.float64), x.shape[:-1])[..., None]
    return x + sig ** 2 * score(x, sigma, cls, seed)


def sample(n: int, cls: int | None = None, sigma: float = 0.0, rng: np.random.Generator | int = 0,
           seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``n`` points from p(x | cls; σ).

    Returns (x (n, 2) float64, class (n,) int64, branch (n,) int64): the class and branch of the
    component each point was drawn from.
    """
    if n < 0:
        raise ReproError(f"tree_gaussians: sample count must be >= 0, got {n}")
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    mix = mixture(seed)
    idx, logw = mix.log_weights(cls)
    k = idx[rng.choice(len(idx), size=n, p=np.exp(logw))]
    cov = mix.covs[k] + float(sigma) ** 2 * np.eye(2)
    chol = np.linalg.cholesky(cov)
    eps = rng.standard_normal((n, 2))
    x = mix.means[k] + np.einsum("nij,nj->ni", chol, eps)
    return x, mix.cls[k].copy(), mix.branch[k].copy()


def nearest_branch(x: np.ndarray, cls: int | np.ndarray | None = None,
                   seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map points to the nearest branch (Euclidean distance to the branch's scaled segment).

    ``cls``: restrict to that class's branches (an int, or one per point); None searches both.
    Returns (class (n,), branch (n,), distance (n,)) for x (n, 2).
    """
    x = _as_points(x).reshape(-1, 2)
    mix = mixture(seed)
    a = mix.branch_start.reshape(-1, 2)                    # (254, 2): class 0 then class 1
    d = mix.branch_end.reshape(-1, 2) - a
    out_c = np.empty(len(x), dtype=np.int64)
    out_b = np.empty(len(x), dtype=np.int64)
    out_d = np.empty(len(x))
    cls_of = np.repeat(np.arange(2), BRANCHES_PER_CLASS)
    want = None if cls is None else np.broadcast_to(np.asarray(cls), (len(x),))
    for lo in range(0, len(x), _CHUNK):
        p = x[lo:lo + _CHUNK, None, :] - a[None]           # (n, 254, 2)
        t = np.clip((p * d).sum(-1) / (d * d).sum(-1), 0.0, 1.0)
        dist = np.linalg.norm(p - t[..., None] * d, axis=-1)
        if want is not None:
            dist = np.where(cls_of[None] == want[lo:lo + _CHUNK, None], dist, np.inf)
        j = dist.argmin(axis=1)
        out_c[lo:lo + _CHUNK] = cls_of[j]
        out_b[lo:lo + _CHUNK] = j % BRANCHES_PER_CLASS
        out_d[lo:lo + _CHUNK] = dist[np.arange(len(j)), j]
    return out_c, out_b, out_d


def branch_coverage(x: np.ndarray, cls: int, min_count: int = 1, max_distance: float = np.inf,
                    seed: int = SEED) -> float:
    """Share of the class's 127 branches that are the nearest branch of ≥ ``min_count`` points
    (points farther than ``max_distance`` from every branch of the class are not counted)."""
    _, b, dist = nearest_branch(x, cls=cls, seed=seed)
    counts = np.bincount(b[dist <= max_distance], minlength=BRANCHES_PER_CLASS)
    return float((counts >= min_count).mean())


def moments(cls: int | None = None, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Exact mean (2,) and covariance (2, 2) of the (un-noised) mixture."""
    mix = mixture(seed)
    idx, logw = mix.log_weights(cls)
    w = np.exp(logw)
    mu = mix.means[idx]
    mean = w @ mu
    second = np.einsum("k,kij->ij", w, mix.covs[idx] + mu[:, :, None] * mu[:, None, :])
    return mean, second - np.outer(mean, mean)


def describe(seed: int = SEED) -> dict:
    """Summary statistics (for the ``describe-tree-gaussians`` command and the docs)."""
    mix = mixture(seed)
    out: dict = {"seed": seed, "components_per_class": [int((mix.cls == c).sum()) for c in (0, 1)],
                 "branches_per_class": BRANCHES_PER_CLASS}
    for name, c in (("both", None), ("class0", 0), ("class1", 1)):
        mean, cov = moments(c, seed)
        out[name] = {"mean": mean.tolist(), "std": np.sqrt(np.diag(cov)).tolist(),
                     "std_overall": float(np.sqrt(np.trace(cov) / 2.0))}
    w = mix.weights
    out["class_prior"] = [float(w[mix.cls == c].sum() / w.sum()) for c in (0, 1)]
    return out
