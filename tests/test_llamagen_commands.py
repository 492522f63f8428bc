"""CLI commands of the LlamaGen family (llamagen/commands.py) on tiny models, and the DAG's
config checks for the cca_llamagen slice (a bad value or a missing paper-tier file stops
`snakemake -n` with a message naming the key)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import PYTHON, ROOT, run_snakemake, workdir_with_project_config
from guidance_repro.cli import main
from guidance_repro.data import samples as samples_io
from guidance_repro.io import save_npz
from guidance_repro.llamagen.model import PretrainTask
from guidance_repro.llamagen.tokenizer import VQTask, load_vq
from guidance_repro.train.config import TrainConfig
from guidance_repro.train.loop import train

TINY_GPT = dict(vocab_size=16, grid=7, num_classes=10, dim=32, n_layer=1, n_head=2, multiple_of=16)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny Fashion-MNIST-shaped artifact, a 16-code VQ tokenizer and a GPT trained on its codes."""
    d = tmp_path_factory.mktemp("llamagen_cli")
    rng = np.random.default_rng(0)
    imgs = (rng.random((60, 28, 28)) * 255).astype(np.uint8)
    save_npz(d / "fm.npz", train_images=imgs, train_labels=(np.arange(60) % 10).astype(np.uint8),
             test_images=imgs[:20], test_labels=(np.arange(20) % 10).astype(np.uint8))
    cfg = TrainConfig.from_dict({"steps": 2, "batch_size": 16, "lr": 1e-3, "device": "cpu"})
    train(VQTask({"channels": [8, 16, 16], "codebook_size": 16, "code_dim": 4}, {"data": d / "fm.npz"}),
          cfg, d / "vq.pt", progress=False)
    assert main(["encode-codes", "--tokenizer", str(d / "vq.pt"), "--data", str(d / "fm.npz"),
                 "--out", str(d / "codes.npz")]) == 0
    train(PretrainTask({"model": TINY_GPT}, {"codes": d / "codes.npz"}), cfg, d / "gpt.pt", progress=False)
    return d


def test_encode_codes_writes_the_tokenizer_codes(files):
    with np.load(files / "codes.npz") as z:
        codes, labels = z["codes"], z["labels"]
    with np.load(files / "fm.npz") as z:
        imgs = z["train_images"]
    assert codes.shape == (60, 7, 7) and codes.dtype == np.int64 and labels.dtype == np.int64
    assert np.array_equal(codes, load_vq(files / "vq.pt").encode(imgs))
    assert np.array_equal(labels, np.arange(60) % 10)


def test_vq_reconstruct_writes_a_samples_file(files, tmp_path):
    out = tmp_path / "rec.npz"
    assert main(["vq-reconstruct", "--tokenizer", str(files / "vq.pt"), "--data", str(files / "fm.npz"),
                 "--split", "test", "--num", "8", "--out", str(out)]) == 0
    s = samples_io.read(out)
    vq = load_vq(files / "vq.pt")
    with np.load(files / "fm.npz") as z:
        expect = vq.decode(vq.encode(z["test_images"][:8]))
    assert np.array_equal(s.images, expect) and s.meta["kind"] == "reconstruction"


def _sample(files, out, *extra):
    return main(["sample-ar", "--model", str(files / "gpt.pt"), "--tokenizer", str(files / "vq.pt"),
                 "--num", "20", "--batch-size", "8", "--seed", "3", "--no-progress", "--out", str(out), *extra])


def test_sample_ar_writes_samples_with_meta(files, tmp_path):
    assert _sample(files, tmp_path / "cfg.npz", "--cfg", "2.0", "--tag", "model=S", "--tag", "method=cfg") == 0
    s = samples_io.read(tmp_path / "cfg.npz")
    assert s.images.shape == (20, 28, 28, 1) and s.images.dtype == np.uint8
    assert np.array_equal(np.bincount(s.labels, minlength=10), np.full(10, 2))  # class-balanced
    m = s.meta
    assert m["family"] == "llamagen" and m["model"] == "S" and m["method"] == "cfg"
    assert m["cfg"] == 2.0 and m["guidance"] == "cfg" and m["seed"] == 3 and m["num"] == 20
    assert m["model_file"] == str(files / "gpt.pt") and m["seconds_per_image"] > 0
    assert m["beta"] is None and m["lam"] is None
    # CCA tags are numbers; s = 1 runs the guidance-free single batch
    assert _sample(files, tmp_path / "cca.npz", "--tag", "method=cca", "--tag", "beta=49", "--tag", "lam=10") == 0
    m = samples_io.read(tmp_path / "cca.npz").meta
    assert m["guidance"] == "none" and m["cfg"] == 1.0 and m["beta"] == 49.0 and m["lam"] == 10.0


def test_sample_ar_kv_cache_and_recompute_draw_the_same_images(files, tmp_path):
    assert _sample(files, tmp_path / "a.npz", "--cfg", "1.5") == 0
    assert _sample(files, tmp_path / "b.npz", "--cfg", "1.5", "--no-cache") == 0
    a, b = samples_io.read(tmp_path / "a.npz"), samples_io.read(tmp_path / "b.npz")
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert a.meta["use_cache"] and not b.meta["use_cache"]


