"""Toy STAR: normalized 2-D RoPE against star.md's definition, cross-attention padding mask, the
start-token path, the resolution step, CCA negatives for captions, text encoder vs judge CLIP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from guidance_repro.errors import ReproError
from guidance_repro.nn import rope2d
from guidance_repro.star.model import STAR, STARConfig, TextCond, change_schedule, drop_text


def _cond(B=3, T=6, D=32, lengths=(2, 6, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.arange(T)[None] < torch.tensor(lengths)[:, None]
    return TextCond(torch.randn(B, T, D, generator=g), mask, torch.randn(B, D, generator=g))


def _model(**kw):
    torch.manual_seed(0)
    cfg = STARConfig(**{"patch_nums": (1, 2, 3, 4), "text_dim": 32, "text_len": 6, "depth": 2, **kw})
    return STAR(cfg).eval()


def test_rope_positions_follow_star_definition():
    # pn = 4, N = 64: x = t mod 4, y = t div 4, scaled by 64/3 -> {0, 21.33, 42.67, 64} (star.md)
    x, y = rope2d.normalized_grid(4, 64.0)
    assert torch.allclose(x[:4], torch.tensor([0.0, 64 / 3, 128 / 3, 64.0]))
    assert torch.allclose(y[::4], torch.tensor([0.0, 64 / 3, 128 / 3, 64.0]))
    assert x[5] == pytest.approx(64 / 3) and y[5] == pytest.approx(64 / 3)  # t = 5: (1, 1)
    x1, y1 = rope2d.normalized_grid(1, 64.0)
    assert x1.tolist() == [0.0] and y1.tolist() == [0.0]
    # last-map step 64 / (pn - 1) at 16, 32, 64
    for pn in (16, 32, 64):
        x, _ = rope2d.normalized_grid(pn, 64.0)
        assert float(x[1] - x[0]) == pytest.approx(64 / (pn - 1))
        assert float(x[pn - 1]) == pytest.approx(64.0)


def test_rope_frequencies_and_angles():
    f = rope2d.axial_frequencies(64, 10000.0)
    assert len(f) == 16
    for k in (0, 5, 15):
        assert float(f[k]) == pytest.approx(10000.0 ** (-4 * k / 64), rel=1e-6)
    ang = rope2d.rope_angles((1, 2, 4), 64, 64.0, 10000.0)
    assert ang.shape == (1 + 4 + 16, 32)
    # token 1 + 4 + 6 is scale pn=4, t = 6: x = 2 -> 128/3, y = 1 -> 64/3
    t = 1 + 4 + 6
    assert torch.allclose(ang[t, :16], (128 / 3) * f)
    assert torch.allclose(ang[t, 16:], (64 / 3) * f)
    assert torch.all(ang[0] == 0)
    with pytest.raises(ReproError, match="head_dim"):
        rope2d.axial_frequencies(18, 100.0)


def test_apply_rope_is_complex_rotation_of_channel_pairs():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, 3, 5, 8, generator=g)
    ang = torch.rand(5, 4, generator=g) * 10
    out = rope2d.apply_rope(q, ang)
    ref = torch.view_as_real(torch.view_as_complex(q.reshape(2, 3, 5, 4, 2).contiguous())
                             * torch.polar(torch.ones_like(ang), ang)).reshape(q.shape)
    assert torch.allclose(out, ref, atol=1e-6)
    # relative: <R(a) q, R(b) k> depends on a - b only
    k = torch.randn(8, generator=g)
    q1 = torch.randn(8, generator=g)
    a, b, s = torch.rand(4) * 5, torch.rand(4) * 5, torch.rand(4) * 5
    d1 = rope2d.apply_rope(q1[None], a[None]) @ rope2d.apply_rope(k[None], b[None]).T
    d2 = rope2d.apply_rope(q1[None], (a + s)[None]) @ rope2d.apply_rope(k[None], (b + s)[None]).T
    assert torch.allclose(d1, d2, atol=1e-5)


def test_same_relative_place_gets_same_angles_across_scales():
    ang = rope2d.rope_angles((3, 5), 16, 16.0, 100.0)
    # corner (2, 2) of the 3x3 map and corner (4, 4) of the 5x5 map: both at (N, N)
    assert torch.allclose(ang[8], ang[9 + 24])
    # center (1, 1) of 3x3 and (2, 2) of 5x5
    assert torch.allclose(ang[4], ang[9 + 12])


def test_cross_attention_ignores_padded_text():
    m = _model()
    cond = _cond()
    x = torch.randn(3, m.cfg.seq_len - 1, m.cfg.code_dim)
    out = m(cond, x)
    hidden = cond.hidden.clone()
    hidden[~cond.mask] = 1e3 * torch.randn(int((~cond.mask).sum()), hidden.shape[-1])
    out2 = m(TextCond(hidden, cond.mask, cond.pooled), x)
    assert torch.allclose(out, out2, atol=1e-5)
    hidden[0, 0] += 1.0  # a valid position does matter
    assert not torch.allclose(m(TextCond(hidden, cond.mask, cond.pooled), x), out2, atol=1e-4)


def test_cross_attention_matches_manual_softmax_and_is_per_sample():
    m = _model()
    ca = m.blocks[0].cross
    cond = _cond()
    x = torch.randn(3, 5, m.cfg.width)
    out = ca(x, cond.hidden, cond.mask)
    H, hd = ca.H, ca.hd
    for b in range(3):  # each sample attends only its own text (no batch-0 broadcast, star.md ⚠)
        n = int(cond.mask[b].sum())
        q = (x[b] @ ca.mat_q.weight.T + ca.q_bias).view(5, H, hd).transpose(0, 1)
        kv = cond.hidden[b, :n] @ ca.mat_kv.weight.T
        k, v = kv[:, :m.cfg.width], kv[:, m.cfg.width:] + ca.v_bias
        k, v = k.view(n, H, hd).transpose(0, 1), v.view(n, H, hd).transpose(0, 1)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd), -1)
        y = (att @ v).transpose(0, 1).reshape(5, -1) @ ca.proj.weight.T + ca.proj.bias
        assert torch.allclose(out[b], y, atol=1e-5)


def test_start_token_is_projected_pooled_text_plus_learned_start_and_level():
    m = _model()
    cond = _cond()
    h = m.embed(cond, None, 0)
    assert h.shape == (3, 1, m.cfg.width)
    ref = cond.pooled @ m.text_proj.weight.T + m.text_proj.bias + m.pos_start[0, 0] + m.lvl_embed.weight[0]
    assert torch.allclose(h[:, 0], ref, atol=1e-6)
    # the first scale's logits depend on the pooled vector
    p2 = TextCond(cond.hidden, cond.mask, cond.pooled + 1.0)
    assert not torch.allclose(m(cond, torch.zeros(3, 0, m.cfg.code_dim)), m(p2, torch.zeros(3, 0, m.cfg.code_dim)))


@pytest.mark.parametrize("positions", ["rope", "absolute"])
def test_kv_cache_scale_by_scale_equals_teacher_forcing(positions):
    m = _model(positions=positions)
    cond = _cond()
    x = torch.randn(3, m.cfg.seq_len - 1, m.cfg.code_dim)
    full = m(cond, x)
    m.set_cache(True)
    outs, pos = [], 0
    for si, p in enumerate(m.cfg.patch_nums):
        xi = x[:, pos - 1:pos - 1 + p * p] if si else None
        outs.append(m.run(m.embed(cond, xi, pos), cond, None))
        pos += p * p
    m.set_cache(False)
    assert torch.allclose(torch.cat(outs, 1), full, atol=1e-5)


def test_block_causal_mask_keeps_coarse_scales_blind_to_finer():
    m = _model()
    cond = _cond()
    x = torch.randn(3, m.cfg.seq_len - 1, m.cfg.code_dim)
    out = m(cond, x)
    x2 = x.clone()
    x2[:, 4:] += 1.0  # inputs of scale pn=3 onward (positions 5..)
    out2 = m(cond, x2)
    assert torch.allclose(out[:, :5], out2[:, :5], atol=1e-6)
    assert not torch.allclose(out[:, 5:], out2[:, 5:])


def test_change_schedule_carries_levels_and_resizes_absolute_embeddings():
    m = _model(positions="absolute")
    state, cfg = change_schedule(m.state_dict(), m.cfg, (1, 2, 3, 4, 6, 8))
    new = STAR(cfg)
    new.load_state_dict(state)  # strict
    old_lvl = m.lvl_embed.weight
    assert torch.equal(new.lvl_embed.weight[:4], old_lvl) and torch.equal(new.lvl_embed.weight[5], old_lvl[3])
    assert torch.equal(new.pos_1LC[:, :30], m.pos_1LC)  # scales 1..4 copied
    grid4 = m.pos_1LC[0, 14:30].T.reshape(1, -1, 4, 4)
    ref = torch.nn.functional.interpolate(grid4, size=(8, 8), mode="bicubic", align_corners=False)
    assert torch.allclose(new.pos_1LC[0, 30 + 36:].T.reshape(1, -1, 8, 8), ref)
    rope = _model()
    state, cfg = change_schedule(rope.state_dict(), rope.cfg, (1, 2, 4))
    assert "pos_1LC" not in state and STAR(cfg).rope_angles.shape == (21, 8)


def test_drop_text_replaces_whole_conditions_with_the_empty_prompt():
    cond, empty = _cond(), _cond(B=1, lengths=(2,), seed=5)
    torch.manual_seed(0)
    out = drop_text(cond, empty, 0.5)
    for b in range(3):
        same = torch.equal(out.pooled[b], cond.pooled[b])
        assert same or (torch.equal(out.pooled[b], empty.pooled[0]) and torch.equal(out.mask[b], empty.mask[0]))
    assert drop_text(cond, empty, 0.0) is cond


def test_caption_ids_and_rolled_negatives():
    from guidance_repro.guidance.cca import make_negatives
    from guidance_repro.star.tasks import caption_ids
    tokens = torch.tensor([[1, 2], [3, 4], [1, 2], [5, 6]])
    ids, first = caption_ids(tokens)
    assert ids[0] == ids[2] and len(set(ids.tolist())) == 3
    assert torch.equal(tokens[first[ids]], tokens)
    pos, neg, masked = make_negatives(ids, len(first), 0.0)
    assert torch.equal(neg, torch.roll(ids, -1))
    # sample 1's rolled caption (row 2) equals row 0's, not its own: a true negative
    assert masked.tolist() == [False, False, False, False]
    pos, neg, masked = make_negatives(torch.tensor([7, 7, 8]), 9, 0.0)
    assert masked.tolist() == [True, False, False]  # equal rolled caption counts as positive


def test_config_errors_name_the_key():
    with pytest.raises(ReproError, match="positions"):
        STARConfig.from_dict({"positions": "learned"})
    with pytest.raises(ReproError, match="patch_nums"):
        STARConfig.from_dict({"patch_nums": [2, 4]})


def test_text_encoder_task_refuses_the_judge_split(tmp_path):
    from guidance_repro.star.tasks import make_text_encoder_task
    with pytest.raises(ReproError, match="judge"):
        make_text_encoder_task({"split": "clip"}, {"data": tmp_path / "x.npz"})


def test_sd21_text_encoder_needs_a_local_folder(tmp_path):
    from guidance_repro.star.text import SD21TextEncoder
    with pytest.raises(ReproError, match="star.paper.text_encoder_dir"):
        SD21TextEncoder(tmp_path / "missing")
    with pytest.raises(ReproError, match="star.paper.text_encoder_dir: .* no tokenizer/"):
        SD21TextEncoder(tmp_path)


def test_toy_text_encoder_and_judge_share_no_weights(tmp_path):
    """Two small CLIPs trained by the loop: the text encoder's tower is not the judge's."""
    from guidance_repro.metrics.toy_clip import load_clip, make_clip_task
    from guidance_repro.star.tasks import make_text_encoder_task
    from guidance_repro.star.text import ToyTextEncoder
    from guidance_repro.train.config import TrainConfig
    from guidance_repro.train.loop import train

    rng = np.random.default_rng(0)
    n = 16
    arrays = {}
    for split in ("train", "clip", "eval"):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)
        arrays[f"{split}_captions"] = np.array([f"a small red bag at the top left {i}" for i in range(n)])
        arrays[f"{split}_n_items"] = np.ones(n, np.int64)
        for k in ("item_class", "item_color", "item_position", "item_size", "item_source"):
            arrays[f"{split}_{k}"] = np.zeros((n, 3), np.int64)
    data = tmp_path / "comp.npz"
    np.savez(data, **arrays)
    model = {"embed_dim": 32, "vision": {"width": 32, "layers": 1, "head_width": 16},
             "text": {"width": 32, "heads": 2, "layers": 1, "context_length": 16}}
    tcfg = dict(steps=1, batch_size=8, lr=1e-3, checkpoint_every=10)
    enc = make_text_encoder_task({"model": model}, {"data": data})
    train(enc, TrainConfig.from_dict({**tcfg, "seed": 2}), tmp_path / "text.pt")
    judge = make_clip_task({"model": model}, {"data": data})
    train(judge, TrainConfig.from_dict({**tcfg, "seed": 1}), tmp_path / "judge.pt")
    text = ToyTextEncoder(tmp_path / "text.pt")
    jm, _ = load_clip(tmp_path / "judge.pt")
    shared = [k for k, v in text.clip.state_dict().items() if v.ndim >= 2 and torch.equal(v, jm.state_dict()[k])]
    assert not shared, f"tensors equal in text encoder and judge: {shared}"
    with pytest.raises(ReproError, match="judge-clip"):
        ToyTextEncoder(tmp_path / "judge.pt")  # the judge file is refused as a text encoder
    cond = text.encode(["a small red bag at the top left", ""])
    assert cond.hidden.shape == (2, 16, 32) and cond.mask.sum(1).tolist()[1] == 2  # "" = SOT, EOT
    assert torch.allclose(cond.pooled[1], cond.hidden[1, 1])
