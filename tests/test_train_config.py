"""TrainConfig validation, learning-rate schedules against their formulas, EMA against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from guidance_repro.errors import ReproError
from guidance_repro.train.config import TrainConfig
from guidance_repro.train.ema import EMA, gamma_from_sigma_rel, sigma_rel_from_gamma
from guidance_repro.train.schedule import lr_factor


def test_defaults_round_trip():
    cfg = TrainConfig.from_dict({"lr": 2e-5, "betas": [0.9, 0.95], "steps": 10})
    assert cfg.betas == (0.9, 0.95) and cfg.lr == 2e-5
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("d, match", [
    ({"lr": -1}, r"^train\.lr: must be > 0"),
    ({"lrr": 1}, r"^train\.lrr: unknown key"),
    ({"steps": 0}, r"^train\.steps: must be >= 1"),
    ({"steps": "ten"}, r"^train\.steps: must be an integer"),
    ({"steps": 2.5}, r"^train\.steps: must be an integer"),
    ({"optimizer": "sgd"}, r"^train\.optimizer: must be one of adamw, adam"),
    ({"schedule": "exp"}, r"^train\.schedule: must be one of"),
    ({"ema": "yes"}, r"^train\.ema: must be one of"),
    ({"ema_std": 0.3}, r"^train\.ema_std: must be in"),
    ({"ema_decay": 1.0}, r"^train\.ema_decay: must be in"),
    ({"betas": [0.9]}, r"^train\.betas: must be two numbers"),
    ({"betas": "0.9"}, r"^train\.betas: must be a list"),
    ({"precision": "float64"}, r"^train\.precision: must be one of"),
    ({"device": "tpu"}, r"^train\.device: must be one of"),
    ({"grad_clip": -1}, r"^train\.grad_clip: must be >= 0"),
    ({"lr": float("nan")}, r"^train\.lr: must be a finite number"),
    ({"batch_size": 10, "accumulation": 3}, r"^train\.batch_size: 10 is not divisible by train\.accumulation"),
    ({"schedule": "lin0", "warmup_steps": 5}, r"^train\.warmup_steps: must be 0 with schedule lin0"),
    ({"final_lr_factor": 2}, r"^train\.final_lr_factor: must be in \[0, 1\]"),
    ({"seed": True}, r"^train\.seed: booleans are not accepted"),
])
def test_validation_names_the_key(d, match):
    with pytest.raises(ReproError, match=match):
        TrainConfig.from_dict(d)


def test_validation_uses_the_given_key():
    with pytest.raises(ReproError, match=r"^cca\.train\.lr: "):
        TrainConfig.from_dict({"lr": 0}, key="cca.train")
    with pytest.raises(ReproError, match=r"^train: must be a mapping"):
        TrainConfig.from_dict([1, 2])


def _cfg(**kw) -> TrainConfig:
    return TrainConfig.from_dict({"steps": 101, **kw})


def test_constant_and_warmup():
    cfg = _cfg(warmup_steps=10)
    assert [lr_factor(cfg, k) for k in (0, 4, 9, 10, 100)] == [0.1, 0.5, 1.0, 1.0, 1.0]
    assert lr_factor(_cfg(), 0) == 1.0


def test_cosine_and_linear():
    cfg = _cfg(schedule="cosine", final_lr_factor=0.1)  # progress k / 100
    for k in (0, 25, 50, 100):
        expect = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * k / 100))
        assert lr_factor(cfg, k) == pytest.approx(expect, abs=1e-12)
    cfg = _cfg(schedule="linear", warmup_steps=20)  # progress (k - 20) / 80
    assert lr_factor(cfg, 9) == pytest.approx(0.5)
    assert lr_factor(cfg, 60) == pytest.approx(0.5)
    assert lr_factor(cfg, 100) == pytest.approx(0.0)


def test_lin0_var_shape():
    # 1000 steps: warm-up 2 % = 20 steps from 0.005x, then hold 5 % of the remaining 979 step
    # intervals, then linear decay to 0.1x at the last step.
    cfg = TrainConfig.from_dict({"steps": 1000, "schedule": "lin0", "final_lr_factor": 0.1})
    assert lr_factor(cfg, 0) == pytest.approx(0.005)
    assert lr_factor(cfg, 10) == pytest.approx(0.005 + 0.995 * 10 / 20)
    assert lr_factor(cfg, 20) == 1.0
    assert lr_factor(cfg, 20 + 48) == 1.0  # 48 / 979 < 0.05
    k = 20 + 500
    assert lr_factor(cfg, k) == pytest.approx(0.1 + 0.9 * (1 - 500 / 979) / 0.95)
    assert lr_factor(cfg, 999) == pytest.approx(0.1)
    f = [lr_factor(cfg, k) for k in range(1000)]
    assert all(a >= b - 1e-12 for a, b in zip(f[20:], f[21:]))  # non-increasing after warm-up


def test_rsqrt_edm2():
    cfg = _cfg(schedule="rsqrt", rsqrt_ref_steps=10)
    assert lr_factor(cfg, 0) == 1.0 and lr_factor(cfg, 10) == 1.0
    assert lr_factor(cfg, 40) == pytest.approx(0.5)
    assert lr_factor(cfg, 90) == pytest.approx(1 / 3)


def test_gamma_from_sigma_rel_inverts_the_definition():
    for s in (0.01, 0.05, 0.1, 0.2, 0.28):
        g = gamma_from_sigma_rel(s)
        assert g > -1
        assert sigma_rel_from_gamma(g) == pytest.approx(s, rel=1e-9)
    # EDM2's two stored profiles: longer sigma_rel -> smaller exponent.
    assert gamma_from_sigma_rel(0.05) > gamma_from_sigma_rel(0.10)


def _run_ema(kind: str, seq: np.ndarray, **kw) -> np.ndarray:
    model = nn.Linear(1, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor(seq[0]).view(3, 1))
    ema = EMA(model, TrainConfig.from_dict({"ema": kind, **kw}))
    for t in range(1, len(seq)):
        with torch.no_grad():
            model.weight.copy_(torch.tensor(seq[t]).view(3, 1))
        ema.update(model, t)
    return ema.model_state(model)["weight"].view(3).double().numpy()


def test_exp_ema_closed_form():
    rng = np.random.default_rng(0)
    seq = rng.normal(size=(30, 3)).astype(np.float32)
    d = 0.9
    T = len(seq) - 1
    expect = d ** T * seq[0] + sum((1 - d) * d ** (T - t) * seq[t] for t in range(1, T + 1))
    np.testing.assert_allclose(_run_ema("exp", seq, ema_decay=d), expect, rtol=1e-5, atol=1e-6)


def test_power_ema_closed_form():
    # Unrolling beta_t = (1 - 1/t)^(g+1) gives weight (t^(g+1) - (t-1)^(g+1)) / T^(g+1) for the
    # parameters after step t (the initial weights get none).
    rng = np.random.default_rng(1)
    seq = rng.normal(size=(40, 3)).astype(np.float32)
    s = 0.1
    g = gamma_from_sigma_rel(s)
    T = len(seq) - 1
    t = np.arange(1, T + 1, dtype=np.float64)
    w = (t ** (g + 1) - (t - 1) ** (g + 1)) / T ** (g + 1)
    assert w.sum() == pytest.approx(1.0)
    expect = (w[:, None] * seq[1:]).sum(0)
    np.testing.assert_allclose(_run_ema("power", seq, ema_std=s), expect, rtol=1e-5, atol=1e-6)
