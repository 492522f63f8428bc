"""One smoke run of the whole DAG (the .test tier) in a scratch folder, as CI runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PYTHON, ROOT, run_snakemake

pytestmark = [pytest.mark.slow, pytest.mark.dag]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, fmnist_dir):
    workdir = tmp_path_factory.mktemp("smoke")
    shutil.copytree(ROOT / ".test" / "config", workdir / "config")
    env = dict(os.environ, PATH=f"{Path(PYTHON).parent}{os.pathsep}{os.environ['PATH']}")
    start = time.time()
    proc = subprocess.run([PYTHON, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
                           "--directory", str(workdir), "--cores", "2"],
                          cwd=ROOT, capture_output=True, text=True, env=env)
    seconds = time.time() - start
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    print(f"smoke DAG: {seconds:.0f} s")
    return workdir, proc


EXPECTED = [
    "data/fashion_mnist.npz", "data/compositions.npz", "data/tree_gaussians.json",
    "evaluators/classifier_quality.json", "evaluators/composition_quality.json",
    "evaluators/judge_clip_quality.json", "reference/fashion_mnist-test.toy-classifier.npz",
    "cca_llamagen/claims.md", "cca_llamagen/table.csv", "cca_llamagen/figures/fig4_tradeoff.png",
    "cca_var/claims.md", "cca_var/table.csv", "autoguidance/toy2d/figure1.png",
    "autoguidance/toy2d/claims.csv", "autoguidance/fmnist/report/claims.csv", "run_record.json",
    "star/claims.md", "star/claims.csv", "star/figures/clip_fid.png", "star/figures/rope_ablation.png",
    "cca_llamagen/claims.csv", "cca_var/claims.csv", "claims.md", "claims.csv", "claims.html",
    "matrix.csv", "matrix.md", "figures/matrix.png",
]


def test_smoke_dag_completes_and_is_then_up_to_date(smoke_run):
    workdir, _ = smoke_run
    results = workdir / "results"
    missing = [p for p in EXPECTED if not (results / p).is_file()]
    assert not missing, f"the smoke DAG did not write {missing}"
    again = subprocess.run([PYTHON, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
                            "--directory", str(workdir), "--cores", "1", "-n"],
                           cwd=ROOT, capture_output=True, text=True)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_every_metrics_file_records_its_protocol(smoke_run):
    workdir, _ = smoke_run
    files = sorted((workdir / "results").glob("*/metrics/*.json"))
    files += sorted((workdir / "results").glob("*/*/metrics/*.json"))
    files = [f for f in files if not f.name.endswith(".timing.json")]  # the wall-clock side files
    assert files, "no metrics JSON written"
    for path in files:
        m = json.loads(path.read_text())
        proto = m["protocol"]
        for key in ("evaluator", "evaluator_sha256", "reference", "num_samples", "seed", "resolution",
                    "fid_implementation"):
            assert key in proto, f"{path}: protocol lacks {key}"
        assert proto["num_samples"] > 0 and m["fid"] >= 0, path


def test_claims_matrix_and_html_report_of_the_smoke_run(smoke_run):
    """The reviewers' report of this run: every slice in the claims table, every family in the
    matrix (autoguidance for the AR family too), and `snakemake --report` (make reproduce's step)."""
    import csv

    workdir, _ = smoke_run
    results = workdir / "results"
    with open(results / "claims.csv", newline="") as fh:
        exps = {r["experiment"] for r in csv.DictReader(fh)}
    assert {"cca-llamagen", "cca-var", "autoguidance-toy2d", "autoguidance-fmnist"} <= exps
    with open(results / "matrix.csv", newline="") as fh:
        got = {(r["family"], r["method"]): r for r in csv.DictReader(fh)}
    assert float(got[("llamagen", "autoguidance")]["fid"]) > 0
    assert float(got[("fmnist", "CFG")]["fid"]) > 0 and got[("fmnist", "CCA")]["note"].startswith("n/a")
    html = results / "report.html"
    start = time.time()
    proc = run_snakemake(workdir, "--report", str(html))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f"snakemake --report: {time.time() - start:.1f} s")
    text = html.read_text()
    for name in ("claims.html", "matrix.png", "fig4_tradeoff.png", "figure1.png", "fid_vs_w.png"):
        assert name in text, f"the HTML report lacks {name}"


