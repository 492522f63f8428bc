"""The 2-D tree-of-Gaussians: structure, moments, exact density/score, sampling, branch lookup."""

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from guidance_repro.data import tree_gaussians as tg
from guidance_repro.errors import ReproError


def test_structure_counts_and_draws():
    mix = tg.mixture()
    for c in (0, 1):
        sel = mix.cls == c
        assert sel.sum() == 1016
        assert np.array_equal(np.unique(mix.branch[sel]), np.arange(127))
        # 2^d branches at depth d, 8 components each
        assert np.array_equal(np.bincount(mix.depth[sel]) // 8, 2 ** np.arange(7))
    # trunk directions π/4 and 5π/4 (branch 0 of each class)
    for c, angle in ((0, np.pi / 4), (1, 5 * np.pi / 4)):
        d = mix.branch_end[c, 0] - mix.branch_start[c, 0]
        u = d / np.asarray(tg.SCALE)
        assert np.allclose(u / np.linalg.norm(u), [np.cos(angle), np.sin(angle)])
    # the trunk's length draw is the first N(0,1) of RandomState(2)
    n1 = np.random.RandomState(2).randn()
    length = np.linalg.norm((mix.branch_end[0, 0] - mix.branch_start[0, 0]) / np.asarray(tg.SCALE))
    assert length == pytest.approx(0.292 * (1 + 0.2 * n1))
    # covariances: along-branch std 0.06·ℓ, across 0.012·0.8^d (before the per-axis scale)
    inv = np.diag(1 / np.asarray(tg.SCALE))
    for c in (0, 1):
        for b in (0, 5, 100):
            k = np.flatnonzero((mix.cls == c) & (mix.branch == b))[0]
            ell = np.linalg.norm((mix.branch_end[c, b] - mix.branch_start[c, b]) @ inv)
            stds = np.sqrt(np.linalg.eigvalsh(inv @ mix.covs[k] @ inv))
            assert np.allclose(stds, [0.012 * 0.8 ** mix.depth[k], 0.06 * ell])
            assert mix.weights[k] == pytest.approx(ell * 0.5 ** mix.depth[k])
    assert tg.mixture() is tg.mixture() and not np.array_equal(tg.mixture(3).means, mix.means)


def test_data_mean_zero_and_sigma_data_half():
    mean, cov = tg.moments()
    # measured: mean (-0.00014, 0.00057), std (0.49985, 0.49990)
    assert np.abs(mean).max() < 1e-3
    assert np.allclose(np.sqrt(np.diag(cov)), 0.5, atol=1e-3)
    x, c, _ = tg.sample(200_000, rng=1)
    assert np.abs(x.mean(0)).max() < 5e-3 and np.allclose(x.std(0), 0.5, atol=5e-3)
    assert abs((c == 0).mean() - tg.describe()["class_prior"][0]) < 5e-3


def _reference_log_prob(x, sigma, cls):
    """Independent evaluation with scipy's multivariate normal, component by component."""
    mix = tg.mixture()
    idx = np.flatnonzero(mix.cls == cls) if cls is not None else np.arange(len(mix.weights))
    w = mix.weights[idx] / mix.weights[idx].sum()
    terms = [np.log(w[j]) + multivariate_normal(mix.means[k], mix.covs[k] + sigma ** 2 * np.eye(2)).logpdf(x)
             for j, k in enumerate(idx)]
    return logsumexp(np.stack(terms), axis=0)


@pytest.mark.parametrize("cls", [0, 1, None])
def test_log_prob_matches_scipy(cls):
    x = np.random.default_rng(0).normal(size=(7, 2)) * 0.6
    for sigma in (0.01, 0.3):
        assert np.allclose(tg.log_prob(x, sigma, cls), _reference_log_prob(x, sigma, cls), rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("sigma", [0.002, 0.02, 0.2, 1.0, 5.0])
def test_score_matches_finite_differences(sigma):
    rng = np.random.default_rng(1)
    x, _, _ = tg.sample(64, cls=0, sigma=sigma, rng=rng)
    h = 1e-6 * max(sigma, 0.01)
    fd = np.stack([(tg.log_prob(x + h * e, sigma, 0) - tg.log_prob(x - h * e, sigma, 0)) / (2 * h)
                   for e in np.eye(2)], axis=-1)
    s = tg.score(x, sigma, 0)
    assert np.allclose(s, fd, rtol=1e-5, atol=1e-5 * np.abs(fd).max())
    assert np.allclose(tg.denoise(x, sigma, 0), x + sigma ** 2 * s)


def test_per_sample_sigma_and_far_points_are_stable():
    x = np.array([[0.1, 0.2], [0.1, 0.2], [40.0, -40.0]])
    sig = np.array([0.05, 0.5, 0.002])
    lp = tg.log_prob(x, sig)
    assert lp[0] == pytest.approx(tg.log_prob(x[0], 0.05)) and lp[1] == pytest.approx(tg.log_prob(x[1], 0.5))
    assert np.all(np.isfinite(lp)) and np.all(np.isfinite(tg.score(x, sig)))
    # far away the score points back towards the data
    assert tg.score(x[2], 0.002) @ -x[2] > 0


def _grid(sigma, cls, step, half):
    g = np.arange(-half, half + step / 2, step)
    xx = np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1)
    return tg.log_prob(xx, sigma, cls), step


@pytest.mark.parametrize("sigma,cls,step", [(0.1, 0, 0.025), (0.5, None, 0.05)])
def test_density_integrates_to_one_and_sample_likelihood(sigma, cls, step):
    lp, dx = _grid(sigma, cls, step, 3.0 if sigma < 0.5 else 4.0)
    p = np.exp(lp)
    assert (p.sum() * dx * dx) == pytest.approx(1.0, abs=2e-3)
    expected = (p * lp).sum() * dx * dx             # E_p[log p] on the grid
    x, _, _ = tg.sample(4000, cls=cls, sigma=sigma, rng=7)
    ll = tg.log_prob(x, sigma, cls)
    se = ll.std() / np.sqrt(len(ll))
    assert abs(ll.mean() - expected) < 4 * se


def test_sample_branch_ids_and_nearest_branch():
    x, c, b = tg.sample(5000, rng=3)
    nc, nb, dist = tg.nearest_branch(x, cls=c)
    assert np.array_equal(nc, c)
    assert (nb == b).mean() > 0.85   # branches touch at their ends, so a few land on a neighbour
    assert np.median(dist) < 0.01
    # searching both classes finds the true class for nearly every clean sample
    assert (tg.nearest_branch(x)[0] == c).mean() > 0.99
    x0, _, b0 = tg.sample(20000, cls=0, rng=4)
    assert tg.branch_coverage(x0, 0) == 1.0
    # drop the samples of the 64 depth-6 branches: with a count threshold they are no longer covered
    depth = tg.mixture().depth[tg.mixture().cls == 0][::8]
    keep = depth[b0] < 6
    assert tg.branch_coverage(x0[keep], 0, min_count=5) == pytest.approx(63 / 127)


def test_errors():
    with pytest.raises(ReproError, match="class"):
        tg.log_prob(np.zeros(2), 0.1, cls=2)
    with pytest.raises(ReproError, match="shape"):
        tg.score(np.zeros((3, 3)), 0.1)
    with pytest.raises(ReproError, match="sigma"):
        tg.log_prob(np.zeros(2), -1.0)
