"""VAR's training images (cca.md §1.2 VAR column): an ImageNet train folder, the short side resized
to 288 with LANCZOS, a random 256x256 crop, no horizontal flip (VAR's ``build_dataset``:
Resize(round(1.125·256)), RandomCrop(256), hflip off).

The crop offsets are drawn from ``numpy.random.default_rng([seed, epoch, index])``, not from a
stateful generator: every image's crop depends only on (train.seed, epoch, image), so it is the
same for any number of processes and after a resume.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from guidance_repro.data import imagenet
from guidance_repro.errors import ReproError


def resize_short_side(image: Image.Image, short: int) -> Image.Image:
    """The short side to ``short`` px, the long side to int(short·long/short) (torchvision's
    Resize(int) rule), LANCZOS."""
    w, h = image.size
    if w <= h:
        size = (short, int(short * h / w))
    else:
        size = (int(short * w / h), short)
    return image.resize(size, Image.Resampling.LANCZOS)


def random_crop(arr: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``size`` x ``size`` crop of (H, W, 3) at offsets uniform over every valid position."""
    h, w = arr.shape[:2]
    top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return arr[top:top + size, left:left + size]


class TrainImages:
    """``draw(indices, epoch, seed)`` -> (uint8 (B, 3, crop, crop), int64 labels (B,))."""

    def __init__(self, root, labels_file=None, resize: int = 288, crop: int = 256):
        if not 0 < crop <= resize:
            raise ReproError(f"--crop: {crop} must be in (0, resize = {resize}]")
        self.folder = imagenet.scan(root, labels_file)
        self.resize, self.crop = resize, crop

    def __len__(self) -> int:
        return len(self.folder)

    @property
    def num_classes(self) -> int:
        return len(self.folder.wnids)

    def view(self, index: int, epoch: int, seed: int) -> np.ndarray:
        image = resize_short_side(imagenet.open_image(self.folder.files[index]), self.resize)
        rng = np.random.default_rng([seed, epoch, index])
        return random_crop(np.asarray(image), self.crop, rng)

    def draw(self, indices, epoch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        views = np.stack([self.view(int(i), epoch, seed) for i in indices])
        return np.ascontiguousarray(views.transpose(0, 3, 1, 2)), self.folder.labels[np.asarray(indices)]

    def record(self) -> dict:
        return {"root": str(self.folder.root), "images": len(self), "classes": self.num_classes,
                "resize_short_side": self.resize, "interpolation": "LANCZOS", "crop": f"random {self.crop}",
                "hflip": False, "crop_draw": "numpy default_rng([train.seed, epoch, index])"}
