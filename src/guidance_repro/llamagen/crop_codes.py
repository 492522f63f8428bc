"""The merged ImageNet codes CCA fine-tunes on (the input of ``llamagen-cca``).

Two forms:

- the folder ``llamagen-merge-codes`` writes (llamagen/imagenet_codes.py): ``codes.npy``
  (N, 10, T) and ``labels.npy`` (N,). The 10 views are LlamaGen's ten-crop extraction as the
  official ``extract_codes_c2i --ten-crop`` stores them: TenCrop's five crops and their
  horizontal flips (no further flip); T = 576 codes of one 384-px view in raster order;
- one uncompressed ``.npz`` (``numpy.savez``) with ``codes`` and ``labels``: (N, 10, 2, T) (a
  crop x flip layout; 20 variants), or one variant per image, (N, T) or (N, h, w), as the toy
  tier's codes files.

One variant per sample per epoch is drawn, as the official dataset draws one of the stored
augmentations per access: variant = a seeded function of (seed, epoch, sample index), so the
draw does not depend on the number of processes, the micro-batch layout or a resume. ``codes`` is
memory-mapped (ImageNet: 1.28 M x 10 x 576 codes, about 15 GB in int16), so every process reads
only the variants it trains on.
"""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

import numpy as np

from guidance_repro.errors import ReproError

CROPS, FLIPS = 10, 2
VARIANTS = CROPS * FLIPS


def _memmap_member(path: Path, member: str) -> np.ndarray:
    """An uncompressed ``.npy`` member of a zip archive, memory-mapped (read-only); a compressed
    one is read into memory."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED:  # savez_compressed (toy files): read it whole
        with np.load(path) as z:
            return z[member.removesuffix(".npy")]
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
        if local[:4] != b"PK\x03\x04":
            raise ReproError(f"{path}: damaged zip entry for '{member}'")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        fh.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(fh)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(fh)
        offset = fh.tell()
    if dtype.hasobject:
        raise ReproError(f"{path}: '{member}' holds Python objects, not integers")
    return np.memmap(path, dtype=dtype, mode="r", shape=shape, offset=offset,
                     order="F" if fortran else "C")


class CropCodes:
    """The codes and labels of a codes file; ``draw`` picks each sample's variant of an epoch."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if self.path.is_dir():
            self._read_folder()
            return
        try:
            with np.load(self.path) as z:
                if "codes" not in z or "labels" not in z:
                    raise ReproError(f"{self.path}: a codes file needs 'codes' and 'labels' "
                                     f"(has {', '.join(z.files) or 'nothing'})")
                self.labels = np.asarray(z["labels"], np.int64)
            codes = _memmap_member(self.path, "codes.npy")
        except (OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
            raise ReproError(f"{self.path}: not a readable codes file ({exc})") from None
        if not np.issubdtype(codes.dtype, np.integer):
            raise ReproError(f"{self.path}: 'codes' has dtype {codes.dtype}, not integers")
        if codes.ndim == 4:
            if codes.shape[1:3] != (CROPS, FLIPS):
                raise ReproError(f"{self.path}: 'codes' has shape {codes.shape}, expected "
                                 f"(N, {CROPS}, {FLIPS}, tokens)")
            self.codes = codes.reshape(len(codes), VARIANTS, codes.shape[3])
        elif codes.ndim in (2, 3):
            self.codes = codes.reshape(len(codes), 1, -1)
        else:
            raise ReproError(f"{self.path}: 'codes' has shape {codes.shape}; expected (N, 10, 2, T) "
                             f"or one variant per image (N, T)")
        if len(self.labels) != len(self.codes) or self.labels.ndim != 1:
            raise ReproError(f"{self.path}: {len(self.codes)} images but labels of shape {self.labels.shape}")

    def _read_folder(self) -> None:
        """The merged folder of ``llamagen-merge-codes``: codes.npy (N, views, T), labels.npy."""
        try:
            codes = np.load(self.path / "codes.npy", mmap_mode="r")
            self.labels = np.asarray(np.load(self.path / "labels.npy"), np.int64)
        except (OSError, ValueError) as exc:
            raise ReproError(f"{self.path}: not a merged codes folder (codes.npy, labels.npy: {exc})") from None
        if codes.ndim != 3 or not np.issubdtype(codes.dtype, np.integer):
            raise ReproError(f"{self.path}/codes.npy: shape {codes.shape} dtype {codes.dtype}, "
                             "expected integers (N, views, tokens)")
        if self.labels.shape != (len(codes),):
            raise ReproError(f"{self.path}: {len(codes)} images but labels of shape {self.labels.shape}")
        self.codes = codes

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def variants(self) -> int:
        return self.codes.shape[1]

    @property
    def tokens(self) -> int:
        return self.codes.shape[2]

    def variant(self, indices: np.ndarray, epoch: int, seed: int) -> np.ndarray:
        """The variant (crop * 2 + flip) each of ``indices`` is read with in ``epoch``."""
        if self.variants == 1:
            return np.zeros(len(indices), np.int64)
        return np.asarray([np.random.SeedSequence([seed, epoch, int(i)]).generate_state(1)[0] % self.variants
                           for i in indices], np.int64)

    def draw(self, indices: np.ndarray, epoch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(codes (B, T) int64, labels (B,) int64) of ``indices`` in ``epoch``."""
        indices = np.asarray(indices, np.int64)
        rows = self.codes[indices, self.variant(indices, epoch, seed)]
        return np.asarray(rows, np.int64), self.labels[indices]

    def check(self, vocab_size: int, num_classes: int, seq_len: int) -> None:
        """Token count, label range and (on the first 1024 images) code range against the model."""
        if self.tokens != seq_len:
            raise ReproError(f"{self.path}: {self.tokens} codes per image, the model has {seq_len}")
        if self.labels.size and (self.labels.min() < 0 or self.labels.max() >= num_classes):
            raise ReproError(f"{self.path}: labels range {self.labels.min()}..{self.labels.max()}, "
                             f"the model has {num_classes} classes")
        head = np.asarray(self.codes[:1024])
        if head.size and (head.min() < 0 or head.max() >= vocab_size):
            raise ReproError(f"{self.path}: codes range {head.min()}..{head.max()}, vocab_size {vocab_size}")


def write_crop_codes(path: str | os.PathLike, codes: np.ndarray, labels: np.ndarray) -> None:
    """Write a codes file in the format above (uncompressed, so it can be memory-mapped)."""
    codes = np.asarray(codes)
    if codes.ndim != 4 or codes.shape[1:3] != (CROPS, FLIPS):
        raise ReproError(f"codes: shape {codes.shape}, expected (N, {CROPS}, {FLIPS}, tokens)")
    np.savez(path, codes=codes, labels=np.asarray(labels, np.int64))
