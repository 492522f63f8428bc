"""Strict loader for STAR's released checkpoints (``star_d30_*.pth``; star.md §1).

The file is either a raw state dict or a training checkpoint, in which the model is
``["trainer"]["var_wo_ddp"]`` (how STAR-T2I's scripts read their files). It is opened with
``weights_only=True``: a checkpoint that pickles anything but plain data is refused with a message,
nothing in it runs. The shape of the model is read from the file: depth = number of
``blocks.{i}``, width C from ``pos_start``, heads = depth, vocabulary from ``head_logits``, Cvae
from ``word_embed``, text width from ``encoder_proj``, number of scales from ``lvl_embed``, QK
L2-norm from the presence of ``blocks.0.attn.scale_mul_1H11``, absolute positions from
``pos_1LC``. Every key and shape is then checked against star/official_model.py's module (a
missing, unexpected or mis-shaped key raises a ReproError naming it) before the tensors are
assigned to a model built on the meta device (no second copy of 1.7 B parameters).

What the file does not hold is an argument: the scale schedule (its length must equal the rows of
``lvl_embed``), the RoPE normalisation N and base θ (released configs: 64 and 10000),
``logit_norm`` (on in the released configs) and how the QK scale is clamped (``qk_scale_clamp``,
star/official_model.py).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from guidance_repro.errors import ReproError
from guidance_repro.star.official_model import OfficialSTAR, OfficialSTARConfig
from guidance_repro.train.checkpoint import load_model_file, load_state_strict
from guidance_repro.var.official import shape_of, var_depth

# Keys of the 1024 px mask sampler (enable_adaptive_norm) and of shared AdaLN: not built here.
UNSUPPORTED = {"feat_extract_blocks.": "the 1024 px mask sampler (w_mask=True)",
               "head_logits2.": "the 1024 px mask sampler (w_mask=True)",
               "encoder_proj2.": "the 1024 px mask sampler (w_mask=True)",
               "head_proj.": "the 1024 px mask sampler (w_mask=True)",
               "word_embed_head.": "the 1024 px mask sampler (w_mask=True)",
               "lvl_embed_2.": "the 1024 px mask sampler (w_mask=True)",
               "pos_start_last": "the 1024 px mask sampler (w_mask=True)",
               "lvl_embed_proj.": "shared AdaLN (shared_aln=True)",
               "lvl_embed_adaln.": "shared AdaLN (shared_aln=True)"}


def star_state(obj: dict, source) -> dict:
    """The model's state dict inside a loaded STAR file (raw, or ``["trainer"]["var_wo_ddp"]``)."""
    if "trainer" in obj:
        trainer = obj["trainer"]
        if not isinstance(trainer, dict) or not isinstance(trainer.get("var_wo_ddp"), dict):
            raise ReproError(f"{source}: key 'trainer' holds no 'var_wo_ddp' state dict")
        obj = trainer["var_wo_ddp"]
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ReproError(f"{source}: key {bad[0]!r} is not a tensor (expected a STAR state dict, "
                         f"raw or under ['trainer']['var_wo_ddp'])")
    return obj


def star_config_from_state(sd: dict, source, patch_nums, rope_norm: float = 64.0, rope_theta: float = 10000.0,
                           logit_norm: bool = True, qk_scale_clamp: str = "log") -> OfficialSTARConfig:
    for k in sd:
        for prefix, what in UNSUPPORTED.items():
            if k.startswith(prefix) or f".{prefix}" in f".{k}":
                raise ReproError(f"{source}: key {k!r} belongs to {what}, which is not built here "
                                 f"(use a STAR checkpoint without it)")
    depth = var_depth(sd, str(source))
    C = shape_of(sd, "pos_start", source, 3)[-1]
    if C % depth:
        raise ReproError(f"{source}: key 'pos_start' has width {C}, not a multiple of the depth {depth} "
                         f"(STAR: heads = depth)")
    V = shape_of(sd, "head_logits.weight", source, 2)[0]
    code_dim = shape_of(sd, "word_embed.weight", source, 2)[1]
    text_dim = shape_of(sd, "encoder_proj.weight", source, 2)[1]
    S = shape_of(sd, "lvl_embed.weight", source, 2)[0]
    classes = shape_of(sd, "class_emb.weight", source, 2)[0] - 1
    pn = [int(p) for p in patch_nums]
    if S != len(pn):
        raise ReproError(f"{source}: key 'lvl_embed.weight' has {S} rows (a {S}-scale model), the scale "
                         f"schedule {pn} has {len(pn)} scales (choose the schedule the model was trained on)")
    cfg = {"vocab_size": V, "code_dim": code_dim, "patch_nums": pn, "depth": depth,
           "width_per_depth": C // depth, "head_dim": C // depth, "text_dim": text_dim,
           "num_classes": classes, "attn_l2_norm": "blocks.0.attn.scale_mul_1H11" in sd,
           "positions": "absolute" if "pos_1LC" in sd else "rope", "rope_norm": float(rope_norm),
           "rope_theta": float(rope_theta), "logit_norm": bool(logit_norm), "qk_scale_clamp": qk_scale_clamp}
    return OfficialSTARConfig.from_dict(cfg, key=str(source))


def star_from_state(sd: dict, source, patch_nums, rope_norm: float = 64.0, rope_theta: float = 10000.0,
                    logit_norm: bool = True, expect_depth: int | None = None,
                    qk_scale_clamp: str = "log") -> OfficialSTAR:
    """The checks and the assignment of :func:`load_official_star` on an in-memory state dict."""
    cfg = star_config_from_state(sd, source, patch_nums, rope_norm, rope_theta, logit_norm, qk_scale_clamp)
    if expect_depth is not None and cfg.depth != expect_depth:
        raise ReproError(f"{source}: a depth-{cfg.depth} STAR model, expected d{expect_depth}")
    with torch.device("meta"):
        model = OfficialSTAR(cfg)
    with warnings.catch_warnings():  # keys and shapes; copying into meta tensors is a no-op
        warnings.simplefilter("ignore", UserWarning)
        load_state_strict(model, sd, source)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()},
                          strict=True, assign=True)
    return model.eval()


def load_official_star(path: str | Path, patch_nums, rope_norm: float = 64.0, rope_theta: float = 10000.0,
                       logit_norm: bool = True, expect_depth: int | None = None,
                       qk_scale_clamp: str = "log") -> OfficialSTAR:
    """STAR (eval mode) holding every tensor of a released checkpoint (module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ReproError(f"{path}: STAR checkpoint not found (the paper tier needs it locally)")
    sd = star_state(load_model_file(path), path)
    return star_from_state(sd, path, patch_nums, rope_norm, rope_theta, logit_norm, expect_depth, qk_scale_clamp)
