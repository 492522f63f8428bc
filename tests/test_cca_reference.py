"""Recorded reference log-likelihoods (llamagen.cca_reference): a fine-tune that reads them ends
with the same weights as one that runs the reference, and every mismatch is an error naming the
file and what differs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from guidance_repro.errors import ReproError
from guidance_repro.io import save_npz
from guidance_repro.llamagen.cca_reference import record
from guidance_repro.llamagen.cca_task import LlamaGenCCATask
from guidance_repro.llamagen.model import load_gpt
from guidance_repro.train.config import TrainConfig
from guidance_repro.train.loop import train

PARAMS = {"beta": 2.0, "lam": 3.0, "uncond_ratio": 0.3, "class_dropout": 0.05, "dropout": "off"}
TRAIN = {"steps": 5, "batch_size": 8, "accumulation": 2, "lr": 1e-3, "betas": [0.9, 0.95],
         "grad_clip": 1.0, "device": "cpu", "seed": 3}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tiny_gpt_dir):
    inputs = {"pretrained": tiny_gpt_dir / "gpt.pt", "codes": tiny_gpt_dir / "codes.npz"}
    arrays = record(LlamaGenCCATask(PARAMS, inputs), TrainConfig.from_dict(TRAIN), progress=False)
    save_npz(tiny_gpt_dir / "ref.npz", **arrays)
    return tiny_gpt_dir


def inputs(d, ref=True):
    out = {"pretrained": d / "gpt.pt", "codes": d / "codes.npz"}
    return {**out, "reference_logp": d / "ref.npz"} if ref else out


def fine_tune(d, out, ref, params=PARAMS, **train_over):
    task = LlamaGenCCATask(params, inputs(d, ref))
    train(task, TrainConfig.from_dict({**TRAIN, **train_over}), d / out, progress=False)
    return load_gpt(d / out).state_dict()


def test_recorded_log_likelihoods_are_the_reference_s(files):
    with np.load(files / "ref.npz") as z:
        assert z["logp"].shape == (10, 8) and list(z["step"]) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
        idx, cond, logp = z["indices"][3], z["conditions"][3], z["logp"][3]
    ref = load_gpt(files / "gpt.pt")
    codes = torch.from_numpy(np.load(files / "codes.npz")["codes"].reshape(40, 16)[idx])
    logits = ref(torch.cat([codes, codes]), torch.from_numpy(cond))
    direct = torch.log_softmax(logits, -1).gather(-1, torch.cat([codes, codes])[..., None]).sum((1, 2))
    np.testing.assert_allclose(logp, direct.detach().numpy(), rtol=1e-5)


def test_fine_tune_with_recorded_reference_equals_running_it(files):
    for method in ("cca", "dpo", "unlearning"):
        p = {**PARAMS, "method": method}
        direct = fine_tune(files, f"direct-{method}.pt", False, p)
        cached = fine_tune(files, f"cached-{method}.pt", True, p)
        for k in direct:
            torch.testing.assert_close(cached[k], direct[k], rtol=0, atol=1e-6)
        assert any(not torch.equal(direct[k], load_gpt(files / "gpt.pt").state_dict()[k]) for k in direct)


@pytest.mark.parametrize("over, message", [
    ({"seed": 4}, "recorded with train.seed = 3, this fine-tune has 4"),
    ({"batch_size": 4}, "train.batch_size"),
    ({"accumulation": 1}, "train.accumulation"),
    ({"steps": 6}, "recorded for 5 steps, this fine-tune runs 6"),
])
def test_other_train_settings_are_refused(files, over, message):
    with pytest.raises(ReproError, match=message) as exc:
        fine_tune(files, "bad.pt", True, **over)
    assert "ref.npz" in str(exc.value)


@pytest.mark.parametrize("over, message", [
    ({"uncond_ratio": 0.2}, "uncond_ratio = 0.3, this fine-tune has 0.2"),
    ({"class_dropout": 0.0}, "class_dropout"),
    ({"dropout": "keep"}, "need params.dropout 'off'"),
])
def test_other_task_settings_are_refused(files, over, message):
    with pytest.raises(ReproError, match=message):
        LlamaGenCCATask({**PARAMS, **over}, inputs(files))


def test_another_pretrained_file_is_refused(files, tmp_path):
    other = tmp_path / "gpt.pt"
    obj = torch.load(files / "gpt.pt", weights_only=True)
    next(iter(obj["model"].values())).add_(0.01)
    torch.save(obj, other)
    with pytest.raises(ReproError, match="pretrained_sha256"):
        LlamaGenCCATask(PARAMS, {**inputs(files), "pretrained": other})


def test_changed_batches_are_caught_at_the_step(files, tmp_path):
    with np.load(files / "ref.npz") as z:
        arrays = {k: z[k].copy() for k in z.files}
    arrays["conditions"][4, 0] = (arrays["conditions"][4, 0] + 1) % 5
    save_npz(tmp_path / "ref.npz", **arrays)
    task = LlamaGenCCATask(PARAMS, {**inputs(files), "reference_logp": tmp_path / "ref.npz"})
    with pytest.raises(ReproError, match="step 2 micro-batch 0 drew other images or conditions"):
        train(task, TrainConfig.from_dict(TRAIN), tmp_path / "m.pt", progress=False)
    assert not (tmp_path / "m.pt").exists()


def test_recording_needs_dropout_off_and_float32(files):
    inp = inputs(files, ref=False)
    with pytest.raises(ReproError, match="params.dropout"):
        record(LlamaGenCCATask({**PARAMS, "dropout": "keep"}, inp), TrainConfig.from_dict(TRAIN), False)
    with pytest.raises(ReproError, match="train.precision"):
        record(LlamaGenCCATask(PARAMS, inp), TrainConfig.from_dict({**TRAIN, "precision": "bfloat16"}), False)
