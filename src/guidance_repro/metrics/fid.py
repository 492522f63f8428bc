"""FID and KID on feature arrays, through clean-fid's own functions.

clean-fid computes FID as ``frechet_distance(mean, np.cov(rowvar=False))`` of the features and KID
as ``kernel_distance`` (cubic polynomial kernel, 100 subsets of at most 1000). We call those same
functions on features from our extractors, so a FID here is clean-fid's FID of those features.
"""

from __future__ import annotations

from importlib import metadata

import numpy as np
from cleanfid.fid import frechet_distance, kernel_distance

from guidance_repro.errors import ReproError


def cleanfid_version() -> str:
    return metadata.version("clean-fid")


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) in float64, as clean-fid: mean over samples, unbiased covariance (N - 1)."""
    if features.ndim != 2 or len(features) < 2:
        raise ReproError(f"features: need (N >= 2, D), got {features.shape}")
    mu = features.mean(axis=0, dtype=np.float64)
    sigma = np.cov(features, rowvar=False).astype(np.float64, copy=False)
    return mu, np.atleast_2d(sigma)


def fid_from_stats(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ReproError(f"feature dimensions differ: {mu1.shape} vs {mu2.shape}")
    try:
        value = frechet_distance(mu1, sigma1, mu2, sigma2)
    except ValueError as exc:  # clean-fid: large imaginary part in sqrtm
        raise ReproError(f"FID: {exc}") from exc
    return float(value)


def fid_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    return fid_from_stats(*feature_stats(features1), *feature_stats(features2))


def kid(features1: np.ndarray, features2: np.ndarray, seed: int = 0, num_subsets: int = 100,
        max_subset_size: int = 1000) -> float:
    """clean-fid's kernel_distance with its subset draws made reproducible by ``seed``."""
    if min(len(features1), len(features2)) < 2:
        raise ReproError("KID: need at least 2 features in each set")
    # kernel_distance draws from NumPy's global RNG; seed it and put the caller's state back.
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        return float(kernel_distance(features1.astype(np.float64), features2.astype(np.float64),
                                     num_subsets=num_subsets, max_subset_size=max_subset_size))
    finally:
        np.random.set_state(state)
