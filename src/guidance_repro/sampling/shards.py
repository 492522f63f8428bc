"""Sharded, resumable sampling of one evaluation point (any family), merged into one ADM batch.

The paper protocol draws 50k images per point (50 per class). One point is cut into shards (one
job each, e.g. 10 x 5k) and every shard into chunks (e.g. 250 images) written atomically, so a
killed shard keeps its finished chunks and a rerun draws only the missing ones.

Everything random is derived from ONE seed, so the images do not depend on the shard layout:

- labels: ``class_balanced_labels(num, num_classes, seed)`` over the whole point (each class
  num // num_classes times), and shard k takes the contiguous index range ``shard_range(k)``;
- image i draws its tokens from its own generator, seeded by :func:`image_seed` (seed, i); so image
  i is the same whichever shard, chunk or batch draws it (up to the floating-point effect of the
  batch it shares, which the tests check is nil on CPU for the tiny models).

Files: a shard's chunks ``<work>/chunk_<first index>.npz`` (``images``, ``labels``, ``indices``,
``settings_json``); when all are there, the shard manifest (JSON, the job's declared output,
written last) lists them. :func:`merge` checks that the shards form one plan with one set of
settings and streams them, in index order, into one ADM-format batch (data/adm_batch.py).
The chunk/shard bookkeeping is shard_chunks.py's (shared with data/shards.py); this module keeps
what is the sampling job's: the plan and its seeds, the chunk contents and checks, the manifests.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from guidance_repro.errors import ReproError
from guidance_repro.io import read_json, write_json
from guidance_repro.shard_chunks import check_coverage, chunk_bounds, fill_chunks, read_chunk, split_range

SEED_RULE = ("image i draws its token uniforms from torch.Generator().manual_seed(image_seed(seed, i)), "
             "image_seed = numpy SeedSequence([seed, i]).generate_state(1, uint64)[0] >> 1; labels = "
             "class_balanced_labels(num, num_classes, seed) (sampling/ar.py)")


def image_seed(seed: int, index: int) -> int:
    """The seed of image ``index`` of a point sampled with ``seed`` (a 63-bit integer)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint64)[0] >> 1)


@dataclass(frozen=True)
class ShardPlan:
    """Which images of a point a shard draws, and in which chunks."""

    num: int             # images in the whole point (the paper: 50 000)
    num_classes: int
    num_shards: int
    shard: int           # 0 .. num_shards - 1
    chunk_size: int
    seed: int

    def __post_init__(self):
        if self.num < 1 or self.num_classes < 1:
            raise ReproError(f"--num / classes: must be >= 1, got {self.num} / {self.num_classes}")
        if not 1 <= self.num_shards <= self.num:
            raise ReproError(f"--num-shards: must be in 1..{self.num}, got {self.num_shards}")
        if not 0 <= self.shard < self.num_shards:
            raise ReproError(f"--shard: must be in 0..{self.num_shards - 1}, got {self.shard}")
        if self.chunk_size < 1:
            raise ReproError(f"--chunk-size: must be >= 1, got {self.chunk_size}")

    def shard_range(self, k: int | None = None) -> tuple[int, int]:
        """[start, stop) of shard ``k`` (this shard by default): near-equal contiguous ranges."""
        return split_range(self.num, self.shard if k is None else k, self.num_shards)

    def labels(self) -> np.ndarray:
        from guidance_repro.sampling.ar import class_balanced_labels
        return class_balanced_labels(self.num, self.num_classes, self.seed)

    def chunks(self) -> list[tuple[int, int]]:
        return chunk_bounds(*self.shard_range(), self.chunk_size)

    def point(self) -> dict:
        """The fields every shard of one point shares (the merge checks them)."""
        d = asdict(self)
        d.pop("shard")
        d.pop("chunk_size")  # chunking does not change the images: shards may differ in it
        return d


