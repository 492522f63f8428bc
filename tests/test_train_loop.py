"""The training loop in-process: outputs, accumulation, resume, EMA, data order, loading errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from train_toy_tasks import make_toy

from guidance_repro.errors import ReproError
from guidance_repro.tasks import get_task
from guidance_repro.train.checkpoint import load_model_file, load_state_strict
from guidance_repro.train.config import TrainConfig
from guidance_repro.train.ema import gamma_from_sigma_rel
from guidance_repro.io import timing_path
from guidance_repro.train.loop import DataOrder, train

BASE = {"steps": 12, "batch_size": 8, "lr": 1e-2, "checkpoint_every": 4, "log_every": 2}


def _train(tmp_path, name, params=None, task=None, progress=False, **train_kw):
    cfg = TrainConfig.from_dict({**BASE, **train_kw})
    task = task or make_toy(params or {}, {})
    out = tmp_path / name / "model.pt"
    summary = train(task, cfg, out, progress=progress)
    return load_model_file(out), summary, out


def _assert_same_run(ref_dir, out, ref, res):
    """Same weights (EMA and raw) and the same log as the uninterrupted run in ``ref_dir``."""
    for key in ("model", "model_raw"):
        for k in ref[key]:
            assert torch.equal(ref[key][k], res[key][k]), (key, k)
    ref_log = (ref_dir / "model.pt.log.jsonl").read_text()
    assert (out.parent / "model.pt.log.jsonl").read_text() == ref_log


def _cut_in_half(path):
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def test_output_file_and_log(tmp_path):
    res, summary, out = _train(tmp_path, "a", {"dropout": 0.2})
    assert set(res) == {"model", "model_config", "task", "train_config", "summary"}
    assert res["task"] == "toy-regression" and res["train_config"]["steps"] == 12
    assert summary["steps"] == 12 and summary["world_size"] == 1 and np.isfinite(summary["final_loss"])
    torch.load(out, weights_only=True)  # plain data only
    assert not (out.parent / "model.pt.ckpt").exists()  # checkpoint folder removed at the end
    rows = [json.loads(line) for line in (out.parent / "model.pt.log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 10, 12]
    assert set(rows[0]) == {"step", "loss", "lr", "mae"} and rows[-1]["loss"] == summary["final_loss"]
    model = make_toy({"dropout": 0.2}, {}).build_model()
    load_state_strict(model, res["model"], out)


def test_same_seed_same_weights_other_seed_differs(tmp_path):
    a, _, _ = _train(tmp_path, "a", {"dropout": 0.2})
    b, _, _ = _train(tmp_path, "b", {"dropout": 0.2})
    c, _, _ = _train(tmp_path, "c", {"dropout": 0.2}, seed=1)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k])
    assert not torch.equal(a["model"]["0.weight"], c["model"]["0.weight"])


def test_accumulation_matches_one_big_batch(tmp_path):
    a, _, _ = _train(tmp_path, "a", grad_clip=0.5)
    b, _, _ = _train(tmp_path, "b", grad_clip=0.5, accumulation=2)
    c, _, _ = _train(tmp_path, "c", grad_clip=0.5, accumulation=4)
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a["model"][k], c["model"][k], rtol=1e-5, atol=1e-6)


def test_param_groups_and_device_hook(tmp_path):
    task = make_toy({"first_layer_lr": 0.0}, {})
    res, _, _ = _train(tmp_path, "a", task=task, schedule="cosine", weight_decay=0.1)
    init = make_toy({}, {})
    torch.manual_seed(0)  # the loop seeds with train.seed before build_model
    model = init.build_model()
    assert torch.equal(res["model"]["0.weight"], model[0].weight.detach())  # lr 0: unchanged
    assert not torch.equal(res["model"]["3.weight"], model[3].weight.detach())
    assert task.device == torch.device("cpu")  # on_device was called


def test_bfloat16_autocast_trains(tmp_path):
    res, summary, _ = _train(tmp_path, "a", precision="bfloat16", steps=30)
    ref, ref_summary, _ = _train(tmp_path, "b", steps=30)
    assert res["model"]["0.weight"].dtype == torch.float32  # weights stay float32
    assert np.isfinite(summary["final_loss"])
    assert summary["final_loss"] == pytest.approx(ref_summary["final_loss"], rel=0.1)
    assert not torch.equal(res["model"]["0.weight"], ref["model"]["0.weight"])


def test_data_order_independent_of_layout():
    order = DataOrder(10, seed=3)
    stream = order.take(0, 35)
    for e in range(3):  # each epoch is a full permutation from default_rng([seed, e])
        np.testing.assert_array_equal(stream[10 * e:10 * e + 10],
                                      np.random.default_rng([3, e]).permutation(10))
    np.testing.assert_array_equal(order.take(7, 16), stream[7:23])  # crosses epochs seamlessly


@pytest.mark.parametrize("progress", [False, True])
def test_failed_run_resumes_bit_identical(tmp_path, capsys, progress):
    ref, _, _ = _train(tmp_path, "ref", {"dropout": 0.3}, ema="exp", ema_decay=0.8)
    with pytest.raises(RuntimeError, match="toy failure"):
        _train(tmp_path, "run", {"dropout": 0.3, "fail_at_step": 6}, ema="exp", ema_decay=0.8)
    ckpt = tmp_path / "run" / "model.pt.ckpt" / "last.pt"
    assert load_model_file(ckpt)["step"] == 4 and not (tmp_path / "run" / "model.pt").exists()
    assert "resuming" not in capsys.readouterr().err  # the first run started from scratch
    res, summary, out = _train(tmp_path, "run", {"dropout": 0.3}, progress=progress, ema="exp",
                               ema_decay=0.8)
    assert summary["resumed_from_step"] == 4
    # One line in the job's log, whether or not a progress bar is drawn (Snakemake jobs run with
    # --no-progress: the bar's starting count was the only sign of a resume).
    err = capsys.readouterr().err
    assert f"[train toy-regression] resuming from step 4 of 12 ({ckpt})\n" in err
    _assert_same_run(tmp_path / "ref", out, ref, res)


def _fail_after_two_checkpoints(tmp_path, name="run"):
    """A run killed at step 10 of 12: last.pt holds step 8, previous.pt step 4."""
    with pytest.raises(RuntimeError, match="toy failure"):
        _train(tmp_path, name, {"dropout": 0.3, "fail_at_step": 10}, ema="exp", ema_decay=0.8)
    ckpt_dir = tmp_path / name / "model.pt.ckpt"
    assert load_model_file(ckpt_dir / "last.pt")["step"] == 8
    assert load_model_file(ckpt_dir / "previous.pt")["step"] == 4
    return ckpt_dir


def test_truncated_last_checkpoint_resumes_from_the_previous_one(tmp_path, capsys):
    ref, _, _ = _train(tmp_path, "ref", {"dropout": 0.3}, ema="exp", ema_decay=0.8)
    ckpt_dir = _fail_after_two_checkpoints(tmp_path)
    last, previous = ckpt_dir / "last.pt", ckpt_dir / "previous.pt"
    _cut_in_half(last)
    capsys.readouterr()
    # Killed again after the first checkpoint of the resumed run (step 8): the unreadable last.pt
    # is overwritten, never rotated into previous.pt, which still holds the good step 4.
    with pytest.raises(RuntimeError, match="toy failure"):
        _train(tmp_path, "run", {"dropout": 0.3, "fail_at_step": 10}, ema="exp", ema_decay=0.8)
    err = capsys.readouterr().err
    assert f"cannot resume from {last}: not a readable plain-data torch file (" in err
    assert f"; trying {previous}\n" in err
    assert f"resuming from step 4 of 12 ({previous})\n" in err
    assert load_model_file(last)["step"] == 8 and load_model_file(previous)["step"] == 4
    res, summary, out = _train(tmp_path, "run", {"dropout": 0.3}, ema="exp", ema_decay=0.8)
    assert summary["resumed_from_step"] == 8
    _assert_same_run(tmp_path / "ref", out, ref, res)
    assert not ckpt_dir.exists()


@pytest.mark.parametrize("missing_previous", [False, True])
def test_no_readable_checkpoint_restarts_from_scratch(tmp_path, capsys, missing_previous):
    ref, _, _ = _train(tmp_path, "ref", {"dropout": 0.3}, ema="exp", ema_decay=0.8)
    ckpt_dir = _fail_after_two_checkpoints(tmp_path)
    _cut_in_half(ckpt_dir / "last.pt")
    if missing_previous:
        (ckpt_dir / "previous.pt").unlink()
    else:
        (ckpt_dir / "previous.pt").write_bytes(b"")
    capsys.readouterr()
    res, summary, out = _train(tmp_path, "run", {"dropout": 0.3}, ema="exp", ema_decay=0.8)
    err = capsys.readouterr().err
    assert summary["resumed_from_step"] == 0
    assert err.count("cannot resume from ") == (1 if missing_previous else 2)
    assert err.rstrip().endswith("; starting from step 0") and "resuming" not in err
    _assert_same_run(tmp_path / "ref", out, ref, res)


def test_identical_runs_give_byte_identical_model_files(tmp_path):
    """Model files are hashed by metrics protocols and versioned by DVC: no wall-clock in them.
    Two identical runs, and a failed-then-resumed run, give the same bytes as one uninterrupted run;
    the timing (and the resume step) is in the side file."""
    import hashlib

    digest = lambda path: hashlib.sha256(path.read_bytes()).hexdigest()  # noqa: E731
    kw = {"ema": "exp", "ema_decay": 0.8}
    _, _, a = _train(tmp_path, "a", {"dropout": 0.3, "sleep": 0.01}, **kw)
    _, _, b = _train(tmp_path, "b", {"dropout": 0.3}, **kw)
    with pytest.raises(RuntimeError, match="toy failure"):
        _train(tmp_path, "c", {"dropout": 0.3, "fail_at_step": 6}, **kw)
    _, summary, c = _train(tmp_path, "c", {"dropout": 0.3}, **kw)
    assert digest(a) == digest(b) == digest(c)
    timing = json.loads(timing_path(c).read_text())
    assert timing["resumed_from_step"] == summary["resumed_from_step"] == 4 and timing["seconds"] > 0
    assert json.loads(timing_path(a).read_text())["resumed_from_step"] == 0
    assert "seconds" not in load_model_file(a)["summary"]


def test_resume_with_other_config_is_refused(tmp_path):
    with pytest.raises(RuntimeError):
        _train(tmp_path, "run", {"fail_at_step": 5})
    with pytest.raises(ReproError, match=r"last\.pt: checkpoint was written with train\.lr=0\.01"):
        _train(tmp_path, "run", {}, lr=0.02)
    with pytest.raises(ReproError, match=r"last\.pt: checkpoint was written for a different model"):
        _train(tmp_path, "run", {"hidden": 8})
    # Keys that change neither data order nor arithmetic may differ.
    _, summary, _ = _train(tmp_path, "run", {}, log_every=4)
    assert summary["resumed_from_step"] == 4


def test_power_ema_of_the_trajectory(tmp_path):
    task = make_toy({"record": True}, {})
    res, _, _ = _train(tmp_path, "a", task=task, ema="power", ema_std=0.15)
    traj = [t for t in task.trajectory][1:] + [{"step": 12, **res["model_raw"]}]  # after steps 1..12
    g = gamma_from_sigma_rel(0.15)
    t = np.arange(1, 13, dtype=np.float64)
    w = (t ** (g + 1) - (t - 1) ** (g + 1)) / 12 ** (g + 1)
    for k in res["model"]:
        expect = sum(wi * p[k].double() for wi, p in zip(w, traj))
        torch.testing.assert_close(res["model"][k].double(), expect, rtol=1e-5, atol=1e-6)
    assert not torch.equal(res["model"]["0.weight"], res["model_raw"]["0.weight"])


def test_batch_not_divisible_by_processes(tmp_path, monkeypatch):
    from guidance_repro.train import loop
    monkeypatch.setattr(loop, "_setup", lambda c: (torch.device("cpu"), 0, 2, False))  # 2 ranks
    cfg = TrainConfig.from_dict({**BASE, "batch_size": 6, "accumulation": 2})
    with pytest.raises(ReproError, match=r"^train\.batch_size: 6 is not divisible by accumulation "
                                         r"x processes = 2 x 2$"):
        train(make_toy({}, {}), cfg, tmp_path / "x.pt", progress=False)


def test_load_model_file_errors(tmp_path):
    with pytest.raises(ReproError, match=r"nope\.pt: model file does not exist"):
        load_model_file(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ReproError, match=r"bad\.pt: not a readable plain-data torch file"):
        load_model_file(bad)
    code = tmp_path / "code.pt"
    torch.save({"m": nn.Linear(1, 1)}, code)  # a pickled module: refused by weights_only
    with pytest.raises(ReproError, match=r"code\.pt: not a readable"):
        load_model_file(code)


def test_load_state_strict_names_key_and_file():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    sd = model.state_dict()
    missing = {k: v for k, v in sd.items() if k != "1.bias"}
    with pytest.raises(ReproError, match=r"^ckpt\.pt: missing key '1\.bias'$"):
        load_state_strict(model, missing, "ckpt.pt")
    with pytest.raises(ReproError, match=r"^ckpt\.pt: unexpected key 'extra'$"):
        load_state_strict(model, {**sd, "extra": torch.zeros(1)}, "ckpt.pt")
    with pytest.raises(ReproError, match=r"^ckpt\.pt: key '0\.weight' has shape \(2, 2\), the model expects \(3, 2\)$"):
        load_state_strict(model, {**sd, "0.weight": torch.zeros(2, 2)}, "ckpt.pt")


def test_task_registry_errors():
    with pytest.raises(ReproError, match=r"^--task: unknown task 'nope' \(known: "):
        get_task("nope", {}, {})
    with pytest.raises(ReproError, match=r"cannot import 'no_such_module_xyz'"):
        get_task("no_such_module_xyz:f", {}, {})
    with pytest.raises(ReproError, match=r"has no factory 'nothing'"):
        get_task("train_toy_tasks:nothing", {}, {})
    with pytest.raises(ReproError, match=r"not a TrainTask"):
        get_task("train_toy_tasks:make_not_a_task", {}, {})
    assert get_task("train_toy_tasks:make_toy", {"n": 5}, {}).num_examples() == 5
