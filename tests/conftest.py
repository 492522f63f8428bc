"""Shared fixtures. Data that the tests need is built here from small arrays, except the real
Fashion-MNIST files (the Debian package), which the data tests and the smoke DAG read."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FMNIST_DIR = Path(os.environ.get("GUIDANCE_REPRO_FMNIST_DIR", "/usr/share/datasets/fashion-mnist"))
PYTHON = sys.executable


def venv_env() -> dict[str, str]:
    """This environment with the running Python's bin/ first on PATH (for snakemake's jobs)."""
    return dict(os.environ, PATH=f"{Path(PYTHON).parent}{os.pathsep}{os.environ['PATH']}")


def run_snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """`snakemake -c1 ARGS` on the project's Snakefile in the test's own `workdir`, captured.

    Never the checkout: its results/ and .snakemake/ hold the user's runs, which a test must
    neither plan against (after `make reproduce` there is nothing to do) nor write to."""
    workdir = Path(workdir).resolve()
    if workdir.is_relative_to(ROOT):
        raise ValueError(f"run_snakemake: {workdir} is inside the checkout {ROOT}; "
                         "give the test its own folder (tmp_path)")
    cmd = [PYTHON, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--cores", "1", *args]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=venv_env())


def workdir_with_project_config(workdir: Path) -> Path:
    """`workdir` holding a copy of the checkout's config/ (the default config, the paper ones), so
    the default config is planned there as in a fresh clone, whatever the checkout's results/ hold."""
    shutil.copytree(ROOT / "config", workdir / "config")
    return workdir


def copy_worktree(dst: Path) -> None:
    """The project's files as a fresh clone would have them (tracked + untracked, not ignored):
    none of the checkout's results/, .snakemake/ or DVC cache."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file() or src.is_symlink():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel, follow_symlinks=False)


def require_fashion_mnist() -> Path:
    """The real Fashion-MNIST folder. Under CI a missing dataset FAILS the test (never a skip)."""
    if (FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        return FMNIST_DIR
    fail_under_ci_else_skip(f"Fashion-MNIST not found in {FMNIST_DIR}: install the Debian package "
                            "dataset-fashion-mnist (make test does so when run as root)")


def fail_under_ci_else_skip(msg: str) -> None:
    """A missing system dependency: under CI it FAILS the test (never a silent skip); on a
    developer's machine the test is skipped with the reason shown."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(msg)
    print(f"skipped: {msg}")
    pytest.skip(msg)


@pytest.fixture(scope="session")
def fmnist_dir() -> Path:
    return require_fashion_mnist()


@pytest.fixture(scope="session")
def fmnist_npz(tmp_path_factory, fmnist_dir) -> Path:
    """The prepared Fashion-MNIST artifact, built once per session."""
    from guidance_repro.data import fashion_mnist

    out = tmp_path_factory.mktemp("fmnist") / "fashion_mnist.npz"
    fashion_mnist.prepare(fmnist_dir, out)
    return out


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one intra-op thread avoids OpenMP spin-waiting on a busy 2-core machine.

    Used by a test module with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


TINY_GPT = dict(vocab_size=32, grid=4, num_classes=5, dim=32, n_layer=2, n_head=2, multiple_of=16)


@pytest.fixture(scope="module")
def tiny_gpt_dir(tmp_path_factory) -> Path:
    """A folder with codes.npz (40 random 4x4 code grids, 5 classes) and gpt.pt: a TINY_GPT
    pretrained 3 steps on them (task llamagen-pretrain, the real training loop)."""
    import math

    import numpy as np

    from guidance_repro.llamagen.model import PretrainTask
    from guidance_repro.train.config import TrainConfig
    from guidance_repro.train.loop import train
    d = tmp_path_factory.mktemp("llamagen")
    rng = np.random.default_rng(0)
    np.savez(d / "codes.npz", codes=rng.integers(0, 32, (40, 4, 4)), labels=np.arange(40) % 5)
    cfg = TrainConfig.from_dict({"steps": 3, "batch_size": 8, "lr": 1e-3, "betas": [0.9, 0.95],
                                 "weight_decay": 0.05, "grad_clip": 1.0, "device": "cpu"})
    summary = train(PretrainTask({"model": TINY_GPT}, {"codes": d / "codes.npz"}), cfg, d / "gpt.pt",
                    progress=False)
    assert summary["steps"] == 3 and math.isfinite(summary["final_loss"])
    return d
