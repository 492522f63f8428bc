"""LlamaGen-style GPT: 2-D RoPE conventions, shapes, causality, sizes, the pretraining task."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from guidance_repro.errors import ReproError
from guidance_repro.llamagen.model import (GPT, Block, GPTConfig, PretrainTask, apply_rope,
                                           num_params, rope_2d, sequence_logp)

TINY = dict(vocab_size=32, grid=4, num_classes=5, dim=32, n_layer=2, n_head=2, multiple_of=16)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_rope_cache_layout():
    grid, hd = 5, 16
    cache = rope_2d(grid, hd)
    assert cache.shape == (1 + grid * grid, hd // 2, 2)
    assert torch.count_nonzero(cache[0]) == 0  # official class row: all zeros
    ident = rope_2d(grid, hd, prefix="identity")[0]
    assert torch.equal(ident[:, 0], torch.ones(hd // 2)) and torch.count_nonzero(ident[:, 1]) == 0
    q = hd // 4
    freqs = [1.0 / 10000 ** (2 * j / (hd // 2)) for j in range(q)]
    for k in range(grid * grid):
        r, c = divmod(k, grid)  # row-major
        for j in range(q):  # first half of the pairs: row angle; second half: column angle
            assert cache[1 + k, j, 0].item() == pytest.approx(math.cos(r * freqs[j]), abs=1e-6)
            assert cache[1 + k, j, 1].item() == pytest.approx(math.sin(r * freqs[j]), abs=1e-6)
            assert cache[1 + k, q + j, 0].item() == pytest.approx(math.cos(c * freqs[j]), abs=1e-6)
            assert cache[1 + k, q + j, 1].item() == pytest.approx(math.sin(c * freqs[j]), abs=1e-6)


def test_apply_rope_rotates_interleaved_pairs():
    grid, hd = 3, 8
    cache = rope_2d(grid, hd)
    x = torch.randn(1, 1 + grid * grid, 1, hd)
    y = apply_rope(x, cache)
    assert torch.count_nonzero(y[0, 0]) == 0  # class position zeroed (official cache)
    k, pair = 5, 3  # token 5 = (row 1, col 2); pair 3 is in the column half: dims (6, 7)
    ang = math.atan2(cache[1 + k, pair, 1], cache[1 + k, pair, 0])
    a, b = x[0, 1 + k, 0, 6].item(), x[0, 1 + k, 0, 7].item()
    assert y[0, 1 + k, 0, 6].item() == pytest.approx(a * math.cos(ang) - b * math.sin(ang), abs=1e-5)
    assert y[0, 1 + k, 0, 7].item() == pytest.approx(b * math.cos(ang) + a * math.sin(ang), abs=1e-5)
    assert torch.allclose(y.norm(dim=-1)[0, 1:], x.norm(dim=-1)[0, 1:], atol=1e-5)  # a rotation
    keep = apply_rope(x, rope_2d(grid, hd, prefix="identity"))
    assert torch.equal(keep[0, 0], x[0, 0])  # "identity": the class position passes unchanged


def test_rope_relative_position_property():
    grid, hd = 6, 16
    cache = rope_2d(grid, hd)
    q, k = torch.randn(hd), torch.randn(hd)

    def score(p1, p2):
        i1, i2 = 1 + p1[0] * grid + p1[1], 1 + p2[0] * grid + p2[1]
        rq = apply_rope(q.view(1, 1, 1, hd), cache[i1:i1 + 1])
        rk = apply_rope(k.view(1, 1, 1, hd), cache[i2:i2 + 1])
        return (rq * rk).sum().item()

    # same (drow, dcol) -> same score; different offsets -> different scores
    assert score((1, 2), (0, 1)) == pytest.approx(score((4, 5), (3, 4)), abs=1e-4)
    assert score((2, 0), (2, 3)) == pytest.approx(score((5, 1), (5, 4)), abs=1e-4)
    assert abs(score((1, 2), (0, 1)) - score((1, 2), (1, 1))) > 1e-3


def test_forward_shapes_and_causality():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TINY)).eval()
    torch.nn.init.normal_(model.output.weight, std=0.02)  # the init zeroes it: logits would be 0
    codes = torch.randint(0, 32, (3, 16))
    labels = torch.tensor([0, 4, 5])  # 5 = null class
    logits = model(codes, labels)
    assert logits.shape == (3, 16, 32)
    changed = codes.clone()
    changed[:, 9] = (changed[:, 9] + 1) % 32
    out2 = model(changed, labels)
    # logits at position t depend on codes < t only
    assert torch.allclose(logits[:, :10], out2[:, :10], atol=1e-6)
    assert not torch.allclose(logits[:, 10:], out2[:, 10:], atol=1e-6)
    lp = sequence_logp(model, codes, labels)
    manual = torch.log_softmax(logits, -1).gather(-1, codes[..., None]).squeeze(-1).sum(-1)
    assert torch.allclose(lp, manual, atol=1e-5)


def test_sizes_and_config_errors():
    with torch.device("meta"):
        assert 0.4e6 < num_params(GPT(GPTConfig.from_dict({"size": "toy-S"}))) < 0.6e6
        assert 1.8e6 < num_params(GPT(GPTConfig.from_dict({"size": "toy-M"}))) < 2.6e6
    with pytest.raises(ReproError, match="model.size"):
        GPTConfig.from_dict({"size": "huge"})
    with pytest.raises(ReproError, match="model.bogus"):
        GPTConfig.from_dict({"bogus": 1})
    with pytest.raises(ReproError, match="n_head"):
        GPTConfig.from_dict({"dim": 30, "n_head": 5})


def test_class_dropout_only_in_training():
    model = GPT(GPTConfig(**{**TINY, "class_dropout": 0.5}))
    labels = torch.zeros(2000, dtype=torch.long)
    frac = (model.train().drop_labels(labels) == 5).float().mean().item()
    assert 0.45 < frac < 0.55
    assert torch.equal(model.eval().drop_labels(labels), labels)


def test_ffn_branch_is_dropped_once_as_in_the_official_block():
    # Only the attention branch has resid_dropout; with its output projection zeroed that branch
    # is 0, so with ffn_dropout 0 a training-mode block must equal the eval-mode block. A second
    # (residual) dropout on the FFN branch would drop half of it here.
    torch.manual_seed(0)
    block = Block(GPTConfig(**{**TINY, "resid_dropout": 0.5, "ffn_dropout": 0.0}))
    torch.nn.init.zeros_(block.attention.wo.weight)
    x = torch.randn(4, 6, TINY["dim"])
    rope = torch.view_as_complex(rope_2d(4, TINY["dim"] // TINY["n_head"])[:6].contiguous())
    with torch.no_grad():
        assert torch.equal(block.train()(x, rope, 0), block.eval()(x, rope, 0))
    # and the FFN's own dropout keeps 1 - p of the branch (0.9, not 0.81)
    block = Block(GPTConfig(**{**TINY, "resid_dropout": 0.0, "ffn_dropout": 0.1}))
    torch.nn.init.zeros_(block.attention.wo.weight)
    x = torch.randn(64, 16, TINY["dim"])
    with torch.no_grad():
        branch = block.train()(x, torch.ones(16, TINY["dim"] // TINY["n_head"] // 2, dtype=torch.cfloat), 0) - x
    kept = (branch != 0).float().mean().item()
    assert 0.88 < kept < 0.92


def test_official_init_zeroes_the_output_layer_only():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**{**TINY, "dim": 64}))
    assert torch.count_nonzero(model.output.weight) == 0
    codes, labels = torch.randint(0, 32, (2, 16)), torch.tensor([0, 5])
    assert torch.count_nonzero(model.eval()(codes, labels)) == 0  # uniform first logits
    for name, p in model.named_parameters():  # every other matrix N(0, 0.02), norms at 1
        if name == "output.weight":
            continue
        if p.ndim >= 2:
            assert p.std().item() == pytest.approx(0.02, rel=0.15), name
        else:
            assert torch.equal(p, torch.ones_like(p)), name


def test_pretrain_task_loss(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "codes.npz"
    np.savez(path, codes=rng.integers(0, 32, (20, 4, 4)), labels=rng.integers(0, 5, 20))
    task = PretrainTask({"model": TINY}, {"codes": path})
    assert task.num_examples() == 20
    model = task.build_model()
    loss, stats = task.loss(model, task.get_batch(np.arange(8)), 0)
    assert loss.item() == pytest.approx(math.log(32), rel=1e-6)  # zeroed output layer: uniform
    loss.backward()
    assert model.output.weight.grad is not None
    groups = task.param_groups(model, 0.05)
    assert all(p.ndim >= 2 for p in groups[0]["params"]) and all(p.ndim < 2 for p in groups[1]["params"])
    with pytest.raises(ReproError, match="grid"):
        PretrainTask({"model": {**TINY, "grid": 5}}, {"codes": path})
    with pytest.raises(ReproError, match="vocab_size"):
        PretrainTask({"model": {**TINY, "vocab_size": 8}}, {"codes": path})
    with pytest.raises(ReproError, match="inputs"):
        PretrainTask({"model": TINY}, {})
