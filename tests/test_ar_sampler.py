"""Next-token sampler: KV cache == recompute, CFG combination, top-k/top-p masks, labels, seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from guidance_repro.errors import ReproError
from guidance_repro.guidance.cfg import Guidance, cfg_combine, split_and_combine
from guidance_repro.llamagen.model import GPT, GPTConfig
from guidance_repro.sampling import ar

TINY = dict(vocab_size=32, grid=4, num_classes=5, dim=32, n_layer=2, n_head=2, multiple_of=16)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = GPT(GPTConfig(**TINY))
    # The official init zeroes the output layer (uniform logits); random sharp logits instead, so
    # that sampling choices matter.
    torch.nn.init.normal_(m.output.weight, std=0.6)
    return m.eval()


@pytest.mark.parametrize("guidance", [Guidance("none"), Guidance("cfg", 2.5)])
@pytest.mark.parametrize("prefix", ["zero", "identity"])
def test_kv_cache_equals_recompute(model, guidance, prefix):
    m = model
    if prefix == "identity":
        m = GPT(GPTConfig(**{**TINY, "prefix_rope": prefix}))
        m.load_state_dict(model.state_dict())
        m.eval()
    labels = torch.tensor([0, 1, 2, 3, 4, 1])
    cfg_c = ar.SamplerConfig(use_cache=True, top_k=10, top_p=0.9)
    cfg_r = ar.SamplerConfig(use_cache=False, top_k=10, top_p=0.9)
    a, la = ar.sample_batch(m, labels, guidance, cfg_c, torch.Generator().manual_seed(3), return_logits=True)
    b, lb = ar.sample_batch(m, labels, guidance, cfg_r, torch.Generator().manual_seed(3), return_logits=True)
    assert torch.equal(a, b)
    assert torch.allclose(la, lb, atol=1e-4)
    # teacher forcing on the sampled codes gives the same per-step logits
    if guidance.method == "none":
        assert torch.allclose(m(a, labels), la, atol=1e-4)
    assert all(layer.attention.kv is None for layer in m.layers)  # cache released


def test_cfg_combination_and_doubled_batch(model):
    c, u = torch.randn(3, 7), torch.randn(3, 7)
    assert torch.allclose(cfg_combine(c, u, 1.0), c)
    assert torch.allclose(cfg_combine(c, u, 0.0), u)
    assert torch.allclose(cfg_combine(c, u, 2.0), 2 * c - u)
    assert torch.allclose(split_and_combine(torch.cat([c, u]), 1.5), u + 1.5 * (c - u))
    with pytest.raises(ReproError):
        split_and_combine(torch.randn(3, 7), 2.0)
    # the sampler's guided logits are u + s (c - u) of separate cond / null-class runs
    labels = torch.tensor([1, 3])
    s = 3.0
    codes, lg = ar.sample_batch(model, labels, Guidance("cfg", s), ar.SamplerConfig(),
                                torch.Generator().manual_seed(0), return_logits=True)
    with torch.no_grad():
        cond = model(codes, labels)
        unc = model(codes, torch.full_like(labels, model.null_class))
    assert torch.allclose(lg, unc + s * (cond - unc), atol=1e-4)
    # CFG with scale 1 draws exactly what no guidance draws
    g0 = ar.sample_batch(model, labels, Guidance("none"), ar.SamplerConfig(), torch.Generator().manual_seed(4))
    g1 = ar.sample_batch(model, labels, Guidance("cfg", 1.0), ar.SamplerConfig(), torch.Generator().manual_seed(4))
    assert torch.equal(g0, g1)


def test_guidance_config_errors():
    assert Guidance.from_dict({"method": "cfg", "scale": 2}).doubled
    assert not Guidance.from_dict(None).doubled
    with pytest.raises(ReproError, match="guidance.method"):
        Guidance.from_dict({"method": "bogus"})
    with pytest.raises(ReproError, match="guidance.bogus"):
        Guidance.from_dict({"bogus": 1})


def test_top_k_mask():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    out = ar.top_k_mask(logits, 2)
    assert torch.isfinite(out).tolist() == [[False, True, False, True, False]]
    assert torch.equal(ar.top_k_mask(logits, 0), logits)


def test_top_p_mask():
    probs = torch.tensor([[0.5, 0.05, 0.3, 0.15]])
    logits = probs.log()
    keep = lambda p: torch.isfinite(ar.top_p_mask(logits, p)).tolist()[0]
    assert keep(0.5) == [True, False, False, False]   # top token alone reaches 0.5
    assert keep(0.6) == [True, False, True, False]    # 0.5 < 0.6 -> add 0.3
    assert keep(0.8) == [True, False, True, False]    # 0.8 reached by the top two
    assert keep(0.81) == [True, False, True, True]
    assert keep(0.01) == [True, False, False, False]  # never empty
    assert keep(1.0) == [True] * 4


def test_draw_respects_masks_and_temperature():
    torch.manual_seed(0)
    logits = torch.randn(2000, 10).repeat(1, 1)
    u = torch.rand(2000)
    toks = ar.draw(logits, ar.SamplerConfig(top_k=3), u)
    top3 = logits.topk(3, dim=-1).indices
    assert (toks[:, None] == top3).any(-1).all()
    # a tiny temperature picks the argmax
    cold = ar.draw(logits, ar.SamplerConfig(temperature=1e-4), u)
    assert torch.equal(cold, logits.argmax(-1))
    # inverse CDF follows the distribution
    p = torch.tensor([0.1, 0.6, 0.3])
    many = ar.draw(p.log().expand(20000, 3), ar.SamplerConfig(), torch.rand(20000))
    freq = torch.bincount(many, minlength=3).float() / 20000
    assert torch.allclose(freq, p, atol=0.02)


def test_class_balanced_labels_and_seeding(model):
    lab = ar.class_balanced_labels(23, 5, seed=1)
    assert sorted(np.bincount(lab).tolist()) == [4, 4, 5, 5, 5]
    assert np.array_equal(lab, ar.class_balanced_labels(23, 5, seed=1))
    cfg = ar.SamplerConfig(batch_size=4)
    a = ar.sample_codes(model, lab, Guidance("none"), cfg, seed=7, progress=False)
    b = ar.sample_codes(model, lab, Guidance("none"), cfg, seed=7, progress=False)
    c = ar.sample_codes(model, lab, Guidance("none"), cfg, seed=8, progress=False)
    assert a.shape == (23, 16) and np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ReproError, match="labels"):
        ar.sample_codes(model, np.array([5]), Guidance("none"), cfg, seed=0, progress=False)
    with pytest.raises(ReproError, match="top_p"):
        ar.SamplerConfig(top_p=0.0)


@pytest.mark.parametrize("guidance", [Guidance("none"), Guidance("cfg", 2.5)])
def test_static_cache_equals_the_growing_cache(model, guidance):
    labels = torch.tensor([0, 1, 2, 3, 4, 1])
    grow, lg = ar.sample_batch(model, labels, guidance, ar.SamplerConfig(top_k=10),
                               torch.Generator().manual_seed(5), return_logits=True)
    static, ls = ar.sample_batch(model, labels, guidance, ar.SamplerConfig(top_k=10, static_cache=True),
                                 torch.Generator().manual_seed(5), return_logits=True)
    assert torch.equal(grow, static)
    assert torch.allclose(lg, ls, atol=1e-5)
    assert all(layer.attention.static_kv is None for layer in model.layers)  # released (eager)


def test_static_cache_layout_and_reuse(model):
    model.setup_cache(3, static=True)
    first = model.layers[0].attention.static_kv.k
    assert first.shape == (3, TINY["n_head"], 16, TINY["dim"] // TINY["n_head"])  # 16 = 8 * ceil(16 / 8)
    assert set(model.state_dict()) == set(GPT(GPTConfig(**TINY)).state_dict())  # not saved
    first.fill_(1.0)
    model.setup_cache(3, static=True)  # same shape: the same buffers, zeroed
    assert model.layers[0].attention.static_kv.k is first and torch.count_nonzero(first) == 0
    model.clear_cache()
    odd = GPT(GPTConfig(**{**TINY, "grid": 3}))
    odd.setup_cache(2, static=True)
    assert odd.layers[0].attention.static_kv.k.shape[2] == 16  # 1 + 9 positions padded to 16
    with pytest.raises(ReproError, match="use_cache"):
        ar.SamplerConfig(use_cache=False, compile=True)


@pytest.mark.slow  # one inductor compile of the tiny step (about a minute on a loaded CPU)
def test_compiled_sampling_gives_the_eager_tokens(model):
    labels = torch.tensor([0, 3, 4])
    guidance = Guidance("cfg", 2.5)  # both halves of the doubled batch through the compiled step
    eager, le = ar.sample_batch(model, labels, guidance, ar.SamplerConfig(static_cache=True),
                                torch.Generator().manual_seed(7), return_logits=True)
    compiled, lc = ar.sample_batch(model, labels, guidance, ar.SamplerConfig(compile=True),
                                   torch.Generator().manual_seed(7), return_logits=True)
    assert torch.equal(eager, compiled)
    assert torch.allclose(le, lc, atol=1e-4)
    assert "cpu" in model.__dict__["_compiled"]  # the compiled step did run
    model.clear_cache()


def _draw_full(logits, cfg, u):
    """draw() without its top-k shortcut: mask all V logits, then the inverse CDF."""
    masked = ar.top_p_mask(ar.top_k_mask(logits / cfg.temperature, cfg.top_k), cfg.top_p)
    return ar._inverse_cdf(masked, u)


@pytest.mark.parametrize("top_k,top_p", [(900, 0.96), (7, 1.0), (50, 0.5)])
def test_top_k_shortcut_picks_the_tokens_of_the_full_masks(top_k, top_p):
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(512, 4096, generator=g) * 3.0
    u = torch.rand(512, generator=g)
    cfg = ar.SamplerConfig(top_k=top_k, top_p=top_p, temperature=0.9)
    fast = ar._draw_top_k(logits / cfg.temperature, top_k, top_p, u)
    assert fast is not None
    full = _draw_full(logits, cfg, u)
    # float rounding of a softmax over k vs V values can move a u that sits on a CDF step
    assert (fast == full).float().mean() > 0.995
    assert torch.equal(ar.draw(logits, cfg, u), fast)


def test_top_k_shortcut_leaves_ties_at_the_cut_to_the_full_path():
    logits = torch.tensor([[3.0, 1.0, 2.0, 2.0, 0.0]])  # k = 2 cuts between two equal values
    assert ar._draw_top_k(logits, 2, 1.0, torch.tensor([0.99])) is None
    cfg = ar.SamplerConfig(top_k=2)
    u = torch.tensor([0.999])
    assert torch.equal(ar.draw(logits, cfg, u), _draw_full(logits, cfg, u))
