"""Image-level autoguidance: the EDM denoiser (preconditioning, loss), the sample and report
commands on tiny models, and the paper tier's refusal paths (EDM2 pickles)."""

from __future__ import annotations

import csv
import json
import pickle

import numpy as np
import pytest
import torch

from guidance_repro import cli
from guidance_repro.edm import edm2_pickles
from guidance_repro.edm.network import EDMDenoiser
from guidance_repro.errors import ReproError

PRESETS = {"edm2-img512-s-autog-fid": {"net": "edm2-img512-s-2147483-0.070",
                                       "gnet": "edm2-img512-xs-0134217-0.125", "guidance": 2.10}}


def test_edm_preconditioning_limits():
    torch.manual_seed(0)
    model = EDMDenoiser((4, 4, 4), emb=8, label_dim=10).eval()
    x = torch.randn(3, 1, 28, 28)
    labels = torch.tensor([0, 1, 2])
    # the output layer starts at zero: D = c_skip x = x * sd^2 / (sigma^2 + sd^2)
    for s in (0.01, 0.5, 20.0):
        assert torch.allclose(model(x, torch.tensor(s), labels), x * 0.25 / (s * s + 0.25), atol=1e-6)
    assert model.loss_weight(torch.tensor(0.5)).item() == pytest.approx((0.25 + 0.25) / 0.0625)
    with pytest.raises(ValueError):
        model(x, torch.tensor(1.0), None)
    # unconditional: labels are ignored
    unc = EDMDenoiser((4, 4, 4), emb=8, label_dim=0).eval()
    assert torch.equal(unc(x, torch.tensor(1.0), labels), unc(x, torch.tensor(1.0), None))


def _fake_fmnist(path, n=64):
    rng = np.random.default_rng(0)
    arrays = {f"{s}_images": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for s in ("train", "test")}
    arrays.update({f"{s}_labels": (np.arange(n) % 10).astype(np.uint8) for s in ("train", "test")})
    np.savez(path, **arrays)


def test_train_sample_report_cli(tmp_path):
    from guidance_repro.data import samples as samples_io
    from guidance_repro.edm import report

    data = tmp_path / "fm.npz"
    _fake_fmnist(data)
    train = {"steps": 2, "batch_size": 8, "lr": 1e-3, "ema": "power", "ema_std": 0.05}
    for name, cond in (("main", True), ("guide", True), ("uncond", False)):
        params = {"train": train, "channels": [4, 4, 4], "emb": 8, "conditional": cond}
        assert cli.main(["train", "--task", "edm-fmnist", "--params", json.dumps(params),
                         "--input", f"data={data}", "--out", str(tmp_path / f"{name}.pt"),
                         "--no-progress"]) == 0
    sampler = '{"steps": 3, "sigma_max": 80}'
    common = ["autoguidance-sample", "--main", str(tmp_path / "main.pt"), "--num", "20",
              "--sampler", sampler, "--no-progress"]
    assert cli.main(common + ["--method", "none", "--out", str(tmp_path / "a.npz")]) == 0
    assert cli.main(common + ["--method", "autoguidance", "--w", "1", "--guide", str(tmp_path / "guide.pt"),
                              "--guide-name", "autoguide", "--out", str(tmp_path / "b.npz")]) == 0
    a, b = samples_io.read(tmp_path / "a.npz"), samples_io.read(tmp_path / "b.npz")
    assert a.images.shape == (20, 28, 28, 1) and np.bincount(a.labels).tolist() == [2] * 10
    assert np.array_equal(a.images, b.images)  # w = 1 is the main model
    assert b.meta["method"] == "autoguidance" and b.meta["guide"] == "autoguide"
    # wrong guide kinds are refused with the file named
    assert cli.main(common + ["--method", "cfg", "--w", "2", "--guide", str(tmp_path / "guide.pt"),
                              "--out", str(tmp_path / "c.npz")]) == 2
    assert cli.main(common + ["--method", "autoguidance", "--w", "2", "--guide", str(tmp_path / "uncond.pt"),
                              "--out", str(tmp_path / "c.npz")]) == 2
    assert cli.main(common + ["--method", "cfg", "--w", "2", "--out", str(tmp_path / "c.npz")]) == 2
    # several points of one replicate in one process: the same images as one point at a time
    pts = [{"method": "none", "out": str(tmp_path / "p0.npz")},
           {"method": "autoguidance", "guide": "autoguide", "w": 1, "out": str(tmp_path / "p1.npz")}]
    grouped = ["autoguidance-sample-points", "--main", str(tmp_path / "main.pt"), "--num", "20",
               "--sampler", sampler, "--guide", f"autoguide={tmp_path / 'guide.pt'}", "--replicate", "1"]
    assert cli.main(grouped + ["--points", json.dumps(pts)]) == 0
    p1 = samples_io.read(tmp_path / "p1.npz")
    assert np.array_equal(p1.images, b.images) and p1.meta["replicate"] == 1
    assert set(p1.meta["train_seeds"]) == {"main", "autoguide"}
    for bad in ([{"method": "cfg", "guide": "uncond", "w": 2, "out": "x.npz"}],  # guide not given
                [{"method": "cfg", "guide": "autoguide", "w": 2, "out": "x.npz"}],  # conditional guide
                [{"out": "x.npz"}], {}):
        assert cli.main(grouped + ["--points", json.dumps(bad)]) == 2


