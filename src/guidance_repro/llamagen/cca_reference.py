"""The frozen reference's log-likelihoods of a CCA fine-tune, computed once and reused.

Every point of a β / λ sweep (and the DPO and unlearning baselines) fine-tunes the same pretrained
model on the same data order with the same seed, so each step draws the same batch, the same
rolled negatives, the same unconditional masks and the same label dropout. With dropout off the
reference p_φ is a deterministic function of (tokens, condition), so log p_φ(x | c) of every step is
the same number in every sweep point: one pass of the reference (``record``) replaces a forward
pass per step per sweep point (about a fifth of a toy CCA step). With dropout kept (the official
recipe) the reference draws its own masks and nothing can be shared: ``record`` refuses.

A consumer (``ReferenceCache``) checks before use that the pretrained model and the codes are the
recorded files (SHA-256), that the training settings that decide the batches match, and at every
micro-batch that the dataset indices and the conditions are exactly the recorded ones; any
difference is an error naming the file, never a silent fallback.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from guidance_repro.errors import ReproError

# TrainConfig fields that decide the batches and the random draws of each step.
ORDER_KEYS = ("seed", "batch_size", "accumulation", "precision")
# Task settings that decide the conditions or the reference's arithmetic.
TASK_KEYS = ("uncond_ratio", "class_dropout", "dropout", "pretrained_sha256", "codes_sha256")


def input_digests(inputs: dict) -> dict:
    from guidance_repro.metrics.features import file_sha256
    if "codes" not in inputs:
        raise ReproError("inputs.codes: reusing reference log-likelihoods needs the encoded codes file")
    return {"pretrained_sha256": file_sha256(inputs["pretrained"]), "codes_sha256": file_sha256(inputs["codes"])}


def record(task, cfg, progress: bool = True) -> dict:
    """Run the reference over the batches ``train(task, cfg)`` would draw; arrays for ``save``.

    ``task`` is a LlamaGenCCATask (its ``conditions`` and ``reference_logp``); the batches and the
    per-step reseeding come from the training loop's own helpers, so they are the loop's batches.
    """
    from tqdm import tqdm

    from guidance_repro.train.loop import DataOrder, micro_batches, reseed
    if task.dropout != "off":
        raise ReproError("params.dropout: reference log-likelihoods can only be shared with dropout "
                         "'off' (with dropout kept the reference draws its own masks every step)")
    if cfg.precision != "float32":
        raise ReproError(f"train.precision: reference log-likelihoods are recorded in float32, got {cfg.precision}")
    order = DataOrder(task.num_examples(), cfg.seed)
    steps, micro, indices, conds, logps = [], [], [], [], []
    for step in tqdm(range(cfg.steps), desc="reference log p", unit="step", disable=not progress):
        reseed(cfg.seed, step, 0)
        task.begin_step(step, step * cfg.batch_size // task.num_examples())
        for a, mine in enumerate(micro_batches(order, step, cfg.batch_size, cfg.accumulation, 1, 0)):
            batch = task.get_batch(mine)
            c2, _ = task.conditions(task.reference, batch["labels"])
            steps.append(step)
            micro.append(a)
            indices.append(np.asarray(mine, np.int64))
            conds.append(c2.numpy())
            logps.append(task.reference_logp(batch["codes"], c2).numpy())
    meta = {**{k: getattr(cfg, k) for k in ORDER_KEYS}, "steps": cfg.steps, **task.reference_settings()}
    return {"step": np.asarray(steps, np.int64), "micro": np.asarray(micro, np.int64),
            "indices": np.stack(indices), "conditions": np.stack(conds),
            "logp": np.stack(logps).astype(np.float32), "meta_json": np.asarray(json.dumps(meta))}


class ReferenceCache:
    """Recorded reference log-likelihoods, looked up by (step, micro-batch) and verified."""

    def __init__(self, path: str | Path, settings: dict):
        self.path = Path(path)
        try:
            with np.load(self.path) as z:
                arrays = {k: z[k] for k in ("step", "micro", "indices", "conditions", "logp", "meta_json")}
        except (OSError, KeyError, ValueError) as exc:
            raise ReproError(f"{self.path}: not a reference log-likelihood file ({exc})") from None
        self.meta = json.loads(str(arrays.pop("meta_json")))
        for key in TASK_KEYS:
            if self.meta.get(key) != settings.get(key):
                raise ReproError(f"{self.path}: recorded with {key} = {self.meta.get(key)!r}, this fine-tune "
                                 f"has {settings.get(key)!r}; rerun the reference job")
        self.rows = {(int(s), int(m)): i for i, (s, m) in enumerate(zip(arrays["step"], arrays["micro"]))}
        self.arrays = arrays
        self._at = (-1, 0)

    def check_train_config(self, cfg) -> None:
        import torch.distributed as dist
        if dist.is_initialized() and dist.get_world_size() > 1:
            raise ReproError(f"{self.path}: recorded for one process; run this fine-tune without "
                             "inputs.reference_logp under torchrun")
        for key in ORDER_KEYS:
            if self.meta.get(key) != getattr(cfg, key):
                raise ReproError(f"{self.path}: recorded with train.{key} = {self.meta.get(key)!r}, this "
                                 f"fine-tune has {getattr(cfg, key)!r}; rerun the reference job")
        if cfg.steps > self.meta["steps"]:
            raise ReproError(f"{self.path}: recorded for {self.meta['steps']} steps, this fine-tune runs "
                             f"{cfg.steps}; rerun the reference job")

    def lookup(self, step: int, indices, conditions: torch.Tensor) -> torch.Tensor:
        """The recorded log p_φ of this micro-batch (the next one of ``step``), after checking that
        its dataset indices and conditions are the recorded ones."""
        micro = self._at[1] + 1 if self._at[0] == step else 0
        self._at = (step, micro)
        row = self.rows.get((step, micro))
        if row is None:
            raise ReproError(f"{self.path}: no record of step {step} micro-batch {micro}; rerun the reference job")
        same = (np.array_equal(self.arrays["indices"][row], np.asarray(indices))
                and np.array_equal(self.arrays["conditions"][row], conditions.detach().cpu().numpy()))
        if not same:
            raise ReproError(f"{self.path}: step {step} micro-batch {micro} drew other images or conditions "
                             "than recorded (data order, seed or sampling settings changed); rerun the "
                             "reference job")
        return torch.from_numpy(self.arrays["logp"][row]).to(conditions.device)
