"""The training tasks of the LlamaGen family through the real training loop: llamagen-pretrain,
llamagen-cca (frozen reference, negatives, masks) and vq-tokenizer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from guidance_repro.errors import ReproError
from guidance_repro.llamagen.cca_task import LlamaGenCCATask
from guidance_repro.llamagen.model import GPTConfig, load_gpt, sequence_logp
from guidance_repro.llamagen.tokenizer import VQTask, load_vq, write_codes
from guidance_repro.train.config import TrainConfig
from guidance_repro.train.loop import train

from conftest import TINY_GPT as TINY


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tiny_gpt_dir):
    return tiny_gpt_dir


def test_pretrained_file_loads(files):
    model = load_gpt(files / "gpt.pt")
    assert model.cfg == GPTConfig(**TINY) and not model.training


def test_cca_loss_at_initialisation_is_closed_form(files):
    """Policy = reference and no dropout: every gap is 0, so the loss is
    [log 2 + mean(w) log 2] / max(lam, 1) with w = 1 for masked / same-label, lam otherwise."""
    lam = 7.0
    task = LlamaGenCCATask({"beta": 0.5, "lam": lam, "uncond_ratio": 0.3, "dropout": "off",
                            "class_dropout": 0.0}, {"pretrained": files / "gpt.pt", "codes": files / "codes.npz"})
    model = task.build_model()
    batch = task.get_batch(np.array([0, 1, 2, 7, 12, 3]))  # labels 0 1 2 2 2 3: one same-label pair
    torch.manual_seed(5)
    loss, stats = task.loss(model, batch, 0)
    torch.manual_seed(5)
    from guidance_repro.guidance.cca import make_negatives
    _, _, masked = make_negatives(batch["labels"], 5, 0.3)
    assert masked[3] or masked[2]  # labels[3] == labels[4]: same-label negative
    w = torch.where(masked, 1.0, lam)
    assert stats["gap_pos"] == pytest.approx(0.0, abs=1e-4) and stats["gap_neg"] == pytest.approx(0.0, abs=1e-4)
    assert loss.item() == pytest.approx((math.log(2) + w.mean().item() * math.log(2)) / lam, rel=1e-4)


def test_cca_task_trains_with_frozen_reference_in_train_mode(files):
    task = LlamaGenCCATask({"beta": 49.0, "beta_mode": "per_token", "lam": 10.0},
                           {"pretrained": files / "gpt.pt", "codes": files / "codes.npz"})
    assert task.beta_eff == pytest.approx(49.0 / 16)
    ref_before = {k: v.clone() for k, v in task.reference.state_dict().items()}
    cfg = TrainConfig.from_dict({"steps": 2, "batch_size": 8, "lr": 1e-2, "betas": [0.9, 0.95],
                                 "grad_clip": 1.0, "device": "cpu"})
    train(task, cfg, files / "cca.pt", progress=False)
    assert task.reference.training and not any(p.requires_grad for p in task.reference.parameters())
    assert all(torch.equal(v, task.reference.state_dict()[k]) for k, v in ref_before.items())
    tuned = load_gpt(files / "cca.pt")
    assert tuned.cfg.class_dropout == 1e-5
    assert any(not torch.equal(v, tuned.state_dict()[k]) for k, v in ref_before.items())
    # the reference keeps its dropout: two passes differ
    x, c = (torch.from_numpy(a) for a in task.data.draw(np.arange(4), 0, 0))
    with torch.no_grad():
        assert not torch.allclose(sequence_logp(task.reference, x, c), sequence_logp(task.reference, x, c))


def test_cca_task_errors(files):
    inputs = {"pretrained": files / "gpt.pt", "codes": files / "codes.npz"}
    with pytest.raises(ReproError, match="params.method"):
        LlamaGenCCATask({"method": "Unlearning"}, inputs)
    with pytest.raises(ReproError, match="params.bogus"):
        LlamaGenCCATask({"bogus": 1}, inputs)
    with pytest.raises(ReproError, match="inputs.pretrained"):
        LlamaGenCCATask({}, {"codes": files / "codes.npz"})
    with pytest.raises(ReproError, match="beta_mode"):
        LlamaGenCCATask({"beta_mode": "mean"}, inputs)
    for method in ("dpo", "unlearning"):
        task = LlamaGenCCATask({"method": method}, inputs)
        loss, _ = task.loss(task.build_model(), task.get_batch(np.arange(6)), 0)
        assert torch.isfinite(loss)


def test_vq_task_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    imgs = (rng.random((64, 28, 28)) * 255).astype(np.uint8)
    from guidance_repro.io import save_npz
    arrays = {"train_images": imgs, "train_labels": (np.arange(64) % 10).astype(np.uint8),
              "test_images": imgs[:8], "test_labels": np.zeros(8, np.uint8)}
    save_npz(tmp_path / "fm.npz", **arrays)
    params = {"channels": [8, 16, 16], "codebook_size": 16, "code_dim": 4}
    task = VQTask(params, {"data": tmp_path / "fm.npz"})
    cfg = TrainConfig.from_dict({"steps": 2, "batch_size": 16, "lr": 1e-3, "device": "cpu"})
    train(task, cfg, tmp_path / "vq.pt", progress=False)
    vq = load_vq(tmp_path / "vq.pt")
    codes = vq.encode(imgs[:5])
    assert codes.shape == (5, 7, 7) and codes.dtype == np.int64 and codes.max() < 16
    out = vq.decode(codes)
    assert out.shape == (5, 28, 28, 1) and out.dtype == np.uint8
    assert np.array_equal(vq.decode(codes.reshape(5, 49)), out)
    write_codes(tmp_path / "fm.npz", tmp_path / "vq.pt", tmp_path / "codes.npz", split="test")
    from guidance_repro.llamagen.model import load_codes
    codes2, labels2 = load_codes({"codes": tmp_path / "codes.npz"})
    assert np.array_equal(codes2, vq.encode(imgs[:8]).reshape(8, 49)) and labels2.dtype == np.int64
    codes3, _ = load_codes({"data": tmp_path / "fm.npz", "tokenizer": tmp_path / "vq.pt"})
    assert codes3.shape == (64, 49)
    with pytest.raises(ReproError, match="grid"):
        vq.decode(np.zeros((2, 6, 6), np.int64))
    with pytest.raises(ReproError, match="images"):
        vq.encode(np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(ReproError, match="params.bogus"):
        VQTask({"bogus": 1}, {"data": tmp_path / "fm.npz"})
