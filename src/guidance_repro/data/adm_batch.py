"""ADM-format sample batches: an ``.npz`` with ``arr_0`` uint8 (N, H, W, 3) and ``arr_1`` int64 (N,)
labels, the file the OpenAI guided-diffusion evaluator (and LlamaGen's copy of it) reads.

A 50k-image batch at 256 px is 9.8 GB, so it is written and read in pieces: the writer streams
chunks into the ``arr_0.npy`` member of an uncompressed zip (the ``.npy`` header first, then the
raw C-order bytes, exactly what ``np.savez`` would write), atomically; the reader yields batches
of ``arr_0`` without loading it whole. ``np.load`` reads the result as any ``.npz``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from guidance_repro.errors import ReproError
from guidance_repro.io import atomic_path

_FMT = np.lib.format


def write_adm_batch(path: str | Path, shape: tuple[int, ...], chunks: Iterable[np.ndarray],
                    labels: np.ndarray) -> None:
    """Write ``arr_0`` of ``shape`` (N, H, W, 3) from uint8 ``chunks`` (in order) and ``arr_1``."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(shape) != 4 or shape[-1] != 3 or len(labels) != shape[0]:
        raise ReproError(f"{path}: batch shape {shape} with {len(labels)} labels, expected (N, H, W, 3) and N labels")
    with atomic_path(path, suffix=".tmp.npz") as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            with zf.open("arr_0.npy", "w", force_zip64=True) as fh:
                header = {"descr": _FMT.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                          "shape": tuple(int(s) for s in shape)}
                _FMT.write_array_header_1_0(fh, header)
                written = 0
                for chunk in chunks:
                    chunk = np.ascontiguousarray(chunk)
                    if chunk.dtype != np.uint8 or chunk.shape[1:] != tuple(shape[1:]):
                        raise ReproError(f"{path}: a chunk of {chunk.dtype} {chunk.shape}, expected "
                                         f"uint8 (n, {', '.join(map(str, shape[1:]))})")
                    if written + len(chunk) > shape[0]:
                        raise ReproError(f"{path}: more than the {shape[0]} images announced")
                    fh.write(chunk.tobytes())
                    written += len(chunk)
                if written != shape[0]:
                    raise ReproError(f"{path}: {written} images written, {shape[0]} announced")
            with zf.open("arr_1.npy", "w", force_zip64=True) as fh:
                _FMT.write_array(fh, labels, allow_pickle=False)


def _open_member(zf: zipfile.ZipFile, key: str, path) -> tuple:
    try:
        fh = zf.open(key + ".npy")
    except KeyError:
        raise ReproError(f"{path}: no array '{key}' (keys: {', '.join(n[:-4] for n in zf.namelist())})") from None
    version = _FMT.read_magic(fh)
    read = _FMT.read_array_header_1_0 if version == (1, 0) else _FMT.read_array_header_2_0
    shape, fortran, dtype = read(fh)
    return fh, tuple(shape), fortran, np.dtype(dtype)


def batch_info(path: str | Path) -> tuple[tuple[int, ...], int]:
    """(shape of arr_0, number of labels) of an ADM batch; errors name the file and the key."""
    path = Path(path)
    with _open_zip(path) as zf:
        fh, shape, fortran, dtype = _open_member(zf, "arr_0", path)
        fh.close()
        if len(shape) != 4 or shape[-1] != 3 or dtype != np.uint8 or fortran or shape[0] == 0:
            raise ReproError(f"{path}: key 'arr_0' must be uint8 (N > 0, H, W, 3) in C order, got {dtype} {shape}")
        n_labels = -1
        if "arr_1.npy" in zf.namelist():
            fh, lshape, _, _ = _open_member(zf, "arr_1", path)
            fh.close()
            n_labels = lshape[0] if len(lshape) == 1 else -2
    return shape, n_labels


def _open_zip(path: Path) -> zipfile.ZipFile:
    if not path.is_file():
        raise ReproError(f"{path}: ADM batch not found")
    try:
        return zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ReproError(f"{path}: not a readable .npz ({type(exc).__name__})") from None


def iter_images(path: str | Path, batch: int = 1000) -> Iterator[np.ndarray]:
    """``arr_0`` in consecutive uint8 batches of at most ``batch`` images."""
    path = Path(path)
    shape, _ = batch_info(path)
    per_image = int(np.prod(shape[1:]))
    with _open_zip(path) as zf:
        fh, *_ = _open_member(zf, "arr_0", path)
        with fh:
            for start in range(0, shape[0], batch):
                n = min(batch, shape[0] - start)
                data = fh.read(n * per_image)
                if len(data) != n * per_image:
                    raise ReproError(f"{path}: 'arr_0' is truncated at image {start}")
                yield np.frombuffer(data, dtype=np.uint8).reshape(n, *shape[1:])


def read_labels(path: str | Path) -> np.ndarray | None:
    """``arr_1`` (N,) int64, or None when the batch has no labels."""
    path = Path(path)
    shape, n_labels = batch_info(path)
    if n_labels == -1:
        return None
    if n_labels != shape[0]:
        raise ReproError(f"{path}: 'arr_1' must hold {shape[0]} labels (one per image)")
    with np.load(path, allow_pickle=False) as z:
        return z["arr_1"].astype(np.int64)
