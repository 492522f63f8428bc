"""``mini-paper-fixtures``: every TEST STAND-IN file loads through the project's own official
loaders and evaluators (llamagen/official.py, data/imagenet.py, metrics/features.py), and the
codes command runs on the fixture folder and VQ file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from guidance_repro import cli
from guidance_repro.data import imagenet
from guidance_repro.errors import ReproError
from guidance_repro.llamagen import official
from guidance_repro.llamagen.imagenet_codes import read_manifest
from guidance_repro.llamagen.vq16 import VQ16Config
from guidance_repro.metrics import inception_standin
from guidance_repro.metrics.features import inception_extractor

pytestmark = pytest.mark.usefixtures("one_thread")
CLASSES, PER_CLASS, SIZE, REF = 3, 2, 32, 6


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("fixtures")
    assert cli.main(["mini-paper-fixtures", "--out", str(out), "--classes", str(CLASSES), "--images-per-class",
                     str(PER_CLASS), "--image-size", str(SIZE), "--ref-images", str(REF), "--ref-size", "32"]) == 0
    return out, json.loads((out / "TEST-STANDIN-fixtures.json").read_text())


def test_every_file_is_labelled_and_hashed(fx):
    _, m = fx
    assert "TEST STAND-IN" in m["note"]
    assert all("TEST-STANDIN" in f["path"] and len(f["sha256"]) == 64 for f in m["files"].values())
    assert set(m["files"]) == {"gpt_B", "gpt_L", "gpt_XL", "gpt_XXL", "gpt_3B", "vq", "inception", "reference_batch"}
    assert inception_standin.is_standin(m["files"]["inception"]["path"])


def test_gpt_files_load_strictly_in_the_real_containers(fx):
    _, m = fx
    for size in official.PAPER_SIZES:
        path = m["files"][f"gpt_{size}"]["path"]
        obj = torch.load(path, weights_only=True)
        assert ("model" in obj) == (size in ("B", "L", "XL"))       # XXL/3B: raw state dicts
        model = official.load_official_gpt(path, size, m["gpt_image_size"], **m["gpt_overrides"][size])
        assert model.cfg.num_classes == 1000 and model.cfg.grid == SIZE // 16
        assert model.output.weight.abs().sum() > 0                    # random weights, not a zero head
    with pytest.raises(ReproError, match="shape|missing|unexpected"):  # widths differ per size
        official.load_official_gpt(m["files"]["gpt_L"]["path"], "B", SIZE, **m["gpt_overrides"]["B"])


def test_vq_file_has_the_release_key_names_and_loads(fx):
    _, m = fx
    path = m["files"]["vq"]["path"]
    sd = torch.load(path, weights_only=True)["model"]
    assert set(sd) == set(official.vq16_layout(VQ16Config()))         # the 344 official key names
    vq = official.load_official_vq(path, cfg=VQ16Config.from_dict(m["vq_config"]))
    images = np.zeros((2, SIZE, SIZE, 3), np.uint8)
    assert vq.encode(images).shape == (2, SIZE // 16, SIZE // 16)
    with pytest.raises(ReproError, match="shape"):                    # never mistaken for the real file
        official.check_official_vq(path)


def test_imagenet_folder_scans_and_classes_differ(fx):
    out, m = fx
    folder = imagenet.scan(m["imagenet"]["root"], m["imagenet"]["labels_file"])
    assert len(folder) == CLASSES * PER_CLASS and folder.wnids == tuple(m["imagenet"]["wnids"])
    images = np.stack([np.asarray(imagenet.open_image(p)) for p in folder.files]).astype(float)
    assert images.shape == (CLASSES * PER_CLASS, SIZE, SIZE, 3)
    per_class = images.reshape(CLASSES, PER_CLASS, -1).mean(axis=(1, 2))
    assert not np.array_equal(images[0], images[1]) and len(set(np.round(per_class, 3))) == CLASSES


def test_reference_batch_holds_stored_statistics_of_other_images(fx):
    _, m = fx
    path = m["files"]["reference_batch"]["path"]
    ref = imagenet.load_reference_batch(path)
    assert ref.images.shape == (REF, 32, 32, 3) and ref.images.dtype == np.uint8
    assert ref.mu.shape == (2048,) and ref.sigma.shape == (2048, 2048)
    assert ref.mu_s.shape == (2023,) and ref.sigma_s.shape == (2023, 2023)
    base = inception_standin.load(m["files"]["inception"]["path"])
    x = torch.from_numpy(ref.images).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        own = base(x, return_features=True).double().mean(0).numpy()
    assert not np.allclose(own, ref.mu)                               # stored, not arr_0's own


@pytest.mark.parametrize("mode", ["legacy_tensorflow", "clean"])
def test_inception_standin_runs_through_the_project_extractor(fx, mode):
    _, m = fx
    from pathlib import Path
    ext = inception_extractor(Path(m["files"]["inception"]["path"]), torch.device("cpu"), mode=mode)
    ext.progress = False
    images = imagenet.load_reference_batch(m["files"]["reference_batch"]["path"]).images
    feats, logits = ext.features_and_logits(images)
    assert feats.shape == (REF, 2048) and logits.shape == (REF, 1008) and np.isfinite(feats).all()
    assert feats.std(0).mean() > 0                                    # features depend on the image
    if mode == "legacy_tensorflow":
        base = inception_standin.load(m["files"]["inception"]["path"])
        with torch.no_grad():
            direct = base(torch.from_numpy(images).permute(0, 3, 1, 2).float(), return_features=True)
        np.testing.assert_allclose(feats, direct.numpy(), rtol=1e-5, atol=1e-6)


def test_codes_command_runs_on_the_fixtures(fx, tmp_path):
    _, m = fx
    assert cli.main(["llamagen-imagenet-codes", "--data", m["imagenet"]["root"], "--vq", m["files"]["vq"]["path"],
                     "--vq-config", json.dumps(m["vq_config"]), "--image-size", str(SIZE),
                     "--out", str(tmp_path / "sh")]) == 0
    assert cli.main(["llamagen-merge-codes", "--shards", str(tmp_path / "sh" / "shard-00000-of-00001"),
                     "--out", str(tmp_path / "codes")]) == 0
    man = read_manifest(tmp_path / "codes")
    assert man["count"] == CLASSES * PER_CLASS and man["codes"]["shape"] == [CLASSES * PER_CLASS, 10, 4]
    assert man["vq_sha256"] == m["files"]["vq"]["sha256"]
