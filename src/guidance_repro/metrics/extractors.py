"""The feature extractors of the metrics, chosen by name from config (``evaluation.evaluator``).

A kind is built by a factory called as ``factory(checkpoint_path: Path, device: torch.device,
**options)`` (options only where the config gives some) that returns an extractor (the interface:
``features.FeatureExtractor``). The built-in kinds are named here with the module that builds them
and imported only when asked for, so that this registry depends on none of them (and the toy
evaluators, which use ``features``' helpers, need not import it): ``inception`` (clean-fid's
TorchScript Inception-v3, option ``mode`` = ``clean`` | ``legacy_tensorflow``) and ``dinov2``
(FD_DINOv2 as in edm2) in features.py, ``toy-classifier`` and ``toy-composition`` in the toy
evaluators' modules. ``register_extractor(name, factory)`` adds (or replaces) a kind at run time.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Callable

import torch

from guidance_repro.errors import ReproError
from guidance_repro.metrics.features import FeatureExtractor

Factory = Callable[..., FeatureExtractor]
BUILT_IN: dict[str, str] = {  # name -> "module:factory"
    "inception": "guidance_repro.metrics.features:inception_extractor",
    "dinov2": "guidance_repro.metrics.features:dinov2_extractor",
    "toy-classifier": "guidance_repro.metrics.toy_evaluators:classifier_extractor",
    "toy-composition": "guidance_repro.metrics.toy_composition:composition_extractor",
}
_REGISTERED: dict[str, Factory] = {}


def register_extractor(name: str, factory: Factory) -> None:
    """Make ``factory(checkpoint_path, device, **options) -> extractor`` available as ``name``."""
    _REGISTERED[name] = factory


def available_extractors() -> list[str]:
    return sorted(set(BUILT_IN) | set(_REGISTERED))


def _factory(kind: str) -> Factory:
    if kind in _REGISTERED:
        return _REGISTERED[kind]
    if kind not in BUILT_IN:
        raise ReproError(f"evaluation.evaluator: unknown evaluator {kind!r} "
                         f"(registered: {', '.join(available_extractors())})")
    module, _, attr = BUILT_IN[kind].partition(":")
    return getattr(importlib.import_module(module), attr)


def get_extractor(kind: str, checkpoint: str | os.PathLike | None, device: str | torch.device = "cpu",
                  options: dict | None = None) -> FeatureExtractor:
    """Build the extractor registered as ``kind`` from ``checkpoint``."""
    factory = _factory(kind)
    path = Path(checkpoint) if checkpoint else None
    try:
        return factory(path, torch.device(device), **(options or {}))
    except TypeError as exc:
        if options and "unexpected keyword" in str(exc):
            raise ReproError(f"evaluation.{kind}: unknown evaluator option(s) {sorted(options)}") from exc
        raise
