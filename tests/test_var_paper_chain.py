"""The VAR paper-tier chain by CLI on TEST STAND-IN files: mini-paper-fixtures + var-mini-fixtures
-> var-cca-official (a few steps) -> var-sample-shard x2 -> merge-shards -> adm-evaluate ->
cca-paper-table --family var; and the stand-in files themselves (official key names, strict
loading with the manifest's overrides). Each stage's wall time is printed (``-s``)."""

from __future__ import annotations

import csv
import json
import time

import numpy as np
import pytest
import torch

from guidance_repro import cli
from guidance_repro.errors import ReproError
from guidance_repro.var.model import VAR, VARConfig
from guidance_repro.var.official import VAE_TENSORS, VAR_TENSORS, load_official_var, load_official_vqvae
from guidance_repro.var.paper_commands import var_pixels
from guidance_repro.var.vqvae import VQVAE, VQVAEConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def _timed(times: dict, name: str, argv: list[str]) -> None:
    t0 = time.perf_counter()
    assert cli.main(argv) == 0, name
    times[name] = round(time.perf_counter() - t0, 2)


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    out, times = tmp_path_factory.mktemp("fx"), {}
    _timed(times, "mini-paper-fixtures", ["mini-paper-fixtures", "--out", str(out), "--classes", "3",
                                          "--images-per-class", "4", "--image-size", "64", "--ref-images",
                                          "6", "--ref-size", "64"])
    _timed(times, "var-mini-fixtures", ["var-mini-fixtures", "--out", str(out)])
    return out, json.loads((out / "TEST-STANDIN-var-fixtures.json").read_text()), times


def test_standins_have_the_official_key_names_and_load_strictly(fx):
    _, m, _ = fx
    assert "TEST STAND-IN" in m["note"] and all("TEST-STANDIN" in f["path"] for f in m["files"].values())
    for depth in (16, 20, 24, 30):
        path = m["files"][f"var_d{depth}"]["path"]
        sd = torch.load(path, weights_only=True)
        with torch.device("meta"):
            release = VAR(VARConfig.from_dict({"size": f"d{depth}"}))
        assert set(sd) == set(release.state_dict()) and len(sd) == VAR_TENSORS[depth]
        model = load_official_var(path, depth, m["var_overrides"][str(depth)])
        assert model.cfg.num_classes == 1000 and list(model.cfg.patch_nums) == m["patch_nums"]
        assert model.head.weight.abs().sum() > 0
    with pytest.raises(ReproError, match="d20"):
        load_official_var(m["files"]["var_d16"]["path"], 20, m["var_overrides"]["20"])
    sd = torch.load(m["files"]["vae"]["path"], weights_only=True)
    with torch.device("meta"):
        release = VQVAE(VQVAEConfig(patch_nums=tuple(m["patch_nums"])))
    assert set(sd) == set(release.state_dict()) and len(sd) == VAE_TENSORS
    vae = load_official_vqvae(m["files"]["vae"]["path"], m["patch_nums"])
    assert vae.cfg.image_size == m["image_size"] and vae.cfg.codebook_size == 64


def test_var_pixels_truncate_as_vars_demo():
    x = torch.tensor([-1.0, -0.999, 0.0, 0.5, 1.0, 1.5]).view(1, 1, 1, 6).expand(1, 3, 1, 6)
    want = np.floor((np.clip([-1.0, -0.999, 0.0, 0.5, 1.0, 1.5], -1, 1) + 1) / 2 * 255).astype(np.uint8)
    np.testing.assert_array_equal(var_pixels(x)[0, 0, :, 0], want)