def test_sample_ar_errors(files, tmp_path, capsys):
    assert _sample(files, tmp_path / "x.npz", "--tag", "beta=abc") == 2
    assert "--tag beta: not a number" in capsys.readouterr().err
    assert main(["sample-ar", "--model", str(files / "gpt.pt"), "--tokenizer", str(files / "vq.pt"),
                 "--num", "0", "--out", str(tmp_path / "x.npz")]) == 2
    assert "--num: must be >= 1" in capsys.readouterr().err
    cfg = TrainConfig.from_dict({"steps": 1, "batch_size": 8, "lr": 1e-3, "device": "cpu"})
    train(PretrainTask({"model": {**TINY_GPT, "vocab_size": 32}}, {"codes": files / "codes.npz"}),
          cfg, tmp_path / "gpt32.pt", progress=False)
    assert main(["sample-ar", "--model", str(tmp_path / "gpt32.pt"), "--tokenizer", str(files / "vq.pt"),
                 "--num", "4", "--out", str(tmp_path / "x.npz")]) == 2
    assert "vocab 32" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_ar_benchmark_adds_the_claim_keys(files, tmp_path):
    out = tmp_path / "bench.json"
    assert main(["ar-benchmark", "--script", str(ROOT / "benchmarks" / "ar_sampling.py"),
                 "--model", str(files / "gpt.pt"), "--model-name", "S", "--images", "10", "--batch", "10",
                 "--long-images", "2", "--repeats", "1", "--threads", "1", "--out", str(out)]) == 0
    b = json.loads(out.read_text())
    assert b["family"] == "llamagen" and b["model"] == "S"
    assert b["cfg_over_guidance_free_time"] == b["guidance_free_over_cfg_speed"] > 0
    assert b["kv_cache_speedup_256"] > 0 and not Path(str(out) + ".raw.json").exists()


def test_benchmark_passes_are_taken_in_turns():
    from guidance_repro.errors import ReproError
    from guidance_repro.sampling.bench_script import interleaved_times

    calls = []
    times = interleaved_times({"a": lambda r: calls.append(("a", r)), "b": lambda r: calls.append(("b", r))}, 3)
    assert calls == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    assert [len(t) for t in times.values()] == [3, 3] and all(x >= 0 for t in times.values() for x in t)
    with pytest.raises(ReproError, match="--repeats: must be at least 1"):
        interleaved_times({"a": lambda r: None}, 0)
    ticks = iter(range(0, 100, 5))  # a clock that advances 5 per reading: every pass reads 5
    assert interleaved_times({"a": lambda r: None}, 2, clock=lambda: next(ticks)) == {"a": [5, 5]}


def test_check_official_names_the_missing_file(tmp_path, capsys):
    assert main(["llamagen-check-official", "--gpt", f"B={tmp_path / 'none.pt'}",
                 "--out", str(tmp_path / "r.json")]) == 2
    assert "none.pt" in capsys.readouterr().err and not (tmp_path / "r.json").exists()


# --- the DAG's config checks -------------------------------------------------------------------
SMOKE_CONFIG = ROOT / ".test" / "config" / "config.yaml"


_snakemake = run_snakemake


def _workdir_with(tmp_path: Path, edit) -> Path:
    cfg = yaml.safe_load(SMOKE_CONFIG.read_text())
    edit(cfg["cca_llamagen"])
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path


@pytest.mark.dag
@pytest.mark.parametrize("edit, expected", [
    (lambda c: c["cca"].update(betas=[49, -1.0]), "config key cca_llamagen.cca.betas.1:"),
    (lambda c: c["cca"].update(lams=[-3]), "config key cca_llamagen.cca.lams.0:"),
    (lambda c: c["sampling"].update(method="beam"), "config key cca_llamagen.sampling.method:"),
    (lambda c: c["cca"].update(method="cca"), "config key cca_llamagen.cca.method: unknown key"),
    (lambda c: c["models"][0].update(vocab_size=999),
     "config key cca_llamagen.models.S.vocab_size: 999 must equal"),
])
def test_bad_cca_llamagen_config_stops_the_run_naming_the_key(tmp_path, edit, expected):
    proc = _snakemake(_workdir_with(tmp_path, edit), "-n", "cca_llamagen_all")
    assert proc.returncode != 0
    assert expected in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.dag
def test_paper_config_without_the_official_files_stops_naming_the_key(tmp_path):
    proc = _snakemake(workdir_with_project_config(tmp_path), "-n",
                      "--configfile", str(ROOT / "config" / "paper" / "cca-llamagen.yaml"))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config key cca_llamagen.paper.gpt_checkpoints.B: file /data/llamagen/c2i_B_384.pt not found" in out, out
    assert "Traceback (most recent call last)" not in out


@pytest.mark.dag
def test_paper_config_names_an_unset_path_key(tmp_path):
    cfg = yaml.safe_load((ROOT / "config" / "paper" / "cca-llamagen.yaml").read_text())
    cfg["cca_llamagen"]["paper"]["gpt_checkpoints"] = {"B": str(tmp_path / "b.pt")}
    (tmp_path / "b.pt").write_bytes(b"")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = _snakemake(tmp_path, "-n")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config key cca_llamagen.paper.gpt_checkpoints.L: local path not set" in out, out
