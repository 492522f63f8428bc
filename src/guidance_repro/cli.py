"""Command-line entry point: ``python -m guidance_repro <command> ...`` (or ``guidance-repro``).

Each stage of the DAG is one command with explicit input and output paths. Commands live beside
the code they drive; every module listed in ``COMMAND_MODULES`` has a ``register(subparsers)``
function that adds its commands (each sets ``func`` through ``set_defaults``).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from guidance_repro.allocator import tune_malloc
from guidance_repro.errors import ReproError

COMMAND_MODULES = [
    "guidance_repro.data.commands",
    "guidance_repro.data.export_commands",
    "guidance_repro.metrics.commands",
    "guidance_repro.metrics.imagereward_commands",
    "guidance_repro.metrics.mjhq_commands",
    "guidance_repro.metrics.toy_commands",
    "guidance_repro.train.commands",
    "guidance_repro.toy2d.commands",
    "guidance_repro.edm.commands",
    "guidance_repro.var.commands",
    "guidance_repro.star.commands",
    "guidance_repro.star.mjhq_commands",
    "guidance_repro.llamagen.commands",
    "guidance_repro.llamagen.paper_commands",
    "guidance_repro.llamagen.cca_official_commands",
    "guidance_repro.var.cca_official_commands",
    "guidance_repro.var.paper_commands",
    "guidance_repro.llamagen.data_commands",
    "guidance_repro.sampling.shard_commands",
    "guidance_repro.metrics.adm_commands",
    "guidance_repro.report.cca_commands",
    "guidance_repro.report.paper_table_commands",
    "guidance_repro.report.star_commands",
    "guidance_repro.report.run_record",
    "guidance_repro.report.curves",
    "guidance_repro.report.commands",
    "guidance_repro.report.regression_commands",
    "guidance_repro.golden.commands",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guidance-repro", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_malloc()
    try:
        args.func(args)
    except ReproError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
