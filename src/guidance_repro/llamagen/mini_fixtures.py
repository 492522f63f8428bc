"""TEST STAND-IN fixtures for the paper-shaped mini tier (``mini-paper-fixtures``).

Everything is made from seeds, never downloaded, never committed, and labelled as a test stand-in
in its file name and in ``TEST-STANDIN-fixtures.json`` (the manifest: what each file stands in
for, the widths to load it with, sha256). Layout under ``--out``:

- ``imagenet/train/<wnid>/<wnid>_<k>.JPEG``: an ImageNet-layout folder, a few classes x a few
  images at ``image_size`` px. Class k is a shape (disc, square, triangle, bars, ring, cross) in a
  colour on a textured background, with random position, size and jitter, so that classes differ
  and images within a class vary. wnids are ``n9999xxxx`` (no real synset), and
  ``imagenet/LOC_synset_mapping.TEST-STANDIN.txt`` gives the class order.
- ``llamagen/c2i_{B,L,XL,XXL,3B}_384.TEST-STANDIN.pt``: official-layout GPT files with tiny widths
  and random weights, in the real containers (``{'model': sd}`` for B/L/XL, the raw state dict for
  XXL/3B); load with ``load_official_gpt(path, size, image_size, **gpt_overrides[size])``.
- ``llamagen/vq_ds16_c2i.TEST-STANDIN.pt``: an official-layout VQ-16 (``{'model': sd}``, the same
  344 key names as the release, five levels) with tiny widths; load with
  ``load_official_vq(path, cfg=VQ16Config.from_dict(vq_config))``.
- ``adm/VIRTUAL_imagenet256_labeled.TEST-STANDIN.npz``: an ADM-format reference batch: ``arr_0``
  uint8 (N, ref_size, ref_size, 3) and STORED statistics ``mu``/``sigma`` (2048) and
  ``mu_s``/``sigma_s`` (2023) computed by the Inception stand-in from a separate, larger set of
  images of the same classes (as the real file stores full-train-set statistics beside 10k images).
- ``inception/inception-2015-12-05.TEST-STANDIN.pt``: metrics/inception_standin.py's TorchScript.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from guidance_repro.errors import ReproError
from guidance_repro.io import atomic_path, save_npz, write_json
from guidance_repro.llamagen.model import GPT
from guidance_repro.llamagen.official import PAPER_SIZES, official_gpt_config
from guidance_repro.llamagen.vq16 import VQ16, VQ16Config
from guidance_repro.metrics import inception_standin
from guidance_repro.metrics.features import file_sha256

TAG = "TEST-STANDIN"
SHAPES = ("disc", "square", "triangle", "bars", "ring", "cross")
# Tiny widths per size, distinct so that a file read as the wrong size fails strict loading.
GPT_WIDTHS = {"B": dict(dim=32, n_layer=2, n_head=2), "L": dict(dim=32, n_layer=3, n_head=2),
              "XL": dict(dim=48, n_layer=2, n_head=3), "XXL": dict(dim=48, n_layer=3, n_head=3),
              "3B": dict(dim=40, n_layer=2, n_head=2)}
RAW_STATE_DICT_SIZES = ("XXL", "3B")   # the FSDP-saved releases hold no {'model'} container
VQ_WIDTHS = dict(ch=8, ch_mult=[1, 1, 2, 2, 4], num_res_blocks=2, z_channels=16, codebook_size=512,
                 code_dim=8, usage_buffer=1024, norm_groups=8)


def wnid(k: int) -> str:
    return f"n9999{k:04d}"


def class_image(k: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """One image of class ``k``: its shape and hue, random placement, on a noisy background."""
    hue = (k * 0.38) % 1.0
    colour = tuple(int(255 * c) for c in _hsv(hue, 0.8, 0.9))
    bg = rng.integers(0, 90, 3)
    base = np.clip(bg + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(base)
    draw = ImageDraw.Draw(im)
    r = size * rng.uniform(0.18, 0.32)
    cx, cy = rng.uniform(r, size - r, 2)
    box = (cx - r, cy - r, cx + r, cy + r)
    shape = SHAPES[k % len(SHAPES)]
    if shape == "disc":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    elif shape == "bars":
        for j in range(3):
            x0 = cx - r + j * 2 * r / 3
            draw.rectangle((x0, cy - r, x0 + r / 3, cy + r), fill=colour)
    elif shape == "ring":
        draw.ellipse(box, outline=colour, width=max(1, int(r / 3)))
    else:
        draw.rectangle((cx - r, cy - r / 4, cx + r, cy + r / 4), fill=colour)
        draw.rectangle((cx - r / 4, cy - r, cx + r / 4, cy + r), fill=colour)
    return np.asarray(im)


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    i, f = int(h * 6) % 6, h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def write_imagenet(root: Path, classes: int, per_class: int, size: int, seed: int) -> list[Path]:
    rng = np.random.default_rng([seed, 1])
    files = []
    for k in range(classes):
        folder = root / "train" / wnid(k)
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            path = folder / f"{wnid(k)}_{j}.JPEG"
            with atomic_path(path, suffix=".tmp.JPEG") as tmp:
                Image.fromarray(class_image(k, rng, size)).save(tmp, format="JPEG", quality=90)
            files.append(path)
    mapping = root / f"LOC_synset_mapping.{TAG}.txt"
    mapping.write_text("".join(f"{wnid(k)} TEST STAND-IN class {k} ({SHAPES[k % len(SHAPES)]})\n"
                               for k in range(classes)))
    return files + [mapping]


def _randomise(model: torch.nn.Module, seed: int) -> dict:
    """Every parameter N(0, 0.02) (norm weights around 1): random weights, nothing zero."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            noise = torch.randn(v.shape, generator=gen) * 0.02
            v = (1 + noise) if "norm" in k and k.endswith("weight") else noise
        sd[k] = v.clone()
    return sd


