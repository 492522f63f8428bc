"""Strict loaders for the official LlamaGen files (key layouts from cca.md §4.1).

- ``c2i_{B,L,XL,XXL,3B}_384.pt`` (and the CCA releases ``c2i_*_384_CCA_0005000.pt``): the GPT state
  dict under ``['model']`` (B/L/XL) or at the top level (XXL/3B, FSDP); a stray ``freqs_cis`` entry
  is dropped. Our ``llamagen.model.GPT`` uses the official module names, so the state dict loads
  as is (no key mapping) — every key and shape is checked first, and a mismatch names the key.
- ``vq_ds16_c2i.pt``: the VQ-16 tokenizer (``['model']``): the documented keys and shapes
  (codebook 16384 x 8, quant convs, ``codebook_used`` buffer) and the encoder/decoder tensor
  counts (144 / 194, 344 in all) are checked (:func:`check_official_vq`), then every key and shape
  against llamagen/vq16.py's network, which loads it strictly (:func:`load_official_vq`).

Files are opened with ``torch.load(weights_only=True)``: plain tensors and Python data, plus the one
allow-listed class ``argparse.Namespace`` (LlamaGen's ``train_c2i.py`` saves its ``args``), never a
general unpickle. Containers are found as LlamaGen's own sampler finds them (:func:`unwrap_state_dict`).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from guidance_repro.errors import ReproError
from guidance_repro.llamagen.model import GPT, GPTConfig, SIZES, rope_2d
from guidance_repro.train.checkpoint import check_layout, safe_loading, strip_prefixes

PAPER_SIZES = ("B", "L", "XL", "XXL", "3B")


def read_torch_file(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ReproError(f"{path}: checkpoint file does not exist")
    try:
        with safe_loading():
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ReproError(f"{path}: not a plain-tensor torch file ({first})") from None
    if not isinstance(obj, dict):
        raise ReproError(f"{path}: expected a dict, got {type(obj).__name__}")
    return obj


# Where a checkpoint keeps its state dict, in the order LlamaGen's sampler looks: its own trainer
# ('model'), DeepSpeed ('module'), other trainers ('state_dict'); else the file is the state dict.
CONTAINERS = ("model", "module", "state_dict")
def unwrap_state_dict(obj: dict, source, upcast: bool = False) -> dict:
    """The state dict of an official checkpoint: under 'model', 'module' or 'state_dict', else the
    raw dict (XXL/3B); wrapper prefixes stripped. ``upcast``: bf16/fp16 tensors become float32 (the
    files released in bf16 fine-tune and compare in float32 here)."""
    key = next((k for k in CONTAINERS if k in obj), None)
    sd = obj[key] if key is not None else obj
    if not isinstance(sd, dict):
        raise ReproError(f"{source}: {key!r} is a {type(sd).__name__}, not a state dict")
    try:
        sd = strip_prefixes(sd)
    except ReproError as exc:
        raise ReproError(f"{source}: {exc}") from None
    if upcast:
        sd = {k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v
              for k, v in sd.items()}
    return sd


def official_gpt_config(size: str, image_size: int = 384, **overrides) -> GPTConfig:
    """The official c2i GPT config; ``image_size`` sets the grid (384 -> 24x24, 256 -> 16x16)."""
    if size not in PAPER_SIZES:
        raise ReproError(f"model.size: unknown LlamaGen size {size!r} (known: {', '.join(PAPER_SIZES)})")
    if image_size % 16:
        raise ReproError(f"model.image_size: {image_size} is not a multiple of 16 (VQ-16 tokenizer)")
    return GPTConfig.from_dict({"size": size, "grid": image_size // 16, **overrides})


def gpt_layout(cfg: GPTConfig) -> dict[str, tuple]:
    """Key -> shape of our GPT for ``cfg`` (built on the meta device: no memory, no init)."""
    with torch.device("meta"):
        model = GPT(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def load_official_gpt(path: str | os.PathLike | None = None, size: str = "B", image_size: int = 384,
                      state_dict: dict | None = None, upcast: bool = False, **overrides) -> GPT:
    """Strictly load an official LlamaGen c2i GPT (file at ``path`` or an in-memory dict);
    ``upcast``: bf16 weights are loaded as float32."""
    cfg = official_gpt_config(size, image_size, **overrides)
    source = path if path is not None else "state dict"
    obj = read_torch_file(path) if state_dict is None else state_dict
    sd = dict(unwrap_state_dict(obj, source, upcast))
    sd.pop("freqs_cis", None)  # a plain attribute in the official model; popped as LlamaGen does
    check_layout(gpt_layout(cfg), sd, source)
    with torch.device("meta"):
        model = GPT(cfg)
    model.load_state_dict(sd, strict=True, assign=True)
    model.freqs_cis = rope_2d(cfg.grid, cfg.dim // cfg.n_head, cfg.rope_base, cfg.prefix_rope)
    return model.eval()


def save_official_gpt(model: GPT, path: str | os.PathLike, extra: dict | None = None) -> None:
    """Write ``model`` as the official trainers do: ``{'model': state dict}`` with the official key
    names (ours are the official names), so LlamaGen's sampler and ``sample-ar --official-gpt``
    read it. ``extra``: plain-data entries beside 'model' (the sampler reads only 'model')."""
    from guidance_repro.train.checkpoint import save_atomic
    sd = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    save_atomic({"model": sd, **(extra or {})}, path)


# --- VQ-16 tokenizer ------------------------------------------------------------------------------
VQ16_DOCUMENTED = {
    "quantize.embedding.weight": (16384, 8),
    "quantize.codebook_used": (65536,),
    "quant_conv.weight": (8, 256, 1, 1),
    "quant_conv.bias": (8,),
    "post_quant_conv.weight": (256, 8, 1, 1),
    "post_quant_conv.bias": (256,),
}
VQ16_COUNTS = {"encoder.": 144, "decoder.": 194}
VQ16_TENSORS = 344


def _vq_state_dict(path, state_dict: dict | None) -> dict:
    """The state dict under ``['model']`` of a VQ tokenizer file (or of an in-memory dict)."""
    source = path if path is not None else "state dict"
    obj = read_torch_file(path) if state_dict is None else state_dict
    if "model" not in obj:
        raise ReproError(f"{source}: the VQ tokenizer file must hold its state dict under 'model'")
    sd = obj["model"]
    if not isinstance(sd, dict):
        raise ReproError(f"{source}: 'model' is a {type(sd).__name__}, not a state dict")
    return sd


def check_official_vq(path: str | os.PathLike | None = None, state_dict: dict | None = None) -> dict:
    """Check ``vq_ds16_c2i.pt`` against its documented layout and return the state dict.

    Checked: the ``['model']`` container, the six documented keys with their shapes, 144
    ``encoder.*`` and 194 ``decoder.*`` tensors, 344 tensors in all, nothing else.
    :func:`load_official_vq` then checks every key and shape against the network.
    """
    source = path if path is not None else "state dict"
    sd = _vq_state_dict(path, state_dict)
    for k, shape in VQ16_DOCUMENTED.items():
        if k not in sd:
            raise ReproError(f"{source}: missing key {k!r}")
        if not isinstance(sd[k], torch.Tensor) or tuple(sd[k].shape) != shape:
            got = tuple(sd[k].shape) if isinstance(sd[k], torch.Tensor) else type(sd[k]).__name__
            raise ReproError(f"{source}: key {k!r} has shape {got}, expected {shape}")
    for prefix, n in VQ16_COUNTS.items():
        got = sum(k.startswith(prefix) for k in sd)
        if got != n:
            raise ReproError(f"{source}: {got} '{prefix}*' tensors, the VQ-16 layout has {n}")
    other = [k for k in sd if k not in VQ16_DOCUMENTED and not k.startswith(tuple(VQ16_COUNTS))]
    if other:
        raise ReproError(f"{source}: unexpected key {other[0]!r}")
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ReproError(f"{source}: key {bad[0]!r} is not a tensor")
    if len(sd) != VQ16_TENSORS:  # implied by the counts above; kept as the documented total
        raise ReproError(f"{source}: {len(sd)} tensors, the VQ-16 layout has {VQ16_TENSORS}")
    return sd


def vq16_layout(cfg) -> dict[str, tuple]:
    """Key -> shape of llamagen/vq16.py's network for ``cfg`` (meta device: no memory)."""
    from guidance_repro.llamagen.vq16 import VQ16
    with torch.device("meta"):
        model = VQ16(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def load_official_vq(path: str | os.PathLike | None = None, image_size: int = 384, out_size: int = 0,
                     state_dict: dict | None = None, cfg=None):
    """Strictly load ``vq_ds16_c2i.pt`` (file at ``path`` or an in-memory ``{'model': sd}``) into
    the VQ-16 network for ``image_size`` generations, decoding to ``out_size`` (0 = image_size).

    ``cfg`` (a :class:`VQ16Config`) is for offline tests with smaller widths: the documented
    full-size checks of :func:`check_official_vq` are skipped, the key-by-key check is not."""
    from guidance_repro.llamagen.vq16 import VQ16, VQ16Config
    source = path if path is not None else "state dict"
    if cfg is None:
        cfg = VQ16Config.from_dict({"image_size": image_size})
        sd = check_official_vq(path, state_dict)
    else:
        sd = _vq_state_dict(path, state_dict)
    check_layout(vq16_layout(cfg), sd, source)
    with torch.device("meta"):
        model = VQ16(cfg, out_size=out_size)
    model.load_state_dict(sd, strict=True, assign=True)
    return model.eval()


def codebook(sd: dict) -> torch.Tensor:
    """The L2-normalised VQ-16 codebook (16384, 8), as the quantizer compares codes."""
    return torch.nn.functional.normalize(sd["quantize.embedding.weight"].float(), dim=-1)


__all__ = ["load_official_gpt", "save_official_gpt", "unwrap_state_dict", "official_gpt_config", "gpt_layout", "check_official_vq",
           "load_official_vq", "vq16_layout", "check_layout", "SIZES"]
