"""VAR's VQVAE network (var/vqvae.py): the official key layout and counts (cca.md §4.2),
strict loading of small files with that layout, the conv blocks against their definitions, and
tokens -> f̂ -> image against VAR's definition of f̂ and the sampler's incremental path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from guidance_repro.errors import ReproError
from guidance_repro.nn.vqgan_blocks import AttnBlock
from guidance_repro.var.msvq import MultiScaleQuantizer, join_scales
from guidance_repro.var.official import (VAE_TENSORS, load_official_vae_quantizer, load_official_vqvae,
                                         official_vqvae_layout, vqvae_from_state)
from guidance_repro.var.vqvae import PATCH_NUMS, VQVAE, VQVAEConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def documented_vqvae_keys(ch=160, mult=(1, 1, 2, 2, 4), nres=2, z=32, V=4096, S=10, phi=4) -> dict:
    """Name -> shape of a vae_ch160v4096z32.pth-like state dict, written from the description of
    VAR's vq-f16 encoder/decoder (var/vqvae.py docstring), not from the module."""
    keys: dict[str, tuple] = {}

    def conv(name, cin, cout, k):
        keys[name + ".weight"], keys[name + ".bias"] = (cout, cin, k, k), (cout,)

    def norm(name, c):
        keys[name + ".weight"], keys[name + ".bias"] = (c,), (c,)

    def resnet(name, cin, cout):
        norm(name + ".norm1", cin), conv(name + ".conv1", cin, cout, 3)
        norm(name + ".norm2", cout), conv(name + ".conv2", cout, cout, 3)
        if cin != cout:
            conv(name + ".nin_shortcut", cin, cout, 1)

    def attn(name, c):
        norm(name + ".norm", c), conv(name + ".qkv", c, 3 * c, 1), conv(name + ".proj_out", c, c, 1)

    def mid(name, c):
        resnet(name + ".block_1", c, c), attn(name + ".attn_1", c), resnet(name + ".block_2", c, c)

    widths, last = [ch * m for m in mult], len(mult) - 1
    conv("encoder.conv_in", 3, ch, 3)
    c = ch
    for i, w in enumerate(widths):
        for j in range(nres):
            resnet(f"encoder.down.{i}.block.{j}", c, w)
            c = w
            if i == last:
                attn(f"encoder.down.{i}.attn.{j}", w)
        if i != last:
            conv(f"encoder.down.{i}.downsample.conv", w, w, 3)
    mid("encoder.mid", c), norm("encoder.norm_out", c), conv("encoder.conv_out", c, z, 3)
    conv("decoder.conv_in", z, c, 3)
    mid("decoder.mid", c)
    for i in reversed(range(len(widths))):
        for j in range(nres + 1):
            resnet(f"decoder.up.{i}.block.{j}", c, widths[i])
            c = widths[i]
            if i == last:
                attn(f"decoder.up.{i}.attn.{j}", c)
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", c, c, 3)
    norm("decoder.norm_out", c), conv("decoder.conv_out", c, 3, 3)
    conv("quant_conv", z, z, 3), conv("post_quant_conv", z, z, 3)
    keys["quantize.embedding.weight"], keys["quantize.ema_vocab_hit_SV"] = (V, z), (S, V)
    for k in range(phi):
        conv(f"quantize.quant_resi.qresi_ls.{k}", z, z, 3)
    return keys


def _state(keys: dict, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: 0.1 * torch.randn(s, generator=g) for k, s in keys.items()}


TINY = dict(ch=32, z=8, V=64)  # GroupNorm(32) needs widths that are multiples of 32


def test_official_layout_has_the_documented_keys_and_counts():
    with torch.device("meta"):
        model = VQVAE(VQVAEConfig())
    sd = model.state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == documented_vqvae_keys()
    assert len(sd) == VAE_TENSORS == 324
    assert sum(p.numel() for p in model.parameters()) == 108_948_355  # cca.md §4.2
    assert official_vqvae_layout(VQVAEConfig(patch_nums=PATCH_NUMS[512]))
    assert not official_vqvae_layout(VQVAEConfig(ch=32))


