"""Learning-rate schedules as a pure function of the step, so resuming needs no scheduler state.

``lr_factor(cfg, k)`` is the multiplier of ``cfg.lr`` used by optimizer step ``k`` (0-based).
Written by hand rather than with ``torch.optim.lr_scheduler``: the papers' shapes (VAR's lin0,
EDM2's inverse square root) are not in torch, and a pure function is trivially resumable.
"""

from __future__ import annotations

import math

from guidance_repro.train.config import TrainConfig


def _warmup(cfg: TrainConfig, k: int) -> float:
    return min(1.0, (k + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0


def _progress(cfg: TrainConfig, k: int) -> float:
    """Fraction of the post-warm-up steps done before step k: 0 at the first, 1 at the last."""
    span = cfg.steps - 1 - cfg.warmup_steps
    return min(1.0, max(0.0, (k - cfg.warmup_steps) / span)) if span > 0 else 1.0


def lin0_factor(cfg: TrainConfig, k: int) -> float:
    """VAR's lin0: linear warm-up from ``lin0_warmup_start`` over ``lin0_warmup_frac`` of the
    steps, hold at 1 for ``lin0_hold_frac`` of the rest, then linear decay to ``final_lr_factor``
    at the last step."""
    w = int(round(cfg.lin0_warmup_frac * cfg.steps))
    if k < w:
        return cfg.lin0_warmup_start + (1 - cfg.lin0_warmup_start) * k / w
    span = cfg.steps - 1 - w
    p = (k - w) / span if span > 0 else 1.0
    if p < cfg.lin0_hold_frac:
        return 1.0
    rest = (1 - p) / (1 - cfg.lin0_hold_frac) if cfg.lin0_hold_frac < 1 else 0.0
    return cfg.final_lr_factor + (1 - cfg.final_lr_factor) * rest


def lr_factor(cfg: TrainConfig, k: int) -> float:
    f = cfg.final_lr_factor
    if cfg.schedule == "constant":
        return _warmup(cfg, k)
    if cfg.schedule == "cosine":
        return _warmup(cfg, k) * (f + (1 - f) * 0.5 * (1 + math.cos(math.pi * _progress(cfg, k))))
    if cfg.schedule == "linear":
        return _warmup(cfg, k) * (1 - (1 - f) * _progress(cfg, k))
    if cfg.schedule == "lin0":
        return lin0_factor(cfg, k)
    if cfg.schedule == "rsqrt":  # EDM2: steps done so far, relative to the reference length
        return _warmup(cfg, k) / math.sqrt(max(k / cfg.rsqrt_ref_steps, 1.0))
    raise ValueError(cfg.schedule)  # unreachable: TrainConfig.validate checks the name


def weight_decay_factor(cfg: TrainConfig, k: int) -> float:
    """Multiplier of every group's weight decay at step ``k``: 1 without ``weight_decay_end``;
    else VAR's lr_wd_annealing: wd(k) = end + (wd − end)·(1 + cos(π·k/(steps − 1)))/2, as a
    fraction of wd (groups without decay stay at 0, as VAR's wd_sc = 0 groups)."""
    if cfg.weight_decay_end < 0:
        return 1.0
    done = k / (cfg.steps - 1) if cfg.steps > 1 else 1.0
    wd = cfg.weight_decay_end + (cfg.weight_decay - cfg.weight_decay_end) * (0.5 + 0.5 * math.cos(math.pi * done))
    return wd / cfg.weight_decay
