"""Golden values (golden/values.py): a clean recompute lies inside the committed golden
file's tolerances; a deliberate change of the maths moves the values it touches far outside."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from guidance_repro.golden import values as golden_values
from guidance_repro.report import regression
from guidance_repro.golden.commands import FLOAT32_EPS, RESULTS_FILE, golden_entries, tolerance

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "regression" / "golden.json"


def as_metrics(values: dict) -> dict[str, float]:
    return {f"{RESULTS_FILE}:{k}": v for k, v in regression.flatten(values).items()}


def golden_failures(values: dict) -> list[str]:
    golden = regression.load_golden(GOLDEN)
    metrics = as_metrics(values)
    result = regression.check(metrics, {}, golden, [], partial=True)
    assert all(kind == "golden" for kind, _ in result.failures)
    return [msg for _, msg in result.failures]


@pytest.fixture(scope="module")
def clean() -> dict:
    return golden_values.compute()


def test_clean_recompute_is_inside_every_golden_tolerance(clean):
    golden = regression.load_golden(GOLDEN)
    assert set(as_metrics(clean)) == set(golden)  # every value has its golden entry, and no more
    assert golden_failures(clean) == []
    for name, entry in golden.items():  # tolerances are rounding-sized, not seed-band-sized
        assert entry["tol"] <= max(1e-4 * abs(entry["value"]), 1e-6), name


def far_outside(values: dict, prefix: str) -> list[str]:
    """The golden names under ``prefix`` that moved by more than 100 tolerances."""
    golden = regression.load_golden(GOLDEN)
    return [name for name, v in as_metrics(values).items() if name.startswith(f"{RESULTS_FILE}:{prefix}")
            and abs(v - golden[name]["value"]) > 100 * golden[name]["tol"]]


def test_cfg_scale_ignored_moves_the_llamagen_sampler_values(monkeypatch):
    from guidance_repro.sampling import ar
    original = ar.split_and_combine
    monkeypatch.setattr(ar, "split_and_combine", lambda logits, scale: original(logits, 1.0))
    values = golden_values.compute(families=("llamagen",))
    assert values["sample"]["llamagen_cfg"]["guidance_norm"] < 1e-5  # cached sampler vs teacher forcing: rounding only
    assert len(far_outside(values, "sample.llamagen_cfg.")) == 2
    assert not far_outside(values, "train.")  # the training losses do not go through the sampler
    assert golden_failures(values)


def test_cca_negative_sign_flipped_moves_the_cca_losses(monkeypatch):
    from guidance_repro.guidance import cca
    original = cca.negative_weights

    def flipped(masked, lam):
        w, s = original(masked, lam)
        return w, -s
    monkeypatch.setattr(cca, "negative_weights", flipped)
    values = golden_values.compute(families=("llamagen",))
    moved = far_outside(values, "train.llamagen-cca.")
    # step 1 starts at the reference (every gap 0, whatever the sign); the steps after it move. Step 2
    # only a little: the output layer is zero-initialised (as the official) and 4 pretraining steps
    # leave it small, so one update separates policy and reference by little.
    steps = {n.rsplit(".", 1)[1] for n in moved}
    assert {"step3", "step4"} <= steps and "step1" not in steps
    assert not far_outside(values, "train.llamagen-pretrain.")


def test_edm_guidance_weight_ignored_moves_the_denoiser_values(monkeypatch):
    from guidance_repro.guidance import autoguidance
    original = autoguidance.combine
    monkeypatch.setattr(autoguidance, "combine", lambda d_guide, d_main, w: original(d_guide, d_main, 1.0))
    values = golden_values.compute(families=("edm",))
    assert values["sample"]["edm_cfg"]["guidance_norm"] == values["sample"]["edm_autoguidance"]["guidance_norm"] == 0
    assert {n.split(":")[1] for n in far_outside(values, "sample.")} == {
        f"sample.edm_{m}.{k}_norm" for m in ("cfg", "autoguidance") for k in ("guided", "guidance")}
    assert not far_outside(values, "train.")


def test_tolerance_is_safety_times_the_thread_spread_floored_at_ulps():
    tol, spread = tolerance([1.0, 1.0 + 1e-5, 1.0 - 1e-5], safety=10, ulps=16)
    assert spread == pytest.approx(2e-5) and tol == pytest.approx(2e-4)
    tol, spread = tolerance([3.0, 3.0], safety=10, ulps=16)
    assert spread == 0 and tol == 16 * FLOAT32_EPS * 3.0
    entries = golden_entries([{"a": 2.0}, {"a": 2.0 + 1e-6}], "golden/x.json", 10, 16)
    assert entries["golden/x.json:a"]["value"] == 2.0 and entries["golden/x.json:a"]["tol"] == pytest.approx(1e-5)


def test_regression_check_reports_a_moved_golden_value_by_kind(clean, tmp_path):
    results = tmp_path / "results"
    (results / "golden").mkdir(parents=True)
    moved = json.loads(json.dumps(clean))
    moved["train"]["var-cca"]["loss"]["step3"] += 1e-3
    (results / RESULTS_FILE).write_text(json.dumps(moved))
    expected = tmp_path / "expected.json"  # one wide band, so that only the golden values decide
    expected.write_text(json.dumps({"metrics": {f"{RESULTS_FILE}:train.toy2d-density.loss.step1":
                                                {"low": -1e9, "high": 1e9}}}))
    cmd = [sys.executable, "-m", "guidance_repro", "regression-check", "--results", str(results),
           "--expected", str(expected), "--golden", str(GOLDEN)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr[-2000:]
    fails = [line for line in proc.stderr.splitlines() if line.startswith("FAIL")]
    assert fails == [line for line in fails if "[golden]" in line] and len(fails) == 1
    assert "train.var-cca.loss.step3" in fails[0] and "(1 golden)" in proc.stderr
    (results / RESULTS_FILE).write_text(json.dumps(clean))
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"{len(regression.load_golden(GOLDEN))} golden values" in proc.stdout


def test_golden_file_states_how_its_tolerances_were_measured():
    doc = json.loads(GOLDEN.read_text())
    assert doc["tolerance_rule"]["threads"] == [1, 2] and "safety" in doc["tolerance_rule"]["rule"]
    assert all("thread_spread" in e for e in doc["golden"].values())
    # the tolerances were measured where rounding differs: some values moved between the counts
    assert any(e["thread_spread"] > 0 for e in doc["golden"].values())


def brute_force_precision_recall(real, fake, k: int) -> tuple[float, float]:
    """Kynkäänniemi et al.'s definition in float64 numpy, independent of metrics/precision_recall.py."""
    import numpy as np

    def dist(a, b):
        return np.sqrt(((a[:, None, :].astype(np.float64) - b[None, :, :]) ** 2).sum(-1))

    r_radii = np.sort(dist(real, real), axis=1)[:, k]  # column 0 is the point itself
    f_radii = np.sort(dist(fake, fake), axis=1)[:, k]
    precision = (dist(fake, real) <= r_radii[None, :]).any(1).mean()
    recall = (dist(real, fake) <= f_radii[None, :]).any(1).mean()
    return float(precision), float(recall)


