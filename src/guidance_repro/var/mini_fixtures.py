"""TEST STAND-IN VAR files for the paper-shaped mini tier (``var-mini-fixtures``).

Made from seeds, never downloaded, never committed, labelled as test stand-ins in their file
names and in ``TEST-STANDIN-var-fixtures.json`` (what each file stands in for, the overrides to
load it with, sha256). Layout under ``--out``:

- ``var/var_d{16,20,24,30}.TEST-STANDIN.pth``: raw state dicts with the official key names (the
  real depth: 16/20/24/30 blocks, the buffers ``lvl_1L`` / ``attn_bias_for_masking`` included) at
  tiny widths (``width_per_depth`` differs per depth, so a file read as another depth fails), a
  tiny vocabulary and Cvae, the 1000 + 1 class rows of the release, random weights, on a short
  schedule (``patch_nums`` is read from ``lvl_1L``); load with
  ``load_official_var(path, depth, overrides=var_overrides[depth])``.
- ``var/vae_ch160v4096z32.TEST-STANDIN.pth``: the official VQVAE layout (the same key names:
  ch_mult (1, 1, 2, 2, 4), 2 blocks per level, 4 shared φ convs) at ch 32, V 64, Cvae 8; load with
  ``load_official_vqvae(path, patch_nums)``. Images are 16·patch_nums[-1] px (64 by default: the
  size of mini-paper-fixtures' ImageNet-layout JPEGs).
"""

from __future__ import annotations

from pathlib import Path

import torch

from guidance_repro.errors import ReproError
from guidance_repro.io import atomic_path, write_json
from guidance_repro.metrics.features import file_sha256
from guidance_repro.var.model import VAR, VARConfig
from guidance_repro.var.vqvae import VQVAE, VQVAEConfig

TAG = "TEST-STANDIN"
WIDTH_PER_DEPTH = {16: 2, 20: 3, 24: 2, 30: 2}  # head_dim 1..: heads = depth as the release
VAE_WIDTHS = dict(ch=32, codebook_size=64, code_dim=8)
PATCH_NUMS = (1, 2, 3, 4)


def var_overrides(depth: int) -> dict:
    w = WIDTH_PER_DEPTH[depth]
    return {"width_per_depth": w, "head_dim": w, "vocab_size": VAE_WIDTHS["codebook_size"],
            "code_dim": VAE_WIDTHS["code_dim"]}


def _save(obj: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".tmp.pth") as tmp:
        torch.save(obj, tmp)
    return path


def write_vars(root: Path, seed: int, patch_nums=PATCH_NUMS) -> dict[int, Path]:
    out = {}
    for depth in WIDTH_PER_DEPTH:
        torch.manual_seed(seed * 100 + depth)
        cfg = VARConfig.from_dict({"size": f"d{depth}", **var_overrides(depth), "patch_nums": list(patch_nums)})
        model = VAR(cfg)
        with torch.no_grad():  # γ of the residual branches not ~1e-5: the blocks do something
            for b in model.blocks:
                b.ada_lin[-1].weight.normal_(0, 0.05)
        sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
        out[depth] = _save(sd, root / f"var_d{depth}.{TAG}.pth")
    return out


def write_vae(path: Path, seed: int, patch_nums=PATCH_NUMS) -> Path:
    torch.manual_seed(seed)
    vae = VQVAE(VQVAEConfig.from_dict({**VAE_WIDTHS, "patch_nums": list(patch_nums)}))
    with torch.no_grad():  # spread-out codes, so that images map to many different tokens
        vae.quantize.embedding.weight.normal_()
    return _save({k: v.detach().clone() for k, v in vae.state_dict().items()}, path)


def write_var_fixtures(out: str | Path, seed: int = 0, image_size: int = 64) -> dict:
    """Write the VAR stand-ins under ``out/var`` and the manifest ``TEST-STANDIN-var-fixtures.json``."""
    if image_size % 16 or image_size < 16:
        raise ReproError(f"--image-size: {image_size} must be a multiple of 16 (VAR's VQVAE is x16)")
    grid = image_size // 16
    patch_nums = tuple(range(1, grid + 1))  # 1, 2, ..., grid: the last scale is the latent map
    out = Path(out)
    vars_ = write_vars(out / "var", seed, patch_nums)
    vae = write_vae(out / "var" / f"vae_ch160v4096z32.{TAG}.pth", seed, patch_nums)
    files = {**{f"var_d{d}": p for d, p in vars_.items()}, "vae": vae}
    manifest = {
        "kind": "var-mini-fixtures", "note": "TEST STAND-IN files: random weights, official key names, "
        "tiny widths; for testing the paper-tier code paths only, never for real results", "seed": seed,
        "image_size": image_size, "patch_nums": list(patch_nums),
        "var_overrides": {str(d): var_overrides(d) for d in WIDTH_PER_DEPTH},
        "vae_config": {**VAE_WIDTHS, "patch_nums": list(patch_nums)},
        "crop": image_size, "resize": round(1.125 * image_size),  # VAR's 288 / 256 ratio
        "files": {k: {"path": str(p), "sha256": file_sha256(p)} for k, p in files.items()},
    }
    write_json(out / f"{TAG}-var-fixtures.json", manifest)
    return manifest
