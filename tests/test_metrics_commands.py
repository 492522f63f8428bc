"""reference-stats / evaluate commands, the extractor registry, and their error paths."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from guidance_repro import cli
from guidance_repro.errors import ReproError
from guidance_repro.io import save_npz, timing_path
from guidance_repro.metrics import extractors
from guidance_repro.metrics.extractors import available_extractors, get_extractor, register_extractor
from guidance_repro.metrics.features import TorchExtractor, file_sha256

KIND = "test-randconv"


def _factory(checkpoint: Path, device: torch.device, heads: str = "yes") -> TorchExtractor:
    """A small conv classifier from a plain-tensor checkpoint, as the toy evaluators do."""
    state = torch.load(checkpoint, weights_only=True)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, stride=2), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    net.load_state_dict(state["features"])
    head = torch.nn.Linear(6, 4)
    head.load_state_dict(state["head"])
    ext = TorchExtractor(KIND, file_sha256(checkpoint), 16, feature_fn=lambda x: net(x / 255),
                         logits_fn=(lambda x, f: head(f)) if heads == "yes" else None,
                         device=device, batch_size=32)
    ext.progress = False
    return ext


register_extractor(KIND, _factory)


def _checkpoint(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, stride=2))
    head = torch.nn.Linear(6, 4)
    torch.save({"features": net.state_dict(), "head": head.state_dict()}, path)
    return path


def _samples(path: Path, n: int, size: int = 16, seed: int = 0, channels: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size, channels), dtype=np.uint8)
    save_npz(path, images=images, labels=np.full(n, -1, dtype=np.int64),
             meta_json=np.array(json.dumps({"sampler": "test", "seed": seed, "seconds": 1.5,
                                            "seconds_per_image": 1.5 / n})))
    return path


@pytest.fixture()
def setup(tmp_path):
    ckpt = _checkpoint(tmp_path / "eval.pt", 0)
    ref_images = _samples(tmp_path / "ref.npz", 80, seed=1)
    ref = tmp_path / "ref_stats.npz"
    rc = cli.main(["reference-stats", "--images", str(ref_images), "--evaluator", KIND,
                   "--evaluator-checkpoint", str(ckpt), "--out", str(ref), "--max-features", "50"])
    assert rc == 0
    return tmp_path, ckpt, ref


def _evaluate(tmp_path, ckpt, ref, samples, *extra) -> tuple[int, Path]:
    out = tmp_path / "metrics.json"
    rc = cli.main(["evaluate", "--samples", str(samples), "--reference", str(ref), "--evaluator",
                   KIND, "--evaluator-checkpoint", str(ckpt), "--out", str(out), *extra])
    return rc, out


def test_reference_stats_file_format(setup):
    _, ckpt, ref = setup
    with np.load(ref) as data:
        assert data["mu"].dtype == np.float64 and data["mu"].shape == (6,)
        assert data["sigma"].dtype == np.float64 and data["sigma"].shape == (6, 6)
        assert data["features"].dtype == np.float32 and data["features"].shape == (50, 6)
        meta = json.loads(str(data["meta_json"]))
    assert meta["evaluator"] == KIND and meta["evaluator_sha256"] == file_sha256(ckpt)
    assert meta["count"] == 80 and meta["resolution"] == [16, 16] and meta["seed"] == 0
    # the stored real-manifold radii: distance to the 3rd nearest other feature, brute force
    with np.load(ref) as data:
        feats, radii = data["features"].astype(np.float64), data["pr_radii"]
    dist = np.sqrt(((feats[:, None] - feats[None]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    assert meta["pr_radii_k"] == 3
    np.testing.assert_allclose(radii, np.sort(dist, axis=1)[:, 2], rtol=1e-4)


def test_evaluate_with_stored_radii_equals_computing_them(setup, tmp_path):
    _, ckpt, ref = setup
    samples = _samples(tmp_path / "s.npz", 60, seed=4)
    rc, out = _evaluate(tmp_path, ckpt, ref, samples, "--metrics", "pr")
    assert rc == 0
    stored = json.loads(out.read_text())
    with np.load(ref) as data:  # the same file without the stored radii
        arrays = {k: data[k] for k in data.files if k != "pr_radii"}
    bare = tmp_path / "bare.npz"
    save_npz(bare, **arrays)
    rc, out = _evaluate(tmp_path, ckpt, bare, samples, "--metrics", "pr")
    assert rc == 0
    computed = json.loads(out.read_text())
    assert (stored["precision"], stored["recall"]) == (computed["precision"], computed["recall"])
    # a k other than the stored one recomputes them
    rc, out = _evaluate(tmp_path, ckpt, ref, samples, "--metrics", "pr", "--pr-k", "5")
    assert rc == 0 and json.loads(out.read_text())["protocol"]["pr_k"] == 5


def test_reference_stats_reads_a_dataset_split(tmp_path):
    ckpt = _checkpoint(tmp_path / "eval.pt", 0)
    rng = np.random.default_rng(0)
    save_npz(tmp_path / "data.npz", test_images=rng.integers(0, 256, (30, 16, 16), dtype=np.uint8),
             test_labels=rng.integers(0, 10, 30).astype(np.uint8))
    out = tmp_path / "s.npz"
    assert cli.main(["reference-stats", "--images", str(tmp_path / "data.npz"), "--split-key", "test",
                     "--evaluator", KIND, "--evaluator-checkpoint", str(ckpt), "--out", str(out)]) == 0
    with np.load(out) as data:
        assert json.loads(str(data["meta_json"]))["split"] == "test"


def test_reference_stats_reads_the_adm_reference_batch(tmp_path, capsys):
    """The paper tier's reference: the images (arr_0) of VIRTUAL_imagenet256_labeled.npz, a file
    whose other keys (mu, sigma, mu_s, sigma_s) are validated too."""
    ckpt = _checkpoint(tmp_path / "eval.pt", 0)
    rng = np.random.default_rng(1)
    adm = tmp_path / "VIRTUAL_imagenet256_labeled.npz"
    arr = rng.integers(0, 256, (30, 16, 16, 3), dtype=np.uint8)
    save_npz(adm, arr_0=arr, mu=np.zeros(2048), sigma=np.eye(2048, dtype=np.float32),
             mu_s=np.zeros(4), sigma_s=np.eye(4))
    out, direct = tmp_path / "adm.npz", tmp_path / "direct.npz"
    args = ["--evaluator", KIND, "--evaluator-checkpoint", str(ckpt)]
    assert cli.main(["reference-stats", "--images", str(adm), "--adm-batch", *args, "--out", str(out)]) == 0
    same = tmp_path / "same.npz"
    save_npz(same, images=arr)
    assert cli.main(["reference-stats", "--images", str(same), "--dataset", adm.stem, *args,
                     "--out", str(direct)]) == 0
    with np.load(out) as a, np.load(direct) as b:
        np.testing.assert_array_equal(a["mu"], b["mu"])
        np.testing.assert_array_equal(a["sigma"], b["sigma"])
        assert json.loads(str(a["meta_json"]))["count"] == 30
    capsys.readouterr()
    assert cli.main(["reference-stats", "--images", str(adm), "--adm-batch", "--split-key", "test", *args,
                     "--out", str(out)]) == 2
    save_npz(tmp_path / "noref.npz", arr_0=arr)
    assert cli.main(["reference-stats", "--images", str(tmp_path / "noref.npz"), "--adm-batch", *args,
                     "--out", str(out)]) == 2
    assert "noref.npz: missing key 'mu'" in capsys.readouterr().err


def test_evaluate_writes_metrics_and_protocol(setup):
    tmp_path, ckpt, ref = setup
    samples = _samples(tmp_path / "samples.npz", 60, seed=2)
    rc, out = _evaluate(tmp_path, ckpt, ref, samples, "--metrics", "fid,kid,is,pr", "--num", "40",
                        "--seed", "3")
    assert rc == 0
    result = json.loads(out.read_text())
    for key in ("fid", "kid", "is_mean", "is_std", "precision", "recall"):
        assert np.isfinite(result[key])
    assert result["fid"] > 0 and 0 <= result["precision"] <= 1 and 1 <= result["is_mean"] <= 4
    proto = result["protocol"]
    assert proto["evaluator"] == KIND and proto["evaluator_sha256"] == file_sha256(ckpt)
    assert proto["num_samples"] == 40 and proto["seed"] == 3 and proto["resolution"] == [16, 16]
    assert proto["pr_k"] == 3 and proto["is_splits"] == 1 and proto["is_split_size"] == 5000
    assert proto["fid_implementation"].startswith("clean-fid 0.1.35")
    assert proto["reference"] == str(ref) and proto["sampler"]["sampler"] == "test"
    # the sampling job's wall-clock goes to the side file, so identical runs give identical metrics
    assert "seconds" not in proto["sampler"] and "seconds_per_image" not in proto["sampler"]
    assert json.loads(timing_path(out).read_text()) == {"seconds": 1.5, "seconds_per_image": 1.5 / 60}


def test_evaluate_of_the_reference_images_has_fid_zero(setup):
    tmp_path, ckpt, ref = setup
    rc, out = _evaluate(tmp_path, ckpt, ref, tmp_path / "ref.npz", "--metrics", "fid")
    assert rc == 0 and abs(json.loads(out.read_text())["fid"]) < 1e-6


@pytest.mark.parametrize("case,match", [
    ("few", "fewer than --num"), ("resolution", "resolution 20x20"),
    ("evaluator", "recompute the reference"), ("metrics", "--metrics"), ("no-head", "classifier head"),
])
def test_evaluate_errors_name_the_file(setup, capsys, case, match):
    tmp_path, ckpt, ref = setup
    samples = _samples(tmp_path / "samples.npz", 30, size=20 if case == "resolution" else 16)
    extra = {"few": ["--num", "31"], "metrics": ["--metrics", "fid,sfid"],
             "no-head": ["--evaluator-option", "heads=no"]}.get(case, [])
    if case == "evaluator":
        ckpt = _checkpoint(tmp_path / "other.pt", 1)
    rc, out = _evaluate(tmp_path, ckpt, ref, samples, *extra)
    err = capsys.readouterr().err
    assert rc == 2 and match in err and not out.exists()
    assert err.startswith("error: ") and err.count("\n") == 1
    if case in ("few", "resolution"):
        assert str(samples) in err
    if case == "evaluator":
        assert str(ref) in err


def test_evaluate_of_several_files_equals_one_file_at_a_time(setup):
    """A sweep's points are evaluated in one process; each metrics file is the one-file result."""
    tmp_path, ckpt, ref = setup
    files = [_samples(tmp_path / f"s{i}.npz", 40 + 10 * i, seed=5 + i) for i in range(3)]
    outs = [tmp_path / f"m{i}.json" for i in range(3)]
    rc = cli.main(["evaluate", "--samples", *map(str, files), "--reference", str(ref), "--evaluator",
                   KIND, "--evaluator-checkpoint", str(ckpt), "--metrics", "fid,kid,is,pr",
                   "--out", *map(str, outs)])
    assert rc == 0
    for f, out in zip(files, outs):
        rc, single = _evaluate(tmp_path, ckpt, ref, f, "--metrics", "fid,kid,is,pr")
        assert rc == 0 and json.loads(out.read_text()) == json.loads(single.read_text())
        assert json.loads(out.read_text())["protocol"]["samples"] == str(f)


