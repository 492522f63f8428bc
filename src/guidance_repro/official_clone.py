"""Import modules from a user's local clone of an official repository, at run time.

The side-by-side benchmarks (benchmarks/ar_vs_official.py, benchmarks/cca_finetune_step.py) time
the official code beside ours. Nothing official is vendored in this repository and none of it may
be copied in, so the user names a clone (``--official-root``) and its modules are imported from
there, by their own package paths (the official files import each other that way, e.g. LlamaGen's
``autoregressive/models/gpt.py`` imports ``utils.drop_path``).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

from guidance_repro.errors import ReproError


def import_from_clone(root: str | Path, modules: list[str], option: str, repo: str) -> list[ModuleType]:
    """The dotted ``modules`` of the clone at ``root`` (e.g. ``autoregressive.models.gpt``).

    ``option`` and ``repo`` name the command-line option and the repository in the errors. The
    clone's root is on ``sys.path`` only while importing, so its top-level names (``utils``) do not
    shadow anything afterwards; a module of that name imported before is an error, not a mix-up.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ReproError(f"{option}: {root} is not a directory (a local clone of {repo})")
    for name in modules:
        path = root.joinpath(*name.split(".")).with_suffix(".py")
        if not path.is_file():
            raise ReproError(f"{option}: {path} not found (is {root} a clone of {repo}?)")
        top = sys.modules.get(name.split(".")[0])
        origin = getattr(top, "__file__", None) or next(iter(getattr(top, "__path__", [])), None)
        if top is not None and origin is not None and root.resolve() not in Path(origin).resolve().parents:
            raise ReproError(f"{option}: a module {name.split('.')[0]!r} is already imported from "
                             f"{origin}, not from {root}")
    sys.path.insert(0, str(root))
    try:
        return [importlib.import_module(name) for name in modules]
    except Exception as exc:  # the clone's own import errors (a missing dependency, a wrong version)
        raise ReproError(f"{option}: importing from {root} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(str(root))
