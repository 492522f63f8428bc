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


def test_smoke_dag_completes_and_is_then_up_to_date(smoke_run):
    workdir, _ = smoke_run
    assert (workdir / "results" / "data" / "fashion_mnist.npz").is_file()
    again = subprocess.run([PYTHON, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
                            "--directory", str(workdir), "--cores", "1", "-n"],
                           cwd=ROOT, capture_output=True, text=True)
    assert "Nothing to be done" in again.stdout + again.stderr