def test_run_record_names_commit_versions_and_hardware(smoke_run):
    workdir, _ = smoke_run
    rec = json.loads((workdir / "results" / "run_record.json").read_text())
    assert rec["packages"]["torch"] and rec["packages"]["snakemake"]
    assert rec["hardware"]["cpu_count"] >= 1 and rec["config"]["tier"] == "smoke"


REGRESSION_EXPECTED = ROOT / "tests" / "regression" / "expected.json"
REGRESSION_GOLDEN = ROOT / "tests" / "regression" / "golden.json"


def regression_check(results: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "guidance_repro", "regression-check", "--results",
                           str(results), "--expected", str(REGRESSION_EXPECTED), "--golden", str(REGRESSION_GOLDEN)],
                          cwd=ROOT, capture_output=True, text=True)


def test_smoke_metrics_stay_in_their_regression_bands(smoke_run):
    workdir, _ = smoke_run
    proc = regression_check(workdir / "results")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "metrics in their band" in proc.stdout and "mechanism rules hold" in proc.stdout
    assert " 0 golden values" not in proc.stdout  # the golden_values rule ran and was compared


def test_regression_check_fails_when_the_cfg_scale_is_ignored(smoke_run, tmp_path):
    """A deliberately broken change: the autoguidance slice's CFG point sampled with the guidance
    weight ignored (w = 1, the main model alone) instead of the configured w, through the real
    `autoguidance-sample` and `evaluate` commands, into a copy of the smoke run's metrics."""
    import yaml
    from snakemake.utils import validate

    workdir, _ = smoke_run
    cfg = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    validate(cfg, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    img, ev = cfg["autoguidance"]["image"], cfg["evaluation"]
    w = max(img["cfg_w"])
    assert w != 1, "the smoke config needs a CFG point with w != 1 for this test"
    point = f"cfg-uncond-w{w:g}"
    results = workdir / "results"
    broken = tmp_path / "results"
    shutil.copytree(results, broken, ignore=shutil.ignore_patterns("*.pt", "*.npz", "*.png", "logs"))
    samples = tmp_path / f"{point}.npz"
    metrics = broken / "autoguidance" / "fmnist" / "metrics" / f"{point}.json"
    models = results / "autoguidance" / "fmnist" / "models"
    sample = subprocess.run(
        [PYTHON, "-m", "guidance_repro", "autoguidance-sample", "--main", str(models / "main.pt"),
         "--guide", str(models / "uncond.pt"), "--guide-name", "uncond", "--method", "cfg",
         "--w", "1", "--num", str(img["num_samples"]), "--seed", str(img["seed"]),
         "--batch", str(img["batch"]), "--sampler", json.dumps(img["sampler"]), "--no-progress",
         "--out", str(samples)], cwd=ROOT, capture_output=True, text=True)
    assert sample.returncode == 0, sample.stderr[-3000:]
    evaluate = subprocess.run(
        [PYTHON, "-m", "guidance_repro", "evaluate", "--samples", str(samples),
         "--reference", str(results / "reference" / "fashion_mnist-test.toy-classifier.npz"),
         "--evaluator", "toy-classifier",
         "--evaluator-checkpoint", str(results / "evaluators" / "classifier.pt"),
         "--metrics", ev["metrics"], "--pr-k", str(ev["pr_k"]), "--seed", str(ev["seed"]),
         "--out", str(metrics)],
        cwd=ROOT, capture_output=True, text=True)
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]

    proc = regression_check(broken)
    assert proc.returncode == 2, proc.stdout[-3000:]
    fid = json.loads(metrics.read_text())["fid"]
    assert f"FAIL [band] autoguidance/fmnist/metrics/{point}.json:fid = {fid:.6g} outside the band [" in proc.stderr
    assert "error: regression check of" in proc.stderr
    # Only the broken point leaves its band.
    failing = {line.split(" ")[2] for line in proc.stderr.splitlines() if line.startswith("FAIL [band] ")}
    assert failing and all(name.startswith(f"autoguidance/fmnist/metrics/{point}.json:") for name in failing)