@pytest.mark.parametrize("case,match", [
    ("count", "--out: 1 output files for 2 --samples files"),
    ("twice", "--out: an output file is named twice"),
    ("bad-second", "resolution 20x20"),
])
def test_evaluate_of_several_files_writes_nothing_on_error(setup, capsys, case, match):
    tmp_path, ckpt, ref = setup
    first = _samples(tmp_path / "a.npz", 30)
    second = _samples(tmp_path / "b.npz", 30, size=20 if case == "bad-second" else 16)
    outs = {"count": [tmp_path / "a.json"], "twice": [tmp_path / "a.json"] * 2}.get(
        case, [tmp_path / "a.json", tmp_path / "b.json"])
    rc = cli.main(["evaluate", "--samples", str(first), str(second), "--reference", str(ref),
                   "--evaluator", KIND, "--evaluator-checkpoint", str(ckpt), "--out", *map(str, outs)])
    err = capsys.readouterr().err
    assert rc == 2 and match in err
    assert not any(o.exists() for o in outs)  # the good first file's metrics are not written either
    if case == "bad-second":
        assert str(second) in err


def test_bad_inputs(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "eval.pt", 0)
    bad = tmp_path / "bad.npz"
    save_npz(bad, images=np.zeros((4, 8, 8, 3), dtype=np.float32))
    assert cli.main(["reference-stats", "--images", str(bad), "--evaluator", KIND,
                     "--evaluator-checkpoint", str(ckpt), "--out", str(tmp_path / "o.npz")]) == 2
    assert "must be uint8" in capsys.readouterr().err
    good = _samples(tmp_path / "good.npz", 10)
    assert cli.main(["evaluate", "--samples", str(good), "--reference", str(bad), "--evaluator", KIND,
                     "--evaluator-checkpoint", str(ckpt), "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert "not a reference-stats file" in err and str(bad) in err
    assert not (tmp_path / "o.json").exists() and not (tmp_path / "o.npz").exists()
    (tmp_path / "empty.npz").write_bytes(b"")
    for path in (tmp_path / "empty.npz", tmp_path / "absent.npz"):
        assert cli.main(["reference-stats", "--images", str(path), "--evaluator", KIND,
                         "--evaluator-checkpoint", str(ckpt), "--out", str(tmp_path / "o.npz")]) == 2
        assert str(path) in capsys.readouterr().err
    with pytest.raises(ReproError, match="unknown evaluator"):
        get_extractor("no-such-kind", ckpt)
    with pytest.raises(ReproError, match="unknown evaluator option"):
        get_extractor(KIND, ckpt, options={"colour": "red"})


# --- built-in kinds, offline: missing weights, and tiny stand-in TorchScript files -------------

def test_built_in_kinds_are_listed_and_each_names_a_factory():
    # The registry names its built-in kinds by "module:factory" (imported when asked for), so a
    # renamed factory would only show when that kind is first used: check every one here.
    assert set(extractors.BUILT_IN) <= set(available_extractors())
    assert {"inception", "dinov2", "toy-classifier", "toy-composition"} <= set(extractors.BUILT_IN)
    for kind, target in extractors.BUILT_IN.items():
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr, None)), (kind, target)


