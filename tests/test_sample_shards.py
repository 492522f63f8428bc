"""Sharded, resumable paper-tier sampling (sampling/shards.py, llamagen-sample-shard, merge-shards)
on tiny official-layout LlamaGen files with random weights: resume after a simulated kill, the
merged ADM batch's format and manifest, class balance, determinism and layout independence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from guidance_repro.cli import main
from guidance_repro.data.adm_batch import batch_info, iter_images, read_labels, write_adm_batch
from guidance_repro.errors import ReproError
from guidance_repro.llamagen import official as ck
from guidance_repro.llamagen.vq16 import VQ16Config
from guidance_repro.sampling.shards import ShardPlan, image_seed, run_shard

pytestmark = pytest.mark.usefixtures("one_thread")

GPT_OVERRIDES = dict(vocab_size=32, num_classes=5, dim=32, n_layer=2, n_head=2, multiple_of=16)
VQ_TINY = dict(ch=8, ch_mult=[1, 1, 1, 1, 1], num_res_blocks=1, z_channels=8, codebook_size=32,
               code_dim=4, usage_buffer=64, norm_groups=8)


@pytest.fixture(scope="module")
def official_files(tmp_path_factory):
    """Official-layout c2i GPT ({'model': sd}) and VQ-16 files, tiny widths, random weights, 64 px."""
    d = tmp_path_factory.mktemp("official")
    g = torch.Generator().manual_seed(0)
    gpt = {k: torch.randn(s, generator=g) * 0.5
           for k, s in ck.gpt_layout(ck.official_gpt_config("B", 64, **GPT_OVERRIDES)).items()}
    torch.save({"model": gpt}, d / "c2i_B_384.pt")
    vq = {k: torch.randn(s, generator=g) * 0.1
          for k, s in ck.vq16_layout(VQ16Config.from_dict({**VQ_TINY, "image_size": 64})).items()}
    torch.save({"model": vq}, d / "vq_ds16_c2i.pt")
    return d


def shard_args(files, out, shard, num_shards, *extra):
    return ["llamagen-sample-shard", "--model", str(files / "c2i_B_384.pt"), "--size", "B",
            "--tokenizer", str(files / "vq_ds16_c2i.pt"), "--gpt-config", json.dumps(GPT_OVERRIDES),
            "--vq-config", json.dumps(VQ_TINY), "--image-size", "64", "--eval-size", "32",
            "--num", "20", "--num-shards", str(num_shards), "--shard", str(shard), "--chunk-size", "3",
            "--batch-size", "2", "--seed", "7", "--cfg", "1.5", "--tag", "method=cfg", "--tag", "model=B",
            "--no-progress", "--out", str(out), *extra]


def test_killed_shard_resumes_and_merges_into_an_adm_batch(official_files, tmp_path):
    s0, s1 = tmp_path / "shard_0.json", tmp_path / "shard_1.json"
    # a kill after 2 chunks: the two finished chunks stay, no manifest (the job's output) is written
    assert main(shard_args(official_files, s0, 0, 2, "--max-chunks", "2")) == 0
    chunks = sorted((tmp_path / "shard_0.json.chunks").glob("chunk_*.npz"))
    assert len(chunks) == 2 and not s0.exists()
    first = {p.name: p.stat().st_mtime_ns for p in chunks}
    assert main(shard_args(official_files, s0, 0, 2)) == 0       # resumes: draws only chunks 3..4
    assert {p.name: p.stat().st_mtime_ns for p in chunks} == first
    assert len(list((tmp_path / "shard_0.json.chunks").glob("chunk_*.npz"))) == 4  # 10 images in 3s
    assert main(shard_args(official_files, s1, 1, 2)) == 0
    m0 = json.loads(s0.read_text())
    assert m0["range"] == [0, 10] and m0["count"] == 10 and m0["settings"]["model_sha256"]

    batch, manifest = tmp_path / "point.npz", tmp_path / "point.json"
    assert main(["merge-shards", "--shards", str(s1), str(s0), "--out", str(batch), "--manifest", str(manifest)]) == 0
    with np.load(batch) as z:  # what the TF evaluator reads: arr_0 uint8 NHWC, arr_1 labels
        assert sorted(z.files) == ["arr_0", "arr_1"]
        images, labels = z["arr_0"], z["arr_1"]
    assert images.shape == (20, 32, 32, 3) and images.dtype == np.uint8 and labels.dtype == np.int64
    assert np.bincount(labels, minlength=5).tolist() == [4] * 5            # class balanced
    assert len({im.tobytes() for im in images}) == 20                      # 20 different draws
    m = json.loads(manifest.read_text())
    assert m["count"] == 20 and m["per_class_counts"] == [4] * 5 and m["seeds"]["seed"] == 7
    assert m["settings"]["cfg"] == 1.5 and m["settings"]["method"] == "cfg"
    assert len(m["settings"]["model_sha256"]) == 64 and [s["range"] for s in m["shards"]] == [[0, 10], [10, 20]]
    # the chunk images are the batch's, in index order
    with np.load(chunks[1]) as z:
        assert np.array_equal(z["images"], images[3:6]) and np.array_equal(z["indices"], [3, 4, 5])

    # another layout (one shard, other chunks) draws the same image for every index
    one = tmp_path / "one" / "shard.json"
    assert main(shard_args(official_files, one, 0, 1, "--chunk-size", "7", "--batch-size", "3")) == 0
    assert main(["merge-shards", "--shards", str(one), "--out", str(tmp_path / "one.npz"),
                 "--manifest", str(tmp_path / "one.json")]) == 0
    with np.load(tmp_path / "one.npz") as z:
        assert np.array_equal(z["arr_0"], images) and np.array_equal(z["arr_1"], labels)


def test_merge_refuses_missing_duplicate_or_mismatched_shards(official_files, tmp_path, capsys):
    s0 = tmp_path / "a.json"
    assert main(shard_args(official_files, s0, 0, 3)) == 0
    out = ["--out", str(tmp_path / "b.npz"), "--manifest", str(tmp_path / "b.json")]
    assert main(["merge-shards", "--shards", str(s0), *out]) == 2
    assert "shard(s) [1, 2] of 3 missing" in capsys.readouterr().err
    assert main(["merge-shards", "--shards", str(s0), str(s0), *out]) == 2
    assert "given twice" in capsys.readouterr().err
    other = tmp_path / "c.json"
    assert main(shard_args(official_files, other, 1, 3, "--cfg", "2.0")) == 0
    assert main(["merge-shards", "--shards", str(s0), str(other), *out]) == 2
    assert "settings_sha256 differs" in capsys.readouterr().err
    # resuming into a folder of chunks drawn with other settings is refused, naming the chunk
    assert main(shard_args(official_files, tmp_path / "d.json", 0, 3, "--cfg", "3.0",
                           "--work", str(tmp_path / "a.json.chunks"))) == 2
    assert "other sampler settings" in capsys.readouterr().err
    assert not (tmp_path / "b.npz").exists()
    args = shard_args(official_files, tmp_path / "e.json", 0, 3)
    args.remove("method=cfg")
    args.remove("--tag")  # the first --tag (method) is gone; model=B stays
    assert main(args) == 2
    assert "--tag method=...: required" in capsys.readouterr().err
    args = shard_args(official_files, tmp_path / "e.json", 0, 3, "--cfg", "1.0")  # method=cfg at s = 1
    assert main(args) == 2
    assert "method cfg is sampled with CFG" in capsys.readouterr().err


def test_plan_ranges_labels_and_image_seeds():
    plans = [ShardPlan(num=50, num_classes=5, num_shards=4, shard=k, chunk_size=4, seed=1) for k in range(4)]
    ranges = [p.shard_range() for p in plans]
    assert ranges[0][0] == 0 and ranges[-1][1] == 50
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert np.bincount(plans[0].labels()).tolist() == [10] * 5
    assert plans[1].chunks()[0] == (ranges[1][0], ranges[1][0] + 4) and plans[1].chunks()[-1][1] == ranges[1][1]
    assert image_seed(1, 3) == image_seed(1, 3) != image_seed(1, 4) != image_seed(2, 4)
    with pytest.raises(ReproError, match="--shard"):
        ShardPlan(num=10, num_classes=2, num_shards=2, shard=2, chunk_size=1, seed=0)


def test_run_shard_checks_what_the_sampler_returns(tmp_path):
    plan = ShardPlan(num=4, num_classes=2, num_shards=1, shard=0, chunk_size=2, seed=0)
    with pytest.raises(ReproError, match="expected uint8"):
        run_shard(plan, tmp_path, lambda i, y: np.zeros((len(i), 4, 4, 3), np.float32), {}, tmp_path / "m.json",
                  progress=lambda m: None)


def test_adm_batch_writer_and_reader(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 5, 4, 3), dtype=np.uint8)
    path = tmp_path / "b.npz"
    write_adm_batch(path, images.shape, [images[:3], images[3:]], np.arange(7))
    with np.load(path) as z:
        assert np.array_equal(z["arr_0"], images) and np.array_equal(z["arr_1"], np.arange(7))
    assert batch_info(path) == ((7, 5, 4, 3), 7)
    assert np.array_equal(np.concatenate(list(iter_images(path, batch=2))), images)
    assert np.array_equal(read_labels(path), np.arange(7))
    with pytest.raises(ReproError, match="6 images written, 7 announced"):
        write_adm_batch(tmp_path / "c.npz", images.shape, [images[:6]], np.arange(7))
    assert not (tmp_path / "c.npz").exists()
    np.savez(tmp_path / "f.npz", arr_0=images.astype(np.float32))
    with pytest.raises(ReproError, match=r"f\.npz: key 'arr_0' must be uint8"):
        batch_info(tmp_path / "f.npz")


@pytest.mark.slow  # one inductor compile of the tiny GPT's step
def test_compiled_shard_draws_the_eager_images(official_files, tmp_path):
    eager, compiled = tmp_path / "eager.json", tmp_path / "compiled.json"
    assert main(shard_args(official_files, eager, 0, 5)) == 0
    assert main(shard_args(official_files, compiled, 0, 5, "--compile")) == 0
    settings = json.loads(compiled.read_text())["settings"]
    assert settings["compile"] is True and any("torch.compile over a static cache" in d
                                               for d in settings["differs_from_official"])
    for a, b in zip(sorted((tmp_path / "eager.json.chunks").glob("chunk_*.npz")),
                    sorted((tmp_path / "compiled.json.chunks").glob("chunk_*.npz")), strict=True):
        with np.load(a) as za, np.load(b) as zb:
            assert np.array_equal(za["images"], zb["images"])
