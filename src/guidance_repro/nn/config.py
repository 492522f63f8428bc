"""Building a model config dataclass from a config dict, with errors naming the key."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

from guidance_repro.errors import ReproError

T = TypeVar("T")


def build_config(cls: type[T], d: dict[str, Any], key: str, what: str,
                 tuple_keys: tuple[str, ...] = (), sizes: dict[str, dict] | None = None) -> T:
    """``cls(**d)`` after refusing unknown keys (``<key>.<name>: unknown <what> key``), turning
    list values of ``tuple_keys`` into int tuples, and expanding a named ``size`` from ``sizes``
    (overridable field by field)."""
    d = dict(d)
    if sizes is not None and "size" in d:
        name = d.pop("size")
        if name not in sizes:
            raise ReproError(f"{key}.size: unknown size {name!r} (known: {', '.join(sizes)})")
        d = {**sizes[name], **d}
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ReproError(f"{key}.{unknown[0]}: unknown {what} key (known: {', '.join(sorted(known))})")
    for k in tuple_keys:
        if k in d:
            d[k] = tuple(int(v) for v in d[k])
    return cls(**d)
