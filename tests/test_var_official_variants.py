"""Settings of VAR's code that the released 256 px files do not use but the loaders accept:
the φ ticks for share_quant_resi K != 4, the attention scale without the QK L2-norm, the shared
AdaLN of the 512 px var_d36.pth, training snapshots and wrapper prefixes (issue 21, items 5 and 6).
Each is checked against a computation written out here, independent of var/model.py."""

from __future__ import annotations

import math

import pytest
import torch

from guidance_repro.errors import ReproError
from guidance_repro.var.model import VAR, SelfAttention, VARConfig, block_causal_mask
from guidance_repro.var.msvq import phi_index
from guidance_repro.var.official import load_official_var, var_from_state
from test_var_checkpoints import official_var_state

PN512 = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)
TINY = {"width_per_depth": 2, "head_dim": 2, "vocab_size": 16, "code_dim": 4, "num_classes": 10}


def bin_centre_conv(si: int, S: int, K: int) -> int:
    """VAR's rule for K != 4 in words: ticks at the centres of K equal bins of [0, 1], so the
    position si/(S−1) falls into bin floor(K·si/(S−1)) (the last bin closed)."""
    return min(math.floor(K * si / (S - 1)), K - 1)


def test_phi_ticks_k4_keep_one_third_margins_and_other_k_use_bin_centres():
    assert [phi_index(si, 10, 4) for si in range(10)] == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    # K = 3, 20 scales: si = 6 sits at 0.316, past the old tick midpoint 0.306 (1/3K margins)
    # but inside the first of three equal bins: the official picks conv 0.
    assert phi_index(6, 20, 3) == 0
    for K in (2, 3, 5, 6, 8):
        for S in (7, 10, 13, 16, 20):
            for si in range(S):
                at = K * si / (S - 1)
                if abs(at - round(at)) < 1e-9 and 0 < round(at) < K:
                    continue  # exactly on a bin edge: a tie between two ticks
                assert phi_index(si, S, K) == bin_centre_conv(si, S, K), (K, S, si)


def test_attention_without_l2_norm_uses_the_official_quarter_scale():
    torch.manual_seed(0)
    cfg = VARConfig(depth=2, width_per_depth=8, head_dim=4, attn_l2_norm=False, patch_nums=(1, 2))
    attn = SelfAttention(cfg).eval()
    for p in attn.parameters():
        p.data.normal_()
    x = torch.randn(3, 5, cfg.width)
    mask = block_causal_mask(cfg.patch_nums)
    B, L, C, H, d = 3, 5, cfg.width, cfg.heads, cfg.head_dim
    qkv = x @ attn.mat_qkv.weight.T + torch.cat([attn.q_bias, torch.zeros(C), attn.v_bias])
    q, k, v = (t.reshape(B, L, H, d).transpose(1, 2) for t in qkv.split(C, -1))
    w = torch.softmax(q @ k.transpose(-1, -2) * (0.25 / math.sqrt(d)) + mask, -1)
    want = attn.proj((w @ v).transpose(1, 2).reshape(B, L, C))
    torch.testing.assert_close(attn(x, mask), want)


def test_a_file_without_scale_mul_loads_as_plain_attention():
    sd = official_var_state(16, **_tiny_kw(), l2_norm=False)
    model = var_from_state(sd, "plain.pth", overrides=TINY)
    assert not model.cfg.attn_l2_norm and not hasattr(model.blocks[0].attn, "scale_mul_1H11")


def _tiny_kw():
    return {"per_depth": TINY["width_per_depth"], "V": TINY["vocab_size"], "Cvae": TINY["code_dim"],
            "classes": TINY["num_classes"]}


def _randomised(sd: dict) -> dict:
    g = torch.Generator().manual_seed(1)
    return {k: (torch.randn(v.shape, generator=g) * 0.2 if v.is_floating_point() and k != "attn_bias_for_masking"
                else v) for k, v in sd.items()}


