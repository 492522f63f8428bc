"""Strict loading of the official VAR layouts (cca.md §4.2) from state dicts built with the
documented key names and shapes (uninitialised values: only names and shapes matter)."""

from __future__ import annotations

import pytest
import torch

from guidance_repro.errors import ReproError
from guidance_repro.var.model import SIZES, VAR, VARConfig, block_causal_mask
from guidance_repro.var.official import VAR_TENSORS, load_official_var, vae_quantizer_from_state, var_from_state

# Documented parameter counts (model.parameters(): every buffer excluded).
PARAMS = {16: 310_283_520, 20: 600_917_136, 24: 1_033_399_360, 30: 2_010_020_356}
PN = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)


def official_var_state(depth: int, per_depth: int = 64, V: int = 4096, Cvae: int = 32, classes: int = 1000,
                       pn=PN, shared_aln: bool = False, l2_norm: bool = True) -> dict:
    """A var_d{depth}.pth-like raw state dict written from the fact sheet's key list (VAR's
    var.py / basic_var.py names); ``per_depth`` < 64 gives the tiny widths of a test stand-in;
    ``shared_aln``: VAR's ``--saln=1`` layout (``shared_ada_lin`` + per-block ``ada_gss``, d36)."""
    C, H, L, S = per_depth * depth, depth, sum(p * p for p in pn), len(pn)
    sd = {"pos_start": (1, 1, C), "pos_1LC": (1, L, C), "word_embed.weight": (C, Cvae), "word_embed.bias": (C,),
          "class_emb.weight": (classes + 1, C), "lvl_embed.weight": (S, C),
          "head_nm.ada_lin.1.weight": (2 * C, C), "head_nm.ada_lin.1.bias": (2 * C,),
          "head.weight": (V, C), "head.bias": (V,)}
    if shared_aln:
        sd.update({"shared_ada_lin.1.weight": (6 * C, C), "shared_ada_lin.1.bias": (6 * C,)})
    for i in range(depth):
        b = f"blocks.{i}."
        sd.update({b + "attn.q_bias": (C,), b + "attn.v_bias": (C,),
                   b + "attn.zero_k_bias": (C,), b + "attn.mat_qkv.weight": (3 * C, C),
                   b + "attn.proj.weight": (C, C), b + "attn.proj.bias": (C,),
                   b + "ffn.fc1.weight": (4 * C, C), b + "ffn.fc1.bias": (4 * C,),
                   b + "ffn.fc2.weight": (C, 4 * C), b + "ffn.fc2.bias": (C,)})
        sd.update({b + "ada_gss": (1, 1, 6, C)} if shared_aln else
                  {b + "ada_lin.1.weight": (6 * C, C), b + "ada_lin.1.bias": (6 * C,)})
        if l2_norm:
            sd[b + "attn.scale_mul_1H11"] = (1, H, 1, 1)
    out = {k: torch.empty(s) for k, s in sd.items()}
    out["lvl_1L"] = torch.cat([torch.full((p * p,), i) for i, p in enumerate(pn)])[None].long()
    out["attn_bias_for_masking"] = block_causal_mask(pn)
    return out


@pytest.mark.parametrize("depth", [16, 20, 24, 30])
def test_model_layout_matches_the_documented_counts(depth):
    with torch.device("meta"):
        model = VAR(VARConfig.from_dict({"size": f"d{depth}"}))
    sd = model.state_dict()
    assert len(sd) == VAR_TENSORS[depth]
    assert sum(p.numel() for p in model.parameters()) == PARAMS[depth]
    want = {k: tuple(v.shape) for k, v in official_var_state(depth).items()}
    assert {k: tuple(v.shape) for k, v in sd.items()} == want


def test_official_d16_layout_loads_strictly():
    # In memory: a d16 file is 1.2 GB; the file-reading path is tested below on small files.
    sd = official_var_state(16)
    sd["head.bias"] = torch.arange(4096.0)
    model = var_from_state(sd, "var_d16.pth", expect_depth=16)
    assert model.cfg == VARConfig.from_dict(dict(SIZES["d16"]))
    assert torch.equal(model.head.bias, torch.arange(4096.0))
    assert model.blocks[15].attn.mat_qkv.weight.device.type == "cpu"


def test_wrong_shape_and_missing_key_name_the_key():
    sd = official_var_state(16)
    sd["blocks.3.ffn.fc1.weight"] = torch.empty(10, 1024)
    with pytest.raises(ReproError, match=r"'blocks\.3\.ffn\.fc1\.weight' has shape \(10, 1024\)"):
        var_from_state(sd, "bad.pth")
    sd = official_var_state(16)
    del sd["lvl_embed.weight"]
    with pytest.raises(ReproError, match="missing key 'lvl_embed.weight'"):
        var_from_state(sd, "missing.pth")
    with pytest.raises(ReproError, match="d20"):
        var_from_state(official_var_state(16), "d16.pth", expect_depth=20)
    sd = official_var_state(16)
    sd["attn_bias_for_masking"] = torch.zeros(1, 1, 680, 680)
    with pytest.raises(ReproError, match="attn_bias_for_masking"):
        var_from_state(sd, "mask.pth")


def test_official_var_file_errors(tmp_path):
    with pytest.raises(ReproError, match="not found"):
        load_official_var(tmp_path / "absent.pth")
    small = {k: v for k, v in official_var_state(16).items() if not k.startswith("blocks.") or k.startswith(("blocks.0.", "blocks.1."))}
    small = {k: torch.zeros(1) if v.numel() > 10**6 else v for k, v in small.items()}
    torch.save(small, tmp_path / "var_d2.pth")
    with pytest.raises(ReproError, match="depth 2 is not an official VAR size"):
        load_official_var(tmp_path / "var_d2.pth")
    torch.save({"model": {"x": torch.zeros(1)}}, tmp_path / "nested.pth")
    with pytest.raises(ReproError, match="'model' is not a tensor"):
        load_official_var(tmp_path / "nested.pth")


def test_official_vae_quantizer_loads_strictly():
    # The whole official layout (tests/test_var_vqvae.py writes it from the network's description),
    # in memory: the file is 436 MB; reading small files of this layout is tested there.
    from test_var_vqvae import documented_vqvae_keys
    sd = {k: torch.empty(s) for k, s in documented_vqvae_keys().items()}
    sd["quantize.embedding.weight"] = torch.randn(4096, 32)
    q = vae_quantizer_from_state(sd, "vae.pth")
    assert torch.equal(q.embedding.weight, sd["quantize.embedding.weight"])
    assert len(q.pn) == 10 and not q.cfg.znorm and q.cfg.grid == 16
    sd["quantize.quant_resi.qresi_ls.2.weight"] = torch.empty(32, 32, 1, 1)
    with pytest.raises(ReproError, match=r"'quantize\.quant_resi\.qresi_ls\.2\.weight' has shape"):
        vae_quantizer_from_state(sd, "bad.pth")
    sd["quantize.quant_resi.qresi_ls.2.weight"] = torch.empty(32, 32, 3, 3)
    del sd["decoder.up.0.block.2.norm1.bias"]
    with pytest.raises(ReproError, match=r"missing key 'decoder\.up\.0\.block\.2\.norm1\.bias'"):
        vae_quantizer_from_state(sd, "short.pth")
