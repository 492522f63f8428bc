"""The one training loop every trainer uses: single process or torchrun DDP, resumable, seeded.

A trainer is a ``TrainTask`` (model + data + loss); ``train(task, cfg, out)`` does the rest.

Guarantees:
- Data order does not depend on the number of processes: epoch e is the permutation
  ``np.random.default_rng([seed, e])``; optimizer step k takes the next ``batch_size`` positions of
  that endless stream, splits them into ``accumulation`` micro-batches and each micro-batch into
  contiguous per-rank shards. Losses are scaled by 1/accumulation and DDP averages over ranks, so
  every layout computes the gradient of the mean loss over the same global batch
  (``accumulation_reduce: sum`` leaves the 1/accumulation out: ``accumulation`` times that gradient,
  for any number of processes at a given accumulation).
- ``parallel: fsdp`` shards parameters, gradients and optimizer state over the processes
  (train/fsdp.py); the arithmetic, the checkpoints and the model file are those of DDP.
- torch (CPU and CUDA) is reseeded from (seed, step, rank) at the start of every step, so dropout
  after a resume is the same as without the interruption; no RNG state needs to be saved.
- ``ckpt_dir/last.pt`` (plain data) is written atomically every ``checkpoint_every`` steps and at
  the end, the one before it kept as ``previous.pt``; a rerun of the same command resumes from
  last.pt (from previous.pt, or from scratch, when last.pt cannot be read, saying so) and ends
  bit-identical on the CPU. The folder is removed once the model file is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from guidance_repro.errors import ReproError
from guidance_repro.io import atomic_path, timing_path, write_json
from guidance_repro.train.checkpoint import (check_resume, load_resume_checkpoint, load_state_strict,
                                             save_atomic, save_checkpoint)
from guidance_repro.train.config import TrainConfig
from guidance_repro.train import fsdp
from guidance_repro.train.ema import EMA
from guidance_repro.train.schedule import lr_factor, weight_decay_factor

CKPT_FORMAT = "guidance_repro.train/1"


@runtime_checkable
class TrainTask(Protocol):
    """What a trainer provides. Optional extras: ``param_groups(model, weight_decay) -> list[dict]``
    (groups may set their own 'lr' and 'weight_decay'), ``on_device(device)`` (move frozen extras,
    e.g. a CCA reference model), ``check_train_config(cfg)`` (refuse a train config its inputs
    were not made for), ``begin_step(step, epoch)`` (called before a step's batches; ``epoch`` is
    that of the step's first example, for augmentations drawn per epoch), ``fsdp_units(model)`` /
    ``shard_frozen(shard)`` (train/fsdp.py) and ``recipe(cfg, world) -> dict`` (plain data recorded
    in the model file under 'recipe': the semantics the task reproduces). ``loss`` receives the DDP wrapper under torchrun: call it (its
    forward syncs the gradients) and reach attributes through ``unwrap(model)``."""

    name: str

    def build_model(self) -> nn.Module: ...

    def model_config(self) -> dict: ...

    def num_examples(self) -> int: ...

    def get_batch(self, indices: np.ndarray) -> Any: ...

    def loss(self, model: nn.Module, batch: Any, step: int) -> Any: ...


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DDP) else model


class DataOrder:
    """Dataset indices for any span of the endless, epoch-by-epoch shuffled stream."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self._perms = n, seed, {}

    def perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            for old in [e for e in self._perms if e < epoch - 1]:
                del self._perms[old]
            self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return self._perms[epoch]

    def take(self, start: int, count: int) -> np.ndarray:
        parts, pos = [], start
        while pos < start + count:
            epoch, off = divmod(pos, self.n)
            k = min(self.n - off, start + count - pos)
            parts.append(self.perm(epoch)[off:off + k])
            pos += k
        return np.concatenate(parts)


def micro_batches(order: DataOrder, step: int, batch_size: int, accumulation: int, world: int,
                  rank: int) -> list[np.ndarray]:
    """This rank's dataset indices of each micro-batch of optimizer step ``step``."""
    micro, shard = batch_size // accumulation, batch_size // (accumulation * world)
    idx = order.take(step * batch_size, batch_size)
    return [idx[a * micro + rank * shard: a * micro + (rank + 1) * shard] for a in range(accumulation)]


def step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1, np.uint64)[0])


