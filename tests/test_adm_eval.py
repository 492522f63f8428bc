"""The ADM evaluation protocol (metrics/adm.py, adm-evaluate): FID / sFID against the reference
batch's stored statistics checked against an independent numpy/scipy computation, precision /
recall against brute-force k-NN, IS splits, and the errors for bad reference batches.

The Inception file here is a TEST STAND-IN written by this test (a tiny TorchScript module with the
call signature of clean-fid's legacy-TF Inception: ``forward(x, return_features=True)`` -> (B, 2048)
and an ``output`` layer for the IS logits), not the real network."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

from guidance_repro.cli import main
from guidance_repro.data.adm_batch import write_adm_batch
from guidance_repro.data.imagenet import ReferenceBatch
from guidance_repro.errors import ReproError
from guidance_repro.metrics.adm import adm_metrics
from guidance_repro.metrics.inception_score import inception_score

pytestmark = pytest.mark.usefixtures("one_thread")


class _StandInLayers(nn.Module):
    """``layers``: normalised images -> (B, 2048) pool features (clean-fid's wrapper reaches it)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(48, 2048)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.proj(F.adaptive_avg_pool2d(x, 4).flatten(1)))


class InceptionStandIn(nn.Module):
    """TEST STAND-IN for inception-2015-12-05.pt (same call signature, random weights)."""

    def __init__(self):
        super().__init__()
        self.layers = _StandInLayers()
        self.output = nn.Linear(2048, 1008)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        f = self.layers(x / 128 - 1)   # the real file resizes to 299 first (legacy TF mode)
        return f if return_features else self.output(f)


class SpatialStandIn(nn.Module):
    """TEST STAND-IN for a spatial-feature (sFID) network: (B, 3, H, W) in [0, 255] -> (B, 12)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x / 255, 2).permute(0, 2, 3, 1).flatten(1)


def frechet_reference(mu1, s1, mu2, s2):
    """Independent FID: |mu1 - mu2|^2 + tr(s1 + s2 - 2 (s1 s2)^1/2), scipy sqrtm."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean))


def brute_force_pr(real, fake, k=3):
    def radii(x):
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        return np.sort(d, axis=1)[:, k]            # column 0 is the point itself
    d = np.linalg.norm(fake[:, None] - real[None], axis=-1)       # (fake, real)
    precision = np.mean((d <= radii(real)[None]).any(1))
    recall = np.mean((d.T <= radii(fake)[None]).any(1))
    return precision, recall


def spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + np.eye(d) * 0.1


def test_fid_sfid_use_the_stored_statistics_and_pr_the_reference_activations():
    rng = np.random.default_rng(0)
    d, ds = 6, 4
    ref = ReferenceBatch(path="ref.npz", images=None, image_shape=(40, 8, 8, 3), mu=rng.normal(size=d),
                         sigma=spd(rng, d), mu_s=rng.normal(size=ds), sigma_s=spd(rng, ds))
    ref_pool = rng.normal(size=(40, d)).astype(np.float32)   # the arr_0 activations: NOT the stored stats
    sample = {"pool": rng.normal(0.3, 1.2, size=(60, d)).astype(np.float32),
              "spatial": rng.normal(size=(60, ds)).astype(np.float32),
              "logits": rng.normal(size=(60, 10)).astype(np.float32)}
    out = adm_metrics(sample, ref, ref_pool, is_split_size=25)
    pool64, sp64 = sample["pool"].astype(np.float64), sample["spatial"].astype(np.float64)
    fid = frechet_reference(pool64.mean(0), np.cov(pool64, rowvar=False), ref.mu, ref.sigma)
    sfid = frechet_reference(sp64.mean(0), np.cov(sp64, rowvar=False), ref.mu_s, ref.sigma_s)
    assert out["fid"] == pytest.approx(fid, rel=1e-6) and out["sfid"] == pytest.approx(sfid, rel=1e-6)
    p, r = brute_force_pr(ref_pool.astype(np.float64), pool64)
    assert (out["precision"], out["recall"]) == pytest.approx((p, r), abs=1e-6)  # float32 means; 1/60 apart
    assert 0 < p < 1 and 0 < r < 1
    assert out["is_splits"] == 3                                   # 25 + 25 + 10
    no_spatial = adm_metrics({**sample, "spatial": None}, ref, ref_pool)
    assert no_spatial["sfid"] is None and no_spatial["sfid_status"].startswith("not computed")


def test_inception_score_splits_of_5000_as_the_adm_evaluator():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(12000, 7)) * 3
    mean, std, splits = inception_score(logits)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    scores = []
    for part in (p[:5000], p[5000:10000], p[10000:]):
        kl = (part * (np.log(part) - np.log(part.mean(0, keepdims=True)))).sum(1).mean()
        scores.append(np.exp(kl))
    assert splits == 3 and mean == pytest.approx(np.mean(scores)) and std == pytest.approx(np.std(scores))


