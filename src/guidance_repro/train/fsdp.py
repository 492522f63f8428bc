"""Fully sharded data parallel (torch FSDP2, ``fully_shard``) for the training loop.

ZeRO-style: parameters, gradients and optimizer state are sharded over the processes, each unit
gathered only for its own forward/backward. Used for the models that do not fit one device twice
(the trained policy and a frozen reference of LlamaGen-XXL/3B, as the official ``_fsdp`` script).
It runs on CPU with gloo as on GPU with NCCL, so the path is tested on CPU.

A task names its shard units with ``fsdp_units(model) -> list[nn.Module]`` (e.g. the transformer
blocks); the root module is sharded last and holds the rest. A frozen extra (a CCA reference) is
sharded by the task through ``shard_frozen(shard)`` with the same function. Checkpoints and the
model file hold FULL state dicts (gathered to rank 0, on the CPU): the same files as DDP writes.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from guidance_repro.errors import ReproError


def _api():
    try:
        from torch.distributed.fsdp import fully_shard
        from torch.distributed.checkpoint import state_dict as dcp_sd
    except ImportError as exc:  # torch < 2.4
        raise ReproError(f"train.parallel: 'fsdp' needs torch's fully_shard (FSDP2): {exc}") from None
    return fully_shard, dcp_sd


def shard_module(module: nn.Module, units: list[nn.Module]) -> nn.Module:
    """Shard each unit, then the root (in place; the module keeps its class's methods)."""
    fully_shard, _ = _api()
    for unit in units:
        fully_shard(unit)
    fully_shard(module)
    return module


def shard(task: Any, model: nn.Module) -> Callable[[nn.Module], nn.Module]:
    """Shard ``model`` by the task's units and return the function that shards like modules."""
    def by_units(m: nn.Module) -> nn.Module:
        units = list(task.fsdp_units(m)) if hasattr(task, "fsdp_units") else []
        return shard_module(m, units)

    by_units(model)
    if hasattr(task, "shard_frozen"):
        task.shard_frozen(by_units)
    return by_units


def _options(full: bool):
    _, dcp_sd = _api()
    return dcp_sd.StateDictOptions(full_state_dict=True, cpu_offload=True) if full else None


def full_model_state(model: nn.Module) -> dict:
    """The whole state dict on rank 0's CPU (a collective: every rank must call it)."""
    _, dcp_sd = _api()
    return dcp_sd.get_model_state_dict(model, options=_options(True))


def full_optimizer_state(model: nn.Module, opt: torch.optim.Optimizer) -> dict:
    """The whole optimizer state (keyed by parameter names) on rank 0's CPU (collective)."""
    _, dcp_sd = _api()
    return dcp_sd.get_optimizer_state_dict(model, opt, options=_options(True))


def load_full_state(model: nn.Module, opt: torch.optim.Optimizer, model_sd: dict, opt_sd: dict) -> None:
    """Scatter full (every rank has read the same checkpoint file) states into the shards."""
    _, dcp_sd = _api()
    opts = dcp_sd.StateDictOptions(full_state_dict=True)
    dcp_sd.set_model_state_dict(model, model_sd, options=opts)
    dcp_sd.set_optimizer_state_dict(model, opt, opt_sd, options=opts)
