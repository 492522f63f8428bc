"""benchmarks/var_vs_official.py: a missing or wrong --official-root is a ReproError naming it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from guidance_repro.errors import ReproError

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "var_vs_official.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_var_vs_official", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("layout", [[], ["models/var.py"], ["models/var.py", "models/vqvae.py"]])
def test_official_root_without_the_official_files_names_the_path(tmp_path, layout):
    for rel in layout:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    with pytest.raises(ReproError, match=f"--official-root: {tmp_path}.*not a clone"):
        _bench().import_official(tmp_path)


def test_official_root_whose_import_fails_names_the_path(tmp_path):
    for rel in ("models/__init__.py", "models/var.py", "models/vqvae.py", "dist.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("raise ImportError('no such module: flash')\n" if rel == "models/var.py" else "")
    with pytest.raises(ReproError, match=f"--official-root: importing models.var from {tmp_path} failed"):
        _bench().import_official(tmp_path)


def test_cpu_model_reads_the_name_and_the_vector_flags(tmp_path, monkeypatch):
    from guidance_repro.sampling import bench_script

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu sse2 avx2 avx512f amx_tile\n"
                    "processor\t: 1\nmodel name\t: Test CPU 9000\nflags\t\t: fpu\n")
    real_path = bench_script.Path
    monkeypatch.setattr(bench_script, "Path", lambda p: info if p == "/proc/cpuinfo" else real_path(p))
    assert bench_script.cpu_model() == {"cpu_model": "Test CPU 9000", "cpu_isa": ["amx_tile", "avx2", "avx512f"]}
    monkeypatch.setattr(bench_script, "Path", lambda p: tmp_path / "missing")
    assert bench_script.cpu_model() == {"cpu_model": "unknown", "cpu_isa": []}
