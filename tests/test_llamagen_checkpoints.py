"""Strict loading of the official LlamaGen layouts (cca.md §4.1), on files built with the documented
key names and shapes (random values)."""

from __future__ import annotations

import pytest
import torch

from guidance_repro.errors import ReproError
from guidance_repro.llamagen import official as ck
from guidance_repro.llamagen.model import GPT


pytestmark = pytest.mark.usefixtures("one_thread")


def documented_gpt_b() -> dict:
    """GPT-B key layout written out from the fact sheet, independent of our model code."""
    D, H, V, C, L = 768, 2048, 16384, 1001, 12
    sd = {"cls_embedding.embedding_table.weight": (C, D), "tok_embeddings.weight": (V, D),
          "norm.weight": (D,), "output.weight": (V, D)}
    for i in range(L):
        p = f"layers.{i}."
        sd.update({p + "attention.wqkv.weight": (3 * D, D), p + "attention.wo.weight": (D, D),
                   p + "feed_forward.w1.weight": (H, D), p + "feed_forward.w3.weight": (H, D),
                   p + "feed_forward.w2.weight": (D, H), p + "attention_norm.weight": (D,),
                   p + "ffn_norm.weight": (D,)})
    return sd


def test_paper_sizes_match_documented_counts():
    table = {"B": (110_888_448, 88), "L": (342_910_976, 172), "XL": (774_699_520, 256),
             "XXL": (1_410_972_672, 340), "3B": (3_096_659_200, 172)}
    for size, (params, tensors) in table.items():
        layout = ck.gpt_layout(ck.official_gpt_config(size))
        assert len(layout) == tensors, size
        assert sum(torch.Size(s).numel() for s in layout.values()) == params, size
    assert ck.gpt_layout(ck.official_gpt_config("B")) == documented_gpt_b()


@pytest.fixture(scope="module")
def gpt_b_file(tmp_path_factory):
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(s, generator=g) * 0.02 for k, s in documented_gpt_b().items()}
    sd["freqs_cis"] = torch.zeros(577, 32, 2)  # present in some files: dropped
    path = tmp_path_factory.mktemp("ckpt") / "c2i_B_384.pt"
    torch.save({"model": sd}, path)
    return path, sd


def test_load_official_gpt_b_wrapped_and_raw(gpt_b_file, tmp_path):
    path, sd = gpt_b_file
    model = ck.load_official_gpt(path, "B")
    assert isinstance(model, GPT) and model.cfg.grid == 24 and model.cfg.num_classes == 1000
    assert torch.equal(model.layers[3].feed_forward.w2.weight, sd["layers.3.feed_forward.w2.weight"])
    assert model.freqs_cis.shape == (577, 32, 2) and model.freqs_cis.device.type == "cpu"
    # it runs: logits for a class-conditional first step at 256 px too (grid 16)
    raw = {k: v for k, v in sd.items() if k != "freqs_cis"}
    m256 = ck.load_official_gpt(None, "B", image_size=256, state_dict=raw)  # XXL/3B style: raw dict
    with torch.no_grad():
        m256.setup_cache(1)
        logits = m256.step(torch.tensor([7]), None, 0)
        m256.clear_cache()
    assert logits.shape == (1, 16384) and torch.isfinite(logits).all()


def test_wrong_shape_missing_and_extra_keys_name_the_key(gpt_b_file):
    _, sd = gpt_b_file
    bad = dict(sd)
    bad["layers.5.attention.wo.weight"] = torch.zeros(768, 700)
    with pytest.raises(ReproError, match=r"layers\.5\.attention\.wo\.weight.*shape"):
        ck.load_official_gpt(None, "B", state_dict={"model": bad})
    missing = {k: v for k, v in sd.items() if k != "norm.weight"}
    with pytest.raises(ReproError, match="missing key 'norm.weight'"):
        ck.load_official_gpt(None, "B", state_dict={"model": missing})
    extra = {**sd, "layers.0.attention.wqkv.bias": torch.zeros(2304)}
    with pytest.raises(ReproError, match="unexpected key 'layers.0.attention.wqkv.bias'"):
        ck.load_official_gpt(None, "B", state_dict={"model": extra})
    with pytest.raises(ReproError, match="cls_embedding"):  # a 1000-row table (no null class)
        ck.load_official_gpt(None, "B", state_dict={"model": {
            **sd, "cls_embedding.embedding_table.weight": torch.zeros(1000, 768)}})
    with pytest.raises(ReproError, match="model.size"):
        ck.official_gpt_config("M")


def test_unreadable_files(tmp_path):
    with pytest.raises(ReproError, match="does not exist"):
        ck.load_official_gpt(tmp_path / "nope.pt", "B")
    p = tmp_path / "junk.pt"
    p.write_bytes(b"not a torch file")
    with pytest.raises(ReproError, match="junk.pt"):
        ck.load_official_gpt(p, "B")


def documented_vq16() -> dict:
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(s, generator=g) for k, s in ck.VQ16_DOCUMENTED.items()}
    # encoder/decoder tensors: the documented counts (names and shapes of their insides are not
    # part of the fact sheet; the check is on counts)
    sd.update({f"encoder.t{i}.weight": torch.zeros(4) for i in range(144)})
    sd.update({f"decoder.t{i}.weight": torch.zeros(4) for i in range(194)})
    return sd


def test_vq16_layout_check(tmp_path):
    sd = documented_vq16()
    path = tmp_path / "vq_ds16_c2i.pt"
    torch.save({"model": sd}, path)
    out = ck.check_official_vq(path)
    assert len(out) == 344
    cb = ck.codebook(out)
    assert cb.shape == (16384, 8) and torch.allclose(cb.norm(dim=-1), torch.ones(16384), atol=1e-5)
    with pytest.raises(ReproError, match="under 'model'"):
        ck.check_official_vq(state_dict=sd)
    with pytest.raises(ReproError, match="quantize.embedding.weight"):
        ck.check_official_vq(state_dict={"model": {**sd, "quantize.embedding.weight": torch.zeros(16384, 16)}})
    with pytest.raises(ReproError, match="quant_conv.bias"):
        ck.check_official_vq(state_dict={"model": {k: v for k, v in sd.items() if k != "quant_conv.bias"}})
    with pytest.raises(ReproError, match="decoder"):
        ck.check_official_vq(state_dict={"model": {k: v for k, v in sd.items() if k != "decoder.t0.weight"}})
    with pytest.raises(ReproError, match="unexpected key 'extra'"):
        ck.check_official_vq(state_dict={"model": {**sd, "extra": torch.zeros(1)}})
