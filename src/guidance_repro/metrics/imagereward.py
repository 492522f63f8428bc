"""ImageReward (paper tier): reward of each generated image for its caption, through image-reward 1.5.

image-reward 1.5 conflicts with the main environment (it pins timm==0.6.13 while open-clip-torch
needs timm >= 1.0.17, it breaks on transformers >= 4.56, and it imports diffusers/accelerate/
datasets and the openai ``clip`` package), so it lives in its own pinned environment,
``.venv-imagereward`` (``tools/setup-imagereward-env.sh``, ``envs/imagereward/``). This module
validates the inputs here and scores in that environment by running ``_imagereward_worker.py``
by file path in a subprocess, offline (``HF_HUB_OFFLINE=1``, ``TRANSFORMERS_OFFLINE=1``): the
checkpoint, the med_config and the BERT tokenizer folder are local files named by the config
(``evaluation.imagereward.*``); nothing is downloaded.

Summary statistics: the mean reward over all images, and the mean of the per-prompt mean rewards
(images grouped by identical caption), which is the score of STAR's ``test-benchmark.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from guidance_repro.errors import ReproError
from guidance_repro.io import write_json

WORKER = Path(__file__).with_name("_imagereward_worker.py")
KEY = "evaluation.imagereward"
VENV_NAME = ".venv-imagereward"
SETUP_HINT = "run tools/setup-imagereward-env.sh"


def default_python() -> Path:
    """``$GUIDANCE_REPRO_IMAGEREWARD_VENV/bin/python`` (the variable tools/setup-imagereward-env.sh
    reads) if set, else ``.venv-imagereward/bin/python`` of the current directory or the checkout."""
    if os.environ.get("GUIDANCE_REPRO_IMAGEREWARD_VENV"):
        return Path(os.environ["GUIDANCE_REPRO_IMAGEREWARD_VENV"]) / "bin" / "python"
    candidates = [Path.cwd() / VENV_NAME, Path(__file__).resolve().parents[3] / VENV_NAME]
    for venv in candidates:
        if (venv / "bin" / "python").exists():
            return venv / "bin" / "python"
    return candidates[0] / "bin" / "python"


def settings_from_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``evaluation.imagereward`` block: checkpoint, med_config, tokenizer (required, existing
    local paths), python, device, batch_size (optional). Raises ReproError naming the key."""
    block = (config.get("evaluation") or {}).get("imagereward")
    if not isinstance(block, Mapping):
        raise ReproError(f"{KEY}: missing from the config (needs checkpoint, med_config, tokenizer)")
    out: dict[str, Any] = {}
    for key in ("checkpoint", "med_config", "tokenizer"):
        if not block.get(key):
            raise ReproError(f"{KEY}.{key}: missing from the config")
        out[key] = block[key]
    out["python"] = block.get("python") or None
    out["device"] = block.get("device", "auto")
    out["batch_size"] = int(block.get("batch_size", 16))
    return out


def _check_inputs(checkpoint: Path, med_config: Path, tokenizer: Path, python: Path) -> None:
    if not checkpoint.is_file():
        raise ReproError(f"{KEY}.checkpoint: {checkpoint} does not exist (a local ImageReward.pt; "
                         "nothing is downloaded)")
    if not med_config.is_file():
        raise ReproError(f"{KEY}.med_config: {med_config} does not exist (ImageReward's med_config.json)")
    try:
        json.loads(med_config.read_text())
    except ValueError as exc:
        raise ReproError(f"{KEY}.med_config: {med_config} is not JSON ({exc})") from None
    if not (tokenizer / "vocab.txt").is_file():
        raise ReproError(f"{KEY}.tokenizer: {tokenizer} is not a BERT tokenizer folder (no vocab.txt)")
    if not python.exists():
        raise ReproError(f"{KEY}.python: {python} does not exist ({SETUP_HINT})")


