"""Strict loaders for the official VAR files (cca.md §4.2): ``var_d{16,20,24,30}.pth`` and the
VQVAE ``vae_ch160v4096z32.pth``.

``var_d*.pth`` is a raw state dict whose keys are exactly var/model.py's (220 tensors for d16,
buffers ``lvl_1L``, ``attn_bias_for_masking`` and ``blocks.*.attn.zero_k_bias`` included); VAR's
training snapshots hold it under ``['trainer']['var_wo_ddp']``, possibly with ``module.`` /
``_orig_mod.`` prefixes. The depth is read from the file (number of blocks), the schedule from
``lvl_1L``, the QK L2-norm from ``scale_mul_1H11`` and the shared AdaLN (``shared_ada_lin`` + per-block
``ada_gss``: the 512 px ``var_d36.pth``) from their keys, the width checked against 64·depth, and every key
and shape checked before anything is copied; the model is built on the meta device and the file's
tensors are assigned to it, so a 2B-parameter model is never held twice in memory.

``vae_ch160v4096z32.pth`` (324 tensors, 108,948,355 values): the whole network of
var/vqvae.py (conv encoder/decoder, ``quant_conv``/``post_quant_conv``) with the multi-scale
quantizer of var/msvq.py (``quantize.embedding.weight`` (4096, 32), ``quantize.ema_vocab_hit_SV``
(10, 4096), the four shared φ convs ``quantize.quant_resi.qresi_ls.{0..3}``). The widths (ch,
ch_mult, blocks per level, Cvae, V, φ count) are read from the file's shapes, every key and shape is
then checked against the network they define; the official file gives ch 160, ch_mult
(1, 1, 2, 2, 4), 2 blocks, Cvae 32, V 4096 (``official_vqvae_layout``). The scale schedule is not in
the file: it is an argument (256 px: VAR's; 512 px: STAR's released schedule). As VAR's own loader
does, a per-scale ``ema_vocab_hit_SV`` (code-hit statistics, unused at inference) whose row count
differs from the schedule's number of scales is replaced by zeros of the right shape.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from guidance_repro.errors import ReproError
from guidance_repro.train.checkpoint import load_model_file, load_state_strict, strip_prefixes
from guidance_repro.var.model import SIZES, VAR, VARConfig, block_causal_mask
from guidance_repro.var.msvq import MultiScaleQuantizer
from guidance_repro.var.vqvae import PATCH_NUMS, VQVAE, VQVAEConfig

VAR_TENSORS = {16: 220, 20: 272, 24: 324, 30: 402}   # 12 + 13·depth
VAE_TENSORS = 324
VAE_PATCH_NUMS = PATCH_NUMS[256]


def unwrap_var_file(obj: dict, source) -> dict:
    """The VAR state dict inside an official file: a raw state dict (released ``var_d*.pth``) or
    a training snapshot ``{'trainer': {'var_wo_ddp': sd, ...}, 'epoch', 'iter', 'args'}`` (VAR's
    ``ar-ckpt-*.pth``, also what the CCA fine-tune of thu-ml/CCA saves); the wrapper prefixes
    ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) are stripped."""
    if "trainer" in obj:
        trainer = obj["trainer"]
        if not isinstance(trainer, dict) or not isinstance(trainer.get("var_wo_ddp"), dict):
            raise ReproError(f"{source}: key 'trainer' holds no 'var_wo_ddp' state dict "
                             f"(not a VAR training snapshot)")
        obj = trainer["var_wo_ddp"]
    try:
        sd = strip_prefixes(obj)
    except ReproError as exc:
        raise ReproError(f"{source}: {exc}") from None
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ReproError(f"{source}: key {bad[0]!r} is not a tensor (expected a raw state dict "
                         f"or a {{'trainer': {{'var_wo_ddp': ...}}}} snapshot)")
    return sd


def _read(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ReproError(f"{path}: official checkpoint not found (the paper tier needs it locally)")
    return unwrap_var_file(load_model_file(path), path)


def var_depth(sd: dict, source: str) -> int:
    idx = {int(m.group(1)) for k in sd for m in [re.match(r"blocks\.(\d+)\.", k)] if m}
    if not idx or idx != set(range(max(idx) + 1)):
        raise ReproError(f"{source}: no contiguous blocks.{{i}}.* keys (not a VAR state dict)")
    return max(idx) + 1


def schedule_from_levels(sd: dict, source) -> tuple[int, ...]:
    """``patch_nums`` read from the buffer ``lvl_1L`` (scale index of every token, scale by scale)."""
    if "lvl_1L" not in sd:
        raise ReproError(f"{source}: missing key 'lvl_1L'")
    lvl = sd["lvl_1L"].cpu().reshape(-1).long()
    counts = torch.bincount(lvl).tolist() if lvl.numel() and lvl.min() >= 0 else []
    pn = tuple(round(c ** 0.5) for c in counts)
    expected = torch.cat([torch.full((p * p,), i) for i, p in enumerate(pn)]) if pn else None
    if not pn or any(p * p != c for p, c in zip(pn, counts)) or not torch.equal(lvl, expected):
        raise ReproError(f"{source}: key 'lvl_1L' is not a scale schedule (square token counts, "
                         f"scale by scale)")
    return pn


def var_config_from_state(sd: dict, source, overrides: dict | None = None) -> VARConfig:
    """The config of an official VAR state dict: the size ``d{depth}`` (depth = number of blocks),
    the schedule from ``lvl_1L``, the QK L2-norm from ``scale_mul_1H11`` and the shared AdaLN from
    ``shared_ada_lin``; ``overrides`` (e.g. the tiny widths of a test stand-in) replace size fields."""
    depth = var_depth(sd, str(source))
    if f"d{depth}" not in SIZES:
        raise ReproError(f"{source}: depth {depth} is not an official VAR size ({', '.join(SIZES)})")
    found = {"patch_nums": schedule_from_levels(sd, source),
             "attn_l2_norm": "blocks.0.attn.scale_mul_1H11" in sd,
             "shared_aln": "shared_ada_lin.1.weight" in sd}
    return VARConfig.from_dict({"size": f"d{depth}", **found, **(overrides or {})}, key=f"{source}")


def load_official_var(path: str | Path, expect_depth: int | None = None, overrides: dict | None = None) -> VAR:
    """A VAR model (eval mode) holding the tensors of an official ``var_d*.pth`` (or snapshot)."""
    return var_from_state(_read(path), path, expect_depth, overrides)


def var_from_state(sd: dict, path: str | Path, expect_depth: int | None = None,
                   overrides: dict | None = None) -> VAR:
    """The checks and the assignment of :func:`load_official_var` on an in-memory state dict."""
    cfg = var_config_from_state(sd, path, overrides)
    if expect_depth is not None and cfg.depth != expect_depth:
        raise ReproError(f"{path}: a depth-{cfg.depth} model, the config expects d{expect_depth}")
    if "pos_start" in sd and sd["pos_start"].shape[-1] != cfg.width:
        raise ReproError(f"{path}: key 'pos_start' has width {sd['pos_start'].shape[-1]}, "
                         f"d{cfg.depth} needs {cfg.width} ({cfg.width_per_depth}·depth)")
    with torch.device("meta"):
        model = VAR(cfg)
    with warnings.catch_warnings():  # keys and shapes; copying into meta tensors is a no-op
        warnings.simplefilter("ignore", UserWarning)
        load_state_strict(model, sd, path)
    if not torch.equal(torch.isinf(sd["attn_bias_for_masking"].cpu()), torch.isinf(block_causal_mask(cfg.patch_nums))):
        raise ReproError(f"{path}: key 'attn_bias_for_masking' is not the block-causal mask")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()},
                          strict=True, assign=True)
    return model.eval()


def _indices(sd: dict, pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in sd for m in [re.fullmatch(pattern, k)] if m})


def shape_of(sd: dict, key: str, source, ndim: int) -> tuple[int, ...]:
    if key not in sd:
        raise ReproError(f"{source}: missing key {key!r}")
    shape = tuple(sd[key].shape)
    if len(shape) != ndim:
        raise ReproError(f"{source}: key {key!r} has shape {shape}, expected {ndim} dimensions")
    return shape


def vqvae_config_from_state(sd: dict, source, patch_nums=VAE_PATCH_NUMS) -> VQVAEConfig:
    """The VQVAE widths a state dict holds (module docstring), on the schedule ``patch_nums``."""
    ch, cin = shape_of(sd, "encoder.conv_in.weight", source, 4)[:2]
    levels = _indices(sd, r"encoder\.down\.(\d+)\.block\.0\.conv1\.weight")
    if not levels or levels != list(range(len(levels))):
        raise ReproError(f"{source}: missing key 'encoder.down.0.block.0.conv1.weight' (not a VQVAE state dict)")
    mult = []
    for i in levels:
        key = f"encoder.down.{i}.block.0.conv1.weight"
        w = shape_of(sd, key, source, 4)[0]
        if w % ch:
            raise ReproError(f"{source}: key {key!r} has {w} output channels, not a multiple of ch {ch}")
        mult.append(w // ch)
    for key, k in (("quantize.quant_resi.qresi.weight", "1 (one φ for every scale)"),
                   ("quantize.quant_resi.0.weight", "0 (one φ per scale)")):
        if key in sd:  # VAR's PhiShared / PhiNonShared layouts; only the partially shared one is built here
            raise ReproError(f"{source}: key {key!r}: a share_quant_resi = {k} VQVAE; only the "
                             f"partially shared layout (quant_resi.qresi_ls.*, K >= 2) is supported")
    V, code_dim = shape_of(sd, "quantize.embedding.weight", source, 2)
    cfg = {"ch": ch, "in_channels": cin, "ch_mult": mult, "code_dim": code_dim, "codebook_size": V,
           "num_res_blocks": len(_indices(sd, r"encoder\.down\.0\.block\.(\d+)\.conv1\.weight")),
           "phi_count": len(_indices(sd, r"quantize\.quant_resi\.qresi_ls\.(\d+)\.weight")),
           "patch_nums": list(patch_nums)}
    return VQVAEConfig.from_dict(cfg, key=f"{source}")


def official_vqvae_layout(cfg: VQVAEConfig) -> bool:
    """Whether ``cfg`` has the widths of the released ``vae_ch160v4096z32.pth``."""
    ref = VQVAEConfig(patch_nums=cfg.patch_nums)
    return cfg == ref


def vqvae_from_state(sd: dict, source, patch_nums=VAE_PATCH_NUMS) -> VQVAE:
    """The checks and the assignment of :func:`load_official_vqvae` on an in-memory state dict."""
    cfg = vqvae_config_from_state(sd, source, patch_nums)
    with torch.device("meta"):
        model = VQVAE(cfg)
    sd = dict(sd)
    ema = sd.get("quantize.ema_vocab_hit_SV")
    S = len(cfg.patch_nums)
    if isinstance(ema, torch.Tensor) and ema.ndim == 2 and ema.shape[0] != S:
        sd["quantize.ema_vocab_hit_SV"] = torch.zeros(S, ema.shape[1])
    with warnings.catch_warnings():  # keys and shapes; copying into meta tensors is a no-op
        warnings.simplefilter("ignore", UserWarning)
        load_state_strict(model, sd, source)
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True, assign=True)
    return model.eval()


def load_official_vqvae(path: str | Path, patch_nums=VAE_PATCH_NUMS) -> VQVAE:
    """VAR's VQVAE (eval mode) holding every tensor of ``vae_ch160v4096z32.pth``, on ``patch_nums``."""
    return vqvae_from_state(_read(path), path, patch_nums)


def load_official_vae_quantizer(path: str | Path) -> MultiScaleQuantizer:
    """The multi-scale quantizer of ``vae_ch160v4096z32.pth`` (the whole file is checked strictly)."""
    return vae_quantizer_from_state(_read(path), path)


def vae_quantizer_from_state(sd: dict, source) -> MultiScaleQuantizer:
    vae = vqvae_from_state(sd, source)
    if len(vae.state_dict()) != VAE_TENSORS or not official_vqvae_layout(vae.cfg):
        raise ReproError(f"{source}: a VQVAE with {len(vae.state_dict())} tensors and widths "
                         f"{vae.cfg.to_dict()}, not the official ch160 V4096 Cvae32 layout")
    return vae.quantize


def save_official_var(model: VAR, path: str | Path) -> None:
    """Write ``model`` as the released ``var_d*.pth``: a raw float32 state dict with the official
    key names (ours are VAR's), which VAR's own code and :func:`load_official_var` read."""
    from guidance_repro.train.checkpoint import save_atomic
    save_atomic({k: v.detach().cpu().float().clone() if v.is_floating_point() else v.detach().cpu().clone()
                 for k, v in model.state_dict().items()}, path)
