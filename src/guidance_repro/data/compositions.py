"""Captioned compositions of Fashion-MNIST items: the toy text-to-image data set.

Each image is an RGB canvas (black background, default 32×32) divided into a ``grid``×``grid`` set
of cells (default 2×2: "top left", "top right", "bottom left", "bottom right"; 3×3 adds "top",
"left", "center", ...). It holds one to ``max_items`` items, each in its own cell: a Fashion-MNIST
item, box-downsampled to ``large`` (default: the cell, 16 px) or ``small`` (default 10 px) pixels,
tinted with one of the palette colors (grey level, stretched so the item's brightest pixel is 1,
times the RGB color) and placed at a random offset inside
its cell (small items only). Cells never overlap, so positions are unambiguous.

Captions always name size, color, item and position, items in reading order of their cells:
"a small red sneaker at the top left and a large blue bag at the bottom right".

Splits (one .npz, keys prefixed by the split name, see :func:`save`):

- ``train``: items from Fashion-MNIST *train* images of the generator pool; no item uses a
  held-out (item, color) pair. What the generators train on.
- ``clip``: items from the *other* Fashion-MNIST train images (the two pools are disjoint, drawn by
  a seeded permutation; ``clip_pool`` images, default 10000), all (item, color) pairs allowed. For
  the judge CLIP and the composition evaluator.
- ``eval``: items from Fashion-MNIST *test* images; every image has at least one item with a
  held-out pair, so no eval caption occurs in ``train`` (checked when building). Held-out pairs:
  each class c is held out with color ``c mod len(palette)`` (10 of the 60 pairs; every class and
  every color still appears in train with other partners).

Each split draws from its own ``numpy`` generator, seeded by ``(seed, split index)``: the same
seed gives identical arrays.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from guidance_repro.data.fashion_mnist import CAPTION_NAMES, FashionMNIST
from guidance_repro.errors import ReproError
from guidance_repro.io import save_npz

PALETTE = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (60, 100, 255),
           "yellow": (240, 220, 40), "purple": (170, 60, 220), "white": (240, 240, 240)}
SIZES = ("small", "large")
SPLITS = ("train", "clip", "eval")
_POS3 = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
_PREP = {"left": "on the", "right": "on the", "center": "in the"}   # everything else: "at the"
ITEM_KEYS = ("item_class", "item_color", "item_position", "item_size", "item_source")


def position_names(grid: int) -> tuple[str, ...]:
    if grid == 2:
        return ("top left", "top right", "bottom left", "bottom right")
    if grid == 3:
        return _POS3
    raise ReproError(f"compositions.grid: must be 2 or 3, got {grid}")


@dataclass(frozen=True)
class Layout:
    canvas: int = 32
    grid: int = 2
    small: int = 10
    large: int = 16
    max_items: int = 3

    def check(self) -> None:
        cell = self.canvas // self.grid
        position_names(self.grid)
        if not 1 <= self.max_items <= self.grid ** 2:
            raise ReproError(f"compositions.max_items: must be in 1..{self.grid ** 2}, got {self.max_items}")
        if not 4 <= self.small <= self.large <= cell:
            raise ReproError(f"compositions.small/large: need 4 <= small <= large <= cell size {cell}, "
                             f"got {self.small}/{self.large}")

    @property
    def cell(self) -> int:
        return self.canvas // self.grid


def holdout_color(n_classes: int = 10) -> np.ndarray:
    """Held-out color index of each class (c mod palette size)."""
    return np.arange(n_classes) % len(PALETTE)


def _box_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) area-averaging weights: each output pixel averages the input it covers."""
    edges = np.arange(dst + 1) * (src / dst)
    lo, hi = edges[:-1, None], edges[1:, None]
    j = np.arange(src)[None]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def caption(classes, colors, positions, sizes, grid: int) -> str:
    """Caption of one image from its per-item attribute rows (entries -1 are absent)."""
    names, colors_ = position_names(grid), list(PALETTE)
    parts = []
    for k, col, pos, s in zip(classes, colors, positions, sizes):
        if k < 0:
            continue
        where = names[pos]
        parts.append(f"a {SIZES[s]} {colors_[col]} {CAPTION_NAMES[k]} {_PREP.get(where, 'at the')} {where}")
    if not parts:
        raise ReproError("compositions: an image without items has no caption")
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _split_attributes(rng: np.random.Generator, n: int, labels: np.ndarray, pool: np.ndarray,
                      layout: Layout, split: str) -> dict[str, np.ndarray]:
    n_pos, n_col, slots = layout.grid ** 2, len(PALETTE), layout.max_items
    n_items = rng.integers(1, slots + 1, size=n)
    present = np.arange(slots)[None] < n_items[:, None]
    # distinct positions: the first n_items of a random permutation, sorted into reading order
    pos = np.argsort(rng.random((n, n_pos)), axis=1)[:, :slots]
    pos = np.sort(np.where(present, pos, n_pos), axis=1)
    present = pos < n_pos
    cls = rng.integers(0, 10, size=(n, slots))
    held = holdout_color()
    if split == "train":       # any color but the class's held-out one
        col = (held[cls] + 1 + rng.integers(0, n_col - 1, size=(n, slots))) % n_col
    else:
        col = rng.integers(0, n_col, size=(n, slots))
    if split == "eval":        # one present item (at random) gets its class's held-out color
        j = (rng.random(n) * n_items).astype(np.int64)
        col[np.arange(n), j] = held[cls[np.arange(n), j]]
    size = rng.integers(0, 2, size=(n, slots))
    # a source image of the drawn class from the pool
    order = pool[np.argsort(labels[pool], kind="stable")]
    counts = np.bincount(labels[pool], minlength=10)
    if counts.min() == 0:
        raise ReproError(f"compositions: the {split} pool lacks a Fashion-MNIST class")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    src = order[starts[cls] + (rng.random((n, slots)) * counts[cls]).astype(np.int64)]
    off = rng.random((n, slots, 2))
    out = {"item_class": cls, "item_color": col, "item_position": pos, "item_size": size,
           "item_source": src}
    for key in ITEM_KEYS:
        out[key] = np.where(present, out[key], -1).astype(np.int64)
    out["n_items"] = n_items.astype(np.int64)
    out["_offset"] = off
    return out


