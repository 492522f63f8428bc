"""Strict loaders for the official VAR files (cca.md §4.2): ``var_d{16,20,24,30}.pth`` and the
quantizer part of ``vae_ch160v4096z32.pth``.

``var_d*.pth`` is a raw state dict whose keys are exactly models/var.py's (220 tensors for d16,
buffers ``lvl_1L``, ``attn_bias_for_masking`` and ``blocks.*.attn.zero_k_bias`` included). The
depth is read from the file (number of blocks), the width checked against 64·depth, and every key
and shape checked before anything is copied; the model is built on the meta device and the file's
tensors are assigned to it, so a 2B-parameter model is never held twice in memory.

``vae_ch160v4096z32.pth`` (324 tensors): the fact sheet documents the quantizer keys
(``quantize.embedding.weight`` (4096, 32), ``quantize.ema_vocab_hit_SV`` (10, 4096), the four
shared φ convs ``quantize.quant_resi.qresi_ls.{0..3}`` (3x3, 32→32)) and the 3x3 ``quant_conv`` /
``post_quant_conv``, but not the internals of its ch160 conv encoder/decoder. So this loader checks
the whole file (tensor count, the ``encoder.``/``decoder.`` prefixes) and loads the multi-scale
quantizer strictly: enough for tokens → f̂ → VAR teacher-forcing inputs; pixels need the official
conv decoder, which this project does not reimplement (the paper tier says so).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from guidance_repro.errors import ReproError
from guidance_repro.models.msvq import MSVQConfig, MultiScaleQuantizer
from guidance_repro.models.var import SIZES, VAR, VARConfig, block_causal_mask
from guidance_repro.train.checkpoint import load_model_file, load_state_strict

VAR_TENSORS = {16: 220, 20: 272, 24: 324, 30: 402}   # 12 + 13·depth
VAE_TENSORS = 324
VAE_PATCH_NUMS = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)


def _read(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ReproError(f"{path}: official checkpoint not found (the paper tier needs it locally)")
    sd = load_model_file(path)
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ReproError(f"{path}: key {bad[0]!r} is not a tensor (expected a raw state dict)")
    return sd


def var_depth(sd: dict, source: str) -> int:
    idx = {int(m.group(1)) for k in sd for m in [re.match(r"blocks\.(\d+)\.", k)] if m}
    if not idx or idx != set(range(max(idx) + 1)):
        raise ReproError(f"{source}: no contiguous blocks.{{i}}.* keys (not a VAR state dict)")
    return max(idx) + 1


def load_official_var(path: str | Path, expect_depth: int | None = None) -> VAR:
    """A VAR model (eval mode) holding the tensors of an official ``var_d*.pth``."""
    return var_from_state(_read(path), path, expect_depth)


def var_from_state(sd: dict, path: str | Path, expect_depth: int | None = None) -> VAR:
    """The checks and the assignment of :func:`load_official_var` on an in-memory state dict."""
    depth = var_depth(sd, str(path))
    if expect_depth is not None and depth != expect_depth:
        raise ReproError(f"{path}: a depth-{depth} model, the config expects d{expect_depth}")
    if f"d{depth}" not in SIZES:
        raise ReproError(f"{path}: depth {depth} is not an official VAR size ({', '.join(SIZES)})")
    cfg = VARConfig.from_dict({"size": f"d{depth}"})
    if "pos_start" in sd and sd["pos_start"].shape[-1] != cfg.width:
        raise ReproError(f"{path}: key 'pos_start' has width {sd['pos_start'].shape[-1]}, "
                         f"d{depth} needs {cfg.width} (64·depth)")
    with torch.device("meta"):
        model = VAR(cfg)
    with warnings.catch_warnings():  # keys and shapes; copying into meta tensors is a no-op
        warnings.simplefilter("ignore", UserWarning)
        load_state_strict(model, sd, path)
    if not torch.equal(sd["lvl_1L"].cpu(), torch.cat([torch.full((p * p,), i) for i, p in enumerate(cfg.patch_nums)])[None]):
        raise ReproError(f"{path}: key 'lvl_1L' does not match patch_nums {list(cfg.patch_nums)}")
    if not torch.equal(torch.isinf(sd["attn_bias_for_masking"].cpu()), torch.isinf(block_causal_mask(cfg.patch_nums))):
        raise ReproError(f"{path}: key 'attn_bias_for_masking' is not the block-causal mask")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()},
                          strict=True, assign=True)
    return model.eval()


def vae_config() -> MSVQConfig:
    """The official VQVAE's quantizer settings (V 4096, Cvae 32, ×16, 4 shared φ, ratio 0.5, no znorm)."""
    return MSVQConfig(channels=(160, 160, 320, 320, 640), codebook_size=4096, code_dim=32,
                      patch_nums=VAE_PATCH_NUMS, phi_count=4, phi_ratio=0.5, znorm=False,
                      in_channels=3, image_size=256)


def load_official_vae_quantizer(path: str | Path) -> MultiScaleQuantizer:
    """The multi-scale quantizer of ``vae_ch160v4096z32.pth``, loaded strictly (module docstring)."""
    sd = _read(path)
    if len(sd) != VAE_TENSORS:
        raise ReproError(f"{path}: {len(sd)} tensors, the official VQVAE has {VAE_TENSORS}")
    q = MultiScaleQuantizer(vae_config())
    expected = {"quant_conv.weight": (32, 32, 3, 3), "quant_conv.bias": (32,),
                "post_quant_conv.weight": (32, 32, 3, 3), "post_quant_conv.bias": (32,)}
    for k, shape in expected.items():
        if k not in sd:
            raise ReproError(f"{path}: missing key {k!r}")
        if tuple(sd[k].shape) != shape:
            raise ReproError(f"{path}: key {k!r} has shape {tuple(sd[k].shape)}, expected {shape}")
    other = [k for k in sd if not k.startswith(("quantize.", "encoder.", "decoder.")) and k not in expected]
    if other:
        raise ReproError(f"{path}: unexpected key {other[0]!r}")
    if not any(k.startswith("encoder.") for k in sd) or not any(k.startswith("decoder.") for k in sd):
        raise ReproError(f"{path}: no encoder.* / decoder.* keys (not the VQVAE file)")
    holder = torch.nn.Module()
    holder.quantize = q  # so that errors name the file's keys (quantize.*)
    load_state_strict(holder, {k: v for k, v in sd.items() if k.startswith("quantize.")}, path)
    return q.eval()
