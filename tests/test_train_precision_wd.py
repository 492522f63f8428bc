"""The loop's float16 path (autocast + GradScaler, VAR's fp16 recipe) and VAR's weight-decay
annealing (``weight_decay_end``, VAR's --twde): schedules checked against the formula written
out here, the optimizer's per-step values recorded, and a float16 run resumed bit-identically."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from train_toy_tasks import make_toy

from guidance_repro.errors import ReproError
from guidance_repro.train.checkpoint import load_model_file
from guidance_repro.train.config import TrainConfig
from guidance_repro.train.loop import train
from guidance_repro.train.schedule import weight_decay_factor

BASE = {"steps": 12, "batch_size": 8, "lr": 1e-2, "checkpoint_every": 4, "log_every": 2}


def _train(tmp_path, name, params=None, **kw):
    out = tmp_path / name / "model.pt"
    summary = train(make_toy(params or {}, {}), TrainConfig.from_dict({**BASE, **kw}), out, progress=False)
    return load_model_file(out), summary, out


def test_weight_decay_annealing_is_vars_cosine():
    cfg = TrainConfig.from_dict({"steps": 101, "weight_decay": 0.05, "weight_decay_end": 0.08})
    for k in (0, 25, 50, 100):
        want = 0.08 + (0.05 - 0.08) * (0.5 + 0.5 * math.cos(math.pi * k / 100))
        assert weight_decay_factor(cfg, k) * 0.05 == pytest.approx(want)
    assert weight_decay_factor(cfg, 100) == pytest.approx(1.6)
    assert weight_decay_factor(TrainConfig.from_dict({"weight_decay": 0.05}), 7) == 1.0
    with pytest.raises(ReproError, match="train.weight_decay_end"):
        TrainConfig.from_dict({"weight_decay_end": 0.08})


def test_optimizer_sees_the_annealed_decay_every_step(tmp_path, monkeypatch):
    seen = []
    step = torch.optim.AdamW.step

    def record(self, *a, **k):
        seen.append([g["weight_decay"] for g in self.param_groups])
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", record)
    _train(tmp_path, "wd", weight_decay=0.05, weight_decay_end=0.08)
    want = [0.08 - 0.03 * (0.5 + 0.5 * math.cos(math.pi * k / 11)) for k in range(12)]
    assert [s[0] for s in seen] == pytest.approx(want)


def test_float16_trains_with_a_grad_scaler_and_resumes_bit_identical(tmp_path):
    ref, summary, _ = _train(tmp_path, "ref", {"dropout": 0.3}, precision="float16")
    f32, _, _ = _train(tmp_path, "f32", {"dropout": 0.3})
    assert ref["model"]["0.weight"].dtype == torch.float32 and np.isfinite(summary["final_loss"])
    assert not torch.equal(ref["model"]["0.weight"], f32["model"]["0.weight"])
    with pytest.raises(RuntimeError, match="toy failure"):
        _train(tmp_path, "run", {"dropout": 0.3, "fail_at_step": 6}, precision="float16")
    ckpt = load_model_file(tmp_path / "run" / "model.pt.ckpt" / "last.pt")
    assert ckpt["grad_scaler"]["scale"] > 0 and ckpt["step"] == 4
    res, summary, _ = _train(tmp_path, "run", {"dropout": 0.3}, precision="float16")
    assert summary["resumed_from_step"] == 4
    for k in ref["model"]:
        assert torch.equal(ref["model"][k], res["model"][k]), k


def test_float16_is_refused_with_fsdp():
    with pytest.raises(ReproError, match="train.precision"):
        TrainConfig.from_dict({"precision": "float16", "parallel": "fsdp"})
