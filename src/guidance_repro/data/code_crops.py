"""A training dataset over multi-view codes: one view (crop x flip) drawn per sample per epoch.

The merged artifact of ``llamagen-imagenet-codes`` holds ``codes.npy`` (N, V, L) (V = 10 views:
five crops and their mirror images) and ``labels.npy`` (N,). LlamaGen's dataset for the
``*_flip_ten_crop`` codes draws ``torch.randint(0, V)`` per ``__getitem__`` from the worker's
global RNG, so the draw depends on worker count and order. Here the view of sample ``i`` in epoch
``e`` is a pure function of (seed, epoch, i) (a numpy generator seeded with the three), uniform over the V
views: the same on any number of workers or ranks, and a resumed epoch draws what it would have.
The codes file is memory-mapped (the full ImageNet set is ~15 GB as int16).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from guidance_repro.errors import ReproError

def view_index(seed: int, epoch: int, index: np.ndarray | int, num_views: int) -> np.ndarray:
    """The view of each sample ``index`` in ``epoch``: int64, uniform in [0, num_views).

    Each draw is the first integer of a generator seeded with the entropy (seed, epoch, index)
    (numpy's SeedSequence mixes the three words), so it depends on nothing else."""
    if num_views < 1:
        raise ReproError(f"num_views: must be >= 1, got {num_views}")
    index = np.atleast_1d(np.asarray(index, dtype=np.int64))
    if min(seed, epoch) < 0 or (index < 0).any():
        raise ReproError(f"seed, epoch and sample indices must be >= 0 (seed {seed}, epoch {epoch})")
    return np.array([np.random.default_rng([int(seed), int(epoch), int(i)]).integers(num_views)
                     for i in index], dtype=np.int64)


class CodeViewDataset(torch.utils.data.Dataset):
    """Items ``(codes (L,) int64, label int64)``; call :meth:`set_epoch` before each epoch."""

    def __init__(self, root: str | Path, seed: int = 0):
        root = Path(root)
        for name in ("codes.npy", "labels.npy"):
            if not (root / name).is_file():
                raise ReproError(f"{root / name}: not found (a merged codes directory holds codes.npy and labels.npy)")
        self.codes = np.load(root / "codes.npy", mmap_mode="r")
        self.labels = np.load(root / "labels.npy")
        if self.codes.ndim != 3 or self.labels.shape != (len(self.codes),):
            raise ReproError(f"{root}: codes {self.codes.shape} / labels {self.labels.shape} are not (N, V, L) / (N,)")
        self.seed, self.epoch = int(seed), 0

    @property
    def num_views(self) -> int:
        return self.codes.shape[1]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, i: int):
        v = int(view_index(self.seed, self.epoch, i, self.num_views)[0])
        return torch.from_numpy(self.codes[i, v].astype(np.int64)), torch.tensor(int(self.labels[i]))
