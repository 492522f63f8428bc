"""ImageNet codes for CCA (llamagen/imagenet_codes.py, data/shards.py, data/code_crops.py): the
ten-crop transform against torchvision, sharding + resume, the merged manifest, unreadable
JPEGs, and the per-(seed, epoch, index) view draw."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from guidance_repro import cli
from guidance_repro.data import imagenet, shards
from guidance_repro.data.code_crops import CodeViewDataset, view_index
from guidance_repro.errors import ReproError
from guidance_repro.llamagen import imagenet_codes as ic
from guidance_repro.llamagen.vq16 import VQ16, VQ16Config
from guidance_repro.metrics.features import file_sha256

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(ch=16, ch_mult=[1, 2], num_res_blocks=1, z_channels=8, codebook_size=32, code_dim=4,
            usage_buffer=64, norm_groups=8)
SIZE = 16


def _adm_crop_reference(image: Image.Image, size: int) -> Image.Image:
    """guided-diffusion's center_crop_arr, written out with PIL calls only."""
    while min(image.size) >= 2 * size:
        image = image.resize((image.size[0] // 2, image.size[1] // 2), resample=Image.BOX)
    s = size / min(image.size)
    image = image.resize((round(image.size[0] * s), round(image.size[1] * s)), resample=Image.BICUBIC)
    left, top = (image.size[0] - size) // 2, (image.size[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


@pytest.mark.parametrize("wh,size,crop_range", [((131, 97), 32, 1.1), ((800, 600), 384, 1.1), ((70, 70), 64, 1.05)])
def test_ten_crop_views_equal_torchvision_tencrop(wh, size, crop_range):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (wh[1], wh[0], 3), dtype=np.uint8))
    tf = ic.TenCropTransform(size, crop_range)
    ours = ic.normalize(tf.views(image))
    official = T.Compose([T.Lambda(lambda im: _adm_crop_reference(im, int(size * crop_range))),
                          T.TenCrop(size), T.Lambda(lambda cs: torch.stack([T.ToTensor()(c) for c in cs])),
                          T.Normalize([0.5] * 3, [0.5] * 3)])(image)
    assert ours.shape == (10, 3, size, size)
    assert torch.equal(ours, official)
    assert tf.crop_size == int(size * crop_range)


def _write_folder(root, classes=3, per_class=3, seed=0):
    rng = np.random.default_rng(seed)
    for c in range(classes):
        d = root / f"n{c:08d}"
        d.mkdir(parents=True)
        for k in range(per_class):
            h, w = rng.integers(18, 40, 2)
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(d / f"img{k}.JPEG")
    return root


def _vq():
    torch.manual_seed(0)
    return VQ16(VQ16Config.from_dict({**TINY, "image_size": SIZE})).eval()


def _meta(folder, n_shards, skip=False):
    return ic.shard_meta(folder, ic.TenCropTransform(SIZE), "vq.pt", "0" * 64, {**TINY, "image_size": SIZE},
                         skip, n_shards)