def render(images: np.ndarray, attrs: dict[str, np.ndarray], layout: Layout) -> np.ndarray:
    """Paint the items of ``attrs`` (source indices into ``images``) on black canvases."""
    n = len(attrs["n_items"])
    canvas = np.zeros((n, layout.canvas, layout.canvas, 3), dtype=np.uint8)
    rgb = np.array(list(PALETTE.values()), dtype=np.float64)
    cell = layout.cell
    for s, px in enumerate((layout.small, layout.large)):
        img_i, slot = np.nonzero(attrs["item_size"] == s)
        if len(img_i) == 0:
            continue
        m = _box_matrix(images.shape[1], px)
        items = m @ images[attrs["item_source"][img_i, slot]].astype(np.float64) @ m.T
        # stretch each item to full brightness: dark items (many shirts, coats) keep a readable color
        items = items / np.maximum(items.max(axis=(1, 2), keepdims=True), 1.0)
        tinted = items[..., None] * rgb[attrs["item_color"][img_i, slot]][:, None, None, :]
        pos = attrs["item_position"][img_i, slot]
        slack = np.floor(attrs["_offset"][img_i, slot] * (cell - px + 1)).astype(np.int64)
        y0 = (pos // layout.grid) * cell + slack[:, 0]
        x0 = (pos % layout.grid) * cell + slack[:, 1]
        rows = (y0[:, None] + np.arange(px))[:, :, None]
        cols = (x0[:, None] + np.arange(px))[:, None, :]
        canvas[img_i[:, None, None], rows, cols] = np.clip(np.rint(tinted), 0, 255).astype(np.uint8)
    return canvas


def build(fmnist: FashionMNIST, n_train: int = 20000, n_clip: int = 10000, n_eval: int = 2000,
          seed: int = 0, layout: Layout = Layout(), clip_pool: int = 10000) -> dict[str, dict[str, np.ndarray]]:
    """Build the three splits: {split: {"images", "captions", "n_items", item_* arrays}}."""
    layout.check()
    for key, n in (("n_train", n_train), ("n_clip", n_clip), ("n_eval", n_eval)):
        if n < 1:
            raise ReproError(f"compositions.{key}: must be >= 1, got {n}")
    n_src = len(fmnist.train_labels)
    if not 0 < clip_pool < n_src:
        raise ReproError(f"compositions.clip_pool: must be in 1..{n_src - 1}, got {clip_pool}")
    perm = np.random.default_rng([seed, 99]).permutation(n_src)
    pools = {"train": np.sort(perm[clip_pool:]), "clip": np.sort(perm[:clip_pool]),
             "eval": np.arange(len(fmnist.test_labels))}
    sources = {"train": fmnist.train_images, "clip": fmnist.train_images, "eval": fmnist.test_images}
    labels = {"train": fmnist.train_labels, "clip": fmnist.train_labels, "eval": fmnist.test_labels}
    sizes = {"train": n_train, "clip": n_clip, "eval": n_eval}
    out = {}
    for i, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, i])
        attrs = _split_attributes(rng, sizes[split], labels[split].astype(np.int64), pools[split], layout, split)
        images = render(sources[split], attrs, layout)
        attrs.pop("_offset")
        caps = [caption(*(attrs[k][j] for k in ITEM_KEYS[:4]), layout.grid) for j in range(sizes[split])]
        out[split] = {"images": images, "captions": np.array(caps), **attrs}
    leaked = set(out["eval"]["captions"].tolist()) & set(out["train"]["captions"].tolist())
    if leaked:  # cannot happen by construction; guard the invariant the evaluation relies on
        raise ReproError(f"compositions: {len(leaked)} eval captions occur in train")
    return out


