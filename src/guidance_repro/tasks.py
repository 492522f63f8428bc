"""Registry of training tasks: name -> "module:factory", imported only when asked for.

A factory has the signature ``factory(params: dict, inputs: dict[str, Path]) -> TrainTask``.
A name containing ':' is taken as "module:factory" directly (used by tests and for experiments
with a task that is not registered here).

The table sits at the top level, beside cli.py, because it names the families' modules, which no
shared layer (train/ included) may do; train/commands.py's ``train`` command looks names up here.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from guidance_repro.errors import ReproError
from guidance_repro.train.loop import TrainTask

# Each trainer adds one line here: task name -> "guidance_repro.<package>.<module>:<factory>".
TASKS: dict[str, str] = {}
TASKS["fmnist-classifier"] = "guidance_repro.metrics.toy_evaluators:make_classifier_task"
TASKS["composition-evaluator"] = "guidance_repro.metrics.toy_composition:make_composition_task"
TASKS["judge-clip"] = "guidance_repro.metrics.toy_clip:make_judge_task"
TASKS["vq-tokenizer"] = "guidance_repro.llamagen.tokenizer:make_vq_task"
TASKS["llamagen-pretrain"] = "guidance_repro.llamagen.model:make_pretrain_task"
TASKS["llamagen-cca"] = "guidance_repro.llamagen.cca_task:make_llamagen_cca_task"
TASKS["msvq-tokenizer"] = "guidance_repro.var.msvq:make_msvq_task"
TASKS["var-pretrain"] = "guidance_repro.var.tasks:make_pretrain_task"
TASKS["var-cca"] = "guidance_repro.var.tasks:make_cca_task"
TASKS["var-cca-official"] = "guidance_repro.var.cca_official:make_task"
TASKS["star-text-encoder"] = "guidance_repro.star.tasks:make_text_encoder_task"
TASKS["star-train"] = "guidance_repro.star.tasks:make_train_task"
TASKS["star-cca"] = "guidance_repro.star.tasks:make_cca_task"
TASKS["toy2d-density"] = "guidance_repro.toy2d.tasks:make_task"
TASKS["edm-fmnist"] = "guidance_repro.edm.task:make_task"


def resolve(name: str):
    """The factory callable for a registered name or a "module:factory" string."""
    target = name if ":" in name else TASKS.get(name)
    if target is None:
        known = ", ".join(sorted(TASKS)) or "none registered"
        raise ReproError(f"--task: unknown task {name!r} (known: {known}; or give module:factory)")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ReproError(f"--task: cannot import {module_name!r} for task {name!r} ({exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ReproError(f"--task: {module_name!r} has no factory {attr!r} for task {name!r}")
    return factory


def get_task(name: str, params: dict, inputs: dict[str, Path]) -> TrainTask:
    task = resolve(name)(params, inputs)
    missing = [m for m in ("build_model", "model_config", "num_examples", "get_batch", "loss")
               if not callable(getattr(task, m, None))]
    if missing or not isinstance(getattr(task, "name", None), str):
        raise ReproError(f"--task {name}: the factory returned an object that is not a TrainTask "
                         f"(missing {', '.join(missing) or 'name'})")
    return task
