"""Sharded, resumable array extraction: the bookkeeping shared by every "encode a dataset" job.

A dataset of ``n`` items is split into ``num_shards`` contiguous index ranges (shard ``i`` holds
``[i*n//N, (i+1)*n//N)``), one Snakemake job or one torchrun rank each. A shard writes its items
in chunks, ``<shard_dir>/chunk-<start>.npz``, each written atomically (io.save_npz: a killed job
never leaves a chunk that looks whole), so a rerun skips the finished chunks and loses at most the
one it was writing. When every chunk is there the shard writes ``done.json`` (its range, chunk
list and the dataset listing's fingerprint); :func:`merge` refuses shards that are not done or that
saw a different listing, checks that the shards cover ``[0, n)`` exactly, and concatenates.

A chunk holds ``index`` (int64, the dataset indices it encoded), the arrays the job produced for
them (same first dimension) and ``skipped_index`` / ``skipped_path`` / ``skipped_reason`` for the
items it was allowed to skip (unreadable inputs); nothing else.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from guidance_repro.errors import ReproError
from guidance_repro.io import read_json, save_npz, write_json

DONE = "done.json"


def shard_range(n: int, shard: int, num_shards: int) -> tuple[int, int]:
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ReproError(f"--shard: {shard} is not in [0, --num-shards={num_shards})")
    return shard * n // num_shards, (shard + 1) * n // num_shards


def shard_dir(root: str | Path, shard: int, num_shards: int) -> Path:
    return Path(root) / f"shard-{shard:05d}-of-{num_shards:05d}"


def listing_fingerprint(names: Iterable[str], labels: Iterable[int]) -> str:
    """sha256 of the (name, label) listing, so shards made from different folders never merge."""
    h = hashlib.sha256()
    for name, label in zip(names, labels):
        h.update(f"{name}\t{int(label)}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Chunk:
    start: int
    stop: int
    path: Path


def plan_chunks(directory: Path, lo: int, hi: int, chunk_size: int) -> list[Chunk]:
    if chunk_size < 1:
        raise ReproError(f"--chunk-size: must be >= 1, got {chunk_size}")
    return [Chunk(s, min(s + chunk_size, hi), directory / f"chunk-{s:010d}.npz")
            for s in range(lo, hi, chunk_size)]


def read_chunk(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ReproError(f"{path}: unreadable chunk ({exc}); delete it to recompute") from None


def run_shard(directory: str | Path, lo: int, hi: int, chunk_size: int,
              encode: Callable[[int, int], dict[str, np.ndarray]], meta: dict,
              log: Callable[[str], None] = print) -> dict:
    """Encode ``[lo, hi)`` chunk by chunk with ``encode(start, stop)`` (it returns the chunk's
    arrays, see the module docstring), skipping chunks already on disk; then write done.json
    (``meta`` plus the range and chunk list) and return it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    done = directory / DONE
    if done.is_file():
        record = read_json(done)
        if (record.get("lo"), record.get("hi")) != (lo, hi) or record.get("fingerprint") != meta.get("fingerprint"):
            raise ReproError(f"{done}: this shard was made for another range or dataset listing; "
                             f"remove {directory} to redo it")
        log(f"{directory.name}: already done")
        return record
    # A SIGKILL skips atomic_path's clean-up and leaves its ".chunk-*" temporary behind; one job
    # owns a shard directory, so whatever temporaries are there are dead.
    for stale in directory.glob(".chunk-*"):
        stale.unlink()
    chunks = plan_chunks(directory, lo, hi, chunk_size)
    for i, chunk in enumerate(chunks):
        if chunk.path.is_file():
            log(f"{directory.name}: chunk {i + 1}/{len(chunks)} on disk, skipped")
            continue
        arrays = encode(chunk.start, chunk.stop)
        kept = len(arrays["index"]) + len(arrays.get("skipped_index", ()))
        if kept != chunk.stop - chunk.start:
            raise ReproError(f"{chunk.path}: encoder returned {kept} items for [{chunk.start}, {chunk.stop})")
        save_npz(chunk.path, **arrays)
        log(f"{directory.name}: chunk {i + 1}/{len(chunks)} [{chunk.start}, {chunk.stop}) written")
    record = {**meta, "lo": lo, "hi": hi, "chunk_size": chunk_size,
              "chunks": [c.path.name for c in chunks]}
    write_json(done, record)
    return record


def merge(shard_dirs: list[str | Path], n: int | None = None) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Concatenate the chunks of finished shards in index order.

    Returns the arrays (every chunk key; ``skipped_*`` concatenated too) and the shards' done
    records (sorted by ``lo``). ``n`` (default: the records' ``n``) is the dataset size to cover."""
    records = []
    for d in map(Path, shard_dirs):
        if not (d / DONE).is_file():
            raise ReproError(f"{d}: shard not finished (no {DONE}); rerun its job")
        records.append({**read_json(d / DONE), "dir": str(d)})
    if not records:
        raise ReproError("--shards: no shard directories given")
    records.sort(key=lambda r: r["lo"])
    fingerprints = {r.get("fingerprint") for r in records}
    if len(fingerprints) != 1:
        raise ReproError(f"--shards: shards were made from different dataset listings ({records[0]['dir']})")
    n = records[0].get("n") if n is None else n
    cursor = 0
    for r in records:
        if r["lo"] != cursor:
            raise ReproError(f"{r['dir']}: starts at {r['lo']}, expected {cursor} (a shard is missing or overlaps)")
        cursor = r["hi"]
    if cursor != n:
        raise ReproError(f"--shards: the shards cover [0, {cursor}), the dataset has {n} items")
    parts: dict[str, list[np.ndarray]] = {}
    for r in records:
        for name in r["chunks"]:
            chunk = read_chunk(Path(r["dir"]) / name)
            if parts and set(chunk) != set(parts):
                raise ReproError(f"{Path(r['dir']) / name}: keys {sorted(chunk)} differ from the other chunks")
            for k, v in chunk.items():
                parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}, records
