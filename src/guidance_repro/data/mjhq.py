"""MJHQ-30K (paper tier): prompts by category and reference images (``reference/star.md`` §5).

Inputs: ``meta_data.json`` = ``{"<key>": {"category": ..., "prompt": ...}, ...}`` and the images,
either as category folders (``<dir>/<category>/<key>.jpg``) or as the release's
``mjhq30k_imgs.zip`` (members ``<category>/<key>.jpg``, optionally under one top folder).

Entries are ordered by category in ``class_label`` order (0 animals … 9 vehicles), then by key.
Reference images are prepared like STAR's references (torchvision ``Resize(r)`` +
``CenterCrop(r)`` on PIL images): bilinear resize so the short side is r (long side truncated to
``int(r · long / short)``), then the central r×r crop (offsets rounded). Done with PIL directly so
this module needs no torchvision; the tests check it against torchvision.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from guidance_repro.errors import ReproError

CATEGORIES = ("animals", "art", "fashion", "food", "indoor", "landscape", "logo", "people", "plants", "vehicles")


def resize_center_crop(image: Image.Image, resolution: int) -> np.ndarray:
    """torchvision ``Resize(resolution)`` + ``CenterCrop(resolution)`` → uint8 (r, r, 3)."""
    if resolution < 1:
        raise ReproError(f"resolution: must be >= 1, got {resolution}")
    image = image.convert("RGB")
    w, h = image.size
    if w <= h:
        size = (resolution, int(resolution * h / w))
    else:
        size = (int(resolution * w / h), resolution)
    if size != (w, h):
        image = image.resize(size, resample=Image.Resampling.BILINEAR)
    arr = np.asarray(image)
    top = int(round((arr.shape[0] - resolution) / 2.0))
    left = int(round((arr.shape[1] - resolution) / 2.0))
    return np.ascontiguousarray(arr[top:top + resolution, left:left + resolution])


@dataclass(frozen=True)
class Entry:
    key: str
    category: str
    label: int
    prompt: str


def read_meta(path: str | Path) -> list[Entry]:
    """Parse and validate ``meta_data.json``; entries in category order, then key order."""
    path = Path(path)
    if not path.is_file():
        raise ReproError(f"{path}: MJHQ-30K meta_data.json not found")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReproError(f"{path}: malformed JSON ({exc})") from None
    if not isinstance(meta, dict) or not meta:
        raise ReproError(f"{path}: expected a non-empty object {{key: {{category, prompt}}}}")
    entries = []
    for key, value in meta.items():
        if not isinstance(value, dict) or not isinstance(value.get("category"), str) \
                or not isinstance(value.get("prompt"), str):
            raise ReproError(f"{path}: entry {key!r} needs string fields 'category' and 'prompt'")
        if value["category"] not in CATEGORIES:
            raise ReproError(f"{path}: entry {key!r} has unknown category {value['category']!r}")
        entries.append(Entry(key, value["category"], CATEGORIES.index(value["category"]), value["prompt"]))
    entries.sort(key=lambda e: (e.label, e.key))
    return entries


class MJHQ:
    """Prompts and reference images of MJHQ-30K (or a subset with the same layout)."""

    def __init__(self, meta_path: str | Path, images: str | Path):
        self.meta_path = Path(meta_path)
        self.entries = read_meta(self.meta_path)
        self.images = Path(images)
        self._zip: zipfile.ZipFile | None = None
        self._members: dict[str, str] = {}
        if self.images.is_dir():
            return
        if not self.images.is_file():
            raise ReproError(f"{self.images}: MJHQ-30K images not found (a folder or mjhq30k_imgs.zip)")
        try:
            self._zip = zipfile.ZipFile(self.images)
        except zipfile.BadZipFile as exc:
            raise ReproError(f"{self.images}: not a zip file ({exc})") from None
        for name in self._zip.namelist():   # index by "<category>/<file>", ignoring a top folder
            parts = name.rstrip("/").split("/")
            if len(parts) >= 2 and not name.endswith("/"):
                self._members["/".join(parts[-2:])] = name

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> MJHQ:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.entries)

    def by_category(self) -> dict[str, list[Entry]]:
        """{category: [entries]} with every category of CATEGORIES, in class_label order."""
        out: dict[str, list[Entry]] = {c: [] for c in CATEGORIES}
        for e in self.entries:
            out[e.category].append(e)
        return out

    def _open(self, entry: Entry) -> Image.Image:
        rel = f"{entry.category}/{entry.key}.jpg"
        if self._zip is None:
            where = self.images / rel
            if not where.is_file():
                raise ReproError(f"{where}: image of MJHQ entry {entry.key!r} not found")
            source, data = str(where), where.read_bytes()
        else:
            if rel not in self._members:
                raise ReproError(f"{self.images}: member {rel} (MJHQ entry {entry.key!r}) not in the zip")
            source, data = f"{self.images}:{self._members[rel]}", self._zip.read(self._members[rel])
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                return im.convert("RGB")
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise ReproError(f"{source}: cannot decode image ({exc})") from None

    def load_image(self, entry: Entry, resolution: int | None = None) -> np.ndarray:
        """uint8 (H, W, 3): the original, or resized and center-cropped to ``resolution``."""
        im = self._open(entry)
        return np.asarray(im) if resolution is None else resize_center_crop(im, resolution)

    def iter_images(self, resolution: int, batch_size: int = 32, category: str | None = None
                    ) -> Iterator[tuple[np.ndarray, list[Entry]]]:
        """Yield (uint8 (B, r, r, 3), entries) batches, optionally for one category."""
        if category is not None and category not in CATEGORIES:
            raise ReproError(f"category: unknown MJHQ category {category!r} (one of {', '.join(CATEGORIES)})")
        if batch_size < 1:
            raise ReproError(f"batch_size: must be >= 1, got {batch_size}")
        chosen = [e for e in self.entries if category is None or e.category == category]
        for lo in range(0, len(chosen), batch_size):
            batch = chosen[lo:lo + batch_size]
            yield np.stack([self.load_image(e, resolution) for e in batch]), batch
