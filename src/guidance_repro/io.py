"""Atomic writes, so that a failed or killed step never leaves an output that looks complete.

Every artifact is written under a temporary name in the destination folder and renamed into place
only when it is whole (``os.replace`` is atomic on POSIX file systems).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from guidance_repro.errors import ReproError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=suffix if suffix is not None else "".join(path.suffixes) + ".tmp",
        dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def paired_outputs(inputs: list, outputs: list, what: str) -> list[tuple[Path, Path]]:
    """(input, output) pairs of a command that writes one ``what`` file per ``--samples`` file,
    checked before anything is computed: as many outputs as inputs, no output named twice."""
    if len(inputs) != len(outputs):
        raise ReproError(f"--out: {len(outputs)} output files for {len(inputs)} --samples files "
                         f"(one {what} file per samples file, in the same order)")
    if len(set(map(str, outputs))) != len(outputs):
        raise ReproError("--out: an output file is named twice")
    return [(Path(i), Path(o)) for i, o in zip(inputs, outputs)]


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path, suffix=".json.tmp") as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def json_object_arg(text: str, flag: str) -> dict:
    """A command-line flag's JSON object ({} when empty), or an error naming the flag."""
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise ReproError(f"{flag}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ReproError(f"{flag}: must be a JSON object, got {type(value).__name__}")
    return value


# Wall-clock figures (the sampling cost the matrix reports, training time) live in a side file
# beside the artifact they describe, never inside it: metrics and model files are hashed and
# versioned by DVC, so two identical computations must give byte-identical artifacts.
TIMING_KEYS = ("seconds", "seconds_per_image")


def timing_path(path: str | os.PathLike) -> Path:
    """The side file ``<artifact>.timing.json`` holding an artifact's wall-clock figures."""
    path = Path(path)
    return path.parent / (path.name + ".timing.json")


def split_timing(meta: dict) -> tuple[dict, dict]:
    """``meta`` without its wall-clock keys (TIMING_KEYS), and those keys."""
    return ({k: v for k, v in meta.items() if k not in TIMING_KEYS},
            {k: v for k, v in meta.items() if k in TIMING_KEYS})


def read_timing(path: str | os.PathLike) -> dict:
    """The timing side file of ``path``; {} where there is none (an artifact made elsewhere)."""
    side = timing_path(path)
    if not side.is_file():
        return {}
    try:
        return json.loads(side.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReproError(f"{side}: not a readable timing JSON ({exc})") from None


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Save arrays to ``path`` (.npz, uncompressed), atomically."""
    # np.savez appends ".npz" to names that lack it, so the temporary name must end in .npz.
    with atomic_path(path, suffix=".tmp.npz") as tmp:
        np.savez(tmp, **arrays)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
