"""The ``train`` command in subprocesses: SIGKILL + rerun resumes bit-identically; torchrun with
2 gloo processes gives the same weights as 1 process on the same global batch."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from guidance_repro.cli import main
from guidance_repro.tasks import get_task
from guidance_repro.train.checkpoint import load_model_file
from guidance_repro.train.config import TrainConfig
from guidance_repro.io import timing_path
from guidance_repro.train.loop import train

TESTS = Path(__file__).resolve().parent
TASK = "train_toy_tasks:make_toy"


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"  # same thread count in every run: identical CPU arithmetic
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _cmd(out: Path, params: dict, launcher: list[str] | None = None) -> list[str]:
    launcher = launcher or [sys.executable, "-m", "guidance_repro"]
    return launcher + ["train", "--task", TASK, "--params", json.dumps(params), "--out", str(out),
                       "--no-progress"]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _in_process(out: Path, params: dict) -> dict:
    """The same training in this process, on one thread like the subprocesses."""
    params = json.loads(json.dumps(params))
    cfg = TrainConfig.from_dict(params.pop("train"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(get_task(TASK, params, {}), cfg, out, progress=False)
    finally:
        torch.set_num_threads(threads)
    return load_model_file(out)


@pytest.mark.slow
def test_sigkill_and_rerun_is_bit_identical(tmp_path):
    params = {"dropout": 0.3, "sleep": 0.03, "n": 40,
              "train": {"steps": 60, "batch_size": 8, "lr": 1e-2, "checkpoint_every": 10,
                        "log_every": 5, "ema": "power", "ema_std": 0.1, "schedule": "cosine"}}
    out = tmp_path / "run" / "m.pt"
    ckpt = tmp_path / "run" / "m.pt.ckpt" / "last.pt"
    proc = subprocess.Popen(_cmd(out, params), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 90
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err[-3000:]
    killed_at = load_model_file(ckpt)["step"]
    assert 10 <= killed_at < 60 and not out.exists()

    rerun = _run(_cmd(out, params))  # the same command again: resumes, and says so in the log
    assert "[train toy-regression] resuming from step " in rerun.stderr
    assert f" of 60 ({ckpt})\n" in rerun.stderr
    ref = tmp_path / "ref" / "m.pt"
    fast = {**params, "sleep": 0.0}  # the sleep only paces the killed run; it changes no number
    a, b = _in_process(ref, fast), load_model_file(out)  # a: uninterrupted
    timing = {name: json.loads(timing_path(path).read_text()) for name, path in (("a", ref), ("b", out))}
    assert timing["b"]["resumed_from_step"] >= killed_at > 0 == timing["a"]["resumed_from_step"]
    for key in ("model", "model_raw"):
        assert a[key].keys() == b[key].keys()
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), (key, k)
    assert (ref.parent / "m.pt.log.jsonl").read_text() == (out.parent / "m.pt.log.jsonl").read_text()
    assert not ckpt.parent.exists()


@pytest.mark.slow
def test_torchrun_two_processes_match_one(tmp_path):
    params = {"n": 48, "train": {"steps": 15, "batch_size": 8, "lr": 1e-2, "checkpoint_every": 5,
                                 "grad_clip": 1.0, "accumulation": 2, "schedule": "linear"}}
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "guidance_repro"]
    _run(_cmd(two, params, torchrun))
    a, b = _in_process(one, params), load_model_file(two)
    assert a["summary"]["world_size"] == 1 and b["summary"]["world_size"] == 2
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-5, atol=1e-6)
    rows_a = [json.loads(x) for x in (tmp_path / "one.pt.log.jsonl").read_text().splitlines()]
    rows_b = [json.loads(x) for x in (tmp_path / "two.pt.log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]
    for ra, rb in zip(rows_a, rows_b):  # the logged loss is the mean over the global batch
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-5)


def test_cli_errors_exit_2(tmp_path, capsys, monkeypatch):
    # In-process through cli.main (a subprocess per case would cost seconds of imports each).
    monkeypatch.syspath_prepend(str(TESTS))
    cases = [
        (["--task", "nope"], "error: --task: unknown task 'nope'"),
        (["--task", TASK, "--params", "{bad"], "error: --params: not valid JSON"),
        (["--task", TASK, "--params", "[1]"], "error: --params: must be a JSON object"),
        (["--task", TASK, "--params", '{"train": {"lr": -1}}'], "error: train.lr: must be > 0"),
        (["--task", TASK, "--input", "data"], "error: --input: expected KEY=PATH"),
        (["--task", TASK, "--input", f"data={tmp_path / 'missing.npz'}"], "error: --input data: "),
    ]
    for args, msg in cases:
        assert main(["train", *args, "--out", str(tmp_path / "m.pt"), "--no-progress"]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith(msg) and err.count("\n") == 1, err
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.usefixtures("one_thread")  # as _in_process's reference run
def test_cli_resumes_past_a_truncated_checkpoint(tmp_path, capsys, monkeypatch):
    """`train` on a checkpoint folder whose last.pt was cut short (0 bytes, a third): the command
    says so, resumes from previous.pt and ends with the uninterrupted run's weights."""
    monkeypatch.syspath_prepend(str(TESTS))
    params = {"dropout": 0.3, "train": {"steps": 12, "batch_size": 8, "lr": 1e-2,
                                        "checkpoint_every": 4, "ema": "exp", "ema_decay": 0.8}}
    ref = _in_process(tmp_path / "ref.pt", params)
    _in_process_fails_at(tmp_path / "killed" / "m.pt", params, step=10)
    killed = tmp_path / "killed" / "m.pt.ckpt"
    whole = (killed / "last.pt").read_bytes()
    for length in (0, len(whole) // 3):
        out = tmp_path / f"cut{length}" / "m.pt"
        ckpt = out.parent / "m.pt.ckpt"
        shutil.copytree(killed, ckpt)
        (ckpt / "last.pt").write_bytes(whole[:length])
        assert main(["train", "--task", TASK, "--params", json.dumps(params), "--out", str(out),
                     "--no-progress"]) == 0
        err = capsys.readouterr().err
        assert f"cannot resume from {ckpt / 'last.pt'}: not a readable plain-data torch file" in err
        assert f"resuming from step 4 of 12 ({ckpt / 'previous.pt'})" in err
        res = load_model_file(out)
        for key in ("model", "model_raw"):
            for k in ref[key]:
                assert torch.equal(ref[key][k], res[key][k]), (length, key, k)


def _in_process_fails_at(out: Path, params: dict, step: int) -> None:
    with pytest.raises(RuntimeError, match="toy failure"):
        _in_process(out, {**params, "fail_at_step": step})