def _metrics_files(tmp_path, points):
    """Hand-made metrics files (the evaluate command is tested with the metrics) and the samples
    file they name (the report's grids read it)."""
    from guidance_repro.data import samples as samples_io

    images = np.random.default_rng(0).integers(0, 256, (20, 28, 28, 1), dtype=np.uint8)
    samples_io.write(tmp_path / "a.npz", images, np.arange(20) % 10, meta={})
    paths = []
    for i, (m, g, w, fid, rec, r) in enumerate(points):
        p = tmp_path / f"m{i}.json"
        p.write_text(json.dumps({"fid": fid, "precision": 0.6, "recall": rec,
                                 "protocol": {"samples": str(tmp_path / "a.npz"), "num_samples": 20,
                                              "sampler": {"method": m, "guide": g, "w": w, "seed": r,
                                                          "replicate": r}}}))
        paths.append(str(p))
    return paths


def _replicate_points(r, ag=15.0, cfg=20.0, rec=(0.45, 0.3), shorter=16.0, smaller=18.0, sweep=False):
    pts = [("none", "", 1.0, 30.0 + r, 0.5, r), ("cfg", "uncond", 2.0, cfg, rec[1], r),
           ("autoguidance", "autoguide", 2.0, ag, rec[0], r), ("autoguidance", "shorter", 2.0, shorter, 0.4, r),
           ("autoguidance", "smaller", 2.0, smaller, 0.4, r)]
    if sweep:
        pts += [("cfg", "uncond", 3.0, 25.0, 0.2, r), ("autoguidance", "autoguide", 3.0, 14.0, 0.3, r)]
    return pts


CLAIM_W = {"cfg": 2.0, "autoguide": 2.0, "shorter": 2.0, "smaller": 2.0}


def test_report_claims_over_replicates(tmp_path):
    """Replicate 0 sweeps, replicates 1-2 only the claim points; verdicts by the rule."""
    from guidance_repro.edm import report

    pts = _replicate_points(0, sweep=True) + _replicate_points(1, ag=16.0, cfg=19.0, rec=(0.44, 0.31)) \
        + _replicate_points(2, ag=14.0, cfg=21.0, shorter=17.0, smaller=16.5)
    paths = _metrics_files(tmp_path, pts)
    floor = tmp_path / "floor.json"
    floor.write_text(json.dumps({"fid": 3.25, "precision": 0.7, "recall": 0.71,
                                 "protocol": {"num_samples": 20}}))
    out = tmp_path / "report"
    assert cli.main(["autoguidance-report", "--metrics", *paths, "--floor", str(floor),
                     "--claim-w", json.dumps(CLAIM_W), "--out-dir", str(out)]) == 0
    rows = {r["claim"]: r for r in csv.DictReader(open(out / "claims.csv"))}
    v = {k: r["verdict"] for k, r in rows.items()}
    # AG 15/16/14 vs CFG 20/19/21: effects 5, 3, 7 -> holds
    assert v["autoguidance beats CFG in best FID"] == "holds"
    assert v["autoguidance keeps variation better than CFG"] == "holds"
    assert v["autoguidance improves on the unguided model"] == "holds"
    # replicate 2: smaller (16.5) below shorter (17): the chain breaks there -> mixed signs
    assert v["ablation order (Table 1): both reductions <= shorter only <= smaller only"] == "inconclusive"
    row = rows["autoguidance beats CFG in best FID"]
    assert row["replicates"] == "3" and "autoguidance FID 15 ± 1; CFG FID 20 ± 1" in row["measured"]
    assert row["floor"] == "evaluator train/test FID 3.2, recall 0.710 (20 real training images vs the test reference)"
    assert "claim_w" in row["test"]
    # the sweep tables and the Table 1 layout are replicate 0's: best AG point there is w = 3
    table = (out / "ablation.md").read_text()
    assert "| + CFG (unconditional guide) | 20.00 | 2.00 |" in table and "single seed" in table
    assert "| + Autoguidance (smaller and shorter) | 14.00 | 3.00 |" in table
    assert "reduce capacity only" in table and (out / "fid_vs_w.png").is_file()
    assert len(list(csv.DictReader(open(out / "points.csv")))) == 7
    assert len(list(csv.DictReader(open(out / "replicates.csv")))) == 15
    summary = json.loads((out / "summary.json").read_text())
    assert {(s["replicate"], s["seed"]) for s in summary["replicate_seeds"]} == {(0, 0), (1, 1), (2, 2)}
    b = report.best(report.sweep(report.collect(paths)))
    assert list(b.curve) == ["no guidance", "CFG", "autoguidance (autoguide)", "autoguidance (shorter)",
                             "autoguidance (smaller)"]
    # a replicate that lacks a claim point is refused
    partial = _metrics_files(tmp_path, _replicate_points(0) + _replicate_points(1)[:2])
    assert cli.main(["autoguidance-report", "--metrics", *partial, "--floor", str(floor),
                     "--claim-w", json.dumps(CLAIM_W), "--out-dir", str(out)]) == 2


