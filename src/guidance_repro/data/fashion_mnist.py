"""Fashion-MNIST from its IDX files, checksum-verified, written once as a train/test artifact.

Sources accepted (``data.fashion_mnist`` in the config):

- a folder with the four ``*-ubyte.gz`` files: the Debian package ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist``) or a copy of the original release;
- the original download (only when the config sets ``download: true`` and names the URL).

Debian recompresses the ``.gz`` files, so their bytes differ from the original release while the
IDX payloads are identical. The check is therefore on the SHA-256 of the decompressed payload,
which both sources share; the original archives' MD5s (published by the dataset's authors) are
also accepted for the compressed files, so a download is verified before it is decompressed.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from guidance_repro.errors import ReproError
from guidance_repro.io import atomic_path, save_npz

CLASSES = ("T-shirt/top", "trouser", "pullover", "dress", "coat",
           "sandal", "shirt", "sneaker", "bag", "ankle boot")
# Short names used in captions ("a small red sneaker at the top left").
CAPTION_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat",
                 "sandal", "shirt", "sneaker", "bag", "boot")


@dataclass(frozen=True)
class IdxFile:
    name: str
    shape: tuple[int, ...]
    payload_sha256: str   # of the decompressed IDX bytes
    original_gz_md5: str  # of the .gz in the original release


FILES = {
    "train_images": IdxFile("train-images-idx3-ubyte.gz", (60000, 28, 28),
                            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                            "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "train_labels": IdxFile("train-labels-idx1-ubyte.gz", (60000,),
                            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                            "25c81989df183df01b3e8a0aad5dffbe"),
    "test_images": IdxFile("t10k-images-idx3-ubyte.gz", (10000, 28, 28),
                           "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                           "bef4ecab320f06d8554ea6380940ec79"),
    "test_labels": IdxFile("t10k-labels-idx1-ubyte.gz", (10000,),
                           "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                           "bb300cfdad3c16e7a12a480ee83cd310"),
}


def parse_idx(raw: bytes, source: str) -> np.ndarray:
    """Parse IDX bytes (big-endian header: 0, 0, dtype code, ndim, then ndim uint32 sizes)."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ReproError(f"{source}: not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ReproError(f"{source}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims)) + header
    if len(raw) != expected:
        raise ReproError(f"{source}: truncated or padded IDX file: {len(raw)} bytes, header says {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_verified(path: Path, spec: IdxFile) -> np.ndarray:
    """Decompress, checksum and parse one file; every failure names the file."""
    if not path.is_file():
        raise ReproError(f"{path}: missing Fashion-MNIST file")
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise ReproError(f"{path}: corrupt or truncated gzip file ({exc})") from None
    arr = parse_idx(raw, str(path))
    if arr.shape != spec.shape:
        raise ReproError(f"{path}: shape {arr.shape}, expected {spec.shape}")
    digest = hashlib.sha256(raw).hexdigest()
    if digest != spec.payload_sha256:
        raise ReproError(f"{path}: checksum mismatch (sha256 of the IDX payload {digest[:16]}..., "
                         f"expected {spec.payload_sha256[:16]}...)")
    return arr


def download(dest: Path, base_url: str) -> None:
    """Fetch the original archives into ``dest`` and check their MD5 before keeping them."""
    dest.mkdir(parents=True, exist_ok=True)
    for spec in FILES.values():
        target = dest / spec.name
        if target.is_file() and hashlib.md5(target.read_bytes()).hexdigest() == spec.original_gz_md5:
            continue
        url = base_url.rstrip("/") + "/" + spec.name
        with atomic_path(target, suffix=".gz.part") as tmp:
            try:
                urllib.request.urlretrieve(url, tmp)
            except OSError as exc:
                raise ReproError(f"data.fashion_mnist.url: could not download {url} ({exc})") from None
            md5 = hashlib.md5(tmp.read_bytes()).hexdigest()
            if md5 != spec.original_gz_md5:
                raise ReproError(f"{url}: MD5 {md5} does not match the release ({spec.original_gz_md5})")


def prepare(source_dir: Path, out_path: Path) -> dict[str, np.ndarray]:
    """Verify the four files in ``source_dir`` and write ``out_path`` (.npz) atomically."""
    arrays = {key: read_verified(Path(source_dir) / spec.name, spec) for key, spec in FILES.items()}
    for split in ("train", "test"):
        if arrays[f"{split}_labels"].max() > 9:
            raise ReproError(f"{source_dir}: {split} labels outside 0..9")
    save_npz(out_path, **arrays)
    return arrays


@dataclass
class FashionMNIST:
    train_images: np.ndarray  # (60000, 28, 28) uint8
    train_labels: np.ndarray  # (60000,) uint8
    test_images: np.ndarray   # (10000, 28, 28) uint8
    test_labels: np.ndarray   # (10000,) uint8

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in ("train", "test"):
            raise ReproError(f"unknown Fashion-MNIST split {name!r} (train or test)")
        return getattr(self, f"{name}_images"), getattr(self, f"{name}_labels")


def load(path: str | Path) -> FashionMNIST:
    """Load the prepared artifact written by :func:`prepare`."""
    path = Path(path)
    if not path.is_file():
        raise ReproError(f"{path}: prepared Fashion-MNIST artifact not found (run the fashion_mnist rule)")
    with np.load(path) as z:
        missing = [k for k in FILES if k not in z.files]
        if missing:
            raise ReproError(f"{path}: not a Fashion-MNIST artifact (missing {', '.join(missing)})")
        return FashionMNIST(**{k: z[k] for k in FILES})
