"""Benchmark one training step of every CNN task of a finished run, NCHW beside NHWC (channels_last),
on one CPU thread; save JSON.

The tasks are those that set ``cpu_channels_last`` (the training loop trains them in NHWC on CPU).
Their parameters and inputs are read from the ``guidance-repro train`` shell commands of a
Snakemake log of a run (the first job of each task), so the shapes are the run's own. Both layouts
start from the same initial weights and see the same batches; the steps are taken in turns
(A B A B ...) and the median of ``--steps`` is reported. The last loss of each is printed beside
it as a sanity check: the same function, but dropout masks are drawn in memory order, so with
dropout the two runs see different masks and their losses drift apart slightly (1e-4 in 10 steps).

    python benchmarks/channels_last_training.py --run <a checkout that ran `make reproduce`> \
        [--steps 8] [--out results/benchmarks/channels_last_training.json]
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from guidance_repro.io import write_json
from guidance_repro.sampling.bench_script import cpu_model
from guidance_repro.tasks import TASKS


def train_commands(log: Path) -> dict[str, tuple[dict, dict]]:
    """task name -> (params, inputs) of its first `guidance-repro train` command in a Snakemake log."""
    found: dict[str, tuple[dict, dict]] = {}
    for line in log.read_text().splitlines():
        if "guidance-repro train --task" not in line:
            continue
        argv = shlex.split(line.split("Shell command:", 1)[-1].split(" > ")[0])
        argv = argv[argv.index("guidance-repro"):]
        name = argv[argv.index("--task") + 1]
        if name in found:
            continue
        params = json.loads(argv[argv.index("--params") + 1])
        inputs = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--input")
        found[name] = (params, inputs)
    return found


def build(name: str, params: dict, inputs: dict, root: Path):
    module, fn = TASKS[name].split(":")
    make = getattr(importlib.import_module(module), fn)
    return make({k: v for k, v in params.items() if k != "train"},
                {k: str(root / v) for k, v in inputs.items()})


def bench_task(task, batch_size: int, steps: int) -> dict:
    torch.manual_seed(0)
    base = task.build_model()
    models = {"nchw": base, "nhwc": copy.deepcopy(base).to(memory_format=torch.channels_last)}
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-4) for k, m in models.items()}
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {k: [] for k in models}
    losses: dict[str, float] = {}
    for step in range(steps + 2):  # two warm-up steps
        batch = task.get_batch(rng.integers(0, task.num_examples(), batch_size))
        for k, m in models.items():
            torch.manual_seed(step)  # the task's random draws (noise levels, masks) alike in both
            t0 = time.perf_counter()
            out = task.loss(m, batch, step)
            loss = out[0] if isinstance(out, tuple) else out
            opts[k].zero_grad()
            loss.backward()
            opts[k].step()
            if step >= 2:
                times[k].append(time.perf_counter() - t0)
            losses[k] = float(loss.detach())
    row = {f"{k}_s_per_step": statistics.median(v) for k, v in times.items()}
    row["speedup"] = row["nchw_s_per_step"] / row["nhwc_s_per_step"]
    row["last_loss"] = losses
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a checkout with a finished run (results/, .snakemake/log)")
    ap.add_argument("--log", type=Path, help="its Snakemake log (default: the largest in .snakemake/log)")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path("results/benchmarks/channels_last_training.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    logs = sorted((args.run / ".snakemake" / "log").glob("*.log"), key=lambda p: p.stat().st_size)
    log = args.log or (logs[-1] if logs else None)
    if log is None or not log.is_file():
        sys.exit(f"{args.run}/.snakemake/log: no Snakemake log to read the train commands from")
    rows = {}
    for name, (params, inputs) in sorted(train_commands(log).items()):
        task = build(name, params, inputs, args.run)
        if not getattr(task, "cpu_channels_last", False):
            continue
        rows[name] = {"batch_size": params["train"]["batch_size"],
                      **bench_task(task, params["train"]["batch_size"], args.steps)}
        r = rows[name]
        print(f"{name:24s} NCHW {r['nchw_s_per_step'] * 1e3:7.1f} ms  NHWC {r['nhwc_s_per_step'] * 1e3:7.1f} ms"
              f"  x{r['speedup']:.2f}  loss {r['last_loss']['nchw']:.5f} / {r['last_loss']['nhwc']:.5f}")
    write_json(args.out, {"cpu": cpu_model(), "threads": 1,
                          "torch": torch.__version__, "log": str(log), "steps": args.steps, "tasks": rows})
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