def write_gpts(root: Path, vocab: int, image_size: int, seed: int) -> dict[str, Path]:
    out = {}
    for i, size in enumerate(PAPER_SIZES):
        cfg = official_gpt_config(size, image_size, vocab_size=vocab, **GPT_WIDTHS[size])
        sd = _randomise(GPT(cfg), seed * 100 + i)
        path = root / f"c2i_{size}_384.{TAG}.pt"
        with atomic_path(path, suffix=".tmp.pt") as tmp:
            torch.save(sd if size in RAW_STATE_DICT_SIZES else {"model": sd}, tmp)
        out[size] = path
    return out


def write_vq(path: Path, image_size: int, seed: int) -> Path:
    torch.manual_seed(seed)
    vq = VQ16(VQ16Config.from_dict({**VQ_WIDTHS, "image_size": image_size}))
    with atomic_path(path, suffix=".tmp.pt") as tmp:
        torch.save({"model": {k: v.clone() for k, v in vq.state_dict().items()}}, tmp)
    return path


def _inception_stats(base, images: np.ndarray) -> dict[str, np.ndarray]:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).to(torch.float32).contiguous()
    with torch.no_grad():
        pool = base(x, return_features=True).double().numpy()
        spatial = inception_standin.spatial_features(base, x).double().numpy()
    return {"mu": pool.mean(0), "sigma": np.cov(pool, rowvar=False),
            "mu_s": spatial.mean(0), "sigma_s": np.cov(spatial, rowvar=False)}


def write_reference_batch(path: Path, inception: Path, classes: int, n: int, size: int, seed: int) -> Path:
    rng = np.random.default_rng([seed, 2])
    labels = np.arange(n) % classes
    arr_0 = np.stack([class_image(int(k), rng, size) for k in labels])
    stat_images = np.stack([class_image(int(k), rng, size) for k in np.arange(4 * n) % classes])
    base = inception_standin.load(inception)
    save_npz(path, arr_0=arr_0, **_inception_stats(base, stat_images))
    return path


def write_fixtures(out: str | Path, seed: int = 0, classes: int = 4, images_per_class: int = 6,
                   image_size: int = 64, ref_images: int = 32, ref_size: int = 64) -> dict:
    """Write every fixture under ``out`` and the manifest ``TEST-STANDIN-fixtures.json``."""
    if not 1 <= classes <= 1000 or images_per_class < 1 or ref_images < 2:
        raise ReproError("mini-paper-fixtures: needs 1..1000 classes, >= 1 image per class, >= 2 reference images")
    if image_size % 16 or image_size < 16:
        raise ReproError(f"--image-size: {image_size} must be a multiple of 16 (VQ-16)")
    out = Path(out)
    images = write_imagenet(out / "imagenet", classes, images_per_class, image_size, seed)
    gpts = write_gpts(out / "llamagen", VQ_WIDTHS["codebook_size"], image_size, seed)
    vq = write_vq(out / "llamagen" / f"vq_ds16_c2i.{TAG}.pt", image_size, seed)
    inception = inception_standin.write_inception_standin(
        out / "inception" / f"inception-2015-12-05.{TAG}.pt", seed)
    ref = write_reference_batch(out / "adm" / f"VIRTUAL_imagenet256_labeled.{TAG}.npz", inception,
                                classes, ref_images, ref_size, seed)
    files = {**{f"gpt_{s}": p for s, p in gpts.items()}, "vq": vq, "inception": inception, "reference_batch": ref}
    manifest = {
        "kind": "mini-paper-fixtures", "note": "TEST STAND-IN files: random weights and synthetic images, "
        "for testing the paper-tier code paths only; never for real results", "seed": seed,
        "imagenet": {"root": str(out / "imagenet" / "train"), "classes": classes,
                     "images_per_class": images_per_class, "image_size": image_size,
                     "wnids": [wnid(k) for k in range(classes)], "labels_file": str(images[-1])},
        "gpt_overrides": {s: {"vocab_size": VQ_WIDTHS["codebook_size"], **GPT_WIDTHS[s]} for s in PAPER_SIZES},
        "gpt_image_size": image_size, "vq_config": {**VQ_WIDTHS, "image_size": image_size},
        "reference_batch": {"images": ref_images, "size": ref_size, "stats_images": 4 * ref_images},
        "files": {k: {"path": str(p), "sha256": file_sha256(p)} for k, p in files.items()},
    }
    write_json(out / f"{TAG}-fixtures.json", manifest)
    return manifest
