"""MJHQ-30K evaluation (STAR paper tier) on a tiny MJHQ-shaped fixture: per-category packing of the
generated folders, reference features, CLIP cosines, the table against independent computations,
and the error paths (missing image, wrong resolution, mismatched evaluator, missing CLIP weights)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import linalg

from guidance_repro import cli
from guidance_repro.data import samples as samples_io
from guidance_repro.data.mjhq import MJHQ
from guidance_repro.metrics import clip_score as cs
from guidance_repro.metrics.extractors import register_extractor
from guidance_repro.metrics.features import TorchExtractor, file_sha256

KIND = "test-mjhq-conv"
RES = 24
CATS = ("animals", "art")
N = 6  # prompts per category


def _factory(checkpoint: Path, device: torch.device) -> TorchExtractor:
    state = torch.load(checkpoint, weights_only=True)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3, stride=2), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    net.load_state_dict(state)
    ext = TorchExtractor(KIND, file_sha256(checkpoint), RES, feature_fn=lambda x: net(x / 255),
                         device=device, batch_size=4)
    ext.progress = False
    return ext


register_extractor(KIND, _factory)


class _ColourClip(torch.nn.Module):
    """encode_image: mean RGB; encode_text: a fixed direction per prompt length (deterministic)."""

    def encode_image(self, x):
        return x.mean(dim=(2, 3))

    def encode_text(self, t):
        return torch.stack([torch.tensor([1.0, float(n % 3), 0.5]) for n in t.tolist()])


def _colour_scorer(*_args, **_kw):
    return cs.ClipScorer(_ColourClip(), lambda im: torch.as_tensor(im, dtype=torch.float32).permute(0, 3, 1, 2),
                         lambda caps: torch.tensor([len(c) for c in caps]), "colour-clip", "0" * 64)


@pytest.fixture()
def mjhq(tmp_path):
    rng = np.random.default_rng(0)
    meta = {f"{c[:2]}{i:02d}": {"category": c, "prompt": f"a {c} picture number {'x' * i}"}
            for c in CATS for i in range(N)}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    for key, v in meta.items():
        for root, size in (("refs", (40, 32)), ("gen", (RES, RES))):
            (tmp_path / root / v["category"]).mkdir(parents=True, exist_ok=True)
            arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            suffix = ".jpg" if root == "refs" else ".png"
            Image.fromarray(arr).save(tmp_path / root / v["category"] / f"{key}{suffix}")
    torch.manual_seed(0)
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3, stride=2)).state_dict(), tmp_path / "ev.pt")
    (tmp_path / "clip.bin").write_bytes(b"local weights stand-in")
    return tmp_path


def _run(mjhq: Path, monkeypatch) -> dict:
    monkeypatch.setattr(cs, "load_scorer", _colour_scorer)
    ev = ["--evaluator", KIND, "--evaluator-checkpoint", str(mjhq / "ev.pt")]
    files = {"ref": [], "feat": [], "ir": []}
    for c in CATS:
        common = ["--meta", str(mjhq / "meta.json"), "--category", c, "--resolution", str(RES)]
        assert cli.main(["mjhq-pack", "--generated", str(mjhq / "gen"), *common,
                         "--out", str(mjhq / f"gen-{c}.npz")]) == 0
        assert cli.main(["mjhq-reference", "--images", str(mjhq / "refs"), *common, "--chunk", "4",
                         "--no-progress", *ev, "--out", str(mjhq / f"ref-{c}.npz")]) == 0
        assert cli.main(["mjhq-features", "--samples", str(mjhq / f"gen-{c}.npz"), "--clip-model", "x",
                         "--clip-weights", str(mjhq / "clip.bin"), *ev,
                         "--out", str(mjhq / f"feat-{c}.npz")]) == 0
        (mjhq / "ir").mkdir(exist_ok=True)
        (mjhq / "ir" / f"{c}.json").write_text(json.dumps({"mean_reward": 0.25 * (CATS.index(c) + 1)}))
        files["ref"].append(str(mjhq / f"ref-{c}.npz"))
        files["feat"].append(str(mjhq / f"feat-{c}.npz"))
        files["ir"].append(str(mjhq / "ir" / f"{c}.json"))
    assert cli.main(["mjhq-table", "--reference", *files["ref"], "--features", *files["feat"],
                     "--imagereward", *files["ir"], "--out", str(mjhq / "mjhq.json"),
                     "--markdown", str(mjhq / "mjhq.md"), "--csv", str(mjhq / "mjhq.csv"),
                     "--figure", str(mjhq / "fid.png")]) == 0
    return json.loads((mjhq / "mjhq.json").read_text())


def _fid(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance written out with scipy (independent of clean-fid)."""
    m1, m2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_mjhq_table_matches_independent_computations(mjhq, monkeypatch):
    result = _run(mjhq, monkeypatch)
    ext = _factory(mjhq / "ev.pt", torch.device("cpu"))
    meta = json.loads((mjhq / "meta.json").read_text())
    gen_all, ref_all, cos_all = [], [], []
    with MJHQ(mjhq / "meta.json", mjhq / "refs") as data:
        for row, c in zip(result["categories"], CATS):
            keys = sorted(k for k, v in meta.items() if v["category"] == c)
            gen = np.stack([np.asarray(Image.open(mjhq / "gen" / c / f"{k}.png")) for k in keys])
            ref = np.concatenate([im for im, _ in data.iter_images(RES, 100, c)])
            g, r = ext.features(gen).astype(np.float64), ext.features(ref).astype(np.float64)
            assert row["category"] == c and row["images"] == N
            assert row["fid"] == pytest.approx(_fid(g, r), rel=1e-4)
            scorer = _colour_scorer()
            expected = cs.clip_score(scorer, gen, [meta[k]["prompt"] for k in keys])["clip_score"]
            assert row["clip_score"] == pytest.approx(expected, rel=1e-5)
            assert row["imagereward"] == 0.25 * (CATS.index(c) + 1)
            gen_all.append(g)
            ref_all.append(r)
            cos_all.append(expected)
    o = result["overall"]
    assert o["images"] == 2 * N
    assert o["fid"] == pytest.approx(_fid(np.concatenate(gen_all), np.concatenate(ref_all)), rel=1e-4)
    assert o["clip_score"] == pytest.approx(np.mean(cos_all), rel=1e-5)
    assert o["imagereward"] == pytest.approx(0.375)
    assert "| **all** | 12 |" in (mjhq / "mjhq.md").read_text()
    assert (mjhq / "mjhq.csv").read_text().splitlines()[-1].startswith("all,12,")
    assert (mjhq / "fid.png").stat().st_size > 0
    pack = samples_io.read(mjhq / "gen-art.npz")
    assert pack.meta["category"] == "art" and list(pack.labels) == [1] * N
    assert pack.captions[2] == meta[pack.meta["keys"][2]]["prompt"]


