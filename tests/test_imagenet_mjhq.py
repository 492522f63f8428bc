"""Paper-tier loaders on tiny fixtures: ImageNet folder + ADM crop + reference batch, MJHQ-30K."""

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from guidance_repro.data import imagenet, mjhq
from guidance_repro.errors import ReproError
from guidance_repro.io import save_npz


def _image(w, h, seed):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, w * h * 3).reshape(h, w, 3)
    return Image.fromarray(np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8))


def _adm_reference(img, r):
    """Independent ADM crop: explicit halving loop, then PIL bicubic, then floor-centred crop."""
    img = img.convert("RGB")
    w, h = img.size
    while min(w, h) >= 2 * r:
        w, h = w // 2, h // 2
        img = img.resize((w, h), Image.BOX)
    s = r / min(w, h)
    img = img.resize((round(w * s), round(h * s)), Image.BICUBIC)
    a = np.array(img)
    y, x = (a.shape[0] - r) // 2, (a.shape[1] - r) // 2
    return a[y:y + r, x:x + r]


@pytest.mark.parametrize("size", [(300, 200), (97, 130), (64, 64), (20, 33)])
def test_center_crop_dhariwal(size):
    img = _image(*size, seed=1)
    out = imagenet.center_crop_dhariwal(img, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert np.array_equal(out, _adm_reference(img, 32))
    # 300x200 → halved twice (150x100, 75x50) before the bicubic step: differs from a direct resize
    if size == (300, 200):
        direct = np.array(img.resize((48, 32), Image.BICUBIC))[:, 8:40]
        assert not np.array_equal(out, direct)


def _imagenet_tree(root):
    for i, wnid in enumerate(["n02", "n01", "n03"]):
        (root / wnid).mkdir(parents=True)
        for j in range(2 + i):
            _image(40 + 7 * j, 50, seed=10 * i + j).save(root / wnid / f"img{j}.JPEG" if j % 2 else root / wnid / f"img{j}.png")
    (root / "n01" / "notes.txt").write_text("not an image")


def test_imagenet_folder_labels_and_batches(tmp_path):
    _imagenet_tree(tmp_path / "train")
    folder = imagenet.scan(tmp_path / "train")
    assert folder.wnids == ("n01", "n02", "n03") and len(folder) == 9
    assert folder.labels.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    batches = list(imagenet.iter_batches(folder, 16, batch_size=4))
    assert [len(b[1]) for b in batches] == [4, 4, 1]
    imgs = np.concatenate([b[0] for b in batches])
    assert imgs.shape == (9, 16, 16, 3) and imgs.dtype == np.uint8
    assert np.array_equal(imgs[3], _adm_reference(Image.open(folder.files[3]), 16))
    assert len(list(imagenet.iter_batches(folder, 8, batch_size=2, limit=3))) == 2
    # a labels file fixes the order instead
    lab = tmp_path / "LOC_synset_mapping.txt"
    lab.write_text("n03 tench, Tinca tinca\nn01 goldfish\n\nn02 shark\n")
    folder = imagenet.scan(tmp_path / "train", lab)
    assert folder.wnids == ("n03", "n01", "n02") and folder.labels.tolist() == [1, 1, 1, 2, 2, 0, 0, 0, 0]


def test_imagenet_errors(tmp_path):
    with pytest.raises(ReproError, match="ImageNet folder not found"):
        imagenet.scan(tmp_path / "none")
    _imagenet_tree(tmp_path / "train")
    lab = tmp_path / "labels.txt"
    lab.write_text("n01\nn02\n")
    with pytest.raises(ReproError, match=r"n03: class folder not listed"):
        imagenet.scan(tmp_path / "train", lab)
    lab.write_text("n01\nn02\nn01\n")
    with pytest.raises(ReproError, match="labels.txt: duplicate"):
        imagenet.scan(tmp_path / "train", lab)
    bad = tmp_path / "train" / "n01" / "zz_broken.jpg"
    bad.write_bytes(b"not a jpeg")
    folder = imagenet.scan(tmp_path / "train")
    with pytest.raises(ReproError, match="zz_broken.jpg: cannot decode"):
        list(imagenet.iter_batches(folder, 8, batch_size=8))
    (tmp_path / "empty" / "n01").mkdir(parents=True)
    with pytest.raises(ReproError, match="no images"):
        imagenet.scan(tmp_path / "empty")


def _ref(path, **over):
    rng = np.random.default_rng(0)
    arrays = dict(arr_0=rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8), mu=rng.normal(size=2048),
                  sigma=np.eye(2048, dtype=np.float32), mu_s=rng.normal(size=2023), sigma_s=np.eye(2023))
    arrays.update(over)
    save_npz(path, **{k: v for k, v in arrays.items() if v is not None})
    return arrays


