"""The 2-D toy of autoguidance: exact torch score vs the numpy reference and finite differences,
the log-density model's denoiser, the training task, the panel numbers and the CLI end to end."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch

from conftest import PYTHON, ROOT
from guidance_repro import cli
from guidance_repro.data import tree_gaussians as tg
from guidance_repro.errors import ReproError
from guidance_repro.toy2d import panels
from guidance_repro.toy2d.exact import TorchTree
from guidance_repro.toy2d.model import ToyLogDensity
from guidance_repro.toy2d.tasks import ToyDensityTask, load_denoiser


@pytest.mark.parametrize("cls", [0, None])
def test_torch_score_equals_numpy(cls):
    rng = np.random.default_rng(0)
    x = rng.normal(scale=0.6, size=(300, 2))
    sigma = np.exp(rng.normal(-2.3, 1.5, size=300))
    tree = TorchTree(cls, dtype=torch.float64)
    got = tree.score(torch.from_numpy(x), torch.from_numpy(sigma)).numpy()
    ref = tg.score(x, sigma, cls=cls)
    assert np.allclose(got, ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())
    lp = tree.log_prob(torch.from_numpy(x), torch.from_numpy(sigma)).numpy()
    assert np.allclose(lp, tg.log_prob(x, sigma, cls=cls), rtol=1e-10, atol=1e-10)
    # float32 (what training uses) agrees to float32 precision
    got32 = TorchTree(cls).score(torch.from_numpy(x).float(), torch.from_numpy(sigma).float()).numpy()
    assert np.allclose(got32, ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())


def test_torch_score_chunks_scalar_sigma_and_class_b():
    """The chunked evaluation gives the same numbers for any chunk size, a scalar σ and class B."""
    rng = np.random.default_rng(1)
    x = rng.normal(scale=0.6, size=(131, 2))  # not a multiple of any chunk size used below
    tree = TorchTree(1, dtype=torch.float64)
    ref = tg.score(x, 0.07, cls=1)
    for chunk in (TorchTree.CHUNK, 7, 1000):
        tree.CHUNK = chunk
        got = tree.score(torch.from_numpy(x), 0.07).numpy()
        assert np.allclose(got, ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())
        lp = tree.log_prob(torch.from_numpy(x), torch.tensor(0.07, dtype=torch.float64)).numpy()
        assert np.allclose(lp, tg.log_prob(x, 0.07, cls=1), rtol=1e-10, atol=1e-10)
    assert tree.score(torch.zeros(0, 2, dtype=torch.float64), 0.1).shape == (0, 2)


def test_torch_score_is_gradient_of_log_prob():
    tree = TorchTree(0, dtype=torch.float64)
    x = torch.tensor([[0.1, 0.2], [-0.3, 0.05], [0.4, 0.4]], dtype=torch.float64)
    sigma = torch.tensor([0.05, 0.3, 1.0], dtype=torch.float64)
    h = 1e-6
    fd = torch.stack([(tree.log_prob(x + h * e, sigma) - tree.log_prob(x - h * e, sigma)) / (2 * h)
                      for e in torch.eye(2, dtype=torch.float64)], dim=1)
    assert torch.allclose(tree.score(x, sigma), fd, rtol=1e-5, atol=1e-5)


def test_torch_sampling_matches_moments():
    torch.manual_seed(0)
    x = TorchTree(0, dtype=torch.float64).sample(200_000).numpy()
    mean, cov = tg.moments(0)
    assert np.allclose(x.mean(0), mean, atol=0.01)
    assert np.allclose(np.cov(x.T), cov, atol=0.01)


def test_model_denoiser_is_tweedie_of_its_log_density():
    torch.manual_seed(0)
    model = ToyLogDensity(width=16).double().eval()  # train mode re-normalises weights per call
    with torch.no_grad():
        model.gain.fill_(0.7)
    x = torch.randn(4, 2, dtype=torch.float64) * 0.5
    sigma = torch.tensor(0.2, dtype=torch.float64)
    h = 1e-6
    fd = torch.stack([(model.log_density(x + h * e, sigma) - model.log_density(x - h * e, sigma)) / (2 * h)
                      for e in torch.eye(2, dtype=torch.float64)], dim=1)
    assert torch.allclose(model(x, sigma), x + 0.04 * fd, atol=1e-7)
    # gain 0: the model is the isotropic Gaussian N(0, sigma_data^2)
    with torch.no_grad():
        model.gain.zero_()
    assert torch.allclose(model(x, sigma), x * 0.25 / (0.25 + 0.04))


def test_task_loss_is_exact_score_matching():
    task = ToyDensityTask({"width": 8, "classes": "AB"}, {})
    model = task.build_model()
    torch.manual_seed(1)
    batch = task.get_batch(np.arange(64))
    torch.manual_seed(2)
    loss = task.loss(model, batch, 0)
    loss.backward()
    assert loss.ndim == 0 and loss.item() > 0 and model.gain.grad is not None
    # same draw by hand: sigma^2 * ||score_theta - score_data||^2
    torch.manual_seed(2)
    sigma = (torch.randn(64) * 1.5 - 2.3).exp()
    x = batch + sigma[:, None] * torch.randn_like(batch)
    target = torch.from_numpy(tg.score(x.double().numpy(), sigma.double().numpy(), cls=None)).float()
    by_hand = (sigma[:, None] ** 2 * (model.score(x, sigma) - target) ** 2).sum(1).mean()
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-4)
    with pytest.raises(ReproError, match="params.classes"):
        ToyDensityTask({"classes": "C"}, {})
    with pytest.raises(ReproError, match="params.bogus"):
        ToyDensityTask({"bogus": 1}, {})


def test_panel_metrics_on_exact_samples():
    tau = panels.outlier_threshold(0.01, n=20_000)
    x, _, _ = tg.sample(8192, cls=0, rng=3)
    m = panels.panel_metrics(x, tau, 1)
    assert m["outlier_share"] == pytest.approx(0.01, abs=0.005)
    assert m["branch_coverage"] == 1.0
    # samples of class B only: all outliers for class A, no branch covered
    xb, _, _ = tg.sample(2000, cls=1, rng=4)
    mb = panels.panel_metrics(xb, tau, 1)
    assert mb["outlier_share"] > 0.95 and mb["branches_covered"] < 5


def _replicate(cfg_branches, ag_branches, unguided_out, cfg_out, ag_out=0.05):
    gt = {"outlier_share": 0.01, "branches_covered": 127}
    return {"ground_truth": gt,
            "unguided": {"outlier_share": unguided_out, "branches_covered": 110},
            "cfg": {"outlier_share": cfg_out, "branches_covered": cfg_branches},
            "autoguidance": {"outlier_share": ag_out, "branches_covered": ag_branches},
            "score_scaling": {"outlier_share": 0.02, "branches_covered": 20}}


def test_toy_claims_over_replicates():
    """Constructed replicate metrics -> the verdicts of the rule, per claim."""
    from guidance_repro.toy2d import claims

    reps = [_replicate(50, 109, 0.15, 0.20), _replicate(55, 112, 0.14, 0.10),
            _replicate(52, 100, 0.16, 0.25)]
    rows = {r["claim"]: r for r in claims.claims(reps)}
    v = {k: r["verdict"] for k, r in rows.items()}
    assert v["autoguidance keeps the branches that CFG drops"] == "holds"
    # AG within 2 branches of unguided in two replicates, 10 short in the third: mixed signs
    assert v["autoguidance keeps (almost) all branches of the unguided model"] == "inconclusive"
    assert v["CFG cuts outliers vs unguided"] == "inconclusive"  # one replicate each way
    assert v["autoguidance cuts outliers vs unguided"] == "holds"
    assert v["naive score scaling empties outer branches (coverage below unguided)"] == "holds"
    row = rows["autoguidance keeps the branches that CFG drops"]
    assert row["replicates"] == 3 and row["effects"] == [59.0, 57.0, 48.0]
    assert "autoguidance branches 107 ± 6.2; cfg branches 52.33 ± 2.5" in row["measured"] and "R = 3" in row["measured"]
    assert row["floor"].startswith("ground truth (exact samples): outliers 1 ± 0 %, branches 127 ± 0/127")
    # CFG adds outliers in every replicate: does not hold
    worse = [_replicate(50, 109, 0.10, 0.20), _replicate(50, 109, 0.11, 0.22), _replicate(50, 109, 0.12, 0.21)]
    v = {r["claim"]: r["verdict"] for r in claims.claims(worse)}
    assert v["CFG cuts outliers vs unguided"] == "does not hold"
    # one replicate: no spread to judge by
    assert {r["verdict"] for r in claims.claims(reps[:1])} == {"inconclusive"}
    with pytest.raises(ReproError, match="panel metrics without"):
        claims.claims([{"ground_truth": reps[0]["ground_truth"]}])


def test_load_denoiser_refuses_other_models(tmp_path):
    path = tmp_path / "m.pt"
    torch.save({"model": {}, "model_config": {"kind": "other"}}, path)
    with pytest.raises(ReproError, match="not a toy2d-density model"):
        load_denoiser(path)


def test_train_and_figure_cli(tmp_path):
    """Tiny end to end through the generic train command and the figure command."""
    params = {"train": {"steps": 3, "batch_size": 64, "lr": 0.01, "optimizer": "adam",
                        "schedule": "rsqrt", "rsqrt_ref_steps": 512, "ema": "power", "ema_std": 0.01},
              "width": 8}
    paths = {}
    for name, classes in (("main", "A"), ("guide", "A"), ("uncond", "AB")):
        paths[name] = tmp_path / f"{name}.pt"
        p = dict(params, classes=classes)
        assert cli.main(["train", "--task", "toy2d-density", "--params", json.dumps(p),
                         "--out", str(paths[name]), "--no-progress"]) == 0
    out = {k: tmp_path / f"out.{k}" for k in ("png", "json", "csv", "npz")}
    # two replicates (the same models twice, other sampling seeds)
    args = ["autoguidance-toy-figure", "--main", str(paths["main"]), str(paths["main"]),
            "--autoguide", str(paths["guide"]), str(paths["guide"]),
            "--uncond", str(paths["uncond"]), str(paths["uncond"]), "--seeds", "0", "1000",
            "--num-samples", "256", "--threshold-samples", "2000",
            "--sampler", '{"steps": 4, "sigma_max": 5}',
            "--out-figure", str(out["png"]), "--out-metrics", str(out["json"]),
            "--out-claims", str(out["csv"]), "--out-samples", str(out["npz"])]
    assert cli.main(args) == 0
    result = json.loads(out["json"].read_text())
    assert set(result["panels"]) == {k for k, _, _ in panels.PANELS}
    assert len(result["claims"]) == 5 and out["png"].stat().st_size > 0
    assert [r["seed"] for r in result["replicates"]] == [0, 1000]
    assert result["replicates"][1]["panels"] != result["replicates"][0]["panels"]
    assert out["csv"].read_text().startswith("experiment,model,claim,test,measured,replicates,floor,verdict")
    assert all(r["replicates"] == 2 for r in result["claims"])
    # one seed per replicate
    bad = args[:args.index("--seeds") + 2] + args[args.index("--seeds") + 3:]
    assert cli.main(bad) == 2
    # a missing model: exit 2 with the file named (checked before any sampling)
    args[2] = str(tmp_path / "missing.pt")
    proc = subprocess.run([PYTHON, "-m", "guidance_repro", *args], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "missing.pt" in proc.stderr