def test_missing_or_resized_generated_image_is_an_error(mjhq, capsys):
    args = ["mjhq-pack", "--generated", str(mjhq / "gen"), "--meta", str(mjhq / "meta.json"),
            "--category", "art", "--resolution", str(RES), "--out", str(mjhq / "g.npz")]
    (mjhq / "gen" / "art" / "ar03.png").unlink()
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "1 of 6 art prompts have no image" in err and "art/ar03.png" in err
    assert not (mjhq / "g.npz").exists()
    Image.new("RGB", (RES * 2, RES * 2)).save(mjhq / "gen" / "art" / "ar03.png")
    assert cli.main(args) == 2
    assert "ar03.png: 48x48 image, expected the generation resolution 24x24" in capsys.readouterr().err
    assert cli.main(args[:6] + ["plants"] + args[7:]) == 2
    assert "no prompt of this category" in capsys.readouterr().err


def test_table_refuses_features_from_another_evaluator(mjhq, monkeypatch, capsys):
    _run(mjhq, monkeypatch)
    torch.manual_seed(1)
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3, stride=2)).state_dict(), mjhq / "ev2.pt")
    assert cli.main(["mjhq-features", "--samples", str(mjhq / "gen-art.npz"), "--clip-weights",
                     str(mjhq / "clip.bin"), "--evaluator", KIND, "--evaluator-checkpoint",
                     str(mjhq / "ev2.pt"), "--out", str(mjhq / "feat-art.npz")]) == 0
    assert cli.main(["mjhq-table", "--reference", str(mjhq / "ref-art.npz"), "--features",
                     str(mjhq / "feat-art.npz"), "--out", str(mjhq / "t.json"),
                     "--markdown", str(mjhq / "t.md")]) == 2
    assert "evaluator_sha256" in capsys.readouterr().err and not (mjhq / "t.json").exists()


def test_clip_weights_must_be_a_local_file(mjhq, capsys):
    assert cli.main(["mjhq-pack", "--generated", str(mjhq / "gen"), "--meta", str(mjhq / "meta.json"),
                     "--category", "art", "--resolution", str(RES), "--out", str(mjhq / "g.npz")]) == 0
    assert cli.main(["mjhq-features", "--samples", str(mjhq / "g.npz"), "--clip-model", "ViT-L-14",
                     "--clip-weights", str(mjhq / "absent.safetensors"), "--evaluator", KIND,
                     "--evaluator-checkpoint", str(mjhq / "ev.pt"), "--out", str(mjhq / "f.npz")]) == 2
    assert "evaluation.clip.weights" in capsys.readouterr().err and not (mjhq / "f.npz").exists()
