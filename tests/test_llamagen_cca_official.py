"""``llamagen-cca-official``: CCA fine-tuning from files in the official LlamaGen layouts (a tiny
width, official key names) on a synthetic merged codes file (ten crops x flip per image)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from guidance_repro.cli import main
from guidance_repro.errors import ReproError
from guidance_repro.guidance.cca import AlignmentParams, alignment_conditions
from guidance_repro.llamagen import official
from guidance_repro.llamagen.cca_task import LlamaGenCCATask
from guidance_repro.llamagen.crop_codes import CropCodes, write_crop_codes
from guidance_repro.llamagen.model import sequence_logp
from guidance_repro.train.checkpoint import load_model_file
from guidance_repro.train.loop import DataOrder, micro_batches

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = dict(dim=32, n_layer=2, n_head=2, vocab_size=64, num_classes=10)
IMAGE = 64  # grid 4: 16 codes per crop


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("official")
    layout = official.gpt_layout(official.official_gpt_config("B", IMAGE, **TINY))
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(s, generator=g) * 0.1 for k, s in layout.items()}
    torch.save({"model": sd, "steps": 1, "args": __import__("argparse").Namespace(gpt_model="GPT-B")},
               root / "c2i_B_384.pt")
    # a raw bf16 state dict with the torch.compile prefix, as a CCA release might be saved
    torch.save({"_orig_mod." + k: v.to(torch.bfloat16) for k, v in sd.items()}, root / "ref.pt")
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 64, size=(16, 10, 2, 16)).astype(np.uint16)
    write_crop_codes(root / "codes.npz", codes, rng.integers(0, 10, size=16))
    return root


def _args(files: Path, out: Path, *extra: str) -> list[str]:
    return ["llamagen-cca-official", "--size", "B", "--pretrained", str(files / "c2i_B_384.pt"),
            "--codes", str(files / "codes.npz"), "--out", str(out / "cca.pt"),
            "--out-official", str(out / "c2i_B_CCA.pt"), "--image-size", str(IMAGE),
            "--global-batch", "8", "--steps", "4", "--lr", "1e-3", "--checkpoint-every", "2",
            "--model-overrides", json.dumps(TINY), "--precision", "float32", "--device", "cpu",
            "--no-progress", *extra]


def test_codes_file_one_variant_per_sample_per_epoch(files):
    data = CropCodes(files / "codes.npz")
    raw = np.load(files / "codes.npz")["codes"].reshape(16, 20, 16)
    idx = np.arange(16)
    v0, v1 = data.variant(idx, 0, 0), data.variant(idx, 1, 0)
    assert v0.min() >= 0 and v0.max() < 20 and not np.array_equal(v0, v1)
    assert np.array_equal(data.variant(idx[::-1], 0, 0), v0[::-1])  # a function of the sample
    codes, labels = data.draw(idx[3:5], 0, 0)
    assert np.array_equal(codes, raw[[3, 4], v0[3:5]]) and codes.dtype == np.int64
    assert isinstance(data.codes, np.memmap)


def test_merged_codes_folder_gives_its_ten_views(files, tmp_path):
    """The folder llamagen-merge-codes writes (codes.npy (N, 10, T), labels.npy) is read as its
    10 views: LlamaGen's ten-crop extraction already holds the flips, so no crop x flip axis."""
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 64, size=(6, 10, 16)).astype(np.int16)
    np.save(tmp_path / "codes.npy", codes)
    np.save(tmp_path / "labels.npy", rng.integers(0, 10, size=6))
    data = CropCodes(tmp_path)
    assert data.variants == 10 and data.tokens == 16 and len(data) == 6
    idx = np.arange(6)
    drawn, _ = data.draw(idx, 0, 0)
    assert np.array_equal(drawn, codes[idx, data.variant(idx, 0, 0)])
    np.save(tmp_path / "labels.npy", np.zeros(5, np.int64))
    with pytest.raises(ReproError, match="6 images but labels"):
        CropCodes(tmp_path)


def test_official_micro_batch_rolls_within_two():
    # 256 / (8 processes x 16 accumulation steps): every process's micro-batch holds 2 samples
    order = DataOrder(1000, 0)
    shards = [micro_batches(order, 0, 256, 16, 8, r) for r in range(8)]
    assert {len(m) for s in shards for m in s} == {2}
    hp = AlignmentParams(beta=0.02, beta_mode="sequence", lam=1.0, uncond_ratio=0.0, method="cca",
                         class_dropout=0.0)

    class NoDrop:
        def drop_labels(self, c):
            return c

    c2, masked = alignment_conditions(NoDrop(), torch.tensor([3, 7]), 10, hp)
    assert c2.tolist() == [3, 7, 7, 3] and not masked.any()


