"""The training configuration shared by every trainer: one dataclass, validated from a config dict.

Every knob the papers name (optimizer, betas, schedule shape, EMA length, clipping, accumulation)
is a field here, so a trainer's config section is ``{"train": {...}, <task params>}``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from guidance_repro.errors import ReproError

OPTIMIZERS = ("adamw", "adam")
SCHEDULES = ("constant", "cosine", "linear", "lin0", "rsqrt")
EMAS = ("none", "exp", "power")
PRECISIONS = ("float32", "bfloat16", "float16")  # float16: autocast + GradScaler (VAR's fp16)
DEVICES = ("auto", "cpu", "cuda")
REDUCES = ("mean", "sum")
PARALLELS = ("ddp", "fsdp")


@dataclass
class TrainConfig:
    steps: int = 1000                 # optimizer steps
    batch_size: int = 64              # GLOBAL batch: all processes x all accumulation micro-steps
    lr: float = 1e-3
    optimizer: str = "adamw"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    # < 0: constant weight decay; else VAR's cosine annealing from weight_decay to this value over
    # the steps (its --twde; VAR-d30's CCA run: 0.05 -> 0.08).
    weight_decay_end: float = -1.0
    schedule: str = "constant"
    warmup_steps: int = 0             # linear warm-up from 0 for constant/cosine/linear/rsqrt
    final_lr_factor: float = 0.0      # end of cosine/linear/lin0, as a fraction of lr
    lin0_warmup_frac: float = 0.02    # VAR lin0: warm-up over this fraction of steps (ep/50)...
    lin0_warmup_start: float = 0.005  # ...from this factor of lr...
    lin0_hold_frac: float = 0.05      # ...then hold for this fraction of the remaining steps
    rsqrt_ref_steps: int = 1000       # EDM2: lr / sqrt(max(step / ref_steps, 1))
    grad_clip: float = 0.0            # max global grad norm; 0 = off
    accumulation: int = 1             # micro-steps per optimizer step
    # How the micro-step losses combine: "mean" (each / accumulation: the gradient of the mean
    # loss over the global batch) or "sum" (not divided: `accumulation` x that gradient, before
    # clipping, as the official LlamaGen CCA scripts do).
    accumulation_reduce: str = "mean"
    parallel: str = "ddp"             # under torchrun: "ddp" (replicas) or "fsdp" (sharded, FSDP2)
    ema: str = "none"
    ema_decay: float = 0.999          # ema = exp
    ema_std: float = 0.05             # ema = power: sigma_rel of the power-function profile
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0
    precision: str = "float32"
    device: str = "auto"

    @classmethod
    def from_dict(cls, d: dict | None, key: str = "train") -> "TrainConfig":
        """Build and validate; unknown keys and bad values raise ReproError naming ``key.field``."""
        d = {} if d is None else d
        if not isinstance(d, dict):
            raise ReproError(f"{key}: must be a mapping, got {type(d).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ReproError(f"{key}.{unknown[0]}: unknown key (known: {', '.join(fields)})")
        kwargs = {}
        for name, value in d.items():
            kwargs[name] = _coerce(f"{key}.{name}", fields[name].default, value)
        cfg = cls(**kwargs)
        cfg.validate(key)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    def validate(self, key: str = "train") -> None:
        def bad(name: str, what: str) -> ReproError:
            return ReproError(f"{key}.{name}: {what}, got {getattr(self, name)!r}")

        for name in ("steps", "batch_size", "accumulation", "checkpoint_every", "log_every",
                     "rsqrt_ref_steps"):
            if getattr(self, name) < 1:
                raise bad(name, "must be >= 1")
        if self.warmup_steps < 0:
            raise bad("warmup_steps", "must be >= 0")
        if self.seed < 0:
            raise bad("seed", "must be >= 0")
        if not self.lr > 0:
            raise bad("lr", "must be > 0")
        if not self.eps > 0:
            raise bad("eps", "must be > 0")
        for name in ("weight_decay", "grad_clip"):
            if not getattr(self, name) >= 0:
                raise bad(name, "must be >= 0")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise bad("betas", "must be two numbers in [0, 1)")
        for name in ("final_lr_factor", "lin0_warmup_frac", "lin0_hold_frac"):
            if not 0 <= getattr(self, name) <= 1:
                raise bad(name, "must be in [0, 1]")
        if not 0 < self.lin0_warmup_start <= 1:
            raise bad("lin0_warmup_start", "must be in (0, 1]")
        if not 0 <= self.ema_decay < 1:
            raise bad("ema_decay", "must be in [0, 1)")
        # sigma_rel of the power profile is at most sqrt(1/12) ~ 0.2887 (gamma -> 0, a flat average).
        if not 0 < self.ema_std < math.sqrt(1 / 12):
            raise bad("ema_std", "must be in (0, 0.2887) (power-EMA sigma_rel)")
        for name, choices in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("ema", EMAS),
                              ("precision", PRECISIONS), ("device", DEVICES),
                              ("accumulation_reduce", REDUCES), ("parallel", PARALLELS)):
            if getattr(self, name) not in choices:
                raise bad(name, f"must be one of {', '.join(choices)}")
        if self.schedule == "lin0" and self.warmup_steps:
            raise bad("warmup_steps", "must be 0 with schedule lin0 (it warms up by lin0_warmup_frac)")
        if self.weight_decay_end >= 0 and not self.weight_decay > 0:
            raise bad("weight_decay_end", "needs weight_decay > 0 (it anneals each group's decay by a factor)")
        if self.parallel == "fsdp" and self.precision == "float16":
            raise bad("precision", "float16 (GradScaler) is not supported with parallel fsdp; use bfloat16")
        if self.parallel == "fsdp" and self.ema != "none":
            raise bad("ema", "must be 'none' with parallel fsdp (no EMA in the sharded path)")
        if self.batch_size % self.accumulation:
            raise ReproError(f"{key}.batch_size: {self.batch_size} is not divisible by "
                             f"{key}.accumulation = {self.accumulation}")


def accumulation_for(global_batch: int, micro_batch: int, world: int) -> int:
    """Accumulation steps that make ``global_batch`` from per-process micro-batches of
    ``micro_batch`` on ``world`` processes (the official CCA scripts fix the micro-batch, since
    negatives are rolled within it)."""
    if micro_batch < 1 or global_batch % (micro_batch * world):
        raise ReproError(f"--global-batch: {global_batch} is not a multiple of --micro-batch x "
                         f"processes = {micro_batch} x {world}")
    return global_batch // (micro_batch * world)


def _coerce(key: str, default: Any, value: Any) -> Any:
    """Check ``value`` against the type of the field's default (ints accepted for floats)."""
    if isinstance(default, bool) or isinstance(value, bool):
        raise ReproError(f"{key}: booleans are not accepted, got {value!r}")
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise ReproError(f"{key}: must be a list of numbers, got {value!r}")
        return tuple(float(v) for v in value)
    if isinstance(default, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise ReproError(f"{key}: must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ReproError(f"{key}: must be a finite number, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ReproError(f"{key}: must be a string, got {value!r}")
    return value
