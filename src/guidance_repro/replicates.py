"""Replicate re-trainings of the toy tier's claim-critical models: their seeds and file names.

Replicate 0 is the configured run itself (its seeds and paths unchanged, so the single-seed sweeps
and figures are replicate 0); replicate r > 0 re-trains the same models with every run-time seed
of the chain (each trainer's ``train.seed``, the sampling seed) moved by ``r * stride``. The
stride is far larger than the seed shift K of the acceptance and regression-band runs
(tools/measure_regression_bands.py), so replicate r of run K never reuses a seed of another
replicate of run K' for small K, K'. Files of replicate r > 0 carry the suffix ``-r<r>``.
"""

from __future__ import annotations

from guidance_repro.errors import ReproError


def replicate_seed(seed: int, replicate: int, stride: int) -> int:
    """The seed that replicate ``replicate`` uses where the configured run uses ``seed``."""
    replicate, stride = int(replicate), int(stride)
    if replicate < 0 or stride < 1:
        raise ReproError(f"replicate {replicate} / stride {stride}: need replicate >= 0, stride >= 1")
    return int(seed) + replicate * stride


def suffix(replicate: int) -> str:
    """File-name suffix of a replicate: '' for replicate 0 (the configured run), else '-r<r>'."""
    return "" if int(replicate) == 0 else f"-r{int(replicate)}"


def parse_suffix(text: str) -> int:
    """The replicate of a suffix written by :func:`suffix` ('' -> 0)."""
    if text == "":
        return 0
    if not text.startswith("-r") or not text[2:].isdigit() or int(text[2:]) == 0:
        raise ReproError(f"{text!r}: not a replicate suffix ('' or -r<r> with r >= 1)")
    return int(text[2:])


def with_seed(train: dict, replicate: int, stride: int, default_seed: int = 0) -> dict:
    """A trainer's ``train`` section for a replicate: ``seed`` moved (absent -> ``default_seed``,
    the training loop's own default)."""
    return {**train, "seed": replicate_seed(train.get("seed", default_seed), replicate, stride)}