def fingerprint(settings: dict) -> str:
    """sha256 of the settings as canonical JSON (resume refuses chunks made with other settings)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def chunk_path(work: Path, start: int) -> Path:
    return Path(work) / f"chunk_{start:08d}.npz"


def _read_chunk(path: Path, start: int, stop: int, labels: np.ndarray, settings_hash: str) -> dict:
    chunk = read_chunk(path, ("images", "labels", "indices", "settings_json"), redo="redraw it")
    if fingerprint(json.loads(str(chunk["settings_json"]))) != settings_hash:
        raise ReproError(f"{path}: drawn with other sampler settings than this shard's; use another "
                         "work folder or delete the old chunks")
    if not np.array_equal(chunk["indices"], np.arange(start, stop)) or \
            not np.array_equal(chunk["labels"], labels[start:stop]):
        raise ReproError(f"{path}: holds other images than indices {start}..{stop - 1} of this plan")
    return chunk


def run_shard(plan: ShardPlan, work: str | Path, draw: Callable[[np.ndarray, np.ndarray], np.ndarray],
              settings: dict, out: str | Path, max_new_chunks: int | None = None,
              progress: Callable[[str], None] = print) -> dict | None:
    """Draw the missing chunks of ``plan``'s shard into ``work``, then write the shard manifest
    ``out``; returns it (None when ``max_new_chunks`` stopped the shard first: a time-limited job,
    or the tests' simulated kill; the finished chunks stay and a rerun continues from them).

    ``draw(indices, labels) -> uint8 (n, H, W, 3)`` draws images ``indices`` (it seeds each image
    with :func:`image_seed`); ``settings`` (JSON-able) are recorded in every chunk and checked on resume.
    """
    work = Path(work)
    labels, settings_hash = plan.labels(), fingerprint(settings)
    settings_json = np.array(json.dumps(settings, sort_keys=True))
    chunks, shape = plan.chunks(), []

    def check(start: int, stop: int, path: Path) -> None:
        shape[:] = _read_chunk(path, start, stop, labels, settings_hash)["images"].shape[1:]

    def make(start: int, stop: int) -> dict[str, np.ndarray]:
        idx = np.arange(start, stop)
        images = np.asarray(draw(idx, labels[start:stop]))
        if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(idx) or images.shape[-1] != 3:
            raise ReproError(f"sampler: {images.dtype} {images.shape} for {len(idx)} images, "
                             "expected uint8 (n, H, W, 3)")
        shape[:] = images.shape[1:]
        return {"images": images, "labels": labels[start:stop], "indices": idx, "settings_json": settings_json}

    if not fill_chunks([(a, b, chunk_path(work, a)) for a, b in chunks], make, check, max_new_chunks,
                       progress, name=f"[shard {plan.shard}]"):
        return None
    start, stop = plan.shard_range()
    manifest = {
        "kind": "sample-shard", "plan": asdict(plan), "point": plan.point(), "range": [start, stop],
        "count": stop - start, "image_shape": list(shape),
        "per_class_counts": np.bincount(labels[start:stop], minlength=plan.num_classes).tolist(),
        "seeds": {"seed": plan.seed, "rule": SEED_RULE},
        "settings": settings, "settings_sha256": settings_hash, "work": str(work),
        "chunks": [chunk_path(work, a).name for a, _ in chunks],
    }
    write_json(out, manifest)
    return manifest


def read_shard(path: str | Path) -> dict:
    path = Path(path)
    try:
        m = read_json(path)
    except (OSError, json.JSONDecodeError) as exc:
        raise ReproError(f"{path}: not a readable shard manifest ({exc})") from None
    if not isinstance(m, dict) or m.get("kind") != "sample-shard":
        raise ReproError(f"{path}: not a shard manifest (kind 'sample-shard')")
    m["_path"] = path
    return m


def check_shards(manifests: list[dict]) -> list[dict]:
    """The shards of one point, in order: one plan, one set of settings, every shard once."""
    if not manifests:
        raise ReproError("--shards: no shard manifests given")
    first = manifests[0]
    for m in manifests[1:]:
        for key in ("point", "settings_sha256"):
            if m[key] != first[key]:
                raise ReproError(f"{m['_path']}: its {key} differs from {first['_path']}'s "
                                 "(shards of different points or sampler settings)")
    by_index = {}
    for m in manifests:
        k = m["plan"]["shard"]
        if k in by_index:
            raise ReproError(f"{m['_path']}: shard {k} given twice (also {by_index[k]['_path']})")
        by_index[k] = m
    n = first["point"]["num_shards"]
    missing = sorted(set(range(n)) - set(by_index))
    if missing:
        raise ReproError(f"--shards: shard(s) {missing} of {n} missing")
    ordered = [by_index[k] for k in range(n)]
    check_coverage([(*m["range"], str(m["_path"])) for m in ordered], first["point"]["num"])
    return ordered


def merge(shard_paths: list, out: str | Path, manifest_out: str | Path) -> dict:
    """Merge finished shards into one ADM-format batch ``out`` and its manifest (count, per-class
    counts, seeds, sampler settings with the model file's sha256, the shards)."""
    from guidance_repro.data.adm_batch import write_adm_batch
    shards = check_shards([read_shard(p) for p in shard_paths])
    point = shards[0]["point"]
    plan = ShardPlan(**point, shard=0, chunk_size=1)
    labels = plan.labels()
    shape = tuple(shards[0]["image_shape"])

    def images():
        for m in shards:
            work, settings_hash = Path(m["work"]), m["settings_sha256"]
            if not work.is_absolute() and not work.is_dir():
                work = m["_path"].parent / work
            bounds = [int(name[6:14]) for name in m["chunks"]] + [m["range"][1]]
            for start, stop in zip(bounds[:-1], bounds[1:]):
                path = chunk_path(work, start)
                if not path.is_file():
                    raise ReproError(f"{m['_path']}: its chunk {path} is missing")
                chunk = _read_chunk(path, start, stop, labels, settings_hash)
                if chunk["images"].shape[1:] != shape:
                    raise ReproError(f"{path}: images {chunk['images'].shape[1:]}, the point's are {shape}")
                yield chunk["images"]

    write_adm_batch(out, (point["num"], *shape), images(), labels)
    manifest = {
        "kind": "adm-batch", "batch": str(out), "count": point["num"], "image_shape": list(shape),
        "per_class_counts": np.bincount(labels, minlength=point["num_classes"]).tolist(),
        "class_balanced": True, "seeds": {"seed": point["seed"], "rule": SEED_RULE},
        "plan": point, "settings": shards[0]["settings"],
        "shards": [{"manifest": str(m["_path"]), "range": m["range"], "chunk_size": m["plan"]["chunk_size"]}
                   for m in shards],
    }
    write_json(manifest_out, manifest)
    return manifest


PAPER_METHODS = ("pretrained", "cfg", "cca", "cca_cfg")


def point_tags(tag_pairs: list[str], model: str, cfg: float, unguided: float, convention: str) -> dict:
    """The table tags of a paper-tier point (``--tag KEY=VALUE`` over ``model``), checked: the
    method is one the tables know (never guessed), and it is sampled with CFG exactly when
    ``cfg`` is not the family's no-guidance value ``unguided`` (LlamaGen's s = 1, VAR's cfg 0)."""
    from guidance_repro.data.samples import parse_tags
    tags = {"model": model, **parse_tags(tag_pairs)}
    if tags.get("method") not in PAPER_METHODS:
        raise ReproError(f"--tag method=...: required, one of {', '.join(PAPER_METHODS)} "
                         f"(got {tags.get('method')!r})")
    guided = tags["method"] in ("cfg", "cca_cfg")
    if guided == (cfg == unguided):
        raise ReproError(f"--cfg {cfg:g}: method {tags['method']} is sampled "
                         f"{'with CFG' if guided else 'without guidance'} ({convention})")
    return tags
