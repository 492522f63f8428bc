"""VAR family: multi-scale residual VQ (round trips, φ choice), the block-causal transformer, and
the next-scale sampler (CFG ramp, cache vs recompute)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from guidance_repro.errors import ReproError
from guidance_repro.guidance.cfg import Guidance
from guidance_repro.sampling import next_scale as ns
from guidance_repro.var.model import VAR, VARConfig, block_causal_mask
from guidance_repro.var.msvq import MSVQConfig, MSVQModel, join_scales, phi_index, split_scales

TOK = dict(channels=[8, 16, 16], codebook_size=32, code_dim=4, patch_nums=[1, 2, 3, 5, 7])
VARC = dict(vocab_size=32, code_dim=4, patch_nums=[1, 2, 3, 5, 7], num_classes=5, depth=2,
            width_per_depth=16, head_dim=16)


@pytest.fixture(scope="module")
def tok():
    torch.manual_seed(0)
    m = MSVQModel(MSVQConfig.from_dict(TOK))
    m.quantize.embedding.weight.data.normal_()  # spread-out codes: many distinct tokens
    return m.eval()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8)


def test_phi_index_follows_var_ticks():
    # VAR d16: 10 scales, 4 shared convs at ticks 1/12, 5/12, 7/12, 11/12 (nearest to si/9).
    assert [phi_index(si, 10, 4) for si in range(10)] == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    assert [phi_index(si, 6, 1) for si in range(6)] == [0] * 6


def test_residual_quantisation_round_trip(tok, images):
    """tokens -> f̂ pyramid rebuilt from tokens equals the f̂ of the encoder pass; flat <-> per-scale."""
    x = torch.from_numpy(images).float()[:, None] / 127.5 - 1
    f = tok.quant_conv(tok.encoder(x))
    f_st, idx_list, _ = tok.quantize(f)
    assert [tuple(i.shape[1:]) for i in idx_list] == [(p, p) for p in TOK["patch_nums"]]
    flat = join_scales(idx_list)
    assert flat.shape == (6, 1 + 4 + 9 + 25 + 49)
    assert all(torch.equal(a, b) for a, b in zip(split_scales(flat, TOK["patch_nums"]), idx_list))
    torch.testing.assert_close(tok.quantize.fhat_from_idx(idx_list), f_st, atol=1e-5, rtol=1e-5)
    assert np.array_equal(tok.encode(images), flat.numpy())
    # the residual shrinks as scales are added (each scale quantises what is left)
    f_hat, errs = torch.zeros_like(f), []
    for si, idx in enumerate(idx_list):
        f_hat = f_hat + tok.quantize.code_map(idx, si)
        errs.append(F.mse_loss(f_hat, f).item())
    assert errs[-1] < errs[0]


def test_tokens_to_pyramid_to_tokens_by_the_sampler_path(tok, images):
    """Teacher-forcing inputs (VAR's idxBl_to_var_input) equal the sampler's incremental inputs, and
    re-quantising each scale's input residual gives back that scale's tokens when the codebook is
    a one-hot basis and φ is the identity (exactly representable pyramid)."""
    codes = torch.from_numpy(tok.encode(images))
    x_in = tok.var_input(codes)
    scales = split_scales(codes, TOK["patch_nums"])
    f_hat, parts = torch.zeros(6, 4, 7, 7), []
    for si, idx in enumerate(scales):
        f_hat, nxt = tok.quantize.next_input(si, f_hat, idx)
        if nxt is not None:
            parts.append(nxt)
    torch.testing.assert_close(torch.cat(parts, 1), x_in)
    # exact round trip on a representable pyramid: φ = identity, L2 lookup, big coarse codes
    # (0, 1) and small fine codes (2, 3) on orthogonal axes
    cfg = MSVQConfig.from_dict(dict(TOK, patch_nums=[1, 7], codebook_size=4, znorm=False, phi_ratio=0.0))
    m = MSVQModel(cfg)
    m.quantize.embedding.weight.data = torch.diag(torch.tensor([100.0, 100.0, 1.0, 1.0]))
    g = torch.Generator().manual_seed(0)
    idx = [torch.randint(0, 2, (3, 1, 1), generator=g), torch.randint(2, 4, (3, 7, 7), generator=g)]
    _, back, _ = m.quantize(m.quantize.fhat_from_idx(idx))
    assert all(torch.equal(a, b) for a, b in zip(back, idx))


def test_bad_patch_nums_are_errors():
    with pytest.raises(ReproError, match="patch_nums"):
        MSVQConfig.from_dict(dict(TOK, patch_nums=[1, 2, 5]))  # does not end at the 7x7 map
    with pytest.raises(ReproError, match="tokens of shape"):
        MSVQModel(MSVQConfig.from_dict(TOK)).decode(np.zeros((2, 10), np.int64))


def test_block_causal_mask():
    m = block_causal_mask([1, 2, 3])
    assert m.shape == (1, 1, 14, 14)
    lvl = [0] + [1] * 4 + [2] * 9
    for i in range(14):
        for j in range(14):
            assert (m[0, 0, i, j] == 0) == (lvl[j] <= lvl[i])


def test_var_logits_depend_only_on_coarser_and_same_scales():
    torch.manual_seed(0)
    model = VAR(VARConfig.from_dict(VARC)).eval()
    x = torch.randn(2, 88 - 1, 4)
    labels = torch.tensor([1, 3])
    base = model(labels, x)
    assert base.shape == (2, 88, 32)
    x2 = x.clone()
    x2[:, 13:] += 1.0  # change the inputs of scales 4 and 5 (positions 14..87)
    out = model(labels, x2)
    torch.testing.assert_close(out[:, :14], base[:, :14])
    assert not torch.allclose(out[:, 14:], base[:, 14:])


def test_cfg_ramp_values():
    assert [ns.cfg_ramp(1.5, si, 10) for si in (0, 9)] == [0.0, 1.5]
    assert ns.cfg_ramp(1.8, 3, 10) == pytest.approx(0.6)
    c, u = torch.tensor([2.0]), torch.tensor([0.5])
    from guidance_repro.guidance.cfg import cfg_combine
    t = ns.cfg_ramp(2.0, 2, 5)  # 1.0
    assert cfg_combine(c, u, 1 + t).item() == pytest.approx((1 + t) * 2.0 - t * 0.5)


def test_sampler_cache_equals_recompute_and_guidance_at_first_scale_is_off(tok):
    torch.manual_seed(1)
    model = VAR(VARConfig.from_dict(VARC)).eval()
    labels = torch.tensor([0, 1, 2, 4])
    outs = {}
    for g in (Guidance("none"), Guidance("cfg", 3.0)):
        for cache in (True, False):
            cfg = ns.SamplerConfig(top_k=10, top_p=0.9, use_cache=cache)
            outs[g.method, cache] = ns.sample_batch(model, tok, labels, g, cfg,
                                                   torch.Generator().manual_seed(7), return_logits=True)
        assert torch.equal(outs[g.method, True][0], outs[g.method, False][0])
        torch.testing.assert_close(outs[g.method, True][2], outs[g.method, False][2], atol=1e-4, rtol=1e-4)
    # t = 0 at scale 0: the guided first-scale logits equal the conditional ones
    torch.testing.assert_close(outs["cfg", True][2][:, :1], outs["none", True][2][:, :1], atol=1e-5, rtol=1e-5)


def test_sample_images_is_seeded_and_class_balanced(tok):
    torch.manual_seed(2)
    model = VAR(VARConfig.from_dict(VARC)).eval()
    labels = ns.class_balanced_labels(10, 5, seed=3)
    assert np.bincount(labels).tolist() == [2] * 5
    cfg = ns.SamplerConfig(batch_size=4)
    a = ns.sample_images(model, tok, labels, Guidance("cfg", 1.0), cfg, seed=4, progress=False)
    b = ns.sample_images(model, tok, labels, Guidance("cfg", 1.0), cfg, seed=4, progress=False)
    assert a["images"].shape == (10, 28, 28, 1) and a["images"].dtype == np.uint8
    assert np.array_equal(a["tokens"], b["tokens"])


def test_sampling_pass_computes_the_modulations_once_and_never_reuses_another_pass(tok):
    torch.manual_seed(2)
    model = VAR(VARConfig.from_dict(VARC)).eval()
    calls = []
    for b in model.blocks:
        b.ada_lin.register_forward_hook(lambda *_: calls.append(1))
    cfg = ns.SamplerConfig(top_k=10, use_cache=True)
    a, b = torch.tensor([0, 1]), torch.tensor([3, 4])

    def tokens(labels):
        return ns.sample_batch(model, tok, labels, Guidance("cfg", 2.0), cfg, torch.Generator().manual_seed(3))[0]

    first_b = tokens(b)
    assert len(calls) == model.cfg.depth  # one per block for the pass, not one per block and scale
    tokens(a)
    assert torch.equal(tokens(b), first_b)  # a pass after another labels' pass: its own modulations
    assert model._pass_modulations is None
