"""ImageReward scoring worker, run inside the isolated environment ``.venv-imagereward``.

image-reward 1.5 cannot be installed beside the main environment (its pins conflict with
open-clip-torch, and it breaks on transformers >= 4.56), so ``guidance_repro.metrics.imagereward``
runs this file by path with ``.venv-imagereward/bin/python -I``. It therefore imports only the
standard library, ImageReward, torch, numpy and PIL: ``guidance_repro`` is not installed there.

Usage: ``python -I _imagereward_worker.py REQUEST.json``. The request names the samples npz, the
checkpoint, the med_config, the tokenizer folder, the device, the batch size and the result path.
The result JSON holds the per-image rewards and the package versions, or ``{"error": message}``
(exit status 3) for a problem with the inputs.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import platform
import sys
import time
import warnings

# Read before transformers / huggingface_hub are imported; the parent sets them as well.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")  # openai clip's import
import ImageReward as RM  # noqa: E402

VERSIONED = ["image-reward", "torch", "torchvision", "transformers", "tokenizers", "timm",
             "fairscale", "huggingface-hub", "numpy", "pillow"]
MAX_TEXT_TOKENS = 35  # ImageReward.score() tokenizes with max_length=35


class InputError(Exception):
    """A problem with one of the request's files; reported as {"error": message, "key": key}."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def _local_tokenizer(folder: str):
    """Tokenizer from a local folder, set up the way ImageReward's ``init_tokenizer`` does it.

    The package hard-codes ``BertTokenizer.from_pretrained('bert-base-uncased')`` (a hub download);
    we replace only the source folder and keep its two added special tokens and ``enc_token_id``.
    """
    # the BertTokenizer class the package itself imports (keeps this file's imports to the package)
    BertTokenizer = importlib.import_module("ImageReward.models.BLIP.blip").BertTokenizer
    if not os.path.isfile(os.path.join(folder, "vocab.txt")):
        raise InputError("tokenizer", f"tokenizer folder {folder} has no vocab.txt")
    tokenizer = BertTokenizer.from_pretrained(folder, local_files_only=True)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    tokenizer.enc_token_id = tokenizer.additional_special_tokens_ids[0]
    return tokenizer


def build_model(checkpoint: str, med_config: str, tokenizer_dir: str, device: str):
    """ImageReward model with the checkpoint's weights; returns (model, load report)."""
    tokenizer = _local_tokenizer(tokenizer_dir)
    with open(med_config) as f:
        vocab_size = json.load(f).get("vocab_size")
    if len(tokenizer) != vocab_size:
        raise InputError("med_config", f"tokenizer {tokenizer_dir} has {len(tokenizer)} tokens "
                         f"(with [DEC], [ENC]) but {med_config} says vocab_size={vocab_size}")
    blip_pretrain = importlib.import_module("ImageReward.models.BLIP.blip_pretrain")
    blip_pretrain.init_tokenizer = lambda: tokenizer
    # RM.load() would do torch.load + load_state_dict(strict=False), which silently keeps random
    # weights for any missing key; we load plain tensors only and require every model key.
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, truncated, or pickled code (needs weights_only=False)
        raise InputError("checkpoint", f"cannot load {checkpoint} as plain tensors: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise InputError("checkpoint", f"checkpoint {checkpoint} is not a state_dict of tensors")
    # (not on the meta device to skip the random init: BLIP's ViT calls .item() while building)
    model = RM.ImageReward(med_config=med_config, device=device)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches: checkpoint and med_config disagree
        lines = [line.strip() for line in str(exc).splitlines() if "size mismatch" in line]
        raise InputError("med_config", f"checkpoint {checkpoint} does not fit the model built from "
                         f"{med_config}: {len(lines)} size mismatches, e.g. {lines[:1]}") from None
    if result.missing_keys:
        raise InputError("checkpoint", f"checkpoint {checkpoint} lacks {len(result.missing_keys)} model keys, "
                         f"e.g. {result.missing_keys[:3]}")
    model = model.to(device).eval()
    return model, {"unexpected_keys": sorted(result.unexpected_keys), "n_tensors": len(state)}


@torch.inference_mode()
def score_all(model, images: np.ndarray, captions: list[str], device: str, batch_size: int) -> list[float]:
    """Rewards of every (image, caption) pair, in input order.

    Same steps as ``ImageReward.score(prompt, image)`` (its tokenizer call, its ``preprocess``
    transform, its MLP and normalisation), batched through the package's ``score_gard``.
    """
    rewards: list[float] = []
    n = len(captions)
    t0 = time.time()
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        pixels = torch.stack([model.preprocess(Image.fromarray(images[i])) for i in range(start, stop)])
        text = model.blip.tokenizer(captions[start:stop], padding="max_length", truncation=True,
                                    max_length=MAX_TEXT_TOKENS, return_tensors="pt")
        out = model.score_gard(text.input_ids.to(device), text.attention_mask.to(device), pixels.to(device))
        rewards.extend(float(r) for r in out.float().reshape(-1).cpu())
        print(f"[imagereward] {stop}/{n} images, {time.time() - t0:.1f} s", file=sys.stderr, flush=True)
    return rewards


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def run(request: dict) -> dict:
    device = request["device"]
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)  # nothing is random in eval mode; fixed anyway
    with np.load(request["samples"], allow_pickle=False) as data:
        images = np.asarray(data["images"])
        captions = [str(c) for c in data["captions"]]
    t0 = time.time()
    model, load_report = build_model(request["checkpoint"], request["med_config"], request["tokenizer"], device)
    print(f"[imagereward] model built and loaded on {device} in {time.time() - t0:.1f} s", file=sys.stderr, flush=True)
    rewards = score_all(model, images, captions, device, int(request["batch_size"]))
    return {"rewards": rewards, "device": device, "torch_threads": torch.get_num_threads(),
            "versions": _versions(), **load_report}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -I _imagereward_worker.py REQUEST.json", file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        request = json.load(f)
    try:
        result = run(request)
        status = 0
    except InputError as exc:
        result, status = {"error": str(exc), "key": exc.key}, 3
    with open(request["result"], "w") as f:
        json.dump(result, f)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
