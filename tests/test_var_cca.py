"""VAR training tasks through the real loop: msvq-tokenizer, var-pretrain, var-cca. CCA for VAR
must use guidance/cca.py's loss (the same module as LlamaGen)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from guidance_repro.errors import ReproError
from guidance_repro.guidance import cca
from guidance_repro.train.config import TrainConfig
from guidance_repro.train.loop import train
from guidance_repro.var import tasks as var_tasks
from guidance_repro.var.msvq import MSVQTask, load_msvq
from guidance_repro.var.tasks import VARCCATask, VARPretrainTask, cca_drop_path, load_var

PN = [1, 2, 3, 5, 7]
TOK = dict(channels=[8, 16, 16], codebook_size=16, code_dim=4, patch_nums=PN)
MODEL = dict(vocab_size=16, code_dim=4, patch_nums=PN, num_classes=5, depth=2, width_per_depth=16, head_dim=16)


pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(**kw):
    return TrainConfig.from_dict({"steps": 2, "batch_size": 8, "lr": 1e-3, "device": "cpu", **kw})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("var")
    rng = np.random.default_rng(0)
    np.savez(d / "data.npz", train_images=rng.integers(0, 256, (24, 28, 28), dtype=np.uint8),
             train_labels=np.arange(24) % 5)
    train(MSVQTask(TOK, {"data": d / "data.npz"}), _cfg(), d / "tok.pt", progress=False)
    tok = load_msvq(d / "tok.pt")
    codes = tok.encode(np.load(d / "data.npz")["train_images"])
    np.savez(d / "codes.npz", codes=codes, labels=np.arange(24) % 5)
    inputs = {"codes": d / "codes.npz", "tokenizer": d / "tok.pt"}
    s = train(VARPretrainTask({"model": MODEL}, inputs), _cfg(betas=[0.9, 0.95], weight_decay=0.05),
              d / "var.pt", progress=False)
    assert math.isfinite(s["final_loss"])
    return d, inputs


def test_pretrained_file_loads_and_fits_the_tokenizer(files):
    d, _ = files
    model = load_var(d / "var.pt")
    assert model.cfg.seq_len == sum(p * p for p in PN) and not model.training
    with pytest.raises(ReproError, match="not a var-pretrain"):
        load_var(d / "tok.pt")
    with pytest.raises(ReproError, match="patch_nums"):
        VARPretrainTask({"model": dict(MODEL, vocab_size=32)}, files[1])


def test_var_cca_uses_the_shared_cca_loss(files, monkeypatch):
    d, inputs = files
    assert var_tasks.alignment_step is cca.alignment_step
    calls, original = [], cca.alignment_loss

    def spy(method, gp, gn, masked, beta, lam):
        calls.append((method, beta, lam, gp.shape, gn.shape))
        return original(method, gp, gn, masked, beta, lam)

    monkeypatch.setattr(cca, "alignment_loss", spy)
    task = VARCCATask({"beta": 2.0, "beta_mode": "per_token", "lam": 7.0, "drop_path": 0.0},
                      {"pretrained": d / "var.pt", **inputs})
    task.loss(task.build_model(), task.get_batch(np.arange(6)), 0)
    L = sum(p * p for p in PN)
    assert calls == [("cca", 2.0 / L, 7.0, (6,), (6,))]


def test_cca_loss_at_initialisation_is_closed_form(files):
    """Policy = reference and no drop-path: every gap is 0, so the loss is
    [log 2 + mean(w) log 2] / max(λ, 1), w = 1 for masked / same-label samples, λ otherwise."""
    d, inputs = files
    lam = 7.0
    task = VARCCATask({"beta": 0.5, "lam": lam, "uncond_ratio": 0.3, "drop_path": 0.0},
                      {"pretrained": d / "var.pt", **inputs})
    batch = task.get_batch(np.array([0, 1, 2, 7, 12, 3]))  # labels 0 1 2 2 2 3: same-label pairs
    model = task.build_model()
    torch.manual_seed(5)
    loss, stats = task.loss(model, batch, 0)
    torch.manual_seed(5)
    _, _, masked = cca.make_negatives(batch["labels"], 5, 0.3)
    w = torch.where(masked, 1.0, lam)
    expected = (math.log(2) + w.mean().item() * math.log(2)) / lam
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert stats["gap_pos"] == pytest.approx(0.0, abs=1e-4)


def test_var_cca_trains_with_lin0_and_keeps_the_reference_frozen(files):
    d, inputs = files
    task = VARCCATask({"beta": 1.0, "lam": 10.0}, {"pretrained": d / "var.pt", **inputs})
    ref_before = {k: v.clone() for k, v in task.reference.state_dict().items()}
    s = train(task, _cfg(schedule="lin0", lr=2e-5, betas=[0.9, 0.95], grad_clip=2.0), d / "cca.pt",
              progress=False)
    assert math.isfinite(s["final_loss"])
    assert all(torch.equal(v, task.reference.state_dict()[k]) for k, v in ref_before.items())
    assert load_var(d / "cca.pt").cfg.class_dropout == 0.0  # VAR's CCA: cond_drop_rate 0


def test_cca_dropout_per_depth_and_parameter_errors(files):
    assert cca_drop_path(16) == 0.0 and cca_drop_path(24) == pytest.approx(0.1)
    assert cca_drop_path(30) == pytest.approx(0.125) and cca_drop_path(20) == pytest.approx(0.0833, abs=1e-4)
    d, inputs = files
    with pytest.raises(ReproError, match="params.method"):
        VARCCATask({"method": "ppo"}, {"pretrained": d / "var.pt", **inputs})
    with pytest.raises(ReproError, match="inputs.pretrained"):
        VARCCATask({}, inputs)
    with pytest.raises(ReproError, match="params.bogus"):
        VARCCATask({"bogus": 1}, {"pretrained": d / "var.pt", **inputs})


def test_var_benchmark_adds_the_claim_keys(files, tmp_path, capsys):
    import json
    from pathlib import Path

    from guidance_repro.cli import main
    d, _ = files
    script = str(Path(__file__).resolve().parents[1] / "benchmarks" / "var_sampling.py")
    out = tmp_path / "bench.json"
    args = ["var-benchmark", "--script", script, "--model", str(d / "var.pt"), "--tokenizer",
            str(d / "tok.pt"), "--model-name", "d2", "--images", "6", "--batch", "6", "--repeats", "1",
            "--threads", "1", "--out", str(out)]
    assert main(args) == 0
    b = json.loads(out.read_text())
    assert b["family"] == "var" and b["model"] == "d2" and b["weights"] == "trained"
    runs = b["runs"]
    assert b["cfg_over_guidance_free_time"] == pytest.approx(
        runs["cfg_cache"]["seconds_best"] / runs["guidance_free_cache"]["seconds_best"])
    assert not Path(f"{out}.raw.json").exists()
    # a model without its tokenizer is an error that names the options, and writes nothing
    out2 = tmp_path / "b2.json"
    assert main(args[:5] + args[7:-1] + [str(out2)]) == 2
    assert "--tokenizer" in capsys.readouterr().err and not out2.exists()
