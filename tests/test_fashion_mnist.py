"""Fashion-MNIST: checksum-verified preparation and its error paths."""

from __future__ import annotations

import gzip
import shutil
import struct
import subprocess

import numpy as np
import pytest

from conftest import PYTHON
from guidance_repro.data import fashion_mnist
from guidance_repro.errors import ReproError


def _idx(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def test_parse_idx_roundtrip():
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(fashion_mnist.parse_idx(_idx(arr), "x"), arr)


@pytest.mark.parametrize("raw, what", [
    (b"\x00\x00\x09\x01" + struct.pack(">I", 1) + b"\x00", "bad magic"),
    (bytes([0, 0, 8, 3]) + struct.pack(">3I", 10, 28, 28) + b"\x00" * 100, "truncated"),
    (bytes([0, 0, 8, 2]) + b"\x00", "truncated IDX header"),
])
def test_parse_idx_rejects_bad_files(raw, what):
    with pytest.raises(ReproError, match=what):
        fashion_mnist.parse_idx(raw, "some/file")


def test_prepare_real_files(fmnist_npz):
    data = fashion_mnist.load(fmnist_npz)
    assert data.train_images.shape == (60000, 28, 28) and data.train_images.dtype == np.uint8
    assert data.test_images.shape == (10000, 28, 28)
    # Fashion-MNIST is balanced: 6000 train and 1000 test images per class.
    assert np.bincount(data.train_labels).tolist() == [6000] * 10
    assert np.bincount(data.test_labels).tolist() == [1000] * 10


def _copy_source(src, dst):
    dst.mkdir()
    for spec in fashion_mnist.FILES.values():
        shutil.copy(src / spec.name, dst / spec.name)
    return dst


def test_truncated_gzip_is_a_clear_error(fmnist_dir, tmp_path):
    src = _copy_source(fmnist_dir, tmp_path / "src")
    victim = src / fashion_mnist.FILES["train_labels"].name
    victim.write_bytes(victim.read_bytes()[:1000])
    out = tmp_path / "out.npz"
    with pytest.raises(ReproError, match="train-labels-idx1-ubyte.gz: corrupt or truncated"):
        fashion_mnist.prepare(src, out)
    assert not out.exists()
    assert not list(tmp_path.glob(".out.npz*")), "a temporary file was left behind"


def test_wrong_content_fails_the_checksum(fmnist_dir, tmp_path):
    src = _copy_source(fmnist_dir, tmp_path / "src")
    victim = src / fashion_mnist.FILES["test_labels"].name
    labels = np.frombuffer(gzip.decompress(victim.read_bytes()), np.uint8, offset=8).copy()
    labels[0] = (labels[0] + 1) % 10  # one flipped label: same shape, different content
    victim.write_bytes(gzip.compress(_idx(labels)))
    with pytest.raises(ReproError, match="t10k-labels-idx1-ubyte.gz: checksum mismatch"):
        fashion_mnist.prepare(src, tmp_path / "out.npz")


def test_cli_reports_one_line_error_and_writes_nothing(tmp_path):
    out = tmp_path / "fm.npz"
    proc = subprocess.run([PYTHON, "-m", "guidance_repro", "prepare-fashion-mnist",
                           "--source", str(tmp_path / "missing"), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: data.fashion_mnist.dir:"), proc.stderr
    assert not out.exists()


def test_load_rejects_other_npz(tmp_path):
    bogus = tmp_path / "bogus.npz"
    np.savez(bogus, images=np.zeros(3))
    with pytest.raises(ReproError, match="not a Fashion-MNIST artifact"):
        fashion_mnist.load(bogus)
