"""MJHQ-30K evaluation of a text-to-image model's images (STAR's protocol, ``reference/star.md`` §5).

The generated set is one image per MJHQ prompt at the generation resolution, one folder per
category: ``<generated>/<category>/<key>.png`` (STAR's evaluation script writes this layout; the
key is the prompt's key in ``meta_data.json``). The evaluation, per category and over all:

* FID of the generated images against the MJHQ references of the same prompts, resized and
  center-cropped to the generation resolution (``data/mjhq.py``), on the configured feature
  extractor (the paper tier: clean-fid's Inception, ``evaluation.inception``; STAR itself ran
  pytorch-fid on flattened folders, so the implementation is recorded beside the numbers);
* CLIP score: the mean raw cosine between each image and its prompt (OpenAI ViT-L/14 in the
  paper tier, ``metrics/clip_score.py``);
* ImageReward: the mean reward of ``metrics/imagereward.py`` (isolated environment).

Every step works per category so that no step holds more than one category's images (3,000 at
512 px = 2.4 GB) in memory; the table merges the per-category files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, UnidentifiedImageError

from guidance_repro.data.mjhq import CATEGORIES, Entry
from guidance_repro.errors import ReproError
from guidance_repro.metrics import fid as fid_mod

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def category_entries(entries: Iterable[Entry], category: str) -> list[Entry]:
    if category not in CATEGORIES:
        raise ReproError(f"category: unknown MJHQ category {category!r} (one of {', '.join(CATEGORIES)})")
    chosen = [e for e in entries if e.category == category]
    if not chosen:
        raise ReproError(f"category {category!r}: no prompt of this category in the MJHQ metadata")
    return chosen


def generated_file(root: Path, entry: Entry) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        path = root / entry.category / f"{entry.key}{suffix}"
        if path.is_file():
            return path
    return None


def load_generated(root: str | Path, entries: list[Entry], resolution: int) -> np.ndarray:
    """uint8 (N, r, r, 3): the generated image of every entry, in order; every one must exist at
    the generation resolution (a missing or resized image would bias FID silently)."""
    root = Path(root)
    if not root.is_dir():
        raise ReproError(f"star.paper.generated_dir: {root} is not a folder of <category>/<key>.png images")
    paths = [generated_file(root, e) for e in entries]
    missing = [e for e, p in zip(entries, paths) if p is None]
    if missing:
        e = missing[0]
        raise ReproError(f"{root}: {len(missing)} of {len(entries)} {e.category} prompts have no image, "
                         f"e.g. {e.category}/{e.key}.png (one image per prompt is required)")
    out = np.empty((len(entries), resolution, resolution, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise ReproError(f"{path}: cannot decode image ({exc})") from None
        if arr.shape[:2] != (resolution, resolution):
            raise ReproError(f"{path}: {arr.shape[1]}x{arr.shape[0]} image, expected the generation "
                             f"resolution {resolution}x{resolution} (star.paper.resolution)")
        out[i] = arr
    return out


def _stats(features: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    if len(features) < 2:
        raise ReproError(f"{name}: FID needs at least 2 images, got {len(features)}")
    return fid_mod.feature_stats(np.asarray(features, dtype=np.float64))


def _read(path: str | Path, keys: tuple[str, ...]) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ReproError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data]
            if missing:
                raise ReproError(f"{path}: missing array(s) {', '.join(missing)}")
            out = {k: data[k] for k in keys}
    except (OSError, ValueError) as exc:
        raise ReproError(f"{path}: unreadable .npz ({exc})") from None
    out["meta"] = json.loads(str(out.pop("meta_json")))
    return out


def read_reference(path: str | Path) -> dict:
    return _read(path, ("features", "meta_json"))


def read_generated(path: str | Path) -> dict:
    return _read(path, ("features", "clip_cosine", "meta_json"))


def table(references: list[str | Path], generated: list[str | Path],
          imagereward: list[str | Path] = ()) -> dict:
    """Per-category and overall FID, CLIP score and ImageReward from the per-category files."""
    refs = {}
    for p in references:
        r = read_reference(p)
        refs[r["meta"]["category"]] = (r, str(p))
    rewards = {}
    for p in imagereward:
        try:
            m = json.loads(Path(p).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ReproError(f"{p}: not a readable ImageReward JSON ({exc})") from None
        rewards[Path(p).stem] = m
    rows, gen_all, ref_all, cos_all, extractor = [], [], [], [], None
    for p in generated:
        g = read_generated(p)
        cat = g["meta"]["category"]
        if cat not in refs:
            raise ReproError(f"{p}: category {cat!r} has no reference features among {sorted(refs)}")
        r, rpath = refs[cat]
        for key in ("evaluator", "evaluator_sha256", "resolution"):
            if g["meta"].get(key) != r["meta"].get(key):
                raise ReproError(f"{p}: {key} {g['meta'].get(key)!r} differs from the reference "
                                 f"{rpath} ({r['meta'].get(key)!r})")
        extractor = g["meta"]["evaluator"]
        mu_g, s_g = _stats(g["features"], str(p))
        mu_r, s_r = _stats(r["features"], rpath)
        row = {"category": cat, "images": int(len(g["features"])),
               "fid": fid_mod.fid_from_stats(mu_g, s_g, mu_r, s_r),
               "clip_score": float(np.mean(g["clip_cosine"]))}
        if cat in rewards:
            row["imagereward"] = float(rewards[cat]["mean_reward"])
        rows.append(row)
        gen_all.append(g["features"])
        ref_all.append(r["features"])
        cos_all.append(g["clip_cosine"])
    if not rows:
        raise ReproError("mjhq-table: no generated feature files")
    rows.sort(key=lambda x: CATEGORIES.index(x["category"]))
    overall = {"images": int(sum(x["images"] for x in rows)),
               "fid": fid_mod.fid_from_features(np.concatenate(gen_all).astype(np.float64),
                                                np.concatenate(ref_all).astype(np.float64)),
               "clip_score": float(np.mean(np.concatenate(cos_all)))}
    if rewards and all("imagereward" in x for x in rows):
        overall["imagereward"] = float(np.average([x["imagereward"] for x in rows],
                                                  weights=[x["images"] for x in rows]))
    return {"overall": overall, "categories": rows,
            "protocol": {"feature_extractor": extractor,
                         "fid_implementation": f"clean-fid {fid_mod.cleanfid_version()} (STAR: pytorch-fid)",
                         "clip_score": "mean raw cosine (not x100, no clamp)",
                         "categories_covered": len(rows), "categories_total": len(CATEGORIES)}}


def markdown(result: dict) -> str:
    lines = ["| category | images | FID | CLIP score | ImageReward |", "|---|---|---|---|---|"]

    def fmt(x: dict, name: str) -> str:
        ir = f"{x['imagereward']:.3f}" if "imagereward" in x else "—"
        return f"| {name} | {x['images']} | {x['fid']:.2f} | {x['clip_score']:.4f} | {ir} |"

    lines += [fmt(x, x["category"]) for x in result["categories"]]
    lines.append(fmt(result["overall"], "**all**"))
    p = result["protocol"]
    return "\n".join(lines) + (f"\n\nFeatures: {p['feature_extractor']}; FID: {p['fid_implementation']}; "
                               f"CLIP score: {p['clip_score']}.\n")


def plot_categories(result: dict, path: str | Path) -> None:
    """Per-category FID bars with the overall FID as a line (MJHQ's ten categories)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from guidance_repro.io import atomic_path
    rows = result["categories"]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar([x["category"] for x in rows], [x["fid"] for x in rows], color="#4c72b0")
    ax.axhline(result["overall"]["fid"], color="k", ls="--", lw=1,
               label=f"all categories: {result['overall']['fid']:.2f}")
    ax.set_ylabel("FID (lower is better)")
    ax.set_title("MJHQ-30K FID per category")
    ax.legend(frameon=False)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