class _FakeInceptionLayers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 2048)

    def forward(self, x):
        return self.proj(x.mean(dim=(2, 3)))[:, :, None, None]


class _FakeInception(torch.nn.Module):
    """Same interface as clean-fid's TorchScript file: .layers, .output, forward(x, return_features)."""

    def __init__(self):
        super().__init__()
        self.layers = _FakeInceptionLayers()
        self.output = torch.nn.Linear(2048, 1008)

    def forward(self, x, return_features: bool = False):
        f = self.layers((x - 128) / 128).view(x.shape[0], 2048)
        return f if return_features else torch.softmax(self.output(f), 1)


def test_inception_missing_weights_names_config_key(tmp_path):
    with pytest.raises(ReproError, match=r"evaluation\.inception\.weights"):
        get_extractor("inception", tmp_path / "absent.pt")
    with pytest.raises(ReproError, match=r"evaluation\.inception\.mode"):
        get_extractor("inception", tmp_path / "absent.pt", options={"mode": "legacy_pytorch"})
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ReproError, match="TorchScript"):
        get_extractor("inception", junk)


@pytest.mark.parametrize("mode", ["clean", "legacy_tensorflow"])
def test_inception_loads_a_local_torchscript_file(tmp_path, mode):
    torch.manual_seed(0)
    path = tmp_path / "my-inception.pt"  # any name: clean-fid's loader gets a folder with a link
    torch.jit.script(_FakeInception()).save(str(path))
    ext = get_extractor("inception", path, options={"mode": mode})
    ext.progress = False
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    feats, logits = ext.features_and_logits(images)
    assert ext.name == f"inception-{mode}" and ext.sha256 == file_sha256(path)
    assert feats.shape == (3, 2048) and logits.shape == (3, 1008)


def test_dinov2_paths(tmp_path):
    with pytest.raises(ReproError, match=r"evaluation\.dinov2\.weights"):
        get_extractor("dinov2", tmp_path / "absent.pt")
    state = tmp_path / "state.pt"
    torch.save({"w": torch.zeros(2)}, state)
    with pytest.raises(ReproError, match="not a TorchScript"):
        get_extractor("dinov2", state)

    class Tiny(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3))

    path = tmp_path / "dinov2.pt"
    torch.jit.script(Tiny()).save(str(path))
    ext = get_extractor("dinov2", path)
    ext.progress = False
    images = np.full((2, 8, 8, 3), 255, dtype=np.uint8)
    feats = ext.features(images)
    # white images, ImageNet normalisation: (1 - mean) / std per channel
    np.testing.assert_allclose(feats[0], (1 - np.array([0.485, 0.456, 0.406])) /
                               np.array([0.229, 0.224, 0.225]), rtol=1e-5)