def save(path: str | Path, splits: dict[str, dict[str, np.ndarray]], layout: Layout, seed: int,
         clip_pool: int = 10000) -> None:
    """Write one .npz: ``<split>_<key>`` arrays plus metadata.

    Per split (N images): ``_images`` uint8 (N, H, W, 3); ``_captions`` unicode (N,);
    ``_n_items`` int64 (N,); ``_item_class``, ``_item_color``, ``_item_position``, ``_item_size``,
    ``_item_source`` int64 (N, max_items), -1 where absent (source = index into the Fashion-MNIST
    train images for train/clip, test images for eval). Metadata: ``class_names``, ``color_names``,
    ``color_rgb`` uint8 (C, 3), ``position_names``, ``size_names``, ``holdout_color`` (10,),
    ``layout`` int64 [canvas, grid, small, large, max_items], ``seed``, ``clip_pool``.
    """
    arrays = {f"{split}_{key}": value for split, d in splits.items() for key, value in d.items()}
    arrays.update(class_names=np.array(CAPTION_NAMES), color_names=np.array(list(PALETTE)),
                  color_rgb=np.array(list(PALETTE.values()), dtype=np.uint8),
                  position_names=np.array(position_names(layout.grid)), size_names=np.array(SIZES),
                  holdout_color=holdout_color(),
                  layout=np.array([layout.canvas, layout.grid, layout.small, layout.large, layout.max_items]),
                  seed=np.array(seed), clip_pool=np.array(clip_pool))
    save_npz(path, **arrays)


def load(path: str | Path, split: str) -> dict[str, np.ndarray]:
    """One split of a saved artifact as {"images", "captions", "n_items", item_*} arrays."""
    path = Path(path)
    if split not in SPLITS:
        raise ReproError(f"compositions: unknown split {split!r} (one of {', '.join(SPLITS)})")
    if not path.is_file():
        raise ReproError(f"{path}: compositions artifact not found (run build-compositions)")
    keys = ("images", "captions", "n_items") + ITEM_KEYS
    with np.load(path, allow_pickle=False) as z:
        missing = [f"{split}_{k}" for k in keys if f"{split}_{k}" not in z.files]
        if missing:
            raise ReproError(f"{path}: not a compositions artifact (missing {', '.join(missing)})")
        out = {k: z[f"{split}_{k}"] for k in keys}
    n = len(out["images"])
    if out["images"].dtype != np.uint8 or out["images"].ndim != 4 or any(len(v) != n for v in out.values()):
        raise ReproError(f"{path}: {split}_* arrays are inconsistent (expected uint8 images and N rows each)")
    return out


def preview(path: str | Path, images: np.ndarray, captions: np.ndarray, n: int = 16, cols: int = 4) -> None:
    """Save a PNG grid of the first ``n`` images with their captions (matplotlib, Agg)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import textwrap

    from guidance_repro.io import atomic_path
    n = min(n, len(images))
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.4, rows * 2.9), squeeze=False)
    for ax, i in zip(axes.flat, range(rows * cols)):
        ax.set_axis_off()
        if i < n:
            ax.imshow(images[i], interpolation="nearest")
            ax.set_title(textwrap.fill(str(captions[i]), 28), fontsize=6)
    fig.tight_layout()
    with atomic_path(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def build_and_save(fmnist: FashionMNIST, out: str | Path, seed: int = 0, layout: Layout = Layout(),
                   n_train: int = 20000, n_clip: int = 10000, n_eval: int = 2000,
                   clip_pool: int = 10000) -> tuple[dict, float]:
    t0 = time.perf_counter()
    splits = build(fmnist, n_train, n_clip, n_eval, seed, layout, clip_pool)
    elapsed = time.perf_counter() - t0
    save(out, splits, layout, seed, clip_pool)
    return splits, elapsed
