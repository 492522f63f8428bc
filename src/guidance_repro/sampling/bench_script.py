"""Run a sampling benchmark script of ``benchmarks/`` from a CLI command of the package.

The benchmarks are scripts (run by hand with their own ``--help``), not package modules; the DAG
still calls one package CLI per rule, so ``ar-benchmark`` and ``var-benchmark`` load the script by
path and run its ``main(argv)`` into a temporary JSON; the command adds the keys the CCA claims
read (``family``, ``model``, ``cfg_over_guidance_free_time``) and writes the result atomically.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path
from typing import Callable

from guidance_repro.errors import ReproError


# The clocks a benchmark may time with: this process's CPU seconds (little moved by other tenants
# of a shared machine at one thread) or wall time.
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def add_timing_args(p: argparse.ArgumentParser, repeats: int) -> None:
    """Options of the benchmark scripts that time passes in turns (interleaved_times)."""
    p.add_argument("--repeats", type=int, default=repeats)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                   help="cpu: this process's CPU seconds (little moved by other tenants at one thread); wall")


def add_common_args(p: argparse.ArgumentParser, script: str) -> None:
    """Options every sampling-benchmark command shares."""
    p.add_argument("--script", required=True, help=f"path of {script}")
    p.add_argument("--model", default="", help="a trained model file (default: random weights)")
    p.add_argument("--model-name", default="", help="model name recorded for the claims")
    p.add_argument("--images", type=int, default=500)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", required=True)


def run_script(script: str | Path, argv: list[str], out: str | Path) -> dict:
    """The JSON written by ``script``'s ``main(argv + ['--out', <out>.raw.json])``."""
    script = Path(script)
    if not script.is_file():
        raise ReproError(f"--script: {script} not found (a benchmarks/*.py of the repository)")
    spec = importlib.util.spec_from_file_location(f"benchmark_{script.stem}", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    raw = Path(f"{out}.raw.json")
    try:
        if mod.main([*argv, "--out", str(raw)]) != 0:
            raise ReproError(f"{script}: the benchmark failed")
        result = json.loads(raw.read_text())
    finally:
        raw.unlink(missing_ok=True)
    return result


def interleaved_times(runs: dict[str, Callable[[int], object]], repeats: int,
                      clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Seconds of ``repeats`` calls ``fn(r)`` of every run, taken round-robin (A B A B ...).

    Timed one run after the other, a slow phase of a shared machine (another tenant, a job on the
    other core) lands on whichever run it coincides with, and a time ratio moved from 1.7 to 2.0
    between two runs of the same benchmark; taken in turns, each phase hits every run alike.
    ``clock``: wall time by default; ``time.process_time`` (this process's CPU seconds) is far less
    moved by other tenants when torch runs one thread.
    """
    if repeats < 1:
        raise ReproError(f"--repeats: must be at least 1, got {repeats}")
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(repeats):
        for name, fn in runs.items():
            t0 = clock()
            fn(r)
            times[name].append(clock() - t0)
    return times


def cpu_model() -> dict:
    """The CPU's model name and its wide-vector / matrix ISA flags (from /proc/cpuinfo on Linux).

    Recorded beside CPU timings because the ratios depend on them: MKL's sgemm and oneDNN pick
    different kernels on AMD and Intel, with and without AVX512 / AMX."""
    name, flags = "unknown", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name == "unknown":
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = sorted(f for f in value.split() if f.startswith(("avx512", "amx", "avx2")))
    except OSError:  # not Linux: the name stays unknown
        pass
    return {"cpu_model": name, "cpu_isa": flags}
