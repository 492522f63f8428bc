"""CLIP score and CLIP retrieval accuracy through open_clip.

CLIP score (star.md §6):

* ``raw`` (default, STAR's ``metrics/clip_score*.py``): the mean over images of the raw cosine
  between the image embedding and its caption's embedding (not x100, no clamp);
* ``clamp100`` (torchmetrics ``CLIPScore``): the mean of max(100 * cos, 0).

Models (``evaluation.clip`` in the config):

* ``model: toy-judge``: the small CLIP the toy tier trains (``toy_clip.py``), rebuilt from its
  model file ``weights``;
* ``model: <open_clip architecture>``, e.g. ``ViT-L-14`` for the paper tier: built with
  ``open_clip.create_model_and_transforms(model, pretrained=<weights>)`` from a LOCAL file only,
  an open_clip state dict (.bin/.pth/.safetensors; e.g. ``open_clip_model.safetensors`` of HF
  ``timm/vit_large_patch14_clip_224.openai``). A name of a pretrained tag is never passed, so
  nothing is downloaded. ``quick_gelu`` (default true) must match how the weights were trained:
  OpenAI's weights use QuickGELU. Images go through open_clip's validation transform (224,
  bicubic resize of the short side + center crop, OpenAI mean/std), as ``clip.load`` does for STAR.

Retrieval top-1 (image -> text): images are cut into consecutive groups of ``group_size``; each
image picks the most similar caption of its group; it is right when that caption's text equals its
own (identical captions in a group are therefore not counted as errors).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from guidance_repro.errors import ReproError

VARIANTS = ("raw", "clamp100")
TOY_MODEL = "toy-judge"
WEIGHTS_KEY = "evaluation.clip.weights"


class ClipScorer:
    """An open_clip model with its image preprocessing and tokenizer; embeddings are L2-normalised."""

    def __init__(self, model: torch.nn.Module, image_fn: Callable[[np.ndarray], torch.Tensor],
                 tokenize_fn: Callable[[list[str]], torch.Tensor], name: str, sha256: str,
                 device: torch.device | str = "cpu", batch_size: int = 256):
        self.model = model.to(device).eval()
        self.image_fn, self.tokenize_fn = image_fn, tokenize_fn
        self.name, self.sha256 = name, sha256
        self.device, self.batch_size = torch.device(device), batch_size
        self.progress = True

    def _encode(self, items, prep: Callable, encode: Callable, what: str) -> np.ndarray:
        out = []
        with torch.no_grad():
            for s in tqdm(range(0, len(items), self.batch_size), desc=f"clip {what} [{self.name}]",
                          disable=not self.progress, leave=False):
                emb = encode(prep(items[s:s + self.batch_size]).to(self.device))
                out.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu().numpy())
        if not out:
            raise ReproError(f"CLIP: no {what} to embed")
        return np.concatenate(out)

    def image_embeddings(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) -> float32 (N, D), unit norm."""
        return self._encode(images, self.image_fn, self.model.encode_image, "images")

    def text_embeddings(self, captions) -> np.ndarray:
        return self._encode([str(c) for c in captions], self.tokenize_fn, self.model.encode_text, "texts")


def _check_pair(images: np.ndarray, captions) -> None:
    if len(images) != len(captions):
        raise ReproError(f"CLIP score: {len(images)} images but {len(captions)} captions")
    if len(images) == 0:
        raise ReproError("CLIP score: no images")


def score_from_cosines(cos: np.ndarray, variant: str = "raw") -> float:
    if variant == "raw":
        return float(np.mean(cos))
    if variant == "clamp100":
        return float(np.mean(np.maximum(100.0 * cos, 0.0)))
    raise ReproError(f"evaluation.clip.variant: {variant!r} is not one of {', '.join(VARIANTS)}")