def test_small_file_with_the_official_layout_loads_strictly(tmp_path):
    sd = _state(documented_vqvae_keys(**TINY, S=2))
    torch.save(sd, tmp_path / "vae.pth")
    vae = load_official_vqvae(tmp_path / "vae.pth", patch_nums=(1, 2))
    assert (vae.cfg.ch, vae.cfg.ch_mult, vae.cfg.num_res_blocks, vae.cfg.code_dim) == (32, (1, 1, 2, 2, 4), 2, 8)
    assert vae.cfg.image_size == 32 and len(vae.state_dict()) == VAE_TENSORS
    for k in ("decoder.up.3.upsample.conv.weight", "encoder.down.4.attn.1.qkv.bias", "quantize.embedding.weight"):
        assert torch.equal(vae.state_dict()[k], sd[k])
    # the schedule is an argument: a 10-row code-hit buffer is replaced for a 2-scale schedule (as VAR does)
    sd10 = dict(sd, **{"quantize.ema_vocab_hit_SV": torch.ones(10, 64)})
    assert vqvae_from_state(sd10, "x", (1, 2)).quantize.ema_vocab_hit_SV.shape == (2, 64)
    with pytest.raises(ReproError, match="not the official ch160"):
        load_official_vae_quantizer(tmp_path / "vae.pth")


@pytest.mark.parametrize("edit, message", [
    (lambda sd: sd.update({"decoder.up.2.block.1.conv2.weight": torch.zeros(64, 64, 1, 1)}),
     r"'decoder\.up\.2\.block\.1\.conv2\.weight' has shape \(64, 64, 1, 1\)"),
    (lambda sd: sd.pop("decoder.mid.attn_1.proj_out.bias"), r"missing key 'decoder\.mid\.attn_1\.proj_out\.bias'"),
    (lambda sd: sd.update({"decoder.extra.weight": torch.zeros(1)}), r"unexpected key 'decoder\.extra\.weight'"),
    (lambda sd: sd.pop("encoder.conv_in.weight"), r"missing key 'encoder\.conv_in\.weight'"),
])
def test_wrong_shape_missing_and_unexpected_keys_name_the_key(tmp_path, edit, message):
    sd = _state(documented_vqvae_keys(**TINY, S=2))
    edit(sd)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(ReproError, match=message):
        load_official_vqvae(tmp_path / "bad.pth", patch_nums=(1, 2))


def _tiny(patch_nums=(1, 2, 3, 4), seed=0) -> VQVAE:
    torch.manual_seed(seed)
    vae = VQVAE(VQVAEConfig(ch=8, norm_groups=4, code_dim=8, codebook_size=64, patch_nums=patch_nums))
    with torch.no_grad():  # codebook entries of a trained scale, not the tiny uniform init
        vae.quantize.embedding.weight.normal_()
    return vae.eval()


def test_blocks_follow_their_definitions():
    torch.manual_seed(0)
    block = AttnBlock(8, 4)
    x = torch.randn(2, 8, 3, 5)
    q, k, v = block.qkv(block.norm(x)).flatten(2).chunk(3, dim=1)  # (B, C, HW) each
    w = torch.softmax(q.transpose(1, 2) @ k / 8 ** 0.5, dim=-1)   # (B, HW_q, HW_k)
    manual = x + block.proj_out((v @ w.transpose(1, 2)).view(2, 8, 3, 5))
    torch.testing.assert_close(block(x), manual)
    vae = _tiny()
    down, up = vae.encoder.down[0].downsample, vae.decoder.up[1].upsample
    h = torch.randn(1, 8, 6, 6)
    padded = torch.cat([torch.cat([h, torch.zeros(1, 8, 6, 1)], 3), torch.zeros(1, 8, 1, 7)], 2)
    torch.testing.assert_close(down(h), F.conv2d(padded, down.conv.weight, down.conv.bias, stride=2))
    manual_up = F.conv2d(h.repeat_interleave(2, 2).repeat_interleave(2, 3), up.conv.weight, up.conv.bias, padding=1)
    torch.testing.assert_close(up(h), manual_up)
    h_cl = h.contiguous(memory_format=torch.channels_last)  # the layout decode_fhat runs in
    out = up(h_cl)
    torch.testing.assert_close(out, manual_up)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_decode_equals_the_standard_layout():
    torch.manual_seed(1)
    vae = _tiny()
    f_hat = torch.randn(2, vae.cfg.code_dim, vae.cfg.grid, vae.cfg.grid)
    with torch.no_grad():
        plain = vae.decoder(vae.post_quant_conv(f_hat)).clamp(-1, 1)
        img = vae.decode_fhat(f_hat)
    assert img.is_contiguous()
    torch.testing.assert_close(img, plain, atol=1e-5, rtol=1e-5)


