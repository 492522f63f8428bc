"""ImageNet (paper tier): an image folder with the ADM center crop, and the ADM reference batch.

Folder layout: one sub-folder per class named by its WordNet id (``n01440764/...JPEG``). Labels
are the index of the wnid in sorted order (0..999 for the full set, the torchvision/ADM
convention), or, when a labels file is given, its line number: one class per line, the first
whitespace-separated token being the wnid (the layout of ImageNet's ``LOC_synset_mapping.txt``).

Crop ("center-crop-dhariwal", guided-diffusion's ``center_crop_arr``, also EDM2's
``dataset_tool.py --transform=center-crop-dhariwal``): halve the image with a box filter while
its short side is ≥ 2× the target, resize bicubically so the short side equals the target
(rounded sizes), then take the central target×target crop (offsets floor((size − target)/2)).

Reference batch (``VIRTUAL_imagenet256_labeled.npz``, OpenAI guided-diffusion evaluator; CCA
evaluates against it, ``reference/cca.md`` §3): ``arr_0`` uint8 (N, H, W, 3) images (10k, used
for precision/recall), and the full-train-set Inception statistics ``mu`` (2048,) / ``sigma``
(2048, 2048) of ``pool_3`` and ``mu_s`` (D,) / ``sigma_s`` (D, D) of the spatial features
(``mixed_6/conv``, first 7 channels: D = 7·17·17 = 2023) used for sFID.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from guidance_repro.errors import ReproError

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
POOL_DIM = 2048


def center_crop_dhariwal(image: Image.Image, resolution: int) -> np.ndarray:
    """ADM center crop of a PIL image to ``resolution``² → uint8 (resolution, resolution, 3)."""
    if resolution < 1:
        raise ReproError(f"resolution: must be >= 1, got {resolution}")
    image = image.convert("RGB")
    while min(image.size) >= 2 * resolution:
        image = image.resize(tuple(s // 2 for s in image.size), resample=Image.Resampling.BOX)
    scale = resolution / min(image.size)
    image = image.resize(tuple(round(s * scale) for s in image.size), resample=Image.Resampling.BICUBIC)
    arr = np.asarray(image)
    top = (arr.shape[0] - resolution) // 2
    left = (arr.shape[1] - resolution) // 2
    return np.ascontiguousarray(arr[top:top + resolution, left:left + resolution])


def open_image(path: Path) -> Image.Image:
    """Open and decode an image fully; a missing or unreadable file is a ReproError naming it."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except FileNotFoundError:
        raise ReproError(f"{path}: image not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ReproError(f"{path}: cannot decode image ({exc})") from None


def read_wnids(labels_file: str | Path) -> list[str]:
    """Class order from a labels file: line i (non-empty) starts with the wnid of label i."""
    path = Path(labels_file)
    if not path.is_file():
        raise ReproError(f"{path}: labels file not found")
    wnids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not wnids:
        raise ReproError(f"{path}: labels file is empty")
    dup = sorted({w for w in wnids if wnids.count(w) > 1})
    if dup:
        raise ReproError(f"{path}: duplicate wnids in labels file ({', '.join(dup[:3])})")
    return wnids


@dataclass(frozen=True)
class ImageFolder:
    root: Path
    files: tuple[Path, ...]
    labels: np.ndarray       # (N,) int64
    wnids: tuple[str, ...]   # label -> wnid

    def __len__(self) -> int:
        return len(self.files)


def scan(root: str | Path, labels_file: str | Path | None = None) -> ImageFolder:
    """List the images of a class-folder tree (sorted by class, then file name)."""
    root = Path(root)
    if not root.is_dir():
        raise ReproError(f"{root}: ImageNet folder not found")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise ReproError(f"{root}: no class sub-folders")
    wnids = read_wnids(labels_file) if labels_file else [p.name for p in folders]
    index = {w: i for i, w in enumerate(wnids)}
    files, labels = [], []
    for folder in folders:
        if folder.name not in index:
            raise ReproError(f"{folder}: class folder not listed in the labels file {labels_file}")
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        files += found
        labels += [index[folder.name]] * len(found)
    if not files:
        raise ReproError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders")
    return ImageFolder(root, tuple(files), np.asarray(labels, dtype=np.int64), tuple(wnids))


def iter_batches(folder: ImageFolder, resolution: int, batch_size: int = 64,
                 limit: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (uint8 (B, r, r, 3), int64 (B,)) batches of ADM-cropped images in folder order."""
    if batch_size < 1:
        raise ReproError(f"batch_size: must be >= 1, got {batch_size}")
    n = len(folder) if limit is None else min(limit, len(folder))
    for lo in range(0, n, batch_size):
        hi = min(lo + batch_size, n)
        images = np.stack([center_crop_dhariwal(open_image(p), resolution) for p in folder.files[lo:hi]])
        yield images, folder.labels[lo:hi].copy()


@dataclass(frozen=True)
class ReferenceBatch:
    path: Path
    images: np.ndarray | None     # (N, H, W, 3) uint8, None when not loaded
    image_shape: tuple[int, ...]  # shape of arr_0 (known even when not loaded)
    mu: np.ndarray                # (2048,) pool_3 mean
    sigma: np.ndarray             # (2048, 2048)
    mu_s: np.ndarray              # (D,) spatial mean
    sigma_s: np.ndarray           # (D, D)


def _header(zf: zipfile.ZipFile, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one array of an .npz without reading its data (arr_0 is ~2 GB)."""
    fmt = np.lib.format
    with zf.open(key + ".npy") as f:
        version = fmt.read_magic(f)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read(f)
    return shape, dtype


def load_reference_batch(path: str | Path, load_images: bool = True) -> ReferenceBatch:
    """Load and validate the ADM reference batch; errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ReproError(f"{path}: ADM reference batch not found (VIRTUAL_imagenet256_labeled.npz)")
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ReproError(f"{path}: not a readable .npz ({exc})") from None
    with z:
        for key in ("arr_0", "mu", "sigma", "mu_s", "sigma_s"):
            if key not in z.files:
                raise ReproError(f"{path}: missing key '{key}' (expected arr_0, mu, sigma, mu_s, sigma_s)")
        shape, dtype = _header(z.zip, "arr_0")
        if len(shape) != 4 or shape[-1] != 3 or dtype != np.uint8:
            raise ReproError(f"{path}: key 'arr_0' must be uint8 (N, H, W, 3), got {np.dtype(dtype)} {shape}")
        stats = {k: z[k].astype(np.float64) for k in ("mu", "sigma", "mu_s", "sigma_s")}
        for m, s, dim in (("mu", "sigma", POOL_DIM), ("mu_s", "sigma_s", None)):
            d = stats[m].shape[0] if stats[m].ndim == 1 else -1
            if stats[m].ndim != 1 or (dim is not None and d != dim):
                raise ReproError(f"{path}: key '{m}' must have shape ({dim or 'D'},), got {stats[m].shape}")
            if stats[s].shape != (d, d):
                raise ReproError(f"{path}: key '{s}' must have shape ({d}, {d}) to match '{m}', "
                                 f"got {stats[s].shape}")
            for k in (m, s):
                if not np.all(np.isfinite(stats[k])):
                    raise ReproError(f"{path}: key '{k}' has non-finite values")
        images = z["arr_0"] if load_images else None
    return ReferenceBatch(path, images, tuple(shape), stats["mu"], stats["sigma"], stats["mu_s"], stats["sigma_s"])
