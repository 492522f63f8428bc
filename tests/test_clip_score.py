"""CLIP score (raw cosine and clamp100), retrieval top-1, the small judge CLIP and the loaders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from guidance_repro.errors import ReproError
from guidance_repro.metrics import clip_score as cs
from guidance_repro.metrics import toy_clip as tk
from guidance_repro.train.config import TrainConfig
from guidance_repro.train.loop import train

TINY = {"embed_dim": 64,
        "vision": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32},
        "text": {"context_length": 36, "width": 64, "heads": 2, "layers": 2}}


class _FixedEncoder(torch.nn.Module):
    """encode_image / encode_text return given (unnormalised) rows, picked by an index input."""

    def __init__(self, img: np.ndarray, txt: np.ndarray):
        super().__init__()
        self.img, self.txt = torch.tensor(img), torch.tensor(txt)

    def encode_image(self, idx):
        return self.img[idx]

    def encode_text(self, idx):
        return self.txt[idx]


def _fixed_scorer(img, txt, captions):
    lookup = {c: i for i, c in enumerate(captions)}
    return cs.ClipScorer(_FixedEncoder(img, txt), lambda x: torch.as_tensor(np.asarray(x)),
                         lambda caps: torch.tensor([lookup[c] for c in caps]), "fixed", "0",
                         batch_size=3)


def test_clip_score_variants_match_direct_computation():
    rng = np.random.default_rng(0)
    img, txt = rng.normal(size=(7, 5)).astype(np.float32), rng.normal(size=(7, 5)).astype(np.float32)
    captions = [f"caption {i}" for i in range(7)]
    scorer = _fixed_scorer(img, txt, captions)
    scorer.progress = False
    cos = np.array([a @ b / np.linalg.norm(a) / np.linalg.norm(b) for a, b in zip(img, txt)])
    raw = cs.clip_score(scorer, np.arange(7), captions)
    assert raw["clip_score"] == pytest.approx(cos.mean(), abs=1e-6) and raw["n"] == 7
    clamp = cs.clip_score(scorer, np.arange(7), captions, variant="clamp100")
    assert clamp["clip_score"] == pytest.approx(np.mean([max(100 * c, 0) for c in cos]), abs=1e-4)
    with pytest.raises(ReproError, match="evaluation.clip.variant"):
        cs.clip_score(scorer, np.arange(7), captions, variant="x100")
    with pytest.raises(ReproError, match="7 images but 6 captions"):
        cs.clip_score(scorer, np.arange(7), captions[:6])


def test_retrieval_top1_counts_within_groups():
    # Texts 0..5 are unit vectors; images 0..4 point at their own text, image 5 at text 4.
    txt = np.eye(6, dtype=np.float32)
    img = np.eye(6, dtype=np.float32)
    img[5] = txt[4]
    captions = [f"c{i}" for i in range(6)]
    scorer = _fixed_scorer(img, txt, captions)
    scorer.progress = False
    r = cs.retrieval_top1(scorer, np.arange(6), captions, group_size=3)
    assert r["top1"] == pytest.approx(5 / 6) and r["chance"] == pytest.approx(1 / 3)
    # Groups of 2: (4, 5) -> image 5 still picks text 4: wrong; groups never mix.
    assert cs.retrieval_top1(scorer, np.arange(6), captions, group_size=2)["top1"] == pytest.approx(5 / 6)
    # An identical caption text counts as a right answer.
    same = captions[:5] + ["c4"]   # image 5's caption is now the text of c4
    assert cs.retrieval_top1(scorer, np.arange(6), same, group_size=3)["top1"] == 1.0


@pytest.fixture(scope="module")
def compositions_npz(fmnist_npz, tmp_path_factory):
    from guidance_repro.data import compositions, fashion_mnist

    out = tmp_path_factory.mktemp("comp") / "compositions.npz"
    splits = compositions.build(fashion_mnist.load(fmnist_npz), n_train=50, n_clip=4000, n_eval=400,
                                seed=0)
    compositions.save(out, splits, compositions.Layout(), seed=0)
    return out


@pytest.fixture(scope="module")
def judge(compositions_npz, tmp_path_factory):
    task = tk.make_judge_task({"model": TINY}, {"data": compositions_npz})
    out = tmp_path_factory.mktemp("judge") / "judge.pt"
    cfg = TrainConfig.from_dict({"steps": 300, "batch_size": 64, "lr": 2e-3, "weight_decay": 0.1,
                                 "schedule": "cosine", "warmup_steps": 20, "seed": 7})
    train(task, cfg, out, progress=False)
    return out


def test_judge_scores_matching_captions_above_shuffled(judge, compositions_npz):
    from guidance_repro.data import compositions

    data = compositions.load(compositions_npz, "eval")   # held-out: Fashion-MNIST test items
    scorer = cs.load_scorer("toy-judge", judge)
    scorer.progress = False
    matched = cs.clip_score(scorer, data["images"], data["captions"])["clip_score"]
    shuffled = np.random.default_rng(0).permutation(data["captions"])
    mismatched = cs.clip_score(scorer, data["images"], shuffled)["clip_score"]
    assert matched - mismatched > 0.1, (matched, mismatched)
    top1 = cs.retrieval_top1(scorer, data["images"], data["captions"], group_size=100)
    assert top1["top1"] > 5 * top1["chance"], top1


def test_judge_model_file_rebuilds(judge):
    model, cfg = tk.load_clip(judge, task="judge-clip")
    assert cfg["embed_dim"] == 64 and cfg["kind"] == tk.CLIP_KIND
    # model_config alone rebuilds the same architecture (what another module needs).
    rebuilt = tk.build_clip(json.loads(json.dumps(cfg)))
    assert [k for k in rebuilt.state_dict()] == [k for k in model.state_dict()]
    with pytest.raises(ReproError, match="not 'star-text-clip'"):
        tk.load_clip(judge, task="star-text-clip")


def test_clip_task_errors(compositions_npz):
    with pytest.raises(ReproError, match="judge-clip.split"):
        tk.make_judge_task({"split": "train"}, {"data": compositions_npz})
    with pytest.raises(ReproError, match="judge-clip.model.text.vocab_size"):
        tk.make_judge_task({"model": {"text": {"vocab_size": 1000}}}, {"data": compositions_npz})
    with pytest.raises(ReproError, match="judge-clip.model.depth"):
        tk.make_judge_task({"model": {"depth": 3}}, {"data": compositions_npz})
    task = tk.make_clip_task({"model": TINY, "subset": 10, "split": "eval"}, {"data": compositions_npz},
                             name="star-text-clip")
    assert task.name == "star-text-clip" and task.num_examples() == 10


def test_load_scorer_errors(tmp_path):
    with pytest.raises(ReproError, match="evaluation.clip.weights"):
        cs.load_scorer("ViT-L-14", None)
    with pytest.raises(ReproError, match="evaluation.clip.weights"):
        cs.load_scorer("ViT-L-14", tmp_path / "ViT-L-14.pt")
    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ReproError, match="evaluation.clip.model"):
        cs.load_scorer("no-such-arch", tmp_path / "x.pt")


def test_open_clip_architecture_from_local_file(tmp_path):
    """The paper-tier path (create_model_and_transforms with a local file), on a tiny config."""
    import open_clip

    cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32,
                                           "head_width": 16, "patch_size": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / "tiny-test-clip.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "tiny-test-clip.json")
    torch.manual_seed(0)
    ref = open_clip.CLIP(embed_dim=32, vision_cfg=cfg["vision_cfg"], text_cfg=cfg["text_cfg"],
                         quick_gelu=True).eval()
    torch.save(ref.state_dict(), tmp_path / "weights.pt")
    scorer = cs.load_scorer("tiny-test-clip", tmp_path / "weights.pt", quick_gelu=True)
    scorer.progress = False
    images = np.random.default_rng(0).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    caps = ["a red bag", "a blue boot", "a small white shirt"]
    with torch.no_grad():
        t = ref.encode_text(open_clip.tokenize(caps))
    np.testing.assert_allclose(scorer.text_embeddings(caps), (t / t.norm(dim=-1, keepdim=True)).numpy(),
                               rtol=1e-5, atol=1e-5)
    r = cs.clip_score(scorer, images, caps)
    assert -1 <= r["clip_score"] <= 1 and r["model"] == "open_clip-tiny-test-clip"
    with pytest.raises(ReproError, match="evaluation.clip.weights"):
        (tmp_path / "bad.pt").write_bytes(b"garbage")
        cs.load_scorer("tiny-test-clip", tmp_path / "bad.pt")


def test_star_scores_of_several_files_equal_one_file_at_a_time(judge, compositions_npz, tmp_path, capsys):
    """`star-scores` scores a sweep's points in one process; each file is the one-file result, and
    an error in any input leaves no scores file."""
    from guidance_repro import cli
    from guidance_repro.data import compositions
    from guidance_repro.data import samples as samples_io
    from guidance_repro.metrics import toy_composition as tc
    from guidance_repro.star.text import first_item_class

    evaluator = tmp_path / "composition.pt"
    task = tc.make_composition_task({"model": {"channels": [8, 16, 16], "hidden": 32}},
                                    {"data": compositions_npz})
    train(task, TrainConfig.from_dict({"steps": 3, "batch_size": 16, "seed": 0}), evaluator, progress=False)
    d = compositions.load(compositions_npz, "eval")
    cats = first_item_class(d["item_class"])
    files = [tmp_path / "s0.npz", tmp_path / "s1.npz"]
    for f, rows in zip(files, (slice(0, 150), slice(120, 300))):
        samples_io.write(f, d["images"][rows], cats[rows], d["captions"][rows], {"point": f.stem})
    base = ["star-scores", "--judge", str(judge), "--evaluator", str(evaluator),
            "--data", str(compositions_npz), "--split", "eval", "--threads", "1"]
    outs = [tmp_path / "s0.json", tmp_path / "s1.json"]
    assert cli.main([*base, "--samples", *map(str, files), "--out", *map(str, outs)]) == 0
    for f, out in zip(files, outs):
        single = tmp_path / "single.json"
        assert cli.main([*base, "--samples", str(f), "--out", str(single)]) == 0
        result = json.loads(out.read_text())
        assert result == json.loads(single.read_text()) and result["samples"] == str(f)
        assert np.isfinite(result["clip_score"]) and np.isfinite(result["category_fid_mean"])

    no_captions = tmp_path / "plain.npz"
    samples_io.write(no_captions, d["images"][:20], cats[:20])
    capsys.readouterr()
    for samples, out, match in (([files[0], no_captions], [tmp_path / "x.json", tmp_path / "y.json"],
                                 f"{no_captions}: no captions"),
                                (files, [tmp_path / "x.json"], "--out: 1 output files for 2")):
        assert cli.main([*base, "--samples", *map(str, samples), "--out", *map(str, out)]) == 2
        assert match in capsys.readouterr().err and not any(o.exists() for o in out)