def test_task_from_official_files_keeps_dropout_in_the_reference(files):
    task = LlamaGenCCATask({"official_size": "B", "image_size": IMAGE, "model_overrides": TINY},
                           {"pretrained": files / "c2i_B_384.pt", "reference": files / "ref.pt",
                            "codes": files / "codes.npz"})
    assert task.reference.training and task.cfg.resid_dropout == 0.1 and task.cfg.class_dropout == 1e-5
    assert task.reference.output.weight.dtype == torch.float32  # the bf16 file, upcast
    x, c = (torch.from_numpy(a) for a in task.data.draw(np.arange(4), 0, 0))
    with torch.no_grad():
        assert not torch.equal(sequence_logp(task.reference, x, c), sequence_logp(task.reference, x, c))
    with pytest.raises(Exception, match="params.official_size"):
        LlamaGenCCATask({}, {"pretrained": files / "c2i_B_384.pt", "codes": files / "codes.npz"})


def test_fine_tune_changes_weights_and_writes_the_official_layout(files, tmp_path, capsys):
    assert main(_args(files, tmp_path)) == 0, capsys.readouterr().err
    done = load_model_file(tmp_path / "cca.pt")
    recipe = done["recipe"]
    assert recipe["accumulation_reduce"] == "sum" and recipe["gradient_scale"] == 4
    assert recipe["negatives"].endswith("micro-batch of 2") and recipe["codes_variants"] == 20
    assert done["train_config"]["betas"] == [0.9, 0.95] and done["train_config"]["grad_clip"] == 1.0
    tuned = official.load_official_gpt(tmp_path / "c2i_B_CCA.pt", "B", IMAGE, **TINY)  # strict
    start = official.load_official_gpt(files / "c2i_B_384.pt", "B", IMAGE, **TINY)
    changed = [k for k, v in start.state_dict().items() if not torch.equal(v, tuned.state_dict()[k])]
    assert len(changed) == len(start.state_dict())
    stored = torch.load(tmp_path / "c2i_B_CCA.pt", weights_only=True)
    assert set(stored) == {"model", "cca_recipe"} and stored["cca_recipe"]["lam"] == 1000.0
    side = json.loads((tmp_path / "c2i_B_CCA.pt.json").read_text())
    assert side["accumulation_reduce"] == "sum" and side["train_config"]["accumulation"] == 4


def test_resume_after_a_failure_is_bit_identical(files, tmp_path, monkeypatch, capsys):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(_args(files, whole)) == 0
    real = LlamaGenCCATask.loss

    def failing(self, model, batch, step):
        if step == 3:
            raise KeyboardInterrupt("killed at step 3")
        return real(self, model, batch, step)

    monkeypatch.setattr(LlamaGenCCATask, "loss", failing)
    with pytest.raises(KeyboardInterrupt):
        main(_args(files, cut))
    assert load_model_file(cut / "cca.pt.ckpt" / "last.pt")["step"] == 2
    monkeypatch.setattr(LlamaGenCCATask, "loss", real)
    capsys.readouterr()
    assert main(_args(files, cut)) == 0
    assert "resuming from step 2 of 4" in capsys.readouterr().err
    a, b = load_model_file(whole / "cca.pt"), load_model_file(cut / "cca.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert (whole / "c2i_B_CCA.pt").read_bytes() != b"" and torch.equal(
        torch.load(whole / "c2i_B_CCA.pt", weights_only=True)["model"]["output.weight"],
        torch.load(cut / "c2i_B_CCA.pt", weights_only=True)["model"]["output.weight"])


@pytest.mark.slow
def test_two_gloo_processes_fsdp_match_one_process(files, tmp_path):
    """Deterministic settings (dropout off, no null-class masks, no label dropout) and the mean
    reduction: 2 FSDP processes (accumulation 2, micro-batch 2 each) roll negatives within the same
    pairs as 1 process (accumulation 4), so the gradients and the weights agree. With the summed
    reduction the gradient is `accumulation` x the mean one, so 1 process (4) and 2 processes (2)
    differ by a factor 2 by construction (recorded as gradient_scale), as the official sum
    depends on the number of GPUs at a fixed per-GPU micro-batch."""
    det = ["--dropout", "off", "--uncond-ratio", "0", "--class-dropout", "0",
           "--accumulation-reduce", "mean"]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "guidance_repro", *_args(files, two, *det, "--parallel", "fsdp")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = tmp_path / "one"
    assert main(_args(files, one, *det)) == 0
    a, b = load_model_file(one / "cca.pt"), load_model_file(two / "cca.pt")
    assert b["recipe"]["parallel"] == "fsdp" and b["recipe"]["accumulation"] == 2
    assert a["recipe"]["accumulation"] == 4
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-4, atol=1e-6)
