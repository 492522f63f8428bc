"""Benchmark the compiled static-cache decode path against eager decoding on the CPU; save JSON.

Three ways to draw the same images with the next-token sampler (sampling/ar.py): the growing KV
cache (eager), the static cache padded to a multiple of 8 (eager), and the static cache with its
step under ``torch.compile`` (inductor on the CPU). The compile time (wall) is the compiled first
pass's extra time over the static eager one, reported apart; the timed passes are taken in turns (A B C A B C), best of
``--repeats``. Whether the three paths drew the same tokens is recorded, not asserted.

    python benchmarks/ar_compile.py [--size toy-M] [--batch 16] [--out results/benchmarks/ar_compile.json]

Weights are random (the speed does not depend on them). On a shared CPU the figures move with the
other tenants' load: the load average is recorded with them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from guidance_repro.guidance.cfg import Guidance
from guidance_repro.io import write_json
from guidance_repro.llamagen.model import GPT, GPTConfig, num_params
from guidance_repro.sampling import ar
from guidance_repro.sampling.bench_script import CLOCKS, add_timing_args, interleaved_times


MODES = {"growing_eager": dict(), "static_eager": dict(static_cache=True), "static_compiled": dict(compile=True)}


def random_gpt(size: str, grid: int, seed: int) -> GPT:
    """A GPT of the named size with random weights (the output layer too: the init zeroes it)."""
    torch.manual_seed(seed)
    overrides = {"grid": grid} if grid else {}
    model = GPT(GPTConfig.from_dict({"size": size, **overrides}))
    torch.nn.init.normal_(model.output.weight, std=0.02)
    return model.eval()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/benchmarks/ar_compile.json")
    ap.add_argument("--size", default="toy-M")
    ap.add_argument("--grid", type=int, default=0, help="token grid side (0 = the size's)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--cfg-scale", type=float, default=2.0, help="1 = guidance-free")
    add_timing_args(ap, repeats=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = random_gpt(args.size, args.grid, args.seed)
    guidance = Guidance("cfg", args.cfg_scale) if args.cfg_scale != 1.0 else Guidance("none")
    labels = torch.from_numpy(ar.class_balanced_labels(args.batch, model.cfg.num_classes, args.seed))
    configs = {name: ar.SamplerConfig(batch_size=args.batch, **kw) for name, kw in MODES.items()}

    def run(name, r):
        return ar.sample_batch(model, labels, guidance, configs[name], torch.Generator().manual_seed(args.seed + r))

    first, tokens = {}, {}
    for name in MODES:  # the first pass: warm-up, and for the compiled path the compile itself
        t0 = time.perf_counter()  # wall: inductor compiles its C++ in worker processes
        tokens[name] = run(name, 0)
        first[name] = time.perf_counter() - t0
    times = interleaved_times({name: (lambda r, n=name: run(n, r)) for name in MODES}, args.repeats,
                             clock=CLOCKS[args.clock])
    model.clear_cache()
    best = {name: min(t) for name, t in times.items()}
    n_tok = args.batch * model.cfg.seq_len
    result = {
        "benchmark": "ar_compile",
        "model": {"source": f"random {args.size}", "params": num_params(model), "config": model.cfg.to_dict()},
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "device": "cpu", "load_average_1min": os.getloadavg()[0],
                    "note": "shared CPU (2 cores, other workers running): figures move with their load"},
        "clock": args.clock,
        "batch": args.batch, "guidance": guidance.method, "cfg_scale": args.cfg_scale,
        "modes": {name: {"seconds_best": best[name], "seconds_all": times[name],
                         "first_pass_wall_seconds": first[name], "tokens_per_s": n_tok / best[name]}
                  for name in MODES},
        "compile_wall_seconds": first["static_compiled"] - first["static_eager"],
        "compiled_over_growing_eager_speed": best["growing_eager"] / best["static_compiled"],
        "compiled_over_static_eager_speed": best["static_eager"] / best["static_compiled"],
        "same_tokens": {name: bool(torch.equal(tokens[name], tokens["growing_eager"])) for name in MODES},
    }
    write_json(Path(args.out), result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("model", "machine")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
