"""The generic ``train`` command: any registered task, one process or torchrun DDP.

    python -m guidance_repro train --task NAME --params '{"train": {...}, ...}' \
        --input data=results/data/x.npz --out results/models/m.pt
    torchrun --standalone --nproc_per_node=2 -m guidance_repro train ...   (same arguments)

Rerunning the same command after a kill resumes from ``<out>.ckpt/last.pt``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from guidance_repro.errors import ReproError
from guidance_repro.io import json_object_arg


def parse_inputs(pairs: list[str]) -> dict[str, Path]:
    inputs: dict[str, Path] = {}
    for pair in pairs:
        key, sep, path = pair.partition("=")
        if not sep or not key or not path:
            raise ReproError(f"--input: expected KEY=PATH, got {pair!r}")
        if key in inputs:
            raise ReproError(f"--input: key {key!r} given twice")
        inputs[key] = Path(path)
    for key, path in inputs.items():
        if not path.exists():
            raise ReproError(f"--input {key}: {path} does not exist")
    return inputs


def parse_params(text: str) -> dict:
    return json_object_arg(text, "--params")


def _train(args: argparse.Namespace) -> None:
    from guidance_repro.tasks import get_task
    from guidance_repro.train.config import TrainConfig
    from guidance_repro.train.loop import train

    params = parse_params(args.params)
    cfg = TrainConfig.from_dict(params.pop("train", {}), key="train")
    task = get_task(args.task, params, parse_inputs(args.input))
    summary = train(task, cfg, Path(args.out), progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"[train {task.name}] {summary['steps']} steps on {summary['world_size']} process(es), "
              f"final loss {summary['final_loss']:.6g} -> {args.out}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a registered task (resumable; works under torchrun)")
    p.add_argument("--task", required=True, help="task name from guidance_repro.tasks.TASKS, or module:factory")
    p.add_argument("--params", default="{}",
                   help="JSON object: a 'train' section (TrainConfig) and the task's parameters")
    p.add_argument("--input", action="append", default=[], metavar="KEY=PATH",
                   help="an input file of the task (repeatable)")
    p.add_argument("--out", required=True, help="output model file (.pt)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)
