"""One smoke run of the whole DAG (the .test tier) in a scratch folder, as CI runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PYTHON, ROOT

pytestmark = pytest.mark.slow


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
    assert files, "no metrics JSON written"
    for path in files:
        m = json.loads(path.read_text())
        proto = m["protocol"]
        for key in ("evaluator", "evaluator_sha256", "reference", "num_samples", "seed", "resolution",
                    "fid_implementation"):
            assert key in proto, f"{path}: protocol lacks {key}"
        assert proto["num_samples"] > 0 and m["fid"] >= 0, path


def test_run_record_names_commit_versions_and_hardware(smoke_run):
    workdir, _ = smoke_run
    rec = json.loads((workdir / "results" / "run_record.json").read_text())
    assert rec["packages"]["torch"] and rec["packages"]["snakemake"]
    assert rec["hardware"]["cpu_count"] >= 1 and rec["config"]["tier"] == "smoke"