def test_claims_without_ablation_guides_are_not_measured():
    import pandas as pd

    from guidance_repro.edm import claims

    df = pd.DataFrame([{"method": m, "guide": g, "w": w, "fid": f, "recall": rec, "replicate": r}
                       for m, g, w, f, rec, r in _replicate_points(0)[:3] + _replicate_points(1)[:3]])
    t = claims.claim_table(df, {"cfg": 2.0, "autoguide": 2.0})
    rows = {r["claim"]: r for r in claims.claims(t, {"cfg": 2.0, "autoguide": 2.0}, "floor")}
    abl = rows["ablation order (Table 1): both reductions <= shorter only <= smaller only"]
    assert abl["verdict"] == "" and abl["measured"].startswith("not run")
    assert rows["autoguidance improves on the unguided model"]["replicates"] == 2


def _cfg(tmp_path, **kw):
    return {"preset": "edm2-img512-s-autog-fid", "presets": PRESETS, "model_dir": str(tmp_path),
            "code_dir": None, "trust_pickle": False, **kw}


def test_edm2_pickles_refused_without_trust(tmp_path):
    path = tmp_path / "edm2-img512-s-2147483-0.070.pkl"
    path.write_bytes(pickle.dumps({"ema": "net"}))
    with pytest.raises(ReproError, match="autoguidance.edm2.trust_pickle"):
        edm2_pickles.load_network(path, _cfg(tmp_path))
    with pytest.raises(ReproError, match="autoguidance.edm2.trust_pickle"):
        edm2_pickles.check_preset_files(_cfg(tmp_path))
    # with trust: a plain pickle of the right layout loads
    assert edm2_pickles.load_network(path, _cfg(tmp_path, trust_pickle=True)) == "net"


def test_edm2_missing_files_and_keys(tmp_path):
    with pytest.raises(ReproError, match="autoguidance.edm2.preset"):
        edm2_pickles.check_preset_files(_cfg(tmp_path, preset="nope", trust_pickle=True))
    with pytest.raises(ReproError, match="autoguidance.edm2.model_dir"):
        edm2_pickles.check_preset_files(_cfg(tmp_path, model_dir=None, trust_pickle=True))
    with pytest.raises(ReproError, match="edm2-img512-s-2147483-0.070.pkl"):
        edm2_pickles.check_preset_files(_cfg(tmp_path, trust_pickle=True))
    for stem in ("edm2-img512-s-2147483-0.070", "edm2-img512-xs-0134217-0.125"):
        (tmp_path / f"{stem}.pkl").write_bytes(b"x")
    with pytest.raises(ReproError, match="autoguidance.edm2.code_dir"):
        edm2_pickles.check_preset_files(_cfg(tmp_path, trust_pickle=True))
    (tmp_path / "edm2" / "training").mkdir(parents=True)
    (tmp_path / "edm2" / "training" / "networks_edm2.py").write_text("")
    found = edm2_pickles.check_preset_files(_cfg(tmp_path, trust_pickle=True, code_dir=str(tmp_path / "edm2")))
    assert found["guidance"] == 2.10
    # a pickle that needs the edm2 modules names the code_dir key
    bad = tmp_path / "needs_module.pkl"
    bad.write_bytes(b"ctraining_absent\nNet\n.")  # protocol-0 GLOBAL of a module not on sys.path
    with pytest.raises(ReproError, match="code_dir"):
        edm2_pickles.load_network(bad, _cfg(tmp_path, trust_pickle=True))
    # the CLI turns it into exit 2 with the key named
    assert cli.main(["autoguidance-edm2-check", "--config", json.dumps(_cfg(tmp_path)),
                     "--out", str(tmp_path / "x.json")]) == 2
