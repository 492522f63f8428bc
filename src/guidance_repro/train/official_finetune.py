"""The run of a paper-tier fine-tune from an official checkpoint, shared by every family's
``*-cca-official`` command: check the input files, make ``steps`` one epoch when unset, run the one
training loop, then (rank 0) rebuild the trained model from the loop's model file and write it in
the family's official layout with the recipe beside it (``<official>.json``)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Callable

from guidance_repro.errors import ReproError


def world_size(threads: int) -> int:
    """Set this process's torch threads (0: torch's default) and return the torchrun world size."""
    import torch
    if threads > 0:
        torch.set_num_threads(threads)
    return int(os.environ.get("WORLD_SIZE", "1"))


def require_inputs(inputs: dict[str, Path]) -> None:
    """Each named input must exist (a file, or a folder such as merged codes or ImageNet)."""
    for key, path in inputs.items():
        if not Path(path).exists():
            raise ReproError(f"--{key.replace('_', '-')}: {path} does not exist")


def run_official_finetune(task, train_params: dict, global_batch: int, data: str, out: str | Path,
                          out_official: str | Path, model_classes: tuple[type, type],
                          save_official: Callable[[object, Path, dict], None], recipe_extra: dict,
                          progress: bool) -> tuple[dict, object, Path] | None:
    """Train ``task``; on rank 0 return (summary, TrainConfig, official path), elsewhere None.

    ``model_classes`` (network, its config) rebuild the trained model from the loop's model file;
    ``save_official(model, path, recipe)`` writes it in the official layout."""
    from guidance_repro.io import write_json
    from guidance_repro.train.checkpoint import load_model_file, load_state_strict
    from guidance_repro.train.config import TrainConfig
    from guidance_repro.train.loop import train

    if train_params["steps"] is None:  # one epoch of whole global batches
        n = task.num_examples()
        train_params["steps"] = n // global_batch
        if train_params["steps"] < 1:
            raise ReproError(f"{data}: {n} images, fewer than one global batch of {global_batch}")
    cfg = TrainConfig.from_dict(train_params, key="train")
    out = Path(out)
    summary = train(task, cfg, out, progress=progress)
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    done = load_model_file(out)
    network, config = model_classes
    model = network(config.from_dict(done["model_config"]))
    load_state_strict(model, done["model"], out)
    recipe = {**done["recipe"], "train_config": done["train_config"], "steps": done["summary"]["steps"],
              **recipe_extra}
    official = Path(out_official)
    official.parent.mkdir(parents=True, exist_ok=True)
    save_official(model, official, recipe)
    write_json(official.with_name(official.name + ".json"), recipe)
    return summary, cfg, official


def add_official_finetune_args(p: argparse.ArgumentParser, lr: float, lam_of: str, model_fields: str) -> None:
    """The arguments every ``*-cca-official`` command shares (the family adds its data and recipe)."""
    p.add_argument("--reference", default="", help="the frozen reference p_phi (default: --pretrained)")
    p.add_argument("--out", required=True, help="the training loop's model file (.pt)")
    p.add_argument("--out-official", required=True, help="the fine-tuned model in the official layout")
    p.add_argument("--global-batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=None, help="default: one epoch of whole global batches")
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--beta", type=float, default=0.02)
    p.add_argument("--lam", type=float, default=None, help=f"default: the paper's λ of {lam_of}")
    p.add_argument("--uncond-ratio", type=float, default=0.1)
    p.add_argument("--method", choices=("cca", "dpo", "unlearning"), default="cca")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--model-overrides", default="",
                   help=f"JSON {model_fields} fields over the official size (tiny test files only)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