def _var_fhat(vae: VQVAE, idx_list) -> torch.Tensor:
    """VAR's f̂ (quant.py embed_to_fhat, from its definition): every scale's code vectors bicubic-
    upsampled to the last map, through φ of the nearest tick of linspace(1/12, 11/12, 4) to
    si/(S-1), φ(h) = 0.5 h + 0.5 conv(h), summed."""
    G, S = vae.cfg.grid, len(idx_list)
    ticks = np.linspace(1 / 12, 11 / 12, 4)
    out = 0
    for si, idx in enumerate(idx_list):
        h = vae.quantize.embedding.weight[idx].permute(0, 3, 1, 2)
        if idx.shape[-1] != G:
            h = F.interpolate(h, size=(G, G), mode="bicubic")
        phi = vae.quantize.quant_resi.qresi_ls[int(np.argmin(np.abs(ticks - si / (S - 1))))]
        out = out + 0.5 * h + 0.5 * F.conv2d(h, phi.weight, phi.bias, padding=1)
    return out


@torch.no_grad()
def test_tokens_to_fhat_match_vars_definition_our_quantizer_and_the_sampler_path():
    vae = _tiny((1, 2, 3, 4))
    g = torch.Generator().manual_seed(1)
    idx = [torch.randint(0, 64, (2, p, p), generator=g) for p in vae.cfg.patch_nums]
    f_hat = vae.fhat_from_indices(idx)
    torch.testing.assert_close(f_hat, _var_fhat(vae, idx))
    q = MultiScaleQuantizer(vae.cfg.quantizer_config())  # a standalone quantizer with the file's tensors
    q.load_state_dict(vae.quantize.state_dict())
    torch.testing.assert_close(q.fhat_from_idx(idx), f_hat)
    inc = torch.zeros_like(f_hat)  # what the next-scale sampler accumulates scale by scale
    for si, i in enumerate(idx):
        inc, _ = vae.quantize.next_input(si, inc, i)
    torch.testing.assert_close(inc, f_hat)
    # encoding: the indices of an image give back the quantizer's own f̂ of its latent
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    enc = vae.encode_indices(x)
    assert [tuple(i.shape) for i in enc] == [(2, p, p) for p in (1, 2, 3, 4)]
    f_q, _, _ = vae.quantize(vae.quant_conv(vae.encoder(x)))
    torch.testing.assert_close(vae.fhat_from_indices(enc), f_q)
    with pytest.raises(ReproError, match="do not match patch_nums"):
        vae.fhat_from_indices(idx[:-1])


@torch.no_grad()
@pytest.mark.parametrize("resolution", [256, 512])
def test_decoder_runs_on_stars_schedules(resolution):
    vae = _tiny(PATCH_NUMS[resolution])
    g = torch.Generator().manual_seed(0)
    idx = [torch.randint(0, 64, (1, p, p), generator=g) for p in PATCH_NUMS[resolution]]
    f_hat = vae.fhat_from_indices(idx)
    assert f_hat.shape == (1, 8, resolution // 16, resolution // 16)
    if resolution == 256:  # one full decode: image side 16 x the last map, clamped to [-1, 1]
        img = vae.decode_tokens(join_scales(idx))
        assert img.shape == (1, 3, 256, 256) and img.min() >= -1 and img.max() <= 1
        torch.testing.assert_close(img, vae.decode_indices(idx))
        assert img.std() > 0
