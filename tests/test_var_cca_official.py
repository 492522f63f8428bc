"""``var-cca-official`` (var/cca_official.py, var/cca_official_commands.py): the per-depth recipe,
VAR's data transform, on-the-fly encoding, the official-layout output, resume, and torchrun with 2
gloo processes equal to 1 process, on the TEST STAND-IN files of ``var-mini-fixtures``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from guidance_repro import cli
from guidance_repro.errors import ReproError
from guidance_repro.train.checkpoint import load_model_file
from guidance_repro.var import cca_official_commands as cmd
from guidance_repro.var.cca_official import VAROfficialCCATask
from guidance_repro.var.model import VAR, VARConfig
from guidance_repro.var.official import load_official_var
from guidance_repro.var.tasks import var_param_groups
from guidance_repro.var.train_images import random_crop, resize_short_side

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    out = tmp_path_factory.mktemp("fx")
    assert cli.main(["mini-paper-fixtures", "--out", str(out), "--classes", "3", "--images-per-class", "4",
                     "--image-size", "64", "--ref-images", "4", "--ref-size", "64"]) == 0
    assert cli.main(["var-mini-fixtures", "--out", str(out)]) == 0
    return out, json.loads((out / "TEST-STANDIN-var-fixtures.json").read_text())


def _args(**kw) -> argparse.Namespace:
    base = dict(depth=16, micro_batch=0, beta=0.02, uncond_ratio=0.1, method="cca", resize=288, crop=256,
                lam=None, model_overrides="", steps=None, global_batch=256, lr=2e-5, precision="float16",
                seed=0, device="auto", checkpoint_every=250, log_every=10)
    return argparse.Namespace(**{**base, **kw})


def test_recipe_per_depth_is_the_official_run():
    # cca.md §1.2: micro-batch 8/4/4/2 per process on 8 GPUs (ac 4/8/8/16), lin0 from 0.005x over
    # ep/50, hold 5 %, decay to 0.1x (d16/d20) or 0.01x (d24/d30), wd 0.05 -> 0.08 for d30 only.
    for depth, micro, final, wd_end in ((16, 8, 0.1, -1.0), (20, 4, 0.1, -1.0), (24, 4, 0.01, -1.0),
                                         (30, 2, 0.01, 0.08)):
        task, train = cmd.recipe_params(_args(depth=depth), world=8)
        assert train["accumulation"] * micro * 8 == 256
        assert (train["final_lr_factor"], train["weight_decay_end"]) == (final, wd_end)
        assert train["lr"] == 2e-5 and train["betas"] == [0.9, 0.95] and train["weight_decay"] == 0.05
        assert (train["schedule"], train["lin0_warmup_frac"], train["lin0_warmup_start"],
                train["lin0_hold_frac"]) == ("lin0", 1 / 50, 0.005, 0.05)
        assert train["grad_clip"] == 2.0 and train["accumulation_reduce"] == "mean"
        assert train["precision"] == "float16" and task["depth"] == depth and "lam" not in task
    with pytest.raises(ReproError, match="--global-batch"):
        cmd.recipe_params(_args(depth=30, micro_batch=3), world=8)


def test_resize_short_side_and_crop_follow_torchvision_rules():
    im = Image.fromarray(np.zeros((300, 500, 3), np.uint8))
    assert resize_short_side(im, 288).size == (480, 288)           # int(288 * 500 / 300) = 480
    assert resize_short_side(im.transpose(Image.Transpose.TRANSPOSE), 288).size == (288, 480)
    arr = np.arange(10 * 12 * 3).reshape(10, 12, 3)
    tops = set()
    for s in range(40):
        c = random_crop(arr, 8, np.random.default_rng(s))
        top, left = divmod(int(c[0, 0, 0]) // 3, 12)
        tops.add(top)
        assert c.shape == (8, 8, 3) and top <= 2 and left <= 4
        np.testing.assert_array_equal(c, arr[top:top + 8, left:left + 8])
    assert tops == {0, 1, 2}                                         # every valid offset occurs


def _task(fx, depth=16, **params):
    out, m = fx
    overrides = m["var_overrides"][str(depth)]
    inputs = {"pretrained": m["files"][f"var_d{depth}"]["path"], "vae": m["files"]["vae"]["path"],
              "imagenet": out / "imagenet" / "train"}
    params = {"depth": depth, "model_overrides": overrides, "resize": m["resize"], "crop": m["crop"], **params}
    return VAROfficialCCATask(params, inputs)


def test_task_takes_drop_path_and_lambda_per_depth_and_encodes_in_float32(fx):
    t16, t20 = _task(fx, 16), _task(fx, 20)
    assert t16.cfg.drop_path_rate == 0.0 and t20.cfg.drop_path_rate == pytest.approx(0.1 * 20 / 24)
    assert (t16.hp.lam, t20.hp.lam, t16.hp.beta) == (50.0, 50.0, 0.02) and t16.cfg.class_dropout == 0.0
    assert t16.reference.training and not any(p.requires_grad for p in t16.reference.parameters())
    batch = t16.get_batch(np.array([0, 5, 9]))
    assert batch["images"].dtype == torch.uint8 and tuple(batch["images"].shape) == (3, 3, 64, 64)
    again = t16.get_batch(np.array([5]))["images"][0]
    assert torch.equal(again, batch["images"][1])                    # crop keyed by (seed, epoch, index)
    t16.begin_step(0, 1)
    assert not torch.equal(t16.get_batch(np.array([5]))["images"][0], again)  # another epoch, another crop
    with torch.autocast("cpu", dtype=torch.bfloat16):
        codes, x_in = t16.encode(batch["images"])
    ref_codes, ref_x = t16.encode(batch["images"])
    assert torch.equal(codes, ref_codes) and x_in.dtype == torch.float32
    assert tuple(codes.shape) == (3, t16.cfg.seq_len) and tuple(x_in.shape) == (3, t16.cfg.seq_len - 1, 8)
    with pytest.raises(ReproError, match="params.crop"):
        _task(fx, 16, crop=32)


def test_shared_aln_gains_no_weight_decay():
    model = VAR(VARConfig(depth=2, shared_aln=True))
    decay, other = var_param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in other["params"]} >= {"blocks.0.ada_gss", "pos_1LC", "pos_start",
                                                         "lvl_embed.weight", "blocks.1.attn.scale_mul_1H11"}
    assert "shared_ada_lin.1.weight" in {names[id(p)] for p in decay["params"]}


def _cli(fx, out_dir, steps=2, extra=()):
    out, m = fx
    return ["var-cca-official", "--depth", "16", "--pretrained", m["files"]["var_d16"]["path"],
            "--vae", m["files"]["vae"]["path"], "--imagenet", str(out / "imagenet" / "train"),
            "--out", str(out_dir / "d16.pt"), "--out-official", str(out_dir / "VAR_d16_CCA.pth"),
            "--global-batch", "4", "--micro-batch", "2", "--steps", str(steps), "--resize", str(m["resize"]),
            "--crop", str(m["crop"]), "--model-overrides", json.dumps(m["var_overrides"]["16"]),
            "--checkpoint-every", "1", "--no-progress", *extra]


def test_cli_writes_the_official_layout_and_the_recipe(fx, tmp_path):
    assert cli.main(_cli(fx, tmp_path, extra=["--precision", "float32"])) == 0
    done = load_model_file(tmp_path / "d16.pt")
    official = load_official_var(tmp_path / "VAR_d16_CCA.pth", 16, fx[1]["var_overrides"]["16"])
    for k, v in done["model"].items():
        assert torch.equal(official.state_dict()[k], v)
    start = load_official_var(fx[1]["files"]["var_d16"]["path"], 16, fx[1]["var_overrides"]["16"])
    assert not torch.equal(start.head.weight, official.head.weight)  # it was fine-tuned
    recipe = json.loads((tmp_path / "VAR_d16_CCA.pth.json").read_text())
    assert recipe["lam"] == 50.0 and recipe["precision"] == "float32" and recipe["accumulation"] == 2
    assert recipe["data"]["resize_short_side"] == fx[1]["resize"] and recipe["data"]["hflip"] is False


@pytest.mark.slow
def test_torchrun_two_gloo_processes_match_one(fx, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    flags = ["--precision", "float32", "--uncond-ratio", "0"]
    assert cli.main(_cli(fx, one, extra=flags)) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "guidance_repro"]
    proc = subprocess.run(torchrun + _cli(fx, two, extra=flags), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = load_model_file(one / "d16.pt"), load_model_file(two / "d16.pt")
    assert b["summary"]["world_size"] == 2 and b["recipe"]["accumulation"] == 1
    rows = [[json.loads(x)["loss"] for x in (d / "d16.pt.log.jsonl").read_text().splitlines()] for d in (one, two)]
    assert rows[0] == pytest.approx(rows[1], rel=1e-6)  # the mean loss over the same global batches
    # Micro-batches of 2 on 1 process x 2 accumulation steps == 1 each on 2 processes (the uncond
    # masking is off: its draws depend on the rank, as the official per-GPU draws do).
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-5, atol=1e-7, equal_nan=True)


def test_a_killed_fine_tune_resumes_bit_identical(fx, tmp_path, monkeypatch):
    assert cli.main(_cli(fx, tmp_path / "ref", steps=3)) == 0  # float16 + GradScaler, the default
    loss = VAROfficialCCATask.loss

    def fail_at_step_2(self, model, batch, step):
        if step == 2:
            raise RuntimeError("killed")
        return loss(self, model, batch, step)

    monkeypatch.setattr(VAROfficialCCATask, "loss", fail_at_step_2)
    with pytest.raises(RuntimeError, match="killed"):
        cli.main(_cli(fx, tmp_path / "run", steps=3))
    assert load_model_file(tmp_path / "run" / "d16.pt.ckpt" / "last.pt")["step"] == 2
    monkeypatch.setattr(VAROfficialCCATask, "loss", loss)
    assert cli.main(_cli(fx, tmp_path / "run", steps=3)) == 0
    ref, res = load_model_file(tmp_path / "ref" / "d16.pt"), load_model_file(tmp_path / "run" / "d16.pt")
    for k in ref["model"]:
        assert torch.equal(ref["model"][k], res["model"][k]), k
    assert (tmp_path / "ref" / "VAR_d16_CCA.pth").read_bytes() == (tmp_path / "run" / "VAR_d16_CCA.pth").read_bytes()