def test_codes_are_the_vq_indices_of_the_ten_views(tmp_path):
    folder = imagenet.scan(_write_folder(tmp_path / "train", classes=1, per_class=2))
    vq, tf = _vq(), ic.TenCropTransform(SIZE)
    out = ic.CodeEncoder(folder, vq, tf, batch_size=1)(0, 2)
    with torch.no_grad():
        direct = vq.encode_indices(ic.normalize(tf.views(imagenet.open_image(folder.files[1]))))
    assert out["codes"].shape == (2, 10, (SIZE // 2) ** 2) and out["codes"].dtype == np.int16
    assert np.array_equal(out["codes"][1], direct.reshape(10, -1).numpy())
    assert out["index"].tolist() == [0, 1] and out["labels"].tolist() == [0, 0]


class _Killed(Exception):
    pass


def test_killed_shard_resumes_from_its_finished_chunks_and_merge_equals_one_shard(tmp_path):
    folder = imagenet.scan(_write_folder(tmp_path / "train"))  # 9 images
    encoder = ic.CodeEncoder(folder, _vq(), ic.TenCropTransform(SIZE), batch_size=2)
    calls = []

    def dying(start, stop):  # the job is killed while encoding its second chunk
        calls.append(start)
        if len(calls) == 2:
            raise _Killed
        return encoder(start, stop)

    d0 = shards.shard_dir(tmp_path / "sh", 0, 2)
    lo, hi = shards.shard_range(len(folder), 0, 2)
    assert (lo, hi) == (0, 4)
    with pytest.raises(_Killed):
        shards.run_shard(d0, lo, hi, 2, dying, _meta(folder, 2), log=lambda m: None)
    assert sorted(p.name for p in d0.iterdir()) == ["chunk-0000000000.npz"]  # no partial file, no done.json
    (d0 / ".chunk-0000000002.npz.abc.tmp.npz").write_bytes(b"half")   # what a SIGKILL leaves
    calls.clear()
    shards.run_shard(d0, lo, hi, 2, lambda a, b: (calls.append(a), encoder(a, b))[1], _meta(folder, 2),
                     log=lambda m: None)
    assert calls == [2]                                                       # only the unfinished chunk
    assert not list(d0.glob(".chunk-*"))
    with pytest.raises(ReproError, match="not finished"):
        ic.write_merged([d0, shards.shard_dir(tmp_path / "sh", 1, 2)], tmp_path / "codes")
    shards.run_shard(shards.shard_dir(tmp_path / "sh", 1, 2), *shards.shard_range(9, 1, 2), 2, encoder,
                     _meta(folder, 2), log=lambda m: None)
    merged = ic.write_merged([shards.shard_dir(tmp_path / "sh", i, 2) for i in (1, 0)], tmp_path / "codes")

    single = shards.shard_dir(tmp_path / "one", 0, 1)
    shards.run_shard(single, 0, 9, 4, encoder, _meta(folder, 1), log=lambda m: None)
    ic.write_merged([single], tmp_path / "codes1")
    assert np.array_equal(np.load(tmp_path / "codes/codes.npy"), np.load(tmp_path / "codes1/codes.npy"))
    assert np.load(tmp_path / "codes/labels.npy").tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert merged["count"] == 9 and merged["codes"]["shape"] == [9, 10, 64]
    assert [s["lo"] for s in merged["shards"]] == [0, 4] and merged["skipped"] == []


def test_merge_refuses_gaps_and_mixed_runs(tmp_path):
    folder = imagenet.scan(_write_folder(tmp_path / "train", classes=2, per_class=2))
    encoder = ic.CodeEncoder(folder, _vq(), ic.TenCropTransform(SIZE))
    dirs = [shards.shard_dir(tmp_path / "sh", i, 2) for i in range(2)]
    for i, d in enumerate(dirs):
        shards.run_shard(d, *shards.shard_range(4, i, 2), 1, encoder, _meta(folder, 2), log=lambda m: None)
    with pytest.raises(ReproError, match="cover"):
        ic.write_merged(dirs[:1], tmp_path / "out")
    other = shards.shard_dir(tmp_path / "other", 1, 2)
    meta = _meta(folder, 2)
    shards.run_shard(other, 2, 4, 1, encoder, {**meta, "vq_sha256": "1" * 64}, log=lambda m: None)
    with pytest.raises(ReproError, match="vq_sha256"):
        ic.write_merged([dirs[0], other], tmp_path / "out")


def _official_vq_file(path):
    torch.save({"model": _vq().state_dict()}, path)
    return path


def _run_cli(tmp_path, *extra):
    return cli.main(["llamagen-imagenet-codes", "--data", str(tmp_path / "train"), "--vq", str(tmp_path / "vq.pt"),
                     "--vq-config", json.dumps(TINY), "--image-size", str(SIZE), "--out", str(tmp_path / "sh"),
                     "--chunk-size", "2", *extra])


def test_cli_unreadable_jpeg_fails_naming_it_or_is_skipped_and_listed(tmp_path, capsys):
    _write_folder(tmp_path / "train", classes=2, per_class=2)
    bad = tmp_path / "train" / "n00000001" / "img0.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    _official_vq_file(tmp_path / "vq.pt")
    assert _run_cli(tmp_path) == 2
    assert str(bad) in capsys.readouterr().err
    assert _run_cli(tmp_path, "--skip-unreadable") == 0
    assert cli.main(["llamagen-merge-codes", "--shards", str(tmp_path / "sh" / "shard-00000-of-00001"),
                     "--out", str(tmp_path / "codes")]) == 0
    m = ic.read_manifest(tmp_path / "codes")
    assert m["count"] == 3 and m["dataset_size"] == 4 and m["skip_unreadable"] is True and m["tf32"] is False
    assert [(s["index"], s["path"]) for s in m["skipped"]] == [(2, str(bad))]
    assert m["vq_sha256"] == file_sha256(tmp_path / "vq.pt")
    assert m["transform"]["crop_size"] == int(SIZE * 1.1) and m["transform"]["views"][5] == "flip-top-left"
    assert np.load(tmp_path / "codes/labels.npy").tolist() == [0, 0, 1]
    assert np.load(tmp_path / "codes/index.npy").tolist() == [0, 1, 3]


def test_view_draw_is_a_function_of_seed_epoch_index_and_uniform():
    a = view_index(3, 1, np.arange(4000), 10)
    assert np.array_equal(a, view_index(3, 1, np.arange(4000), 10))
    assert np.array_equal(a[[17, 5]], view_index(3, 1, [17, 5], 10))   # order and batching do not matter
    assert (a != view_index(3, 2, np.arange(4000), 10)).mean() > 0.85   # a new epoch redraws
    assert (a != view_index(4, 1, np.arange(4000), 10)).mean() > 0.85
    counts = np.bincount(a, minlength=10)
    chi2 = ((counts - 400) ** 2 / 400).sum()
    assert a.min() == 0 and a.max() == 9 and chi2 < 27.9                  # chi2(9 dof), p = 0.001


def test_code_view_dataset_returns_the_drawn_view(tmp_path):
    codes = np.arange(5 * 10 * 4, dtype=np.int16).reshape(5, 10, 4)
    np.save(tmp_path / "codes.npy", codes)
    np.save(tmp_path / "labels.npy", np.arange(5, dtype=np.int64))
    ds = CodeViewDataset(tmp_path, seed=7)
    ds.set_epoch(2)
    x, y = ds[3]
    v = view_index(7, 2, 3, 10)[0]
    assert x.dtype == torch.int64 and torch.equal(x, torch.from_numpy(codes[3, v].astype(np.int64))) and y == 3