def load_samples(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and check a samples npz: ``images`` uint8 (N,H,W,3), ``captions`` (N,) str."""
    if not path.is_file():
        raise ReproError(f"{path}: samples file does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            for name in ("images", "captions"):
                if name not in data.files:
                    raise ReproError(f"{path}: samples npz lacks the array '{name}'")
            images, captions = data["images"], data["captions"]
    except (ValueError, OSError) as exc:  # object arrays need pickle; captions must be a str array
        raise ReproError(f"{path}: not a samples npz of plain arrays ({exc})") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ReproError(f"{path}: images must be uint8 (N,H,W,3), got {images.dtype} {images.shape}")
    if captions.dtype.kind != "U" or captions.shape != (len(images),):
        raise ReproError(f"{path}: captions must be a str array of shape ({len(images)},), "
                         f"got {captions.dtype} {captions.shape}")
    if len(images) == 0:
        raise ReproError(f"{path}: no samples")
    return images, captions


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def summarize(rewards: np.ndarray, captions: np.ndarray) -> dict[str, Any]:
    """Mean reward, and the mean of per-prompt means (STAR's benchmark score)."""
    prompts, inverse = np.unique(captions, return_inverse=True)
    per_prompt = np.bincount(inverse, weights=rewards) / np.bincount(inverse)
    return {"mean_reward": float(rewards.mean()), "mean_of_prompt_means": float(per_prompt.mean()),
            "std_reward": float(rewards.std()), "count": int(len(rewards)), "n_prompts": int(len(prompts))}


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    return env


def run_worker(samples: Path, checkpoint: Path, med_config: Path, tokenizer: Path, python: Path,
               device: str = "auto", batch_size: int = 16) -> dict[str, Any]:
    """Run the worker in the isolated environment; return its result (rewards, versions, ...)."""
    with tempfile.TemporaryDirectory(prefix="imagereward-") as tmp:
        request = {"samples": str(samples.resolve()), "checkpoint": str(checkpoint.resolve()),
                   "med_config": str(med_config.resolve()), "tokenizer": str(tokenizer.resolve()),
                   "device": device, "batch_size": batch_size, "result": str(Path(tmp) / "result.json")}
        request_path = Path(tmp) / "request.json"
        request_path.write_text(json.dumps(request))
        # -I: no script folder, no PYTHONPATH, no user site on sys.path, so neither our package
        # nor the main environment can shadow what the isolated environment provides.
        cmd = [str(python), "-I", str(WORKER), str(request_path)]
        try:
            proc = subprocess.run(cmd, env=worker_env(), stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
        except OSError as exc:
            raise ReproError(f"{KEY}.python: cannot run {python} ({exc}; {SETUP_HINT})") from None
        result_path = Path(request["result"])
        result = json.loads(result_path.read_text()) if result_path.is_file() else {}
    if proc.returncode != 0:
        if "error" in result:
            raise ReproError(f"{KEY}.{result.get('key', 'checkpoint')}: {result['error']}")
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise ReproError(f"{KEY}.python: the ImageReward worker failed in {python} "
                         f"(exit {proc.returncode}): {tail}")
    sys.stderr.write(proc.stderr)
    return result


def compute_imagereward(samples: str | os.PathLike, out: str | os.PathLike, *, checkpoint: str | os.PathLike,
                        med_config: str | os.PathLike, tokenizer: str | os.PathLike,
                        python: str | os.PathLike | None = None, device: str = "auto",
                        batch_size: int = 16) -> dict[str, Any]:
    """Score a samples npz with a local ImageReward checkpoint; write the metrics JSON to ``out``."""
    samples, checkpoint, med_config, tokenizer = map(Path, (samples, checkpoint, med_config, tokenizer))
    python = Path(python) if python else default_python()
    _check_inputs(checkpoint, med_config, tokenizer, python)
    if batch_size < 1:
        raise ReproError(f"{KEY}.batch_size: must be >= 1, got {batch_size}")
    _, captions = load_samples(samples)
    result = run_worker(samples, checkpoint, med_config, tokenizer, python, device, batch_size)
    rewards = np.asarray(result["rewards"], dtype=np.float64)
    if rewards.shape != captions.shape or not np.all(np.isfinite(rewards)):
        raise ReproError(f"{KEY}: the worker returned {rewards.shape} rewards for {len(captions)} samples "
                         f"({int(np.sum(~np.isfinite(rewards)))} not finite)")
    metrics = {
        "metric": "imagereward",
        **summarize(rewards, captions),
        "rewards": rewards.tolist(),
        "protocol": {
            "evaluator": "ImageReward (image-reward package), reward normalised by the package's mean/std",
            "samples": str(samples), "samples_sha256": sha256_file(samples),
            "checkpoint": str(checkpoint), "checkpoint_sha256": sha256_file(checkpoint),
            "med_config_sha256": sha256_file(med_config),
            "tokenizer_vocab_sha256": sha256_file(tokenizer / "vocab.txt"),
            "unexpected_checkpoint_keys": result.get("unexpected_keys", []),
            "aggregation": "mean_of_prompt_means groups images by identical caption (STAR benchmark)",
            "text_max_tokens": 35, "image_size": 224, "resize": "bicubic + center crop (package preprocess)",
            "device": result.get("device"), "batch_size": batch_size, "torch_threads": result.get("torch_threads"),
            "versions": result.get("versions", {}), "python": str(python),
        },
    }
    write_json(out, metrics)
    return metrics