def clip_score(scorer: ClipScorer, images: np.ndarray, captions, variant: str = "raw") -> dict:
    """CLIP score of images against their own captions: {"clip_score", "std", "n", "variant", ...}."""
    if variant not in VARIANTS:
        raise ReproError(f"evaluation.clip.variant: {variant!r} is not one of {', '.join(VARIANTS)}")
    _check_pair(images, captions)
    cos = np.sum(scorer.image_embeddings(images) * scorer.text_embeddings(captions), axis=1)
    per = cos if variant == "raw" else np.maximum(100.0 * cos, 0.0)
    return {"clip_score": score_from_cosines(cos, variant), "std": float(np.std(per)), "n": int(len(cos)),
            "variant": variant, "model": scorer.name, "model_sha256": scorer.sha256}


def retrieval_top1(scorer: ClipScorer, images: np.ndarray, captions, group_size: int = 100) -> dict:
    """Image -> text top-1 accuracy within consecutive groups of ``group_size`` (see module doc)."""
    _check_pair(images, captions)
    if group_size < 2:
        raise ReproError(f"evaluation.clip.retrieval_group: must be >= 2, got {group_size}")
    captions = np.asarray([str(c) for c in captions])
    img, txt = scorer.image_embeddings(images), scorer.text_embeddings(captions)
    correct, chance = 0, 0.0
    for s in range(0, len(img), group_size):
        sim = img[s:s + group_size] @ txt[s:s + group_size].T
        picked = captions[s:s + group_size][sim.argmax(axis=1)]
        correct += int(np.sum(picked == captions[s:s + group_size]))
        chance += 1.0  # len(group) images, each right by chance with probability 1 / len(group)
    return {"top1": correct / len(img), "n": int(len(img)), "group_size": int(group_size),
            "chance": chance / len(img), "model": scorer.name}


def load_scorer(model: str, weights: str | os.PathLike | None, device: str | torch.device = "cpu",
                quick_gelu: bool = True, batch_size: int = 256) -> ClipScorer:
    """The CLIP named by ``evaluation.clip.model`` with the weights at ``evaluation.clip.weights``."""
    from guidance_repro.metrics.features import file_sha256

    if not weights or not Path(weights).is_file():
        raise ReproError(f"{WEIGHTS_KEY}: CLIP weights file {weights!r} not found (give a local file; "
                         f"nothing is downloaded at run time)")
    path = Path(weights)
    if model == TOY_MODEL:
        from guidance_repro.metrics.toy_clip import images_to_input, load_clip, tokenize

        net, cfg = load_clip(path, WEIGHTS_KEY)
        ctx = int(cfg["text"]["context_length"])
        return ClipScorer(net, lambda x: images_to_input(x, cfg), lambda t: tokenize(t, ctx),
                          TOY_MODEL, file_sha256(path), device, batch_size)
    return _open_clip_scorer(model, path, device, quick_gelu, batch_size, file_sha256(path))


def _open_clip_scorer(model: str, path: Path, device, quick_gelu: bool, batch_size: int,
                      sha256: str) -> ClipScorer:
    import open_clip
    from PIL import Image

    if model not in open_clip.list_models():
        raise ReproError(f"evaluation.clip.model: {model!r} is neither {TOY_MODEL!r} nor an open_clip "
                         f"architecture (e.g. ViT-L-14)")
    try:
        # ``pretrained`` is an existing local file (checked above), never a tag: no download.
        net, _, preprocess = open_clip.create_model_and_transforms(
            model, pretrained=str(path), force_quick_gelu=quick_gelu, device="cpu")
    except (RuntimeError, KeyError, ValueError, OSError, EOFError, pickle.UnpicklingError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReproError(f"{WEIGHTS_KEY}: {path} does not load into open_clip {model} ({first})") from None
    tokenizer = open_clip.get_tokenizer(model)

    def image_fn(images: np.ndarray) -> torch.Tensor:
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise ReproError(f"CLIP: images must be uint8 (N, H, W[, C]), got {images.dtype} {images.shape}")
        arrays = images if images.ndim == 4 else images[..., None]
        return torch.stack([preprocess(Image.fromarray(a if a.shape[-1] == 3 else a[..., 0]).convert("RGB"))
                            for a in arrays])

    return ClipScorer(net, image_fn, tokenizer, f"open_clip-{model}", sha256, device, batch_size)
