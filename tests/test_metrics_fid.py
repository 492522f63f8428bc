"""FID/KID: closed forms, and equality with clean-fid's own compute_fid on PNG folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cleanfid import fid as cleanfid
from cleanfid.resize import make_resizer
from PIL import Image

from guidance_repro.metrics import fid as fid_mod
from guidance_repro.metrics.evaluate import evaluate, reference_stats
from guidance_repro.metrics.features import TorchExtractor

CPU = torch.device("cpu")


def random_conv(seed: int = 0, dim: int = 12):
    """A small random conv net in clean-fid's custom_feat_extractor convention."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, dim, 3, stride=2), torch.nn.Tanh(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    return lambda x: net(x / 255.0)


def random_images(n: int, size: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(n, 1, 1, channels))
    noise = rng.integers(-60, 60, size=(n, size, size, channels))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_pngs(folder, images: np.ndarray) -> str:
    folder.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(folder / f"{i:05d}.png")
    return str(folder)


def test_fid_of_a_set_with_itself_is_zero():
    feats = np.random.default_rng(0).normal(size=(500, 8)).astype(np.float32)
    assert abs(fid_mod.fid_from_features(feats, feats)) < 1e-6


def test_fid_diagonal_gaussians_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert fid_mod.fid_from_stats(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-9)


def test_fid_commuting_covariances_closed_form():
    # Same eigenvectors Q: Tr(S1 + S2 - 2 (S1 S2)^1/2) = sum (sqrt a - sqrt b)^2 over eigenvalues.
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    a, b = rng.uniform(0.2, 2, 5), rng.uniform(0.2, 2, 5)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    mu1, mu2 = np.zeros(5), np.full(5, 0.5)
    expected = 5 * 0.25 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert fid_mod.fid_from_stats(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-7)


def test_fid_of_sampled_gaussians_approaches_closed_form():
    rng = np.random.default_rng(3)
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 1.0])
    x = rng.normal(size=(200_000, 3)) * np.sqrt(s1)
    y = rng.normal(size=(200_000, 3)) * np.sqrt(s2) + np.array([1.0, 0.0, -1.0])
    expected = 2.0 + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert fid_mod.fid_from_features(x.astype(np.float32), y.astype(np.float32)) == \
        pytest.approx(expected, abs=0.03)


def test_feature_stats_are_float64_unbiased():
    feats = np.random.default_rng(4).normal(size=(50, 4)).astype(np.float32)
    mu, sigma = fid_mod.feature_stats(feats)
    assert mu.dtype == sigma.dtype == np.float64
    centred = feats.astype(np.float64) - feats.astype(np.float64).mean(0)
    np.testing.assert_allclose(sigma, centred.T @ centred / 49, rtol=1e-6)


def test_kid_seeded_near_zero_for_same_distribution_and_keeps_global_rng():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    k1, k2 = fid_mod.kid(x, y, seed=7, num_subsets=10), fid_mod.kid(x, y, seed=7, num_subsets=10)
    assert k1 == k2 and abs(k1) < 0.05
    assert np.array_equal(np.random.get_state()[1], before)
    assert fid_mod.kid(x, y + 3.0, seed=7, num_subsets=10) > 0.5


@pytest.mark.parametrize("channels,size,resize", [(1, 28, None), (3, 32, None), (3, 20, "pil40")])
def test_our_fid_equals_cleanfid_compute_fid_on_png_folders(tmp_path, channels, size, resize):
    net = random_conv(seed=channels + size)
    fn_resize = make_resizer("PIL", False, "bicubic", (40, 40)) if resize else None
    ext = TorchExtractor("randconv", "0" * 64, 40 if resize else size, feature_fn=net,
                         fn_resize=fn_resize, batch_size=50)
    ext.progress = False
    real = random_images(120, size, channels, seed=1)
    fake = random_images(100, size, channels, seed=2)
    fake[:50] = real[:50]
    ref = reference_stats(real, ext, dataset="t", split="test", max_features=1000)
    ref["meta"] = {"dataset": "t"}
    ours = evaluate(fake, ref, ext, ["fid"])["fid"]

    d_real, d_fake = write_pngs(tmp_path / "real", real), write_pngs(tmp_path / "fake", fake)
    theirs = cleanfid.compute_fid(d_fake, d_real, mode="clean", custom_feat_extractor=net,
                                  custom_fn_resize=ext.cleanfid_fn_resize, device=CPU,
                                  num_workers=0, verbose=False, use_dataparallel=False)
    assert ours == pytest.approx(theirs, rel=1e-5, abs=1e-8)
    # and the features themselves are the same numbers
    their_feats = cleanfid.get_folder_features(d_real, net, num_workers=0, device=CPU, mode="clean",
                                               custom_fn_resize=ext.cleanfid_fn_resize, verbose=False)
    np.testing.assert_allclose(ext.features(real), their_feats, rtol=1e-5, atol=1e-6)


def test_extractor_feeds_contiguous_nchw_batches():
    # clean-fid's ToTensor gives contiguous NCHW; a permuted NHWC view is channels-last, and the
    # network's convolutions would then take another CPU kernel (other rounding).
    seen = []

    def feature_fn(x):
        seen.append((x.is_contiguous(), tuple(x.shape)))
        return x.mean((2, 3))

    ext = TorchExtractor("probe", "0" * 64, 6, feature_fn=feature_fn, batch_size=4)
    ext.progress = False
    ext.features(random_images(6, 6, 3, seed=0))
    assert seen == [(True, (4, 3, 6, 6)), (True, (2, 3, 6, 6))]
