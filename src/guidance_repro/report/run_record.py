"""The run record: config, package versions, git commit and hardware, left beside the results.

Float results of training differ between CPUs (torch picks its kernels by the instruction sets it
finds) and between thread counts (the order of a reduction), so the record names both:
``hardware.cpu`` = {model, capability (``torch.backends.cpu.get_cpu_capability()``), flags: the
instruction-set flags torch's kernels use, true/false, null where unknown} and ``threads`` =
{rules: rule -> the threads Snakemake gave its jobs in this run (null outside a Snakemake run),
torch_intra_op: the intra-op thread count of the process that wrote the record}.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from guidance_repro.io import write_json

PACKAGES = ("torch", "torchvision", "numpy", "scipy", "clean-fid", "open-clip-torch", "snakemake",
            "dvc", "guidance-repro")


def _git(*args: str, cwd: str | os.PathLike | None = None) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


# /proc/cpuinfo flags that select torch CPU kernels (vectorised ops, bf16/int8 matmuls).
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")


def _read_cpuinfo() -> str | None:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return None


def cpu(cpuinfo: str | None = None) -> dict:
    """{model, capability, flags} of this machine's CPU; ``cpuinfo`` is /proc/cpuinfo's text (read
    when not given). Without a "model name" line the platform's processor name is used; without a
    "flags" line (not Linux, or not x86) every flag is None: unknown, not absent."""
    text = _read_cpuinfo() if cpuinfo is None else cpuinfo
    fields: dict[str, str] = {}
    for line in (text or "").splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() not in fields:  # the first processor's line; all are alike
            fields[name.strip()] = value.strip()
    present = set(fields["flags"].split()) if "flags" in fields else None
    try:
        import torch

        capability = torch.backends.cpu.get_cpu_capability()
    except (ImportError, AttributeError, RuntimeError):
        capability = None
    return {"model": fields.get("model name") or platform.processor() or platform.machine() or None,
            "capability": capability,
            "flags": {f: None if present is None else f in present for f in CPU_FLAGS}}


def threads(rule_threads: dict[str, int | list[int]] | None) -> dict:
    try:
        import torch

        intra_op = torch.get_num_threads()
    except ImportError:
        intra_op = None
    return {"rules": rule_threads, "torch_intra_op": intra_op}


def threads_by_rule(jobs: Iterable[tuple[str, int]]) -> dict[str, int | list[int]]:
    """rule -> its jobs' thread count, from (rule, threads) pairs; a list where jobs differ."""
    seen: dict[str, set[int]] = {}
    for rule, n in jobs:
        seen.setdefault(rule, set()).add(int(n))
    return {rule: (next(iter(ns)) if len(ns) == 1 else sorted(ns)) for rule, ns in sorted(seen.items())}


def hardware() -> dict:
    info = {"machine": platform.machine(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "cpu": cpu()}
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages * size / 2**30, 1)
    except (ValueError, OSError):
        pass
    try:
        import torch

        info["cuda"] = torch.cuda.is_available()
        if info["cuda"]:
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        info["cuda"] = None
    return info


def record(config: dict, rule_threads: dict[str, int | list[int]] | None = None,
           source_dir: str | os.PathLike | None = None) -> dict:
    """``source_dir``: the checkout whose commit ran (the Snakefile's folder; a run with
    ``--directory`` elsewhere would otherwise ask git about the results folder)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    status = _git("status", "--porcelain", cwd=source_dir)
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "HEAD", cwd=source_dir),
        "git_dirty": None if status is None else bool(status),
        "command": sys.argv,  # under Snakemake's onsuccess: the snakemake command line of the run
        "python": sys.version.split()[0],
        "packages": versions,
        "hardware": hardware(),
        "threads": threads(rule_threads),
        "config": config,
    }


def _run_record(args: argparse.Namespace) -> None:
    config = json.loads(Path(args.config_json).read_text()) if args.config_json else {}
    write_json(args.out, record(config))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run-record", help="write config, versions, git commit and hardware to JSON")
    p.add_argument("--config-json", help="the run's resolved config (JSON file)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_run_record)
