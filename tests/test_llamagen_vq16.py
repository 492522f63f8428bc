"""LlamaGen's VQ-16 tokenizer network (llamagen/vq16.py): the official layout, the blocks
against their definitions, strict loading, and sample-ar on official-layout files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from guidance_repro.errors import ReproError
from guidance_repro.llamagen import official as ck
from guidance_repro.llamagen.vq16 import VQ16, AttnBlock, VQ16Config

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = VQ16Config(ch=16, ch_mult=(1, 2), num_res_blocks=1, z_channels=8, codebook_size=32, code_dim=4,
                  usage_buffer=64, norm_groups=8, image_size=8)


def test_full_layout_is_the_documented_one():
    lay = ck.vq16_layout(VQ16Config())
    assert len(lay) == ck.VQ16_TENSORS == 344
    assert {p: sum(k.startswith(p) for k in lay) for p in ck.VQ16_COUNTS} == ck.VQ16_COUNTS
    assert all(lay[k] == shape for k, shape in ck.VQ16_DOCUMENTED.items())
    # 71.9M parameters (cca.md §4.1); the usage buffer is not a parameter
    assert sum(math.prod(s) for k, s in lay.items() if k != "quantize.codebook_used") == 71_883_403
    # names and shapes written out from the architecture (ch 128, ch_mult 1,1,2,2,4, z 256)
    expected = {
        "encoder.conv_in.weight": (128, 3, 3, 3),
        "encoder.conv_blocks.2.res.0.nin_shortcut.weight": (256, 128, 1, 1),
        "encoder.conv_blocks.3.downsample.conv.weight": (256, 256, 3, 3),
        "encoder.conv_blocks.4.attn.1.q.weight": (512, 512, 1, 1),
        "encoder.mid.1.proj_out.weight": (512, 512, 1, 1),
        "encoder.mid.2.conv2.weight": (512, 512, 3, 3),
        "encoder.conv_out.weight": (256, 512, 3, 3),
        "decoder.conv_in.weight": (512, 256, 3, 3),
        "decoder.conv_blocks.0.attn.2.v.weight": (512, 512, 1, 1),     # coarsest level first
        "decoder.conv_blocks.0.upsample.conv.weight": (512, 512, 3, 3),
        "decoder.conv_blocks.1.res.0.nin_shortcut.weight": (256, 512, 1, 1),
        "decoder.conv_blocks.3.res.2.norm2.weight": (128,),
        "decoder.conv_out.weight": (3, 128, 3, 3),
    }
    assert {k: lay.get(k) for k in expected} == expected
    absent = ["encoder.conv_blocks.4.downsample.conv.weight", "decoder.conv_blocks.4.upsample.conv.weight",
              "encoder.conv_blocks.3.attn.0.q.weight", "encoder.conv_blocks.0.res.0.nin_shortcut.weight"]
    assert not [k for k in absent if k in lay]


def test_attention_block_is_single_head_softmax_attention():
    torch.manual_seed(0)
    blk = AttnBlock(16, 8)
    x = torch.randn(2, 16, 3, 5)
    h = blk.norm(x)
    q, k, v = (f(h).reshape(2, 16, 15) for f in (blk.q, blk.k, blk.v))
    w = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / math.sqrt(16), dim=-1)  # query i, key j
    direct = x + blk.proj_out(torch.einsum("bij,bcj->bci", w, v).reshape(2, 16, 3, 5))
    torch.testing.assert_close(blk(x), direct, rtol=1e-5, atol=1e-5)


def test_quantizer_picks_the_nearest_normalised_code():
    torch.manual_seed(1)
    model = VQ16(TINY)
    z = torch.randn(3, TINY.code_dim, 4, 4)
    zf = F.normalize(z.permute(0, 2, 3, 1).reshape(-1, TINY.code_dim), dim=-1).double()
    e = F.normalize(model.quantize.embedding.weight, dim=-1).double()
    d = (zf ** 2).sum(1, keepdim=True) + (e ** 2).sum(1) - 2 * zf @ e.T   # the release's distance
    assert torch.equal(model.quantize.indices(z).reshape(-1), d.argmin(1))
    idx = model.quantize.indices(z)
    torch.testing.assert_close(model.quantize.lookup(idx).permute(0, 2, 3, 1), e.float()[idx])


def test_encode_decode_shapes_and_the_bicubic_eval_resize():
    torch.manual_seed(2)
    model = VQ16(TINY, out_size=5).eval()
    images = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    codes = model.encode(images)
    assert codes.shape == (3, 4, 4) and codes.dtype == np.int64 and codes.max() < TINY.codebook_size
    out = model.decode(codes.reshape(3, 16))
    with torch.no_grad():
        x = F.interpolate(model.decode_indices(torch.from_numpy(codes)), size=(5, 5), mode="bicubic")
    ref = torch.clamp(127.5 * x + 128.0, 0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert out.shape == (3, 5, 5, 3) and np.array_equal(out, ref)
    assert VQ16(TINY).eval().decode(codes).shape == (3, 8, 8, 3)
    with pytest.raises(ReproError, match="4x4 grid of 32 codes"):
        model.decode(np.full((1, 4, 4), 32))
    with pytest.raises(ReproError, match=r"uint8 \(N, 8, 8, 3\)"):
        model.encode(images[:, :4])


def test_encoder_and_decoder_get_contiguous_nchw_tensors():
    # A permuted (channels-last) view would make every convolution take the channels-last CPU
    # kernel, which rounds differently from the official code's contiguous tensors.
    torch.manual_seed(4)
    model = VQ16(TINY).eval()
    seen = []
    for conv in (model.encoder.conv_in, model.post_quant_conv, model.decoder.conv_in):
        conv.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous()))
    codes = model.encode(np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8))
    model.decode(codes)
    assert seen == [True, True, True]
    assert model.quantize.lookup(torch.from_numpy(codes)).is_contiguous()


def test_strict_load_of_a_small_official_layout_file(tmp_path):
    torch.manual_seed(3)
    ref = VQ16(TINY).eval()
    sd = ref.state_dict()
    path = tmp_path / "vq_tiny.pt"
    torch.save({"model": sd}, path)
    model = ck.load_official_vq(path, cfg=TINY, out_size=0)
    codes = np.random.default_rng(1).integers(0, TINY.codebook_size, (2, 4, 4))
    assert np.array_equal(model.decode(codes), ref.decode(codes))
    bad = {**sd, "decoder.conv_blocks.0.res.0.conv1.weight": torch.zeros(32, 32, 1, 1)}
    with pytest.raises(ReproError, match=r"decoder\.conv_blocks\.0\.res\.0\.conv1\.weight.*shape"):
        ck.load_official_vq(state_dict={"model": bad}, cfg=TINY)
    with pytest.raises(ReproError, match="missing key 'encoder.mid.1.k.bias'"):
        ck.load_official_vq(state_dict={"model": {k: v for k, v in sd.items() if k != "encoder.mid.1.k.bias"}},
                            cfg=TINY)
    with pytest.raises(ReproError, match="under 'model'"):
        ck.load_official_vq(state_dict=sd, cfg=TINY)


def test_full_size_layout_loads_without_memory():
    """The documented full-size file passes both checks and loads (meta tensors: no memory)."""
    with torch.device("meta"):
        sd = VQ16(VQ16Config()).state_dict()
    model = ck.load_official_vq(state_dict={"model": sd}, image_size=384, out_size=256)
    assert model.cfg.grid == 24 and model.out_size == 256 and model.quantize.embedding.weight.is_meta
    with pytest.raises(ReproError, match="quantize.embedding.weight"):
        ck.load_official_vq(state_dict={"model": {**sd, "quantize.embedding.weight": torch.zeros(16384, 4)}})


@pytest.mark.slow
def test_sample_ar_with_official_files(tmp_path):
    """sample-ar on an official-layout GPT-B and VQ-16 (random weights, 64 px so that it is quick):
    strict loads, CFG as LlamaGen, the bicubic eval resize, the samples file's record."""
    from guidance_repro.cli import main
    from guidance_repro.data import samples as samples_io
    g = torch.Generator().manual_seed(0)
    gpt = {k: torch.randn(s, generator=g) * 0.02 for k, s in ck.gpt_layout(ck.official_gpt_config("B")).items()}
    torch.save({"model": gpt}, tmp_path / "c2i_B_384.pt")
    del gpt
    vq = {k: torch.randn(s, generator=g) * 0.02 for k, s in ck.vq16_layout(VQ16Config()).items()}
    torch.save({"model": vq}, tmp_path / "vq_ds16_c2i.pt")
    del vq
    out = tmp_path / "s.npz"
    args = ["sample-ar", "--model", str(tmp_path / "c2i_B_384.pt"), "--official-gpt", "B",
            "--tokenizer", str(tmp_path / "vq_ds16_c2i.pt"), "--official-vq", "--image-size", "64",
            "--eval-size", "32", "--num", "2", "--cfg", "2.0", "--batch-size", "2", "--no-progress",
            "--out", str(out)]
    assert main(args) == 0
    s = samples_io.read(out)
    assert s.images.shape == (2, 32, 32, 3) and s.images.dtype == np.uint8
    meta = s.meta
    assert meta["official_gpt"] == "B" and meta["image_size"] == 64 and meta["eval_size"] == 32
    assert meta["forward_passes_per_token"] == 2 and meta["cfg"] == 2.0
    # the GPU path where there is one; here a clear error
    assert main(args + ["--device", "cuda"]) == (0 if torch.cuda.is_available() else 2)
    assert main(["sample-ar", "--model", str(tmp_path / "c2i_B_384.pt"), "--official-gpt", "B",
                 "--tokenizer", str(tmp_path / "vq_ds16_c2i.pt"), "--eval-size", "32", "--num", "1",
                 "--out", str(out)]) == 2  # a resize without the official tokenizer
