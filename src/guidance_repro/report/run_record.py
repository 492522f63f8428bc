"""The run record: config, package versions, git commit and hardware, left beside the results."""

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

from guidance_repro.io import write_json

PACKAGES = ("torch", "torchvision", "numpy", "scipy", "clean-fid", "open-clip-torch", "snakemake",
            "dvc", "guidance-repro")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def hardware() -> dict:
    info = {"machine": platform.machine(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "platform": platform.platform()}
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


def record(config: dict) -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    status = _git("status", "--porcelain")
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "command": sys.argv,  # under Snakemake's onsuccess: the snakemake command line of the run
        "python": sys.version.split()[0],
        "packages": versions,
        "hardware": hardware(),
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
