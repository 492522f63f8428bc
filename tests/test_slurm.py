"""The DAG on a real SLURM (tools/slurm-local.sh: slurmctld + slurmd on this machine) through
Snakemake's SLURM executor and workflow/profiles/slurm: a 6-job chain of the smoke tier, every job
submitted with sbatch (SLURM's job-completion log is the witness), the same outputs as a local
run, and a job killed by scancel submitted again and completed on the rerun."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import PYTHON, ROOT, fail_under_ci_else_skip, run_snakemake, venv_env

pytestmark = [pytest.mark.dag, pytest.mark.slow]

SLURM_LOCAL = ROOT / "tools" / "slurm-local.sh"
TARGET = "results/cca_llamagen/samples/S-cca-b49-l10-cfg1.npz"
# the chain behind TARGET in the smoke tier, one job each
CHAIN = ["fashion_mnist", "cca_llamagen_tokenizer", "cca_llamagen_encode", "cca_llamagen_pretrain",
         "cca_llamagen_finetune", "cca_llamagen_sample"]
KILLED = "cca_llamagen_pretrain"
OUTPUTS = ["results/data/fashion_mnist.npz", "results/cca_llamagen/tokenizer.pt",
           "results/cca_llamagen/codes-train.npz", "results/cca_llamagen/models/S-pretrained.pt",
           "results/cca_llamagen/models/S-cca-b49-l10.pt", TARGET]
# The training kind asks for one GPU: a TEST STAND-IN slot (/dev/null) of the local SLURM, so the
# plugin's --gpus request is scheduled on a CPU machine. Training itself stays on the CPU.
RESOURCES = ("resources:\n"
             "  training: {gpus: 1, cpus: 1, mem_mb: 3000, runtime: 20, partition: debug}\n"
             "  finetuning: {cpus: 1, mem_mb: 3000, runtime: 20}\n"
             "  sampling: {cpus: 1, mem_mb: 3000, runtime: 20, slurm_extra: \"--nice=0\"}\n")


def _missing_for_slurm() -> str | None:
    if shutil.which("slurmctld") and shutil.which("munged"):
        return None
    if os.geteuid() != 0:
        return "slurm-wlm/munge are not installed and the tests do not run as root (apt-get install slurm-wlm munge)"
    if not shutil.which("apt-get"):
        return "slurm-wlm/munge are not installed and there is no apt-get (not Debian)"
    return None


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running one-node SLURM; its state folder (jobcomp.log). Brought down also on failure."""
    missing = _missing_for_slurm()
    if missing:
        fail_under_ci_else_skip(f"cannot start a local SLURM: {missing}")
    state = tmp_path_factory.mktemp("slurm-state")
    env = dict(os.environ, SLURM_LOCAL_DIR=str(state), SLURM_LOCAL_GPU_SLOTS="1")
    up = subprocess.run([str(SLURM_LOCAL), "up"], env=env, capture_output=True, text=True)
    try:
        assert up.returncode == 0, f"tools/slurm-local.sh up failed:\n{up.stdout}\n{up.stderr}"
        yield state
    finally:
        subprocess.run([str(SLURM_LOCAL), "down"], env=env, capture_output=True, text=True)


def _workdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / ".test" / "config", path / "config")
    with open(path / "config" / "config.yaml", "a") as f:
        f.write("\n" + RESOURCES)
    return path


def _slurm_args(workdir: Path) -> list[str]:
    return ["--workflow-profile", str(ROOT / "workflow/profiles/slurm"), "--executor", "slurm",
            "--jobs", "2", "--retries", "0",
            # no slurmdbd here: job states come from squeue (finished jobs stay MinJobAge=600 s)
            "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
            "--slurm-keep-successful-logs", "--slurm-no-account", TARGET]


def _submitted(workdir: Path) -> dict[str, set[str]]:
    """rule -> SLURM job ids, from the plugin's per-job logs (.snakemake/slurm_logs/rule_R/.../ID.log)."""
    jobs: dict[str, set[str]] = {}
    for log in (workdir / ".snakemake" / "slurm_logs").rglob("*.log"):
        rule = next(p for p in log.relative_to(workdir / ".snakemake" / "slurm_logs").parts)
        jobs.setdefault(rule.removeprefix("rule_"), set()).add(log.stem)
    return jobs


