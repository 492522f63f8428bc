"""Autoguidance for next-token AR (the cross-method matrix): one formula for denoisers and logits,
logits = guide + w·(main − guide), the guide called with the same labels and tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from guidance_repro.errors import ReproError
from guidance_repro.guidance.autoguidance import combine
from guidance_repro.guidance.cfg import Guidance
from guidance_repro.llamagen.model import GPT, GPTConfig
from guidance_repro.sampling import ar, next_scale

MAIN = dict(vocab_size=32, grid=4, num_classes=5, dim=32, n_layer=2, n_head=2, multiple_of=16)
GUIDE = dict(MAIN, dim=16, n_layer=1)

pytestmark = pytest.mark.usefixtures("one_thread")


def _gpt(spec, seed):
    torch.manual_seed(seed)
    m = GPT(GPTConfig(**spec))
    # random sharp logits (the official init zeroes the output layer), so the guide changes the draws
    torch.nn.init.normal_(m.output.weight, std=0.6)
    return m.eval()


@pytest.fixture(scope="module")
def nets():
    return _gpt(MAIN, 0), _gpt(GUIDE, 1)


def test_combine_is_guide_plus_w_times_difference():
    g = torch.randn(4, 9, dtype=torch.float64)
    m = torch.randn(4, 9, dtype=torch.float64)
    assert torch.equal(combine(g, m, 1.0), m)
    assert torch.equal(combine(g, m, 0.0), g)
    for w in (0.5, 2.0, 3.25):
        expected = g.numpy() + w * (m.numpy() - g.numpy())
        assert np.allclose(combine(g, m, w).numpy(), expected, rtol=0, atol=1e-12)
    half = combine(g.half(), m.half(), 2.0)  # computed in float32, like edm2
    assert half.dtype == torch.float32


def test_sampler_logits_are_autoguided_and_the_guide_gets_the_labels(nets):
    main, guide = nets
    seen = []
    hook = guide.cls_embedding.embedding_table.register_forward_pre_hook(
        lambda mod, inp: seen.append(inp[0].clone()))
    labels, w = torch.tensor([0, 3, 4, 1]), 2.5
    try:
        codes, lg = ar.sample_batch(main, labels, Guidance("autoguidance", w), ar.SamplerConfig(),
                                    torch.Generator().manual_seed(0), return_logits=True, guide=guide)
    finally:
        hook.remove()
    assert seen and all(torch.equal(x, labels) for x in seen)  # same labels, never the null class
    with torch.no_grad():  # independent: teacher forcing of both networks on the drawn codes
        lm, lgd = main(codes, labels), guide(codes, labels)
    assert torch.allclose(lg, lgd + w * (lm - lgd), atol=1e-4)
    assert all(layer.attention.kv is None for net in nets for layer in net.layers)


def test_autoguided_kv_cache_equals_recompute_and_w1_is_the_main_model(nets):
    main, guide = nets
    labels = torch.tensor([0, 1, 2, 3, 4, 2])
    g = Guidance("autoguidance", 2.0)
    a = ar.sample_batch(main, labels, g, ar.SamplerConfig(use_cache=True, top_k=8),
                        torch.Generator().manual_seed(5), guide=guide)
    b = ar.sample_batch(main, labels, g, ar.SamplerConfig(use_cache=False, top_k=8),
                        torch.Generator().manual_seed(5), guide=guide)
    assert torch.equal(a, b)
    none = ar.sample_batch(main, labels, Guidance("none"), ar.SamplerConfig(), torch.Generator().manual_seed(6))
    w1 = ar.sample_batch(main, labels, Guidance("autoguidance", 1.0), ar.SamplerConfig(),
                         torch.Generator().manual_seed(6), guide=guide)
    assert torch.equal(none, w1)
    w3 = ar.sample_batch(main, labels, Guidance("autoguidance", 3.0), ar.SamplerConfig(),
                         torch.Generator().manual_seed(6), guide=guide)
    assert not torch.equal(none, w3)  # the guide changes what is drawn


def test_autoguidance_errors(nets):
    main, guide = nets
    labels, gen = torch.tensor([0, 1]), torch.Generator().manual_seed(0)
    with pytest.raises(ReproError, match="guide model is required"):
        ar.sample_batch(main, labels, Guidance("autoguidance", 2.0), ar.SamplerConfig(), gen)
    with pytest.raises(ReproError, match="autoguidance only"):
        ar.sample_batch(main, labels, Guidance("cfg", 2.0), ar.SamplerConfig(), gen, guide=guide)
    other = GPT(GPTConfig(**{**GUIDE, "vocab_size": 16}))
    with pytest.raises(ReproError, match="vocab_size"):
        ar.sample_batch(main, labels, Guidance("autoguidance", 2.0), ar.SamplerConfig(), gen, guide=other)
    with pytest.raises(ReproError, match="not implemented for VAR"):
        next_scale.sample_scales(None, None, None, 2, Guidance("autoguidance", 2.0), ar.SamplerConfig(), gen)