def reseed(seed: int, step: int, rank: int, device: torch.device | None = None) -> None:
    """Seed the CPU generator, the training device's generator, ``random`` and ``np.random``.
    (Not ``torch.manual_seed``: it visits every backend and costs ~0.25 ms, a third of a tiny step.)"""
    s = step_seed(seed, step, rank)
    torch.default_generator.manual_seed(s)
    if device is not None and device.type == "cuda":
        torch.cuda.manual_seed(s)  # the current device, set to this rank's in _setup
    random.seed(s)
    np.random.seed(s % 2**32)


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def _setup(cfg: TrainConfig) -> tuple[torch.device, int, int, bool]:
    """(device, rank, world size, whether we created the process group)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ReproError("train.device: 'cuda' requested but no CUDA device is available")
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    created = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", device_id=device if use_cuda else None)
        created = True
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return device, rank, world, created


def _optimizer(task: Any, model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if hasattr(task, "param_groups"):
        groups = [dict(g) for g in task.param_groups(model, cfg.weight_decay)]
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad],
                   "weight_decay": cfg.weight_decay}]
    for g in groups:
        g["initial_lr"] = float(g.pop("lr", cfg.lr))  # the schedules multiply these
        g["initial_weight_decay"] = float(g.get("weight_decay", cfg.weight_decay))
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


def _split_loss(out: Any) -> tuple[torch.Tensor, dict[str, float]]:
    if isinstance(out, tuple):
        loss, metrics = out
        return loss, {k: float(v) for k, v in metrics.items()}
    return out, {}


def accumulate(model: nn.Module, task: Any, batches: list, step: int, reduce: str,
               autocast, no_sync, fetch=lambda b: b,
               scale_loss=lambda loss: loss) -> tuple[torch.Tensor, int, dict[str, float]]:
    """Forward and backward of one optimizer step's micro-batches (``fetch(b)`` makes each, in
    turn); gradients accumulate in the parameters. ``reduce`` "mean" divides each micro-batch loss by their count, "sum" does not.
    ``no_sync()`` is the context of a micro-batch whose gradients are not yet reduced over ranks;
    ``scale_loss`` is applied to what is back-propagated only (float16's GradScaler).
    Returns (sum of the micro-batch losses, their count, summed metrics)."""
    total = torch.zeros((), dtype=torch.float64)
    metrics_sum: dict[str, float] = {}
    scale = 1.0 / len(batches) if reduce == "mean" else 1.0
    for a, item in enumerate(batches):
        batch = fetch(item)
        with (contextlib.nullcontext() if a == len(batches) - 1 else no_sync()):
            with autocast:
                loss, metrics = _split_loss(task.loss(model, batch, step))
            scale_loss(loss * scale).backward()
        total = total.to(loss.device) + loss.detach().double()
        for k, v in metrics.items():
            metrics_sum[k] = metrics_sum.get(k, 0.0) + v
    return total, len(batches), metrics_sum


def _cpu(state: dict) -> dict:
    """Detached CPU copies in the default (contiguous) layout, whatever layout training used."""
    return {k: v.detach().cpu().clone(memory_format=torch.contiguous_format) for k, v in state.items()}


def _write_log(path: Path, rows: list[dict]) -> None:
    with atomic_path(path, suffix=".jsonl.tmp") as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))


def train(task: TrainTask, cfg: TrainConfig, out: Path, ckpt_dir: Path | None = None,
          progress: bool = True) -> dict:
    """Train ``task`` for ``cfg.steps`` optimizer steps and write ``out`` (see module docstring).

    ``out`` holds {'model' (EMA weights when EMA is on), 'model_raw' (only with EMA), 'model_config',
    'task', 'train_config', 'summary' (steps, final_loss, world_size)}; ``out.name + '.log.jsonl'``
    beside it holds the log rows and ``timing_path(out)`` the wall-clock figures.
    Returns steps, final_loss, world_size, seconds, examples_per_s and resumed_from_step.
    """
    out = Path(out)
    ckpt_dir = Path(ckpt_dir) if ckpt_dir is not None else out.parent / (out.name + ".ckpt")
    ckpt_path, log_path = ckpt_dir / "last.pt", out.parent / (out.name + ".log.jsonl")
    device, rank, world, created = _setup(cfg)
    try:
        return _run(task, cfg, out, ckpt_path, log_path, device, rank, world, progress)
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()


def _run(task: Any, cfg: TrainConfig, out: Path, ckpt_path: Path, log_path: Path,
         device: torch.device, rank: int, world: int, progress: bool) -> dict:
    B, acc = cfg.batch_size, cfg.accumulation
    if B % (acc * world):
        raise ReproError(f"train.batch_size: {B} is not divisible by accumulation x processes "
                         f"= {acc} x {world}")
    n = int(task.num_examples())
    if n < 1:
        raise ReproError(f"task {task.name}: the dataset is empty")

    if hasattr(task, "check_train_config"):  # a task whose inputs were made for one train config
        task.check_train_config(cfg)
    torch.manual_seed(cfg.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    raw = task.build_model().to(device)
    if device.type == "cpu" and getattr(task, "cpu_channels_last", False):
        # small-channel convolutions run 1.1-1.6x faster per step in oneDNN's NHWC kernels on CPU
        # (benchmarks/channels_last_training.py); the model file stays in the default layout (_cpu)
        raw = raw.to(memory_format=torch.channels_last)
    if hasattr(task, "on_device"):
        task.on_device(device)
    model_config = task.model_config()
    train_config = cfg.to_dict()
    sharded = cfg.parallel == "fsdp" and world > 1

    def say(text: str) -> None:  # one line in the job's log, with or without a progress bar
        if rank == 0:
            print(f"[train {task.name}] {text}", file=sys.stderr, flush=True)

    start, rows, seconds_before = 0, [], 0.0
    found = load_resume_checkpoint(ckpt_path, say)
    if found is not None:
        ckpt, source = found
        if ckpt.get("format") != CKPT_FORMAT:
            raise ReproError(f"{source}: not a training checkpoint of this loop; delete it")
        check_resume(ckpt, source, task.name, model_config, train_config)
        load_state_strict(raw, ckpt["model"], source)  # full weights, before any sharding
    if sharded:
        fsdp.shard(task, raw)  # in place: raw is now the sharded module
    opt = _optimizer(task, raw, cfg)
    ema = EMA(raw, cfg) if cfg.ema != "none" else None
    if found is not None:
        try:
            if sharded:
                fsdp.load_full_state(raw, opt, ckpt["model"], ckpt["optimizer"])
            else:
                opt.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise ReproError(f"{source}: optimizer state does not fit the task's parameter "
                             f"groups ({exc}); delete it to start over") from None
        if ema is not None:
            ema.load_state_dict(ckpt["ema"], str(source))
        start, rows, seconds_before = int(ckpt["step"]), list(ckpt["log_rows"]), float(ckpt["seconds"])
        say(f"resuming from step {start} of {cfg.steps} ({source})")
    # last.pt may be rotated to previous.pt only when it is a good checkpoint: not when it is the
    # unreadable file this run skipped (the good previous.pt would be overwritten by it).
    last_is_good = found is not None and found[1] == ckpt_path

    use_ddp = world > 1 and not sharded
    model = DDP(raw, device_ids=[device.index] if device.type == "cuda" else None) if use_ddp else raw
    # FSDP reduce-scatters every micro-batch (sharded gradients accumulate: less memory than
    # holding whole gradients until the last one); the sum over ranks is the same.
    no_sync = model.no_sync if use_ddp else contextlib.nullcontext
    order = DataOrder(n, cfg.seed)
    half = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(cfg.precision)
    autocast = torch.autocast(device.type, dtype=half or torch.float32, enabled=half is not None)
    # float16 (VAR's recipe): losses scaled against underflow, gradients unscaled before clipping;
    # the scale is part of the checkpoint, so a resumed run scales as an uninterrupted one.
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "float16")
    if found is not None and ckpt.get("grad_scaler"):
        scaler.load_state_dict(ckpt["grad_scaler"])
    params = [p for g in opt.param_groups for p in g["params"]]

    def states() -> tuple[dict, dict]:
        """(model, optimizer) state dicts; whole ones gathered from the shards under FSDP (every
        rank takes part; only rank 0's are complete)."""
        if sharded:
            return fsdp.full_model_state(raw), fsdp.full_optimizer_state(raw, opt)
        return raw.state_dict(), opt.state_dict()

    def checkpoint(done: int, seconds: float) -> None:
        nonlocal last_is_good
        model_sd, opt_sd = states()
        if rank != 0:
            return
        save_checkpoint({"format": CKPT_FORMAT, "task": task.name, "model_config": model_config,
                         "train_config": train_config, "step": done, "model": model_sd,
                         "optimizer": opt_sd, "ema": ema.state_dict() if ema else None,
                         "grad_scaler": scaler.state_dict() if scaler.is_enabled() else None,
                         "log_rows": rows, "seconds": seconds}, ckpt_path, keep_previous=last_is_good)
        last_is_good = True
        _write_log(log_path, rows)

    bar = tqdm(total=cfg.steps, initial=start, desc=f"train {task.name}", unit="step",
               disable=not (progress and rank == 0), dynamic_ncols=True)
    t0 = time.perf_counter()
    win_loss = torch.zeros((), dtype=torch.float64, device=device)
    win_count, win_metrics = 0, {}
    last_loss = rows[-1]["loss"] if rows else float("nan")
    for step in range(start, cfg.steps):
        reseed(cfg.seed, step, rank, device)
        lr_f, wd_f = lr_factor(cfg, step), weight_decay_factor(cfg, step)
        for g in opt.param_groups:
            g["lr"] = g["initial_lr"] * lr_f
            g["weight_decay"] = g["initial_weight_decay"] * wd_f
        raw.train()
        if hasattr(task, "begin_step"):
            task.begin_step(step, step * B // n)
        loss_sum, count, metrics = accumulate(
            model, task, micro_batches(order, step, B, acc, world, rank), step,
            cfg.accumulation_reduce, autocast, no_sync,
            fetch=lambda mine: to_device(task.get_batch(mine), device), scale_loss=scaler.scale)
        win_loss += loss_sum.to(win_loss.device)
        win_count += count
        for k, v in metrics.items():
            win_metrics[k] = win_metrics.get(k, 0.0) + v
        scaler.unscale_(opt)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        scaler.step(opt)  # skips the step when float16 gradients overflowed, as VAR's AmpOptimizer
        scaler.update()
        opt.zero_grad(set_to_none=True)
        done = step + 1
        if ema is not None:
            ema.update(raw, done)
        bar.update(1)
        is_ckpt = done % cfg.checkpoint_every == 0 or done == cfg.steps
        if done % cfg.log_every == 0 or is_ckpt:
            keys = sorted(win_metrics)
            vec = torch.tensor([win_loss.item(), win_count] + [win_metrics[k] for k in keys],
                               dtype=torch.float64, device=device)
            if world > 1:
                dist.all_reduce(vec)
            vals = (vec / vec[1]).tolist()
            last_loss = vals[0]
            rows.append({"step": done, "loss": vals[0], "lr": cfg.lr * lr_f,
                         **{k: vals[2 + i] for i, k in enumerate(keys)}})
            win_loss.zero_()
            win_count, win_metrics = 0, {}
            elapsed = time.perf_counter() - t0
            bar.set_postfix(loss=f"{vals[0]:.4g}", lr=f"{cfg.lr * lr_f:.3g}",
                            ex_s=f"{(done - start) * B / max(elapsed, 1e-9):.0f}")
        if is_ckpt:
            checkpoint(done, seconds_before + time.perf_counter() - t0)
    bar.close()
    seconds = time.perf_counter() - t0
    # The model file keeps only what the computation determines: metrics protocols hash model files
    # and DVC versions them, so two identical runs (or a resumed and an uninterrupted one) must give
    # the same bytes. Wall-clock figures and the resume step go to the side file timing_path(out).
    stored = {"steps": cfg.steps, "final_loss": last_loss, "world_size": world}
    timing = {"seconds": seconds_before + seconds, "resumed_from_step": start,
              "examples_per_s": (cfg.steps - start) * B / seconds if cfg.steps > start and seconds > 0
              else None}
    final_sd = fsdp.full_model_state(raw) if sharded else None  # collective: before the rank test
    if rank == 0:
        result = {"model": ema.model_state(raw) if ema else _cpu(final_sd or raw.state_dict()),
                  "model_config": model_config, "task": task.name, "train_config": train_config,
                  "summary": stored}
        if hasattr(task, "recipe"):  # the semantics the task reproduces, recorded with the weights
            result["recipe"] = task.recipe(cfg, world)
        if ema is not None:
            result["model_raw"] = _cpu(raw.state_dict())
        save_atomic(result, out)
        write_json(timing_path(out), {**stored, **timing})
        _write_log(log_path, rows)
        shutil.rmtree(ckpt_path.parent, ignore_errors=True)
    if world > 1:
        dist.barrier()
    return {**stored, **timing}