def _jobcomp(state: Path) -> dict[str, str]:
    """SLURM's own record: job id -> final state, one line per job that went through sbatch."""
    text = (state / "jobcomp.log").read_text() if (state / "jobcomp.log").is_file() else ""
    return dict(re.findall(r"JobId=(\d+) .*?JobState=(\w+)", text))


def _squeue_running(rule: str) -> str | None:
    out = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        job_id, comment = line.split("|", 1)
        if comment == f"rule_{rule}" or comment.startswith(f"rule_{rule}_wildcards_"):
            return job_id
    return None


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


def _untimed(record: np.ndarray) -> dict:
    return {k: v for k, v in json.loads(str(record)).items() if "seconds" not in k}


def _assert_same_output(rel: str, slurm_dir: Path, local_dir: Path) -> None:
    """The same content (npz arrays, checkpoint tensors): the files' zip timestamps differ."""
    a, b = slurm_dir / rel, local_dir / rel
    if rel.endswith(".npz"):
        with np.load(a) as x, np.load(b) as y:
            assert sorted(x.files) == sorted(y.files), rel
            for k in x.files:
                if k.endswith("json"):
                    # a record of the run: equal except the wall-clock timings it measured
                    assert _untimed(x[k]) == _untimed(y[k]), f"{rel}:{k}"
                else:
                    np.testing.assert_array_equal(x[k], y[k], err_msg=f"{rel}:{k}")
    else:
        assert _same(torch.load(a, weights_only=True), torch.load(b, weights_only=True)), rel


def _run_killing(workdir: Path, rule: str, timeout: float = 240) -> tuple[subprocess.CompletedProcess, str]:
    """The SLURM run, with `rule`'s job scancel'ed as soon as squeue shows it running."""
    cmd = [PYTHON, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--cores", "1", *_slurm_args(workdir)]
    proc = subprocess.Popen(cmd, cwd=workdir, env=venv_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline, killed = time.monotonic() + timeout, None
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        killed = _squeue_running(rule)
        if killed is None:
            time.sleep(0.5)
    if killed is not None:
        subprocess.run(["scancel", killed], check=True)
    out, _ = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, ""), killed


def test_chain_through_sbatch_matches_local_and_survives_scancel(slurm, fmnist_dir, tmp_path):
    on_slurm = _workdir(tmp_path / "slurm")
    t0 = time.monotonic()
    first, killed = _run_killing(on_slurm, KILLED)
    assert killed is not None, f"{KILLED} never showed as RUNNING in squeue:\n{first.stdout[-3000:]}"
    assert first.returncode != 0, "the run went on although its job was cancelled"
    assert not (on_slurm / "results/cca_llamagen/models/S-pretrained.pt").exists()

    second = run_snakemake(on_slurm, *_slurm_args(on_slurm))
    assert second.returncode == 0, second.stderr[-4000:]
    wall = time.monotonic() - t0

    submitted, record = _submitted(on_slurm), _jobcomp(slurm)
    assert sorted(submitted) == sorted(CHAIN), submitted
    # every job the plugin submitted is in SLURM's record, and SLURM (fresh for this test) ran
    # nothing else
    ids = set().union(*submitted.values())
    assert ids == record.keys(), (ids, record)
    assert record[killed] == "CANCELLED"
    # the cancelled job was submitted again (a new job id) and completed
    assert killed in submitted[KILLED] and len(submitted[KILLED]) == 2
    for rule, jobs in submitted.items():
        done = [j for j in jobs if record[j] == "COMPLETED"]
        assert len(done) == 1, (rule, {j: record[j] for j in jobs})
    print(f"SLURM part: {wall:.0f} s, {len(ids)} sbatch submissions ({len(CHAIN)} jobs + 1 after scancel), "
          f"{subprocess.run(['sinfo', '-V'], capture_output=True, text=True).stdout.strip()}")

    local = _workdir(tmp_path / "local")
    ran = run_snakemake(local, TARGET)
    assert ran.returncode == 0, ran.stderr[-3000:]
    for rel in OUTPUTS:
        _assert_same_output(rel, on_slurm, local)
