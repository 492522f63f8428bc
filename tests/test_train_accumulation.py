"""Summed vs averaged gradient accumulation (train.accumulation_reduce), against a gradient computed
by hand, and the sharded path (train.parallel fsdp) under torchrun with 2 gloo processes: the same
weights as one process, for both reductions, and a resume after a failure that ends bit-identical."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from guidance_repro.train.checkpoint import load_model_file
from guidance_repro.train.loop import accumulate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_train_cli import _cmd, _env, _in_process, _run  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


class LinearMSE:
    """loss(micro-batch) = mean_i (w . x_i - y_i)^2: its gradient is 2/m sum_i (w . x_i - y_i) x_i."""

    def loss(self, model, batch, step):
        x, y = batch
        return ((model(x).squeeze(-1) - y) ** 2).mean()


def _hand_gradient(w: torch.Tensor, batches) -> torch.Tensor:
    grads = []
    for x, y in batches:
        r = x @ w - y
        grads.append(2.0 / len(y) * (r[:, None] * x).sum(0))
    return torch.stack(grads).sum(0)  # the SUM over micro-batches


@pytest.mark.parametrize("reduce", ["mean", "sum"])
def test_accumulated_gradient_by_hand(reduce):
    g = torch.Generator().manual_seed(0)
    model = nn.Linear(3, 1, bias=False).double()
    batches = [(torch.randn(2, 3, generator=g, dtype=torch.float64),
                torch.randn(2, generator=g, dtype=torch.float64)) for _ in range(4)]
    w = model.weight.detach()[0].clone()
    total, count, _ = accumulate(model, LinearMSE(), batches, 0, reduce, contextlib.nullcontext(),
                                 contextlib.nullcontext)
    expected = _hand_gradient(w, batches) / (4 if reduce == "mean" else 1)
    torch.testing.assert_close(model.weight.grad[0], expected, rtol=1e-12, atol=1e-12)
    assert count == 4
    losses = [float(((x @ w - y) ** 2).mean()) for x, y in batches]
    assert float(total) == pytest.approx(sum(losses), rel=1e-12)


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "guidance_repro"]
TASK_PARAMS = {"n": 48}


def _train_params(**train) -> dict:
    return {**TASK_PARAMS, "train": {"steps": 8, "batch_size": 8, "lr": 1e-2, "checkpoint_every": 2,
                                     "grad_clip": 1.0, "accumulation": 2, **train}}


def _assert_same(a: dict, b: dict, exact: bool = False) -> None:
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        if exact:
            assert torch.equal(a["model"][k], b["model"][k]), k
        else:
            torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("parallel,reduce", [("fsdp", "mean"), ("fsdp", "sum"), ("ddp", "sum")])
def test_two_gloo_processes_match_one(tmp_path, parallel, reduce):
    """At a given accumulation, the sum over micro-batches of the rank-averaged gradient is the
    same for 1 and 2 processes in both reductions (a per-sample loss: nothing depends on which
    rank holds a sample), so 2 processes (DDP or FSDP) end with one process's weights."""
    params = _train_params(parallel=parallel, accumulation_reduce=reduce)
    two = tmp_path / "two.pt"
    _run(_cmd(two, params, TORCHRUN))
    a, b = _in_process(tmp_path / "one.pt", params), load_model_file(two)
    assert b["summary"]["world_size"] == 2 and b["train_config"]["parallel"] == parallel
    assert b["train_config"]["accumulation_reduce"] == reduce
    _assert_same(a, b)


@pytest.mark.slow
def test_fsdp_resume_after_a_failure_is_bit_identical(tmp_path):
    params = _train_params(parallel="fsdp", accumulation_reduce="sum")
    whole = tmp_path / "whole.pt"
    _run(_cmd(whole, params, TORCHRUN))
    out = tmp_path / "cut.pt"
    failing = subprocess.run(_cmd(out, {**params, "fail_at_step": 5}, TORCHRUN), env=_env(),
                             capture_output=True, text=True, timeout=120)
    assert failing.returncode != 0 and "toy failure at step 5" in failing.stderr
    assert load_model_file(tmp_path / "cut.pt.ckpt" / "last.pt")["step"] == 4 and not out.exists()
    rerun = _run(_cmd(out, params, TORCHRUN))
    assert "resuming from step 4 of 8" in rerun.stderr
    _assert_same(load_model_file(whole), load_model_file(out), exact=True)
