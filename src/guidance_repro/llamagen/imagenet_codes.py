"""ImageNet VQ-16 codes as LlamaGen's ``extract_codes_c2i.py --ten-crop`` makes them for CCA.

CCA fine-tunes on ``imagenet384_train_code_c2i_flip_ten_crop`` (cca.md §1.2): for each training
image (torchvision ImageFolder order: classes by sorted folder name, files sorted), the official
script

1. takes the ADM center crop (``center_crop_arr``: box-halve, bicubic, central square) at
   ``int(image_size * crop_range)`` px (384 * 1.1 -> 422);
2. makes torchvision's ``TenCrop(image_size)``: the four corner crops and the center crop
   (top-left, top-right, bottom-left, bottom-right, center; center offset ``round((s - c) / 2)``),
   then the same five of the horizontally flipped image: 10 views;
3. ToTensor + Normalize(0.5, 0.5): ``(x / 255 - 0.5) / 0.5``;
4. encodes the 10 views through VQ-16 and saves the codes (10, (image_size/16)^2) and the label.

Here the same, sharded and resumable (data/shards.py), with the codes stored as int16 (the
16384-code book fits; the official ``.npy`` files are int64) in one merged artifact directory:
``codes.npy`` (N, 10, L) int16, ``labels.npy`` (N,) int64, ``index.npy`` (N,) (each row's
position in the image listing: the official file number), ``manifest.json``. Deliberate
differences: an unreadable image is an error naming it unless skipping is asked for (the official
loader crashes on it), and skipped items are listed in the manifest; the official dataset's
optional ``ten_crop_105`` companion folder (drawn with probability 0.5 when it exists) is not made.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from guidance_repro.data import imagenet, shards
from guidance_repro.errors import ReproError
from guidance_repro.io import atomic_path, write_json

NUM_VIEWS = 10
VIEW_ORDER = ("top-left", "top-right", "bottom-left", "bottom-right", "center",
              "flip-top-left", "flip-top-right", "flip-bottom-left", "flip-bottom-right", "flip-center")


@dataclass(frozen=True)
class TenCropTransform:
    image_size: int = 384
    crop_range: float = 1.1

    @property
    def crop_size(self) -> int:
        return int(self.image_size * self.crop_range)  # the official int() truncation: 422 at 384

    def record(self) -> dict:
        return {"name": "llamagen-ten-crop-flip", **asdict(self), "crop_size": self.crop_size,
                "center_crop": "ADM center_crop_arr at crop_size", "views": list(VIEW_ORDER),
                "normalize": "(x / 255 - 0.5) / 0.5"}

    def views(self, image: Image.Image) -> np.ndarray:
        """PIL image -> uint8 (10, S, S, 3), the official TenCrop order."""
        if self.crop_size < self.image_size:
            raise ReproError(f"crop_range: {self.crop_range} gives a {self.crop_size} px crop, "
                             f"smaller than image_size {self.image_size}")
        base = imagenet.center_crop_dhariwal(image, self.crop_size)
        return np.stack(_five_crops(base, self.image_size) + _five_crops(base[:, ::-1], self.image_size))


def _five_crops(arr: np.ndarray, c: int) -> list[np.ndarray]:
    h, w = arr.shape[:2]
    top, left = int(round((h - c) / 2.0)), int(round((w - c) / 2.0))
    corners = [(0, 0), (0, w - c), (h - c, 0), (h - c, w - c), (top, left)]
    return [arr[y:y + c, x:x + c] for y, x in corners]


def normalize(views: np.ndarray) -> torch.Tensor:
    """uint8 (..., S, S, 3) -> float32 (..., 3, S, S) as ToTensor then Normalize(0.5, 0.5)."""
    x = torch.from_numpy(np.ascontiguousarray(views)).movedim(-1, -3).to(torch.float32).div(255)
    return x.sub(0.5).div(0.5).contiguous()


class _ViewsDataset(torch.utils.data.Dataset):
    """Items [lo, hi) of the folder as (index, views or None, error message)."""

    def __init__(self, folder: imagenet.ImageFolder, lo: int, hi: int, transform: TenCropTransform):
        self.folder, self.lo, self.hi, self.transform = folder, lo, hi, transform

    def __len__(self) -> int:
        return self.hi - self.lo

    def __getitem__(self, i: int):
        index = self.lo + i
        try:
            return index, self.transform.views(imagenet.open_image(self.folder.files[index])), ""
        except ReproError as exc:
            return index, None, str(exc)


def _collate(items):
    return items


class CodeEncoder:
    """Encodes chunks [start, stop) of an image folder: the ``encode`` of shards.run_shard."""

    def __init__(self, folder: imagenet.ImageFolder, vq, transform: TenCropTransform,
                 batch_size: int = 16, workers: int = 0, skip_unreadable: bool = False):
        if vq.cfg.image_size != transform.image_size:
            raise ReproError(f"--image-size: {transform.image_size} but the VQ network was built "
                             f"for {vq.cfg.image_size}")
        if vq.cfg.codebook_size > np.iinfo(np.int16).max + 1:
            raise ReproError(f"VQ codebook of {vq.cfg.codebook_size} codes does not fit int16 codes")
        self.folder, self.vq, self.transform = folder, vq, transform
        self.batch_size, self.workers, self.skip = batch_size, workers, skip_unreadable
        self.device = next(vq.parameters()).device

    @torch.no_grad()
    def _codes(self, views: list[np.ndarray]) -> np.ndarray:
        x = normalize(np.stack(views)).flatten(0, 1).to(self.device)  # (B*10, 3, S, S)
        idx = self.vq.encode_indices(x)
        return idx.reshape(len(views), NUM_VIEWS, -1).cpu().numpy().astype(np.int16)

    def __call__(self, start: int, stop: int) -> dict[str, np.ndarray]:
        data = _ViewsDataset(self.folder, start, stop, self.transform)
        loader = torch.utils.data.DataLoader(data, batch_size=self.batch_size, num_workers=self.workers,
                                             collate_fn=_collate)
        index, codes, skipped = [], [], []
        for batch in loader:
            good = []
            for i, views, error in batch:
                if views is None:
                    if not self.skip:
                        raise ReproError(f"{error} (pass --skip-unreadable / set the config key "
                                         f"skip_unreadable to skip such images; they are listed in the manifest)")
                    skipped.append((i, str(self.folder.files[i]), error))
                else:
                    good.append((i, views))
            if good:
                index += [i for i, _ in good]
                codes.append(self._codes([v for _, v in good]))
        g2 = self.vq.cfg.grid ** 2
        return {"index": np.asarray(index, np.int64),
                "codes": np.concatenate(codes) if codes else np.zeros((0, NUM_VIEWS, g2), np.int16),
                "labels": self.folder.labels[index] if index else np.zeros(0, np.int64),
                "skipped_index": np.asarray([s[0] for s in skipped], np.int64),
                "skipped_path": np.asarray([s[1] for s in skipped], dtype=np.str_),
                "skipped_reason": np.asarray([s[2] for s in skipped], dtype=np.str_)}


def shard_meta(folder: imagenet.ImageFolder, transform: TenCropTransform, vq_file: str | Path,
               vq_sha256: str, vq_config: dict, skip_unreadable: bool, num_shards: int) -> dict:
    rel = [str(p.relative_to(folder.root)) for p in folder.files]
    return {"kind": "llamagen-imagenet-codes-shard", "data": str(folder.root), "n": len(folder),
            "num_classes": len(folder.wnids), "fingerprint": shards.listing_fingerprint(rel, folder.labels),
            "transform": transform.record(), "vq_file": str(vq_file), "vq_sha256": vq_sha256,
            "vq_config": vq_config, "skip_unreadable": bool(skip_unreadable), "num_shards": num_shards}


def write_merged(shard_dirs: list[str | Path], out: str | Path) -> dict:
    """Merge finished shards into ``out/`` (codes.npy, labels.npy, index.npy, manifest.json); return the manifest."""
    arrays, records = shards.merge(shard_dirs)
    first = records[0]
    for key in ("transform", "vq_sha256", "vq_config", "skip_unreadable", "num_shards", "tf32"):
        other = next((r for r in records if r.get(key) != first.get(key)), None)
        if other is not None:
            raise ReproError(f"{other['dir']}: '{key}' differs from {first['dir']} (shards of different runs)")
    if len(records) != first["num_shards"]:
        raise ReproError(f"--shards: {len(records)} shards given, the run has {first['num_shards']}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("codes", "labels", "index"):
        with atomic_path(out / f"{name}.npy", suffix=".tmp.npy") as tmp:
            np.save(tmp, arrays[name])
    skipped = [{"index": int(i), "path": str(p), "reason": str(r)} for i, p, r in
               zip(arrays["skipped_index"], arrays["skipped_path"], arrays["skipped_reason"])]
    manifest = {
        "kind": "llamagen-imagenet-codes", "data": first["data"], "dataset_size": first["n"],
        "count": int(len(arrays["index"])), "num_classes": first["num_classes"],
        "codes": {"file": "codes.npy", "shape": list(arrays["codes"].shape), "dtype": str(arrays["codes"].dtype)},
        "labels": {"file": "labels.npy", "shape": list(arrays["labels"].shape), "dtype": str(arrays["labels"].dtype)},
        "index": {"file": "index.npy", "meaning": "row -> position in the sorted image listing"},
        "index_is_dataset_order": bool(np.all(np.diff(arrays["index"]) > 0)),
        "vq_file": first["vq_file"], "vq_sha256": first["vq_sha256"], "vq_config": first["vq_config"],
        "transform": first["transform"], "tf32": first.get("tf32", False), "skip_unreadable": first["skip_unreadable"], "skipped": skipped,
        "fingerprint": first["fingerprint"],
        "shards": [{"dir": r["dir"], "lo": r["lo"], "hi": r["hi"], "chunks": len(r["chunks"])} for r in records],
    }
    write_json(out / "manifest.json", manifest)
    return manifest


def read_manifest(root: str | Path) -> dict:
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise ReproError(f"{path}: codes manifest not found (run llamagen-merge-codes)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ReproError(f"{path}: not valid JSON ({exc})") from None
