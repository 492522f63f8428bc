"""Seeded tiny inputs of the golden-value computations (golden/values.py), written into a
scratch folder on every run: nothing is downloaded or committed. Each file has the format the
real task reads, so that the golden losses come from the real tasks and the real training loop.

- ``llamagen_codes.npz``: 4x4 code grids of a 32-token vocabulary, 5 classes;
- ``msvq.pt``: a seeded msvq tokenizer (28 px, 1 channel, schedule 1-2-3-4-5-7) in the loop's model
  file layout (task ``msvq-tokenizer``), shared by VAR and STAR;
- ``var_tokens.npz``: token rows of that schedule with labels (VAR);
- ``fmnist.npz``: a Fashion-MNIST-shaped artifact (uint8 28x28 images, labels) for the EDM task;
- ``text_encoder.pt``: a seeded tiny open_clip CLIP (task ``star-text-encoder``) and
  ``star_tokens.npz``: token rows with captions (STAR).

Every array is drawn from ``numpy.random.default_rng`` and every weight from ``torch.manual_seed``
with fixed seeds, so the files are the same on every machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

TINY_GPT = dict(vocab_size=32, grid=4, num_classes=5, dim=32, n_layer=2, n_head=2, multiple_of=16)
PATCH_NUMS = (1, 2, 3, 4, 5, 7)
TINY_MSVQ = dict(channels=[8, 8, 8], res_blocks=1, codebook_size=32, code_dim=8,
                 patch_nums=list(PATCH_NUMS), in_channels=1, image_size=28)
TINY_VAR = dict(vocab_size=32, code_dim=8, patch_nums=list(PATCH_NUMS), num_classes=5, depth=2,
                width_per_depth=16, head_dim=16, class_dropout=0.1)
TINY_CLIP = {"embed_dim": 16,
             "vision": {"image_size": 16, "patch_size": 8, "width": 16, "layers": 1, "head_width": 8},
             "text": {"context_length": 12, "width": 16, "heads": 2, "layers": 1}}
TINY_STAR = dict(depth=2, width_per_depth=16, head_dim=16, text_dropout=0.1)
CAPTIONS = ("a red disc", "two blue squares", "a green triangle above a ring", "", "bars and a cross")
N_EXAMPLES = 40


def _model_file(path: Path, task: str, model: torch.nn.Module, model_config: dict) -> Path:
    # The layout the training loop writes ({'model', 'model_config', 'task'}): the loaders need no more.
    torch.save({"model": model.state_dict(), "model_config": model_config, "task": task}, path)
    return path


def write_llamagen(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    path = folder / "llamagen_codes.npz"
    np.savez(path, codes=rng.integers(0, TINY_GPT["vocab_size"], (N_EXAMPLES, 4, 4)),
             labels=np.arange(N_EXAMPLES) % TINY_GPT["num_classes"])
    return path


def write_msvq(folder: Path) -> Path:
    from guidance_repro.var.msvq import MSVQConfig, MSVQModel
    cfg = MSVQConfig.from_dict(TINY_MSVQ, key="golden.msvq")
    torch.manual_seed(1)
    return _model_file(folder / "msvq.pt", "msvq-tokenizer", MSVQModel(cfg), cfg.to_dict())


def _token_rows(seed: int) -> np.ndarray:
    length = sum(p * p for p in PATCH_NUMS)
    return np.random.default_rng(seed).integers(0, TINY_MSVQ["codebook_size"], (N_EXAMPLES, length))


def write_var_tokens(folder: Path) -> Path:
    path = folder / "var_tokens.npz"
    np.savez(path, codes=_token_rows(2), labels=np.arange(N_EXAMPLES) % TINY_VAR["num_classes"])
    return path


def write_fmnist(folder: Path) -> Path:
    rng = np.random.default_rng(3)
    images = lambda n: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)  # noqa: E731
    path = folder / "fmnist.npz"
    np.savez(path, train_images=images(N_EXAMPLES), train_labels=(np.arange(N_EXAMPLES) % 10).astype(np.uint8),
             test_images=images(8), test_labels=(np.arange(8) % 10).astype(np.uint8))
    return path


def write_star(folder: Path) -> tuple[Path, Path]:
    from guidance_repro.metrics.toy_clip import build_clip, clip_config
    from guidance_repro.star.text import TEXT_TASK
    cfg = clip_config(TINY_CLIP, "golden.text_encoder")
    torch.manual_seed(4)
    encoder = _model_file(folder / "text_encoder.pt", TEXT_TASK, build_clip(cfg), cfg)
    tokens = folder / "star_tokens.npz"
    captions = np.array([CAPTIONS[i % len(CAPTIONS)] for i in range(N_EXAMPLES)])
    np.savez(tokens, codes=_token_rows(5), captions=captions, image_size=np.int64(28),
             patch_nums=np.array(PATCH_NUMS))
    return encoder, tokens
