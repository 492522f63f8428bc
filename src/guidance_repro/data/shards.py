"""Sharded, resumable array extraction: the bookkeeping shared by every "encode a dataset" job.

A dataset of ``n`` items is split into ``num_shards`` contiguous index ranges (shard ``i`` holds
``[i*n//N, (i+1)*n//N)``), one Snakemake job or one torchrun rank each. A shard writes its items
in chunks, ``<shard_dir>/chunk-<start>.npz``, each written atomically (io.save_npz: a killed job
never leaves a chunk that looks whole), so a rerun skips the finished chunks and loses at most the
one it was writing. When every chunk is there the shard writes ``done.json`` (its range, chunk
list and the dataset listing's fingerprint); :func:`merge` refuses shards that are not done or that
saw a different listing, checks that the shards cover ``[0, n)`` exactly, and concatenates.
The chunk/shard bookkeeping is shard_chunks.py's (shared with sampling/shards.py); this module
keeps what is the dataset job's: the chunk naming, the done record and the concatenating merge.

A chunk holds ``index`` (int64, the dataset indices it encoded), the arrays the job produced for
them (same first dimension) and ``skipped_index`` / ``skipped_path`` / ``skipped_reason`` for the
items it was allowed to skip (unreadable inputs); nothing else.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from guidance_repro.errors import ReproError
from guidance_repro.io import read_json, write_json
from guidance_repro.shard_chunks import check_coverage, chunk_bounds, fill_chunks, read_chunk, split_range

DONE = "done.json"


def shard_range(n: int, shard: int, num_shards: int) -> tuple[int, int]:
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ReproError(f"--shard: {shard} is not in [0, --num-shards={num_shards})")
    return split_range(n, shard, num_shards)


def shard_dir(root: str | Path, shard: int, num_shards: int) -> Path:
    return Path(root) / f"shard-{shard:05d}-of-{num_shards:05d}"


def listing_fingerprint(names: Iterable[str], labels: Iterable[int]) -> str:
    """sha256 of the (name, label) listing, so shards made from different folders never merge."""
    h = hashlib.sha256()
    for name, label in zip(names, labels):
        h.update(f"{name}\t{int(label)}\n".encode())
    return h.hexdigest()


def chunk_path(directory: Path, start: int) -> Path:
    return Path(directory) / f"chunk-{start:010d}.npz"


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

    def encode_checked(start: int, stop: int) -> dict[str, np.ndarray]:
        arrays = encode(start, stop)
        kept = len(arrays["index"]) + len(arrays.get("skipped_index", ()))
        if kept != stop - start:
            raise ReproError(f"{chunk_path(directory, start)}: encoder returned {kept} items for [{start}, {stop})")
        return arrays

    chunks = [(a, b, chunk_path(directory, a)) for a, b in chunk_bounds(lo, hi, chunk_size)]
    fill_chunks(chunks, encode_checked, log=log, name=directory.name)
    record = {**meta, "lo": lo, "hi": hi, "chunk_size": chunk_size, "chunks": [p.name for _, _, p in chunks]}
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
    check_coverage([(r["lo"], r["hi"], r["dir"]) for r in records], records[0].get("n") if n is None else n)
    parts: dict[str, list[np.ndarray]] = {}
    for r in records:
        for name in r["chunks"]:
            chunk = read_chunk(Path(r["dir"]) / name)
            if parts and set(chunk) != set(parts):
                raise ReproError(f"{Path(r['dir']) / name}: keys {sorted(chunk)} differ from the other chunks")
            for k, v in chunk.items():
                parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}, records
