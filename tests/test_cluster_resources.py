"""The config's `resources` section in the planned jobs (a dry run): the SLURM plugin's resource
names per kind of job, torchrun with one process per GPU, srun + tools/slurm-torchrun.sh on
several nodes, and a bad value stopping the run with the key named."""

from __future__ import annotations

import re
import shutil

import pytest

from conftest import ROOT, run_snakemake

pytestmark = pytest.mark.dag

TARGET = "results/cca_llamagen/samples/S-cca-b49-l10-cfg1.npz"
RESOURCES = """
resources:
  training: {gpus: 2, cpus: 8, mem_mb: 64000, runtime: 600}
  finetuning: {gpus: 4, nodes: 2, cpus: 16, partition: gpu, account: proj, slurm_extra: "--qos=long"}
"""


def _plan(tmp_path, extra: str):
    shutil.copytree(ROOT / ".test" / "config", tmp_path / "config")
    with open(tmp_path / "config" / "config.yaml", "a") as f:
        f.write(extra)
    return run_snakemake(tmp_path, "-n", "-p", "--forceall", TARGET)


def _job(plan: str, rule: str) -> str:
    """The dry run's block of `rule` (up to the next job)."""
    m = re.search(rf"^rule {rule}:\n(.*?)(?=^\[|\Z)", plan, re.M | re.S)
    assert m, f"no job of {rule} planned"
    return m.group(1)


def test_resources_and_launchers_per_kind(tmp_path):
    ran = _plan(tmp_path, RESOURCES)
    assert ran.returncode == 0, ran.stderr[-3000:]
    plan = ran.stdout + ran.stderr
    pretrain = _job(plan, "cca_llamagen_pretrain")
    assert re.search(r"resources: .*cpus_per_task=8, .*runtime=600, .*gpu=2, .*mem_mb=64000", pretrain)
    assert "torchrun --standalone --nproc-per-node=2 -m guidance_repro train --task llamagen-pretrain" in pretrain
    finetune = _job(plan, "cca_llamagen_finetune")
    for item in ("gpu=4", "nodes=2", "cpus_per_task=16", "slurm_partition=gpu", "slurm_account=proj",
                 "slurm_extra=--qos=long"):
        assert item in finetune, item
    launch = f"srun --nodes=2 --ntasks-per-node=1 {ROOT}/tools/slurm-torchrun.sh 4 -m guidance_repro train"
    assert launch in finetune
    # sampling keeps the defaults: one CPU, no GPU, no torchrun
    sample = _job(plan, "cca_llamagen_sample")
    assert "cpus_per_task=1" in sample and "gpu=0" in sample and "torchrun" not in sample


def test_a_bad_resource_names_its_key(tmp_path):
    ran = _plan(tmp_path, "\nresources:\n  sampling: {gpus: -1}\n")
    assert ran.returncode != 0
    assert "config key resources.sampling.gpus" in ran.stdout + ran.stderr
