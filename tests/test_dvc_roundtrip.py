"""DVC round trip: `dvc repro` (the stage that wraps Snakemake) → `dvc push` → fresh clone →
`make pull` steps (`dvc pull` + `snakemake --touch`) → `snakemake -n` reports nothing to do.

Restricted to the data rules (GUIDANCE_REPRO_TARGETS) so it runs in seconds; the mechanism is the
same for every artifact under results/.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import PYTHON, copy_worktree

pytestmark = [pytest.mark.slow, pytest.mark.dag]
TARGET = "data_all"


def _run(args, cwd, env):
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def test_dvc_repro_push_pull_then_nothing_to_do(tmp_path, fmnist_dir):
    env = dict(os.environ, PATH=f"{Path(PYTHON).parent}{os.pathsep}{os.environ['PATH']}",
               GUIDANCE_REPRO_TARGETS=TARGET, GUIDANCE_REPRO_CORES="1",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    origin, clone, remote = tmp_path / "origin", tmp_path / "clone", tmp_path / "remote"
    origin.mkdir()
    copy_worktree(origin)
    dvc = [PYTHON, "-m", "dvc"]
    smk = [PYTHON, "-m", "snakemake", "--cores", "1"]
    _run(["git", "init", "-q"], origin, env)
    _run(dvc + ["remote", "modify", "local", "url", str(remote)], origin, env)
    _run(["git", "add", "-A"], origin, env)
    _run(["git", "commit", "-qm", "project"], origin, env)

    _run(dvc + ["repro"], origin, env)
    assert (origin / "results/data/fashion_mnist.npz").is_file()
    assert (origin / "dvc.lock").is_file()
    _run(["git", "add", "-A"], origin, env)
    _run(["git", "commit", "-qm", "results"], origin, env)
    _run(dvc + ["push"], origin, env)

    _run(["git", "clone", "-q", str(origin), str(clone)], tmp_path, env)
    assert not (clone / "results").exists()
    _run(dvc + ["pull"], clone, env)
    restored = clone / "results/data/fashion_mnist.npz"
    assert restored.read_bytes() == (origin / "results/data/fashion_mnist.npz").read_bytes()
    _run(smk + ["--touch", TARGET], clone, env)
    out = _run(smk + ["-n", TARGET], clone, env)
    assert "Nothing to be done" in out, out
    # DVC agrees that the restored workspace matches dvc.lock.
    status = _run(dvc + ["status"], clone, env)
    assert "up to date" in status.lower() or "changed" not in status.lower(), status
