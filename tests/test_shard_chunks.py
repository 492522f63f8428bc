"""The chunk/shard bookkeeping shared by the dataset and sampling shards (shard_chunks.py)."""

import numpy as np
import pytest

from guidance_repro.errors import ReproError
from guidance_repro.shard_chunks import check_coverage, chunk_bounds, fill_chunks, read_chunk, split_range


def test_ranges_and_chunks_tile_the_items():
    parts = [split_range(10, k, 3) for k in range(3)]
    assert parts == [(0, 3), (3, 6), (6, 10)]
    assert chunk_bounds(3, 10, 3) == [(3, 6), (6, 9), (9, 10)]
    with pytest.raises(ReproError, match="--chunk-size"):
        chunk_bounds(0, 4, 0)


def test_fill_chunks_resumes_keeps_chunks_on_disk_and_clears_only_its_own_temporaries(tmp_path):
    chunks = [(a, b, tmp_path / f"c{a}.npz") for a, b in chunk_bounds(0, 5, 2)]
    made = []

    def make(a, b):
        made.append(a)
        return {"index": np.arange(a, b)}

    assert fill_chunks(chunks, make, max_new=1, log=lambda s: None) is False
    assert made == [0] and chunks[0][2].is_file() and not chunks[1][2].exists()
    mine, theirs = tmp_path / ".c2.npz.x.tmp.npz", tmp_path / ".other.npz.x.tmp.npz"
    mine.write_bytes(b"killed"), theirs.write_bytes(b"running")
    seen = []
    assert fill_chunks(chunks, make, on_disk=lambda a, b, p: seen.append(a), log=lambda s: None) is True
    assert made == [0, 2, 4] and seen == [0]
    assert not mine.exists() and theirs.exists()
    assert read_chunk(chunks[2][2])["index"].tolist() == [4]


def test_read_chunk_names_an_unreadable_file(tmp_path):
    bad = tmp_path / "c.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ReproError, match=r"c\.npz: unreadable chunk .*delete it to redraw"):
        read_chunk(bad, redo="redraw")


@pytest.mark.parametrize("ranges, message", [
    ([(0, 4, "a"), (5, 8, "b")], "b: starts at 5, expected 4"),
    ([(0, 4, "a"), (3, 8, "b")], "b: starts at 3, expected 4"),
    ([(0, 4, "a")], r"cover \[0, 4\), the job has 8"),
])
def test_check_coverage_refuses_gaps_overlaps_and_short_covers(ranges, message):
    with pytest.raises(ReproError, match=message):
        check_coverage(ranges, 8)
    assert [r[2] for r in check_coverage([(4, 8, "b"), (0, 4, "a")], 8)] == ["a", "b"]