def test_reference_batch(tmp_path):
    path = tmp_path / "VIRTUAL_imagenet256_labeled.npz"
    arrays = _ref(path)
    ref = imagenet.load_reference_batch(path)
    assert np.array_equal(ref.images, arrays["arr_0"]) and ref.image_shape == (5, 8, 8, 3)
    assert ref.mu.shape == (2048,) and ref.sigma.dtype == np.float64 and ref.sigma_s.shape == (2023, 2023)
    lazy = imagenet.load_reference_batch(path, load_images=False)
    assert lazy.images is None and lazy.image_shape == (5, 8, 8, 3)
    cases = [(dict(mu_s=None), "missing key 'mu_s'"),
             (dict(arr_0=np.zeros((5, 8, 8), np.uint8)), "key 'arr_0' must be uint8"),
             (dict(arr_0=np.zeros((5, 8, 8, 3), np.float32)), "key 'arr_0' must be uint8"),
             (dict(mu=np.zeros(1000)), r"key 'mu' must have shape \(2048,\)"),
             (dict(sigma=np.eye(100)), r"key 'sigma' must have shape \(2048, 2048\)"),
             (dict(sigma_s=np.eye(2000)), r"key 'sigma_s' must have shape \(2023, 2023\)"),
             (dict(mu_s=np.full(2023, np.nan)), "key 'mu_s' has non-finite")]
    for i, (over, msg) in enumerate(cases):
        bad = tmp_path / f"bad{i}.npz"
        _ref(bad, **over)
        with pytest.raises(ReproError, match=f"bad{i}.npz: {msg}"):
            imagenet.load_reference_batch(bad)
    with pytest.raises(ReproError, match="not found"):
        imagenet.load_reference_batch(tmp_path / "nothing.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ReproError, match="junk.npz: not a readable"):
        imagenet.load_reference_batch(tmp_path / "junk.npz")


META = {"k2": {"category": "people", "prompt": "a portrait"},
        "k1": {"category": "animals", "prompt": "a cat"},
        "k0": {"category": "animals", "prompt": "a dog"},
        "k3": {"category": "vehicles", "prompt": "a red car"}}
SIZES = {"k0": (120, 80), "k1": (64, 100), "k2": (50, 50), "k3": (33, 21)}


def _mjhq(tmp_path, as_zip):
    meta = tmp_path / "meta_data.json"
    meta.write_text(json.dumps(META))
    folder = tmp_path / "imgs"
    for i, (key, v) in enumerate(META.items()):
        (folder / v["category"]).mkdir(parents=True, exist_ok=True)
        _image(*SIZES[key], seed=i).save(folder / v["category"] / f"{key}.jpg", quality=95)
    if not as_zip:
        return meta, folder
    zpath = tmp_path / "mjhq30k_imgs.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted(folder.rglob("*.jpg")):
            zf.write(p, "mjhq30k_imgs/" + p.relative_to(folder).as_posix())
    return meta, zpath


@pytest.mark.parametrize("as_zip", [False, True])
def test_mjhq_prompts_and_images(tmp_path, as_zip):
    import torchvision  # a declared dependency; here the independent check of the crop
    meta, images = _mjhq(tmp_path, as_zip)
    with mjhq.MJHQ(meta, images) as ds:
        assert [e.key for e in ds.entries] == ["k0", "k1", "k2", "k3"]
        assert [e.label for e in ds.entries] == [0, 0, 7, 9]
        groups = ds.by_category()
        assert list(groups) == list(mjhq.CATEGORIES) and [e.prompt for e in groups["animals"]] == ["a dog", "a cat"]
        assert groups["food"] == []
        tf = torchvision.transforms.Compose([torchvision.transforms.Resize(24), torchvision.transforms.CenterCrop(24)])
        for e in ds.entries:
            pil = Image.open(tmp_path / "imgs" / e.category / f"{e.key}.jpg").convert("RGB")
            got = ds.load_image(e, 24)
            assert got.shape == (24, 24, 3)
            assert np.array_equal(got, np.asarray(tf(pil)))
            assert ds.load_image(e).shape == SIZES[e.key][::-1] + (3,)
        batches = list(ds.iter_images(24, batch_size=1, category="animals"))
        assert [b[1][0].key for b in batches] == ["k0", "k1"] and batches[0][0].shape == (1, 24, 24, 3)


def test_mjhq_errors(tmp_path):
    meta, folder = _mjhq(tmp_path, as_zip=False)
    (folder / "people" / "k2.jpg").unlink()
    ds = mjhq.MJHQ(meta, folder)
    with pytest.raises(ReproError, match=r"people/k2.jpg: image of MJHQ entry 'k2' not found"):
        list(ds.iter_images(16))
    zpath = tmp_path / "z.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("animals/k0.jpg", b"broken")
    with mjhq.MJHQ(meta, zpath) as dz:
        with pytest.raises(ReproError, match=r"z.zip:animals/k0.jpg: cannot decode"):
            dz.load_image(dz.entries[0], 16)
        with pytest.raises(ReproError, match=r"z.zip: member animals/k1.jpg"):
            dz.load_image(dz.entries[1], 16)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ReproError, match="bad.json: malformed JSON"):
        mjhq.MJHQ(bad, folder)
    bad.write_text(json.dumps({"k9": {"category": "sports", "prompt": "x"}}))
    with pytest.raises(ReproError, match="bad.json: entry 'k9' has unknown category"):
        mjhq.read_meta(bad)
    bad.write_text(json.dumps({"k9": {"category": "art"}}))
    with pytest.raises(ReproError, match="bad.json: entry 'k9' needs"):
        mjhq.read_meta(bad)
    with pytest.raises(ReproError, match="meta_data.json not found"):
        mjhq.read_meta(tmp_path / "meta_data_missing.json")
    with pytest.raises(ReproError, match="nothing.zip: MJHQ-30K images not found"):
        mjhq.MJHQ(meta, tmp_path / "nothing.zip")
    with pytest.raises(ReproError, match="unknown MJHQ category"):
        next(ds.iter_images(16, category="sports"))