@pytest.mark.slow
def test_chain_from_fixtures_to_the_paper_table(fx, tmp_path, capsys):
    out, m, times = fx
    times = dict(times)
    overrides = json.dumps(m["var_overrides"]["16"])
    vae = m["files"]["vae"]["path"]
    ft, pt = tmp_path / "ft", tmp_path / "pt"
    _timed(times, "var-cca-official (3 steps)", [
        "var-cca-official", "--depth", "16", "--pretrained", m["files"]["var_d16"]["path"], "--vae", vae,
        "--imagenet", str(out / "imagenet" / "train"), "--out", str(ft / "d16.pt"),
        "--out-official", str(ft / "VAR_d16_CCA.pth"), "--global-batch", "4", "--micro-batch", "2",
        "--steps", "3", "--resize", str(m["resize"]), "--crop", str(m["crop"]),
        "--model-overrides", overrides, "--no-progress"])
    shards = [pt / f"shard_{k}.json" for k in range(2)]
    for k, shard in enumerate(shards):
        _timed(times, f"var-sample-shard {k}", [
            "var-sample-shard", "--model", str(ft / "VAR_d16_CCA.pth"), "--depth", "16", "--vae", vae,
            "--model-config", overrides, "--num", "12", "--num-shards", "2", "--shard", str(k),
            "--chunk-size", "4", "--batch-size", "3", "--cfg", "0", "--tag", "method=cca",
            "--tag", "beta=0.02", "--tag", "lam=50", "--out", str(shard), "--no-progress"])
    _timed(times, "merge-shards", ["merge-shards", "--shards", *map(str, shards), "--out", str(pt / "batch.npz"),
                                   "--manifest", str(pt / "batch.json")])
    with np.load(pt / "batch.npz") as z:
        assert z["arr_0"].shape == (12, 64, 64, 3) and z["arr_0"].dtype == np.uint8
        assert np.bincount(z["arr_1"], minlength=1000).max() == 1  # class balanced over 1000 classes
    _timed(times, "adm-evaluate", [
        "adm-evaluate", "--samples", str(pt / "batch.npz"), "--sample-manifest", str(pt / "batch.json"),
        "--reference", str(out / "adm" / "VIRTUAL_imagenet256_labeled.TEST-STANDIN.npz"),
        "--inception", str(out / "inception" / "inception-2015-12-05.TEST-STANDIN.pt"),
        "--is-split-size", "6", "--pr-k", "2", "--no-progress", "--out", str(pt / "metrics.json")])
    tab = tmp_path / "table"
    _timed(times, "cca-paper-table", [
        "cca-paper-table", "--metrics", str(pt / "metrics.json"), "--family", "var", "--models", "d16",
        "--out", str(tab / "t.csv"), "--markdown", str(tab / "t.md"), "--figure", str(tab / "f.png"),
        "--claims", str(tab / "c.csv")])
    rows = list(csv.DictReader((tab / "t.csv").open()))
    cca = [r for r in rows if r["model"] == "d16" and r["method"] == "cca"]
    assert len(cca) == 1 and float(cca[0]["paper_fid"]) == 4.03 and cca[0]["fid"] != ""
    with capsys.disabled():
        print("\n[var paper chain] wall seconds per stage: " + json.dumps(times))


@pytest.mark.parametrize("cfg, method, rows", [("0", "pretrained", 3), ("1.5", "cfg", 6)])
def test_guidance_free_shards_run_a_single_batch(fx, tmp_path, monkeypatch, capsys, cfg, method, rows):
    _, m, _ = fx
    seen = []
    run = VAR.run

    def record(self, h, cond, mask):
        seen.append(h.shape[0])
        return run(self, h, cond, mask)

    monkeypatch.setattr(VAR, "run", record)
    argv = ["var-sample-shard", "--model", m["files"]["var_d16"]["path"], "--depth", "16",
            "--vae", m["files"]["vae"]["path"], "--model-config", json.dumps(m["var_overrides"]["16"]),
            "--num", "3", "--num-shards", "1", "--shard", "0", "--batch-size", "3", "--cfg", cfg,
            "--tag", f"method={method}", "--out", str(tmp_path / "s.json"), "--no-progress"]
    assert cli.main(argv) == 0
    assert seen == [rows] * len(m["patch_nums"])  # one pass per scale; CFG doubles it, cfg 0 does not
    settings = json.loads((tmp_path / "s.json").read_text())["settings"]
    assert settings["forward_passes_per_scale"] == rows // 3 and settings["top_k"] == 900
    if method == "cfg":  # the method tag and the cfg must agree: CCA is sampled at cfg 0
        bad = [{"method=cfg": "method=cca", str(tmp_path / "s.json"): str(tmp_path / "bad.json")}.get(a, a)
               for a in argv]
        assert cli.main(bad) == 2
        assert "--cfg 1.5: method cca is sampled without guidance" in capsys.readouterr().err
