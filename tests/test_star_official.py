"""STAR's released model (star/official_model.py, star/official.py): the official key layout
and parameter counts (star.md §1), strict loading of small files with that layout, the blocks'
computation (per-sample cross-attention: star.md's ⚠ bug is not reproduced), and the
``star-mjhq-sample`` command end to end on CPU with a tiny STAR, a tiny VQVAE and a 3-prompt
MJHQ-shaped metadata file: PNG layout, resolution, per-prompt seeding, resume, settings check."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from guidance_repro.cli import main
from guidance_repro.errors import ReproError
from guidance_repro.star.model import TextCond
from guidance_repro.star.official import load_official_star, star_from_state
from guidance_repro.star.official_model import OfficialSTAR, OfficialSTARConfig
from guidance_repro.var.msvq import split_scales
from guidance_repro.var.vqvae import PATCH_NUMS

pytestmark = pytest.mark.usefixtures("one_thread")


def documented_star_keys(depth=30, C=None, V=4096, D=1024, code_dim=32, S=10, classes=1000, l2=True) -> dict:
    """Name -> shape of a star_d{depth}.pth state dict, written from star.md §1 and STAR-T2I's
    module names (``var_drop.py``: word_embed, class_emb, pos_start, lvl_embed, encoder_proj,
    head_logits; blocks: attn, cross_attn, ffn), not from the module."""
    C = C or 64 * depth
    keys = {"word_embed.weight": (C, code_dim), "word_embed.bias": (C,), "class_emb.weight": (classes + 1, C),
            "pos_start": (1, 1, C), "lvl_embed.weight": (S, C), "encoder_proj.weight": (C, D),
            "encoder_proj.bias": (C,), "head_logits.weight": (V, C), "head_logits.bias": (V,)}
    for i in range(depth):
        b = f"blocks.{i}."
        keys.update({b + "attn.mat_qkv.weight": (3 * C, C), b + "cross_attn.mat_q.weight": (C, C),
                     b + "cross_attn.mat_kv.weight": (2 * C, D), b + "ffn.fc1.weight": (4 * C, C),
                     b + "ffn.fc1.bias": (4 * C,), b + "ffn.fc2.weight": (C, 4 * C), b + "ffn.fc2.bias": (C,)})
        for a in ("attn.", "cross_attn."):
            keys.update({b + a + k: (C,) for k in ("q_bias", "v_bias", "zero_k_bias", "proj.bias")})
            keys[b + a + "proj.weight"] = (C, C)
            if l2:
                keys[b + a + "scale_mul_1H11"] = (1, depth, 1, 1)
    return keys


TINY = dict(depth=2, C=64, V=64, D=32, code_dim=8, S=2)


def tiny_state(seed=0, **kw) -> dict:
    g = torch.Generator().manual_seed(seed)
    sd = {k: 0.2 * torch.randn(s, generator=g) for k, s in documented_star_keys(**{**TINY, **kw}).items()}
    for k in sd:
        if k.endswith("zero_k_bias"):
            sd[k].zero_()
        if k.endswith("scale_mul_1H11"):
            sd[k].fill_(math.log(4.0))
    return sd


@pytest.mark.parametrize("depth, tensors, params", [(16, 313, 274_934_272), (30, 579, 1_678_731_016)])
def test_official_layout_has_the_documented_keys_and_counts(depth, tensors, params):
    cfg = OfficialSTARConfig.from_dict({"depth": depth})
    with torch.device("meta"):
        model = OfficialSTAR(cfg)
    sd = model.state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == documented_star_keys(depth)
    assert len(sd) == tensors
    n = sum(p.numel() for p in model.parameters())
    assert n == params and abs(n / 1e9 - {16: 0.275, 30: 1.68}[depth]) < 0.005  # star.md: ≈ 275 M, ≈ 1.68 B


@pytest.mark.parametrize("nested", [False, True])
def test_small_file_with_the_official_layout_loads_strictly(tmp_path, nested):
    sd = tiny_state()
    sd["head_logits.bias"] = torch.arange(64.0).half()  # fp16 files are read as fp32
    torch.save({"trainer": {"var_wo_ddp": sd}, "epoch": 3} if nested else sd, tmp_path / "star.pth")
    model = load_official_star(tmp_path / "star.pth", (1, 2))
    cfg = model.cfg
    assert (cfg.depth, cfg.width, cfg.heads, cfg.vocab_size, cfg.text_dim, cfg.code_dim) == (2, 64, 2, 64, 32, 8)
    assert cfg.attn_l2_norm and cfg.positions == "rope" and cfg.rope_norm == 64 and cfg.rope_theta == 10000
    assert model.head_logits.bias.dtype == torch.float32 and torch.equal(model.head_logits.bias, torch.arange(64.0))
    assert torch.equal(model.blocks[1].cross_attn.mat_kv.weight, sd["blocks.1.cross_attn.mat_kv.weight"])
    assert model.rope_angles.shape == (5, 16) and model.lvl_1L.device.type == "cpu"
    plain = star_from_state(tiny_state(l2=False), "v1.pth", (1, 2))
    assert not plain.cfg.attn_l2_norm and not hasattr(plain.blocks[0].cross_attn, "scale_mul_1H11")


@pytest.mark.parametrize("edit, message", [
    (lambda sd: sd.update({"blocks.1.cross_attn.mat_kv.weight": torch.zeros(128, 16)}),
     r"'blocks\.1\.cross_attn\.mat_kv\.weight' has shape \(128, 16\)"),
    (lambda sd: sd.pop("blocks.0.cross_attn.v_bias"), r"missing key 'blocks\.0\.cross_attn\.v_bias'"),
    (lambda sd: sd.pop("encoder_proj.weight"), r"missing key 'encoder_proj\.weight'"),
    (lambda sd: sd.update({"head_nm.weight": torch.zeros(64)}), r"unexpected key 'head_nm\.weight'"),
    (lambda sd: sd.update({"head_logits2.weight": torch.zeros(64, 64)}), r"'head_logits2\.weight' belongs to the 1024 px mask sampler"),
    (lambda sd: sd.update({"lvl_embed.weight": torch.zeros(3, 64)}), r"'lvl_embed\.weight' has 3 rows .* \[1, 2\] has 2 scales"),
    (lambda sd: sd.update({"pos_start": torch.zeros(1, 1, 63)}), r"'pos_start' has width 63"),
    (lambda sd: sd.update({"epoch": 3}), r"'epoch' is not a tensor"),
])
def test_wrong_shape_missing_and_unexpected_keys_name_the_key(tmp_path, edit, message):
    sd = tiny_state()
    edit(sd)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(ReproError, match=message):
        load_official_star(tmp_path / "bad.pth", (1, 2))


def _cond(B=3, T=5, D=32, lengths=(2, 5, 3), seed=1) -> TextCond:
    g = torch.Generator().manual_seed(seed)
    mask = torch.arange(T)[None] < torch.tensor(lengths)[:, None]
    return TextCond(torch.randn(B, T, D, generator=g), mask, torch.randn(B, D, generator=g))


@pytest.mark.parametrize("l2", [True, False])
def test_cross_attention_is_per_sample_masked_and_scaled_as_the_official_code(l2):
    model = star_from_state(tiny_state(l2=l2), "x", (1, 2))
    ca, cond = model.blocks[0].cross_attn, _cond()
    x = torch.randn(3, 4, 64, generator=torch.Generator().manual_seed(2))
    out = ca(x, cond.hidden, cond.mask)
    for b in range(3):  # manual softmax over the valid text tokens of sample b only
        n = int(cond.mask[b].sum())
        q = (x[b] @ ca.mat_q.weight.T + ca.q_bias).view(4, 2, 32).transpose(0, 1)
        kv = cond.hidden[b, :n] @ ca.mat_kv.weight.T
        k, v = kv[:, :64].view(n, 2, 32).transpose(0, 1), (kv[:, 64:] + ca.v_bias).view(n, 2, 32).transpose(0, 1)
        if l2:
            q, k = F_normalize(q) * ca.scale_mul_1H11[0].exp(), F_normalize(k)
            logits = q @ k.transpose(1, 2)
        else:
            logits = q @ k.transpose(1, 2) * 0.25 / math.sqrt(32)
        y = (torch.softmax(logits, -1) @ v).transpose(0, 1).reshape(4, 64)
        torch.testing.assert_close(out[b], ca.proj(y), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(out[1], out[0])  # not batch element 0 for everyone (star.md ⚠)
    pad = cond.hidden.clone()
    pad[0, 2:] = 100.0  # padded text positions of sample 0 change nothing
    torch.testing.assert_close(ca(x, pad, cond.mask), out)


def F_normalize(t):
    return t / t.norm(dim=-1, keepdim=True)


def test_qk_scale_clamp_modes_bound_the_learned_scale_differently():
    sd = tiny_state()
    sd["blocks.0.attn.scale_mul_1H11"] = torch.tensor([math.log(3.0), math.log(500.0)]).view(1, 2, 1, 1)
    log = star_from_state(sd, "x", (1, 2)).blocks[0].attn
    exp = star_from_state(sd, "x", (1, 2), qk_scale_clamp="exp").blocks[0].attn
    torch.testing.assert_close(log.q_scale().flatten(), torch.tensor([3.0, 100.0]))
    torch.testing.assert_close(exp.q_scale().flatten(), torch.tensor([3.0, math.log(100.0)]))
    with pytest.raises(ReproError, match="qk_scale_clamp"):
        star_from_state(sd, "x", (1, 2), qk_scale_clamp="none")


@torch.no_grad()
def test_start_token_and_kv_cache_sampling_equal_teacher_forcing():
    from guidance_repro.guidance.cfg import Guidance
    from guidance_repro.sampling.ar import SamplerConfig
    from guidance_repro.sampling.next_scale import sample_scales
    from test_var_vqvae import _tiny
    pn = (1, 2, 3)
    model = star_from_state(tiny_state(S=3), "x", pn)
    vae = _tiny(pn)
    cond = _cond()
    h0 = model.embed(cond, None, 0)
    torch.testing.assert_close(h0[:, 0], model.encoder_proj(cond.pooled) + model.pos_start[0, 0] + model.lvl_embed.weight[0])
    g = torch.Generator().manual_seed(0)
    tokens, f_hat, logits = sample_scales(model, vae, cond, 3, Guidance("none"), SamplerConfig(batch_size=3),
                                          g, return_logits=True)
    x_in = vae.quantize.var_input(split_scales(tokens, pn))
    torch.testing.assert_close(model(cond, x_in), logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(f_hat, vae.fhat_from_indices(split_scales(tokens, pn)))


# ---- star-mjhq-sample, end to end on CPU ----

PROMPTS = {"k-dog": ("animals", "a small dog on a red sofa"), "k-cat": ("animals", "a cat"),
           "k-car": ("vehicles", "an old blue car in the rain")}


@pytest.fixture(scope="module")
def paper_files(tmp_path_factory):
    """A tiny STAR (official layout) + tiny VQVAE (official layout, 32 px on schedule 1,2) as files,
    a toy-clip text encoder (32-d) and a 3-prompt MJHQ-shaped meta_data.json."""
    from guidance_repro.metrics.toy_clip import build_clip, clip_config
    from guidance_repro.star.text import TEXT_TASK
    from test_var_vqvae import _state, documented_vqvae_keys
    d = tmp_path_factory.mktemp("paper")
    torch.save(tiny_state(), d / "star.pth")
    vae = _state(documented_vqvae_keys(ch=32, z=8, V=64, S=10), seed=3)
    vae["quantize.embedding.weight"] = torch.randn(64, 8, generator=torch.Generator().manual_seed(4))
    torch.save(vae, d / "vae.pth")
    cfg = clip_config({"embed_dim": 16, "vision": {"width": 32, "layers": 1, "head_width": 16},
                       "text": {"width": 32, "heads": 2, "layers": 1, "context_length": 16}}, "test")
    torch.manual_seed(0)
    torch.save({"task": TEXT_TASK, "model_config": cfg, "model": build_clip(cfg).state_dict()}, d / "text.pt")
    (d / "meta.json").write_text(json.dumps({k: {"category": c, "prompt": p} for k, (c, p) in PROMPTS.items()}))
    return d


def _run(files, out, *extra):
    argv = ["star-mjhq-sample", "--star", str(files / "star.pth"), "--vae", str(files / "vae.pth"),
            "--text-encoder", str(files / "text.pt"), "--text-encoder-kind", "toy-clip",
            "--meta", str(files / "meta.json"), "--out-dir", str(out), "--resolution", "32",
            "--patch-nums", "1,2", "--device", "cpu", "--no-progress", "--batch-size", "2", *extra]
    return main(argv)


def _png(path):
    with Image.open(path) as im:
        return im.mode, np.asarray(im)


def test_mjhq_sampling_writes_the_layout_and_resumes(paper_files, tmp_path, capsys):
    from guidance_repro.data.mjhq import read_meta
    from guidance_repro.metrics.mjhq_eval import load_generated
    out = tmp_path / "gen"
    assert _run(paper_files, out) == 0
    files = {k: out / c / f"{k}.png" for k, (c, _) in PROMPTS.items()}
    images = {k: _png(p) for k, p in files.items()}
    assert all(mode == "RGB" and a.shape == (32, 32, 3) for mode, a in images.values())
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == \
        ["animals/k-cat.png", "animals/k-dog.png", "vehicles/k-car.png"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["images"] == 3 and manifest["written_this_run"] == 3 and manifest["patch_nums"] == [1, 2]
    assert manifest["cross_attention_index0_bug"].startswith("not reproduced") and not manifest["official_vqvae_layout"]
    gen = load_generated(out, read_meta(paper_files / "meta.json"), 32)  # what the MJHQ evaluation reads
    assert gen.shape == (3, 32, 32, 3)
    assert len({a.tobytes() for _, a in images.values()}) == 3

    # seeded per prompt key: batch size 1 gives the same images
    assert _run(paper_files, tmp_path / "b1", "--batch-size", "1") == 0
    for k, (c, _) in PROMPTS.items():
        np.testing.assert_array_equal(_png(tmp_path / "b1" / c / f"{k}.png")[1], images[k][1])

    # resume: only the missing image is drawn, and it is the same image
    files["k-car"].unlink()
    before = {k: files[k].stat().st_mtime_ns for k in ("k-dog", "k-cat")}
    assert _run(paper_files, out) == 0
    assert json.loads((out / "manifest.json").read_text())["written_this_run"] == 1
    np.testing.assert_array_equal(_png(files["k-car"])[1], images["k-car"][1])
    assert {k: files[k].stat().st_mtime_ns for k in before} == before

    # other settings in the same folder are refused before anything is touched
    capsys.readouterr()
    assert _run(paper_files, out, "--cfg", "2") == 2
    assert "sampled with cfg=4.0" in capsys.readouterr().err
    assert (out / "manifest.json").is_file() and len(list(out.rglob("*.png"))) == 3
    # --limit: the first prompts only (category order), no completion marker; bf16 autocast runs
    assert _run(paper_files, tmp_path / "lim", "--limit", "1", "--precision", "bf16") == 0
    assert not (tmp_path / "lim" / "manifest.json").exists()
    assert [p.name for p in (tmp_path / "lim").rglob("*.png")] == ["k-cat.png"]
    assert _png(tmp_path / "lim" / "animals" / "k-cat.png")[1].shape == (32, 32, 3)


def test_mjhq_sampling_refuses_mismatched_inputs(paper_files, tmp_path, capsys):
    assert _run(paper_files, tmp_path / "a", "--patch-nums", "1,2,3", "--resolution", "48") == 2
    assert "'lvl_embed.weight' has 2 rows" in capsys.readouterr().err
    assert _run(paper_files, tmp_path / "b", "--patch-nums", "1,2", "--resolution", "64") == 2
    assert "--patch-nums: the last scale x 16 must be --resolution 64" in capsys.readouterr().err
    torch.save(tiny_state(D=16), tmp_path / "star16.pth")
    argv = ["--star", str(tmp_path / "star16.pth")]
    assert _run(paper_files, tmp_path / "c", *argv) == 2
    assert "gives 32-d text, the STAR model expects 16-d" in capsys.readouterr().err
    assert not any((tmp_path / "c").rglob("*.png"))


def test_stars_schedules_are_the_default_of_each_resolution():
    import argparse

    from guidance_repro.star.mjhq_commands import _schedule, key_seed, prompt_uniforms
    assert _schedule(argparse.Namespace(patch_nums="", resolution=512)) == [1, 2, 3, 4, 6, 9, 13, 18, 24, 32]
    assert _schedule(argparse.Namespace(patch_nums="", resolution=256)) == list(PATCH_NUMS[256])
    with pytest.raises(ReproError, match="--resolution"):
        _schedule(argparse.Namespace(patch_nums="", resolution=384))
    assert key_seed(0, "a") != key_seed(1, "a") != key_seed(0, "b")
    u = prompt_uniforms(0, ["a", "b", "a"], 7)
    assert torch.equal(u[0], u[2]) and not torch.equal(u[0], u[1])
