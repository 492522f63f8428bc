"""Autoguidance's shared pieces: the guidance formula, the EDM Heun sampler, magnitude-preserving
layers (checked against independent closed forms)."""

from __future__ import annotations

import math

import pytest
import torch

from guidance_repro.errors import ReproError
from guidance_repro.guidance import autoguidance as ag
from guidance_repro.nn.mp import MPConv2d, MPLinear, mp_silu, mp_sum
from guidance_repro.sampling.edm import HeunConfig, heun_sample, time_steps


class Recorder:
    """A fake denoiser that records what it was called with."""

    def __init__(self, value: float):
        self.value, self.calls = value, []

    def __call__(self, x, sigma, labels):
        self.calls.append((x.clone(), sigma.clone(), None if labels is None else labels.clone()))
        return torch.full_like(x, self.value) + x


def test_formula_and_w_one_is_main_model():
    x, s, lab = torch.randn(5, 2), torch.tensor(0.3), torch.tensor([0, 1, 2, 3, 4])
    main, guide = Recorder(2.0), Recorder(-1.0)
    assert ag.guided(main, guide, 1.0) is main
    main(x, s, lab)
    assert guide.calls == []
    for w in (0.0, 2.5, 4.0):
        out = ag.guided(main, guide, w)(x, s, lab)
        d1, d0 = x + 2.0, x - 1.0
        assert torch.allclose(out, d0 + w * (d1 - d0))
    # the guide is called with the same x, sigma and the class label
    gx, gs, gl = guide.calls[-1]
    assert torch.equal(gx, x) and torch.equal(gs, s) and torch.equal(gl, lab)


def test_methods_and_errors():
    x, s = torch.randn(3, 2), torch.tensor(0.5)
    main = Recorder(1.0)
    # naive score scaling: x + w*(D1 - x), i.e. the score times w
    out = ag.for_method("score-scaling", main, None, 1.4)(x, s, None)
    assert torch.allclose(out, x + 1.4 * 1.0)
    assert ag.for_method("none", main, None, 3.0) is main
    with pytest.raises(ReproError, match="guide"):
        ag.for_method("autoguidance", main, None, 2.0)
    with pytest.raises(ReproError, match="method"):
        ag.for_method("bogus", main, None, 2.0)
    # combine works in float32 at least
    assert ag.combine(torch.zeros(2, dtype=torch.float16), torch.ones(2, dtype=torch.float16), 2.0).dtype == torch.float32


def test_time_steps_formula():
    cfg = HeunConfig(steps=32, sigma_min=0.002, sigma_max=80.0, rho=7.0)
    t = time_steps(cfg)
    assert len(t) == 33 and t[-1] == 0
    assert t[0].item() == pytest.approx(80.0) and t[31].item() == pytest.approx(0.002)
    i = 10
    ref = (80 ** (1 / 7) + i / 31 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert t[i].item() == pytest.approx(ref)
    with pytest.raises(ReproError, match="sampler.steps"):
        HeunConfig(steps=0)
    with pytest.raises(ReproError, match="sampler.bogus"):
        HeunConfig.from_dict({"bogus": 1})


def test_heun_gaussian_closed_form():
    """Gaussian data N(mu, s^2) with its exact denoiser: the ODE maps x_T to
    mu + (x_T - mu) * s / sqrt(s^2 + sigma_max^2), and the samples are the exact Gaussian."""
    mu, s = torch.tensor([0.7, -1.2], dtype=torch.float64), torch.tensor([0.5, 2.0], dtype=torch.float64)
    calls = []

    def exact(x, sigma, labels):
        calls.append(1)
        return mu + s ** 2 / (s ** 2 + sigma ** 2) * (x - mu)

    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(1000, 2, generator=gen, dtype=torch.float64)
    xt = noise * 80.0
    expected = mu + (xt - mu) * s / torch.sqrt(s ** 2 + 80.0 ** 2)
    errors = {}
    for steps in (32, 128):
        calls.clear()
        x = heun_sample(exact, noise, HeunConfig(steps=steps, sigma_min=0.002, sigma_max=80.0, rho=7.0))
        assert len(calls) == 2 * steps - 1  # NFE 2N - 1: the last step is Euler
        errors[steps] = ((x - expected).abs() / ((expected - mu).abs() + s)).max().item()
    # 32 Heun steps: within 2 % (relative); the error is second order (x4 steps -> /16)
    assert errors[32] < 0.02
    assert errors[128] < errors[32] / 10
    # the end distribution is the data Gaussian (the start is N(0, 80^2), so the std is
    # s * 80/sqrt(s^2+80^2) = s to 1e-4, and the mean mu * (1 - s/sqrt(s^2+80^2)))
    x = heun_sample(exact, torch.randn(40_000, 2, generator=gen, dtype=torch.float64), HeunConfig())
    assert torch.allclose(x.mean(0), mu * (1 - s / torch.sqrt(s ** 2 + 6400)), atol=0.03)
    assert torch.allclose(x.std(0), s, rtol=0.02)


def test_mp_layers_keep_unit_magnitude():
    torch.manual_seed(0)
    lin = MPLinear(256, 128)
    x = torch.randn(4096, 256)
    y = lin(x)
    assert y.pow(2).mean().sqrt().item() == pytest.approx(1.0, rel=0.03)
    w = lin.effective_weight()
    assert torch.allclose(w.norm(dim=1), torch.ones(128), atol=1e-3)
    # forced weight normalisation: training mode rewrites the stored weights to RMS 1 per row
    lin.weight.data.mul_(7.0)
    lin.train()
    lin(x[:2])
    assert torch.allclose(lin.weight.pow(2).mean(1).sqrt(), torch.ones(128), atol=1e-3)
    conv = MPConv2d(16, 32, 3)
    y = conv(torch.randn(64, 16, 12, 12))
    assert y[:, :, 1:-1, 1:-1].pow(2).mean().sqrt().item() == pytest.approx(1.0, rel=0.05)
    z = torch.randn(1_000_000)
    assert mp_silu(z).pow(2).mean().sqrt().item() == pytest.approx(1.0, abs=0.01)
    assert mp_sum(z, torch.randn(1_000_000), 0.3).pow(2).mean().sqrt().item() == pytest.approx(1.0, abs=0.01)
    assert math.isclose(lin(x, gain=0.0).abs().max().item(), 0.0)
