"""The shard and chunk bookkeeping of the sharded, resumable jobs: data/shards.py (encode a
dataset) and sampling/shards.py (draw an evaluation point).

A job of ``n`` items is cut into ``num_shards`` contiguous near-equal index ranges (one Snakemake
job or torchrun rank each), each shard into chunks of ``chunk_size`` items, and every chunk is one
``.npz`` written atomically (io.save_npz), so a killed shard keeps its finished chunks and a rerun
computes only the missing ones. When all of a shard's chunks are there, the job writes the shard's
done record; a merge reads finished shards only, checks that their ranges cover ``[0, n)`` exactly
once, and reads their chunks in index order.

What a chunk holds, how it is named, what is checked when it is found on disk and what the done
record says stay each job's own (their file formats differ and are kept).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from guidance_repro.errors import ReproError
from guidance_repro.io import save_npz


def split_range(n: int, part: int, parts: int) -> tuple[int, int]:
    """[start, stop) of part ``part`` of ``parts`` near-equal contiguous ranges of ``[0, n)``."""
    return part * n // parts, (part + 1) * n // parts


def chunk_bounds(lo: int, hi: int, chunk_size: int) -> list[tuple[int, int]]:
    """The chunks [start, stop) of the range [lo, hi), ``chunk_size`` items each (the last fewer)."""
    if chunk_size < 1:
        raise ReproError(f"--chunk-size: must be >= 1, got {chunk_size}")
    return [(s, min(s + chunk_size, hi)) for s in range(lo, hi, chunk_size)]


def read_chunk(path: Path, keys: tuple[str, ...] | None = None, redo: str = "recompute") -> dict[str, np.ndarray]:
    """The arrays of chunk ``path`` (``keys`` only, if given); an unreadable or incomplete file is
    a ReproError naming it (``redo``: what deleting it makes the rerun do)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in (z.files if keys is None else keys)}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise ReproError(f"{path}: unreadable chunk ({type(exc).__name__}: {exc}); "
                         f"delete it to {redo}") from None


def fill_chunks(chunks: list[tuple[int, int, Path]], make: Callable[[int, int], dict[str, np.ndarray]],
                on_disk: Callable[[int, int, Path], None] = lambda start, stop, path: None,
                max_new: int | None = None, log: Callable[[str], None] = print, name: str = "shard") -> bool:
    """Write every missing chunk ``(start, stop, path)`` with ``make(start, stop)``'s arrays.

    A chunk already on disk is handed to ``on_disk`` (to check it) and kept. ``max_new`` stops after
    that many new chunks (a time-limited job; the tests' simulated kill). Returns whether every
    chunk is now on disk. A SIGKILL skips io.atomic_path's clean-up and leaves a temporary
    ``.<chunk name>.*`` beside the chunk; whoever runs a shard owns its chunks, so these are dead
    and are removed (only this shard's: shards may share a folder).
    """
    made = 0
    for i, (start, stop, path) in enumerate(chunks):
        for stale in path.parent.glob(f".{path.name}.*"):
            stale.unlink()
        if path.is_file():
            on_disk(start, stop, path)
            log(f"{name}: chunk {i + 1}/{len(chunks)} [{start}, {stop}) on disk, kept")
            continue
        if max_new is not None and made >= max_new:
            done = sum(p.is_file() for _, _, p in chunks)
            log(f"{name}: stopped after {made} new chunk(s): {done} of {len(chunks)} done")
            return False
        save_npz(path, **make(start, stop))
        made += 1
        log(f"{name}: chunk {i + 1}/{len(chunks)} [{start}, {stop}) -> {path}")
    return True


def check_coverage(ranges: list[tuple[int, int, str]], n: int) -> list[tuple[int, int, str]]:
    """The shard ranges ``(lo, hi, source)`` in order, checked to cover [0, n) exactly once."""
    if not ranges:
        raise ReproError("--shards: no shards given")
    ordered = sorted(ranges, key=lambda r: r[0])
    cursor = 0
    for lo, hi, source in ordered:
        if lo != cursor:
            raise ReproError(f"{source}: starts at {lo}, expected {cursor} (a shard is missing or overlaps)")
        cursor = hi
    if cursor != n:
        raise ReproError(f"--shards: the shards cover [0, {cursor}), the job has {n} items")
    return ordered
