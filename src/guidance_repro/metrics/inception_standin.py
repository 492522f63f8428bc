"""A TEST STAND-IN for clean-fid's legacy-TF Inception TorchScript (``inception-2015-12-05.pt``).

The mini paper tier must run the paper's evaluation code paths without the real 92 MB file, so
this module writes a tiny random-weight TorchScript file with the *same call interface* as the
real one. That interface (what metrics/features.py, clean-fid's InceptionV3W and the ADM
evaluation rely on; the ADM evaluation must use nothing else):

``base = torch.jit.load(path)``

- ``base(img, return_features: bool = False, use_fp16: bool = False, no_output_bias: bool = False)``:
  ``img`` float (B, 3, H, W) with values in [0, 255], any H, W. It resizes to 299x299 inside
  (:func:`legacy_resize`: ``affine_grid`` + bilinear ``grid_sample``, border padding,
  ``align_corners=False``, with the half-pixel shift of the real file), maps to [-1, 1] by
  ``(x - 128) / 128`` and runs ``base.layers``. ``return_features=True`` returns the pool
  features (B, 2048) (``pool_3``, the FID features); otherwise the softmax over 1008 logits of
  ``base.output`` (``no_output_bias=True`` drops the output bias, as the ADM/StyleGAN IS does).
  The stand-in always computes in float32 (``use_fp16`` is accepted for the signature only).
- ``base.layers``: the children ``conv, conv_1, conv_2, pool0, conv_3, conv_4, pool1, mixed,
  mixed_1, ..., mixed_10, pool2`` run in that order; on a (B, 3, 299, 299) input in [-1, 1]
  ``base.layers(x)`` is (B, 2048, 1, 1) (clean-fid's ``clean`` mode calls it directly).
- ``base.layers.mixed_6.conv``: the first branch of ``mixed_6``; running the children up to
  ``mixed_5`` and then ``mixed_6.conv`` gives (B, C, 17, 17), C >= 7; the ADM evaluator's sFID
  features (``mixed_6/conv``) are its first 7 channels flattened: 7 * 17 * 17 = 2023
  (:func:`spatial_features`).
- ``base.output``: Linear(2048, 1008) with ``weight`` and ``bias`` (IS logits = ``features @ weight.T``).

The file carries ``TEST-STANDIN.txt`` as a TorchScript extra file and ``base.test_standin`` as a
string attribute; :func:`is_standin` reads the former. Random weights: its features say nothing
about image quality; they only make the evaluation code run on the real interface.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from guidance_repro.io import atomic_path

STANDIN_NOTE = ("TEST STAND-IN for inception-2015-12-05.pt (clean-fid / StyleGAN legacy-TF Inception): "
                "random weights, same call interface; never use for real metrics")
EXTRA_FILE = "TEST-STANDIN.txt"
POOL_DIM, NUM_LOGITS, SPATIAL_CHANNELS = 2048, 1008, 7
ORDER = ("conv", "conv_1", "conv_2", "pool0", "conv_3", "conv_4", "pool1", "mixed", "mixed_1", "mixed_2",
         "mixed_3", "mixed_4", "mixed_5", "mixed_6", "mixed_7", "mixed_8", "mixed_9", "mixed_10", "pool2")


def legacy_resize(img: torch.Tensor, size: int = 299) -> torch.Tensor:
    """The real file's resize: an identity affine grid shifted by half a pixel of the input and of
    the output grid, sampled bilinearly with border padding (align_corners False)."""
    b, c, h, w = img.shape
    x = img.to(torch.float32)
    theta = torch.eye(2, 3, device=x.device, dtype=x.dtype)
    theta[0, 2] += theta[0, 0] / w - theta[0, 0] / size
    theta[1, 2] += theta[1, 1] / h - theta[1, 1] / size
    grid = F.affine_grid(theta.unsqueeze(0).repeat(b, 1, 1), [b, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class _ConvReLU(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=False)
        # He init: activations keep their scale through ~40 ReLU convs (torch's default shrinks
        # them to ~1e-9 by pool2, which would make every Frechet distance ~0).
        nn.init.kaiming_normal_(self.conv.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


class _Mixed(nn.Module):
    """Two branches, concatenated: ``conv`` (1x1) and ``tower`` (1x1 then 3x3); same size."""

    def __init__(self, cin: int, a: int, b: int):
        super().__init__()
        self.conv = _ConvReLU(cin, a, 1)
        self.tower = nn.Sequential(_ConvReLU(cin, b, 1), _ConvReLU(b, b, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x)], 1)


class _Reduce(nn.Module):
    """Grid reduction: ``conv`` (3x3, stride 2) beside a 3x3/2 max pool, concatenated."""

    def __init__(self, cin: int, a: int):
        super().__init__()
        self.conv = _ConvReLU(cin, a, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), F.max_pool2d(x, 3, 2)], 1)


def _layers() -> nn.Sequential:
    # Spatial sizes follow Inception-v3 at 299 px: 149, 147, 147, 73, 73, 71, 35 (mixed..mixed_2),
    # 17 (mixed_3..mixed_7), 8 (mixed_8..mixed_10), 1; widths are tiny except the 2048-d output.
    blocks = [("conv", _ConvReLU(3, 8, 3, stride=2)), ("conv_1", _ConvReLU(8, 8, 3)),
              ("conv_2", _ConvReLU(8, 16, 3, padding=1)), ("pool0", nn.MaxPool2d(3, 2)),
              ("conv_3", _ConvReLU(16, 16, 1)), ("conv_4", _ConvReLU(16, 32, 3)), ("pool1", nn.MaxPool2d(3, 2)),
              ("mixed", _Mixed(32, 16, 16)), ("mixed_1", _Mixed(32, 16, 16)), ("mixed_2", _Mixed(32, 16, 16)),
              ("mixed_3", _Reduce(32, 32)), ("mixed_4", _Mixed(64, 32, 32)), ("mixed_5", _Mixed(64, 32, 32)),
              ("mixed_6", _Mixed(64, 32, 32)), ("mixed_7", _Mixed(64, 32, 32)), ("mixed_8", _Reduce(64, 64)),
              ("mixed_9", _Mixed(128, 64, 64)), ("mixed_10", _Mixed(128, 2048 - 64, 64)),
              ("pool2", nn.AvgPool2d(8))]
    return nn.Sequential(OrderedDict(blocks))


class InceptionStandIn(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = _layers()
        self.output = nn.Linear(POOL_DIM, NUM_LOGITS)
        self.test_standin = STANDIN_NOTE

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        x = (legacy_resize(img) - 128) / 128
        features = self.layers(x).reshape(-1, 2048)  # POOL_DIM (TorchScript reads no globals)
        if return_features:
            return features
        logits = F.linear(features, self.output.weight) if no_output_bias else self.output(features)
        return F.softmax(logits, dim=1)


def write_inception_standin(path: str | Path, seed: int = 0) -> Path:
    """Script a seeded random-weight stand-in and save it (atomically) as TorchScript."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = InceptionStandIn().eval()
    # torch.jit warns that it is deprecated; the real file is TorchScript, so the stand-in must be.
    with warnings.catch_warnings(), atomic_path(path, suffix=".tmp.pt") as tmp:
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(model), str(tmp), _extra_files={EXTRA_FILE: STANDIN_NOTE})
    return Path(path)


def load(path: str | Path, extra: dict | None = None):
    """``torch.jit.load`` on CPU, without its deprecation notice (the real file is TorchScript)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu", _extra_files=extra if extra is not None else {}).eval()


def is_standin(path: str | Path) -> bool:
    """True when the TorchScript file at ``path`` is one written by :func:`write_inception_standin`."""
    extra = {EXTRA_FILE: ""}
    load(path, extra)
    return extra[EXTRA_FILE] in (STANDIN_NOTE, STANDIN_NOTE.encode())


def spatial_features(base, img: torch.Tensor) -> torch.Tensor:
    """ADM's sFID features through the real interface: resize, normalise, children of
    ``base.layers`` up to ``mixed_5``, then ``mixed_6.conv``; first 7 channels, flattened."""
    x = (legacy_resize(img) - 128) / 128
    layers = base.layers
    for name in ORDER[:ORDER.index("mixed_6")]:
        x = getattr(layers, name)(x)
    x = layers.mixed_6.conv(x)
    return x[:, :SPATIAL_CHANNELS].flatten(1)
