"""Reading and writing training checkpoints and model files: plain tensors and Python data only,
loaded with ``torch.load(weights_only=True)`` so no file can run code when it is opened."""

from __future__ import annotations

import argparse
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from guidance_repro.errors import ReproError
from guidance_repro.io import atomic_path


# What torch.load raises on a file that is not a whole torch file. A truncated zip archive ends in
# OSError (errno 22, from torch._C.PyTorchFileReader) for most cut lengths; KeyError and
# IndexError come from damaged bytes inside the archive's pickle (both seen in corruption tests).
UNREADABLE = (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError, OSError,
              KeyError, IndexError)


# The one non-tensor class allowed in a file: LlamaGen's train_c2i.py saves its argparse.Namespace
# under 'args'. Allow-listed for weights_only loading only; every other class is still refused.
SAFE_CLASSES = (argparse.Namespace,)


def safe_loading():
    """Context in which ``torch.load(weights_only=True)`` also accepts :data:`SAFE_CLASSES`."""
    return torch.serialization.safe_globals(list(SAFE_CLASSES))


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` under a temporary name, then an atomic rename.

    Saved through a file object: given a path, torch names the archive's root folder after the
    (random) temporary file name, so identical objects would give different bytes."""
    with atomic_path(path, suffix=".pt.tmp") as tmp:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)


PREVIOUS = "previous.pt"  # the checkpoint before last.pt, kept in the same folder


def save_checkpoint(obj: Any, path: Path, keep_previous: bool) -> None:
    """Write the checkpoint ``path`` atomically. With ``keep_previous`` the file it replaces is
    first renamed to ``previous.pt`` beside it, so a damaged ``path`` never leaves the run without
    a good checkpoint. The new file is written whole before either rename, which keeps the
    moment with no ``path`` on disk to the two renames."""
    with atomic_path(path, suffix=".pt.tmp") as tmp:
        with open(tmp, "wb") as fh:  # as save_atomic: the same bytes for the same object
            torch.save(obj, fh)
        if keep_previous and path.exists():
            os.replace(path, path.with_name(PREVIOUS))


def load_resume_checkpoint(path: Path, say: Callable[[str], None]) -> tuple[dict, Path] | None:
    """(contents, file) of the newest readable checkpoint: ``path``, else ``previous.pt`` beside
    it; None when neither can be read. Each unreadable file is reported through ``say``: a
    truncated checkpoint (a full disk, a copy cut short) costs the steps since the one before it,
    never the job."""
    existing = [p for p in (path, path.with_name(PREVIOUS)) if p.is_file()]
    for i, candidate in enumerate(existing):
        try:
            return load_model_file(candidate), candidate
        except ReproError as exc:
            then = f"trying {existing[i + 1]}" if i + 1 < len(existing) else "starting from step 0"
            say(f"cannot resume from {exc}; {then}")
    return None


def load_model_file(path: str | os.PathLike) -> dict:
    """Load a ``.pt`` written by the training loop (or any plain-data torch file) on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise ReproError(f"{path}: model file does not exist")
    try:
        with safe_loading():
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except UNREADABLE as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReproError(f"{path}: not a readable plain-data torch file ({first}); truncated, "
                         f"damaged or not written by torch.save") from None
    if not isinstance(obj, dict):
        raise ReproError(f"{path}: expected a dict at the top level, got {type(obj).__name__}")
    return obj


def check_layout(expected: dict[str, tuple], state_dict: dict, source,
                 expects: str = "expected") -> None:
    """Exact key set and tensor shapes; the first mismatch raises a ReproError naming the key."""
    missing = [k for k in expected if k not in state_dict]
    if missing:
        raise ReproError(f"{source}: missing key {missing[0]!r}"
                         + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    unexpected = [k for k in state_dict if k not in expected]
    if unexpected:
        raise ReproError(f"{source}: unexpected key {unexpected[0]!r}"
                         + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
    for k, shape in expected.items():
        got = state_dict[k]
        if not isinstance(got, torch.Tensor):
            raise ReproError(f"{source}: key {k!r} is a {type(got).__name__}, not a tensor")
        if tuple(got.shape) != tuple(shape):
            raise ReproError(f"{source}: key {k!r} has shape {tuple(got.shape)}, "
                             f"{expects} {tuple(shape)}")


def load_state_strict(model: nn.Module, state_dict: dict, source: str | os.PathLike) -> None:
    """``model.load_state_dict(strict=True)`` with one-line errors naming the key and the file."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_layout(expected, state_dict, source, expects="the model expects")
    model.load_state_dict(state_dict, strict=True)


def check_resume(ckpt: dict, path: Path, task_name: str, model_config: dict,
                 train_config: dict) -> None:
    """Refuse to resume from a checkpoint written by a different run (config, task or model)."""
    # These keys change neither the data order nor the arithmetic, so they may differ on resume.
    free = {"checkpoint_every", "log_every", "device"}
    if ckpt.get("task") != task_name:
        raise ReproError(f"{path}: checkpoint is for task {ckpt.get('task')!r}, not {task_name!r}; "
                         f"delete it to start over")
    old = ckpt.get("train_config", {})
    for k in sorted(set(old) | set(train_config)):
        if k not in free and old.get(k) != train_config.get(k):
            raise ReproError(f"{path}: checkpoint was written with train.{k}={old.get(k)!r}, the "
                             f"config says {train_config.get(k)!r}; delete it to start over")
    if ckpt.get("model_config") != model_config:
        old_m, new_m = ckpt.get("model_config") or {}, model_config
        diff = sorted(k for k in set(old_m) | set(new_m) if old_m.get(k) != new_m.get(k))
        raise ReproError(f"{path}: checkpoint was written for a different model "
                         f"(model config key {diff[0] if diff else '?'!r}); delete it to start over")


# Wrapper prefixes an official file may put on every key: DDP/DeepSpeed ('module.') and
# torch.compile ('_orig_mod.'). Shared by the families' official loaders.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def strip_prefixes(sd: dict) -> dict:
    """Keys without the wrapper prefixes (repeatedly: a compiled DDP model has both)."""
    out = {}
    for k, v in sd.items():
        name = k
        while name.startswith(WRAPPER_PREFIXES):
            name = name[len(next(p for p in WRAPPER_PREFIXES if name.startswith(p))):]
        if name in out:
            raise ReproError(f"key {name!r} occurs twice once the prefixes are stripped ({k!r})")
        out[name] = v
    return out