@pytest.fixture(scope="module")
def eval_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("adm")
    torch.manual_seed(0)
    torch.jit.script(InceptionStandIn()).save(str(d / "inception-standin.pt"))
    torch.jit.script(SpatialStandIn()).save(str(d / "spatial-standin.pt"))
    rng = np.random.default_rng(2)
    ref_images = rng.integers(0, 256, (30, 16, 16, 3), dtype=np.uint8)
    # stored statistics "of the full train set": deliberately not those of arr_0
    np.savez(d / "ref.npz", arr_0=ref_images, mu=rng.normal(size=2048) * 0.01, sigma=np.eye(2048) * 0.01,
             mu_s=rng.normal(size=12) * 0.1, sigma_s=spd(rng, 12) * 0.01)
    images = rng.integers(0, 256, (24, 16, 16, 3), dtype=np.uint8)
    write_adm_batch(d / "point.npz", images.shape, [images], np.arange(24) % 4)
    (d / "point.json").write_text(json.dumps({"kind": "adm-batch", "class_balanced": True, "seeds": {"seed": 3},
                                              "settings": {"family": "llamagen", "model": "B", "method": "cca",
                                                           "cfg": 1.0, "beta": 0.02, "lam": 1000}}))
    return d


def _args(d, out, *extra):
    return ["adm-evaluate", "--samples", str(d / "point.npz"), "--sample-manifest", str(d / "point.json"),
            "--reference", str(d / "ref.npz"), "--inception", str(d / "inception-standin.pt"),
            "--is-split-size", "10", "--no-progress", "--out", str(out), *extra]


@pytest.mark.slow
def test_adm_evaluate_command_records_the_protocol(eval_files, tmp_path):
    """One end-to-end run (~50 s on one core: scipy's sqrtm of a singular 2048 x 2048 product, then
    clean-fid's retry with an eps offset, as the ADM evaluator also does)."""
    out = tmp_path / "m.json"
    assert main(_args(eval_files, out, "--sfid-network", str(eval_files / "spatial-standin.pt"))) == 0
    m = json.loads(out.read_text())
    assert all(np.isfinite(m[k]) for k in ("fid", "sfid", "is_mean", "precision", "recall"))
    p = m["protocol"]
    assert "torch port" in p["inception_note"] and p["reference_stats"] == "stored mu/sigma, mu_s/sigma_s"
    assert p["num_samples"] == 24 and p["reference_pr_images"] == 30 and p["is_split_size"] == 10
    assert p["sampler"]["method"] == "cca" and p["sampler"]["lam"] == 1000
    assert p["sfid_network"].endswith("spatial-standin.pt") and m["sfid_status"].startswith("computed")


def test_bad_reference_batches_are_named(eval_files, tmp_path, capsys):
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "nostats.npz", arr_0=rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8))
    assert main(_args(eval_files, tmp_path / "m.json")[:6] + [str(tmp_path / "nostats.npz")]
                + _args(eval_files, tmp_path / "m.json")[7:]) == 2
    err = capsys.readouterr().err
    assert "nostats.npz: missing key 'mu'" in err
    np.savez(tmp_path / "badshape.npz", arr_0=rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8),
             mu=np.zeros(2048), sigma=np.eye(2047), mu_s=np.zeros(12), sigma_s=np.eye(12))
    args = _args(eval_files, tmp_path / "m.json")
    args[args.index("--reference") + 1] = str(tmp_path / "badshape.npz")
    assert main(args) == 2
    assert "badshape.npz: key 'sigma' must have shape (2048, 2048)" in capsys.readouterr().err
    # a spatial network whose dimension is not the stored mu_s's
    np.savez(tmp_path / "ref13.npz", arr_0=rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8),
             mu=np.zeros(2048), sigma=np.eye(2048), mu_s=np.zeros(13), sigma_s=np.eye(13))
    args[args.index("--reference") + 1] = str(tmp_path / "ref13.npz")
    assert main(args + ["--sfid-network", str(eval_files / "spatial-standin.pt")]) == 2
    assert "ref13.npz: stored 'mu_s' is 13-d" in capsys.readouterr().err
    # samples at another resolution than the reference batch
    write_adm_batch(tmp_path / "small.npz", (4, 8, 8, 3), [np.zeros((4, 8, 8, 3), np.uint8)], np.zeros(4))
    args = _args(eval_files, tmp_path / "m.json")
    args[args.index("--samples") + 1] = str(tmp_path / "small.npz")
    assert main(args) == 2
    assert "small.npz: 8x8 images" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()
