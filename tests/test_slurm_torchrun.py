"""tools/slurm-torchrun.sh, the multi-node launcher, with local processes: two "nodes" on
localhost (the SLURM variables srun would set, faked), one torchrun each, gloo. The processes
must find each other through the rendezvous the script builds and form one group."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, venv_env

SCRIPT = ROOT / "tools" / "slurm-torchrun.sh"

WORKER = """
import json, os, sys
import torch
import torch.distributed as dist
dist.init_process_group("gloo")
rank = torch.tensor([float(dist.get_rank())])
dist.all_reduce(rank)
out = {"rank": dist.get_rank(), "world": dist.get_world_size(), "rank_sum": rank.item(),
       "node": int(os.environ["GROUP_RANK"]), "local_rank": int(os.environ["LOCAL_RANK"])}
with open(os.path.join(sys.argv[1], f"rank{dist.get_rank()}.json"), "w") as f:
    json.dump(out, f)
dist.destroy_process_group()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mini_slurm_conf(folder: Path) -> Path:
    conf = folder / "slurm.conf"
    conf.write_text("ClusterName=test\nSlurmctldHost=localhost\nNodeName=localhost CPUs=1\n"
                    "PartitionName=test Nodes=ALL\n")
    return conf


def _node(node_id: int, port: int, worker: Path, out: Path) -> subprocess.Popen:
    # "localhost,n[1-2]": the first host is the master; scontrol (when installed, given a minimal
    # config) expands the list, else the script reads the plain first entry
    env = dict(venv_env(), SLURM_NNODES="2", SLURM_NODEID=str(node_id), SLURM_JOB_NODELIST="localhost,n[1-2]",
               SLURM_CONF=str(_mini_slurm_conf(out)),
               MASTER_PORT=str(port), OMP_NUM_THREADS="1",
               TORCHRUN=str(Path(sys.executable).parent / "torchrun"))
    return subprocess.Popen([str(SCRIPT), "1", str(worker), str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_nodes_on_localhost_form_one_group(tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    port = _free_port()
    nodes = [_node(i, port, worker, tmp_path) for i in (0, 1)]
    logs = [p.communicate(timeout=180)[0] for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], logs
    got = sorted((json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)),
                 key=lambda d: d["rank"])
    # one group of 2 across the two "nodes": node i runs global rank i, local rank 0
    assert [(d["rank"], d["node"], d["local_rank"], d["world"]) for d in got] == [(0, 0, 0, 2), (1, 1, 0, 2)]
    assert all(d["rank_sum"] == 1.0 for d in got)


def test_outside_an_allocation_it_says_what_is_missing(tmp_path):
    env = {k: v for k, v in venv_env().items() if not k.startswith("SLURM_")}
    run = subprocess.run([str(SCRIPT), "1", "-m", "guidance_repro", "train"], env=env,
                         capture_output=True, text=True)
    assert run.returncode != 0 and "SLURM_NNODES" in run.stderr