def test_shared_aln_d36_512_loads_with_its_schedule_and_equals_per_block_adaln():
    sd = _randomised(official_var_state(36, **_tiny_kw(), pn=PN512, shared_aln=True))
    model = var_from_state(sd, "var_d36.pth", expect_depth=36, overrides=TINY)
    assert model.cfg.shared_aln and model.cfg.patch_nums == PN512 and model.cfg.seq_len == 2240
    assert not hasattr(model.blocks[0], "ada_lin") and model.blocks[35].ada_gss.shape == (1, 1, 6, 72)
    # Independent: the shared linear + ada_gss is the per-block linear whose bias adds ada_gss.
    per_block = VAR(VARConfig.from_dict({"size": "d36", **TINY, "shared_aln": False})).eval()
    plain = {k: v for k, v in sd.items() if not k.startswith("shared_ada_lin") and not k.endswith("ada_gss")}
    for i in range(36):
        plain[f"blocks.{i}.ada_lin.1.weight"] = sd["shared_ada_lin.1.weight"]
        plain[f"blocks.{i}.ada_lin.1.bias"] = sd["shared_ada_lin.1.bias"] + sd[f"blocks.{i}.ada_gss"].reshape(-1)
    per_block.load_state_dict(plain, strict=True)
    labels, x_in = torch.tensor([3, 7]), torch.randn(2, 30 - 1, TINY["code_dim"])
    with torch.no_grad():
        torch.testing.assert_close(model(labels, x_in), per_block(labels, x_in), rtol=1e-4, atol=1e-4)


def test_training_snapshot_with_wrapper_prefixes_loads(tmp_path):
    sd = _randomised(official_var_state(16, **_tiny_kw()))
    wrapped = {("module._orig_mod." if i % 2 else "_orig_mod.") + k: v for i, (k, v) in enumerate(sd.items())}
    snap = {"epoch": 1, "iter": 5005, "args": {"depth": 16, "tblr": 1e-4},
            "trainer": {"config": {"tblr": 1e-4}, "var_wo_ddp": wrapped, "var_opt": {}}}
    torch.save(snap, tmp_path / "ar-ckpt-last.pth")
    model = load_official_var(tmp_path / "ar-ckpt-last.pth", expect_depth=16, overrides=TINY)
    assert torch.equal(model.head.weight, sd["head.weight"])
    torch.save({"trainer": {"vae_local": {}}}, tmp_path / "no_var.pth")
    with pytest.raises(ReproError, match="'var_wo_ddp'"):
        load_official_var(tmp_path / "no_var.pth")
    dup = {"module.head.bias": sd["head.bias"], "head.bias": sd["head.bias"]}
    torch.save(dup, tmp_path / "dup.pth")
    with pytest.raises(ReproError, match="occurs twice"):
        load_official_var(tmp_path / "dup.pth")


def test_bad_level_buffer_is_named():
    sd = official_var_state(16, **_tiny_kw())
    sd["lvl_1L"] = torch.zeros(1, 7, dtype=torch.long)
    with pytest.raises(ReproError, match="'lvl_1L'"):
        var_from_state(sd, "lvl.pth", overrides=TINY)


def test_vqvae_phi_layouts_other_than_partially_shared_are_refused():
    from test_var_vqvae import TINY as VAE_TINY, _state, documented_vqvae_keys

    from guidance_repro.var.official import vqvae_from_state
    sd = _state(documented_vqvae_keys(**VAE_TINY, S=2, phi=3))
    assert vqvae_from_state(sd, "k3.pth", (1, 2)).cfg.phi_count == 3  # K = 3: bin-centre ticks
    for key, k in (("quantize.quant_resi.qresi.weight", "1"), ("quantize.quant_resi.0.weight", "0")):
        bad = {n: v for n, v in sd.items() if ".qresi_ls." not in n}
        bad[key] = torch.zeros(8, 8, 3, 3)
        with pytest.raises(ReproError, match=f"share_quant_resi = {k}"):
            vqvae_from_state(bad, "bad.pth", (1, 2))