def test_precision_recall_golden_values_are_the_k3_definition_and_k1_moves_them(monkeypatch):
    import numpy as np

    from guidance_repro.metrics import precision_recall as pr
    rng = np.random.default_rng(7)  # the sets of golden_values.precision_recall_fixed
    real = rng.normal(0.0, 1.0, (golden_values.PR_POINTS, 8)).astype(np.float32)
    fake = rng.normal(0.4, 1.3, (golden_values.PR_POINTS, 8)).astype(np.float32)
    golden = regression.load_golden(GOLDEN)
    name = f"{RESULTS_FILE}:metrics.precision_recall."
    p3, r3 = brute_force_precision_recall(real, fake, 3)
    assert golden[name + "precision"]["value"] == pytest.approx(p3, abs=1e-6)
    assert golden[name + "recall"]["value"] == pytest.approx(r3, abs=1e-6)
    p1, r1 = brute_force_precision_recall(real, fake, 1)
    assert p1 < p3 - 0.05 and r1 < r3 - 0.05  # k = 1 is far from k = 3 on these sets

    original = pr.knn_radii
    monkeypatch.setattr(pr, "knn_radii", lambda features, k=pr.ADM_K, *a, **kw: original(features, 1, *a, **kw))
    values = golden_values.compute(families=("metrics",))["metrics"]["precision_recall"]
    assert (values["precision"], values["recall"]) == pytest.approx((p1, r1), abs=1e-6)
    assert len(far_outside({"metrics": {"precision_recall": values}}, "metrics.")) == 3
