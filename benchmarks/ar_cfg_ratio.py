"""Benchmark the CFG / guidance-free sampling time over batch sizes at a LlamaGen shape; save JSON.

CFG runs the doubled [cond; uncond] batch, so its step costs twice the guidance-free step only
where the step is compute-bound; at small batches streaming the weights dominates each token step
and the ratio stays well under 2. This script measures the ratio at each ``--batches`` size
(random weights of ``--size``, default LlamaGen-B, on the CPU, ``--threads`` threads) and reports
the first batch at which it reaches ``--goal`` (1.9: CCA's "half the sampling cost").

To bound the time on a CPU only the first ``--grid``² tokens are drawn (default 4x4 = 16 of the
576); each step's attention then spans at most 17 keys instead of up to 577, which at B shape is a
small share of the step (2·577·768 of ~7M multiply-adds per layer and token at the last position),
so the ratio here slightly understates the full-length one.

    python benchmarks/ar_cfg_ratio.py [--batches 1 4 16 64] [--out results/benchmarks/ar_cfg_ratio.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch

from guidance_repro.guidance.cfg import Guidance
from guidance_repro.io import write_json
from guidance_repro.llamagen.model import GPT, GPTConfig, num_params
from guidance_repro.sampling import ar
from guidance_repro.sampling.bench_script import CLOCKS, add_timing_args, interleaved_times



def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/benchmarks/ar_cfg_ratio.json")
    ap.add_argument("--size", default="B")
    ap.add_argument("--grid", type=int, default=4, help="token grid side actually drawn (the size's: 24)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--cfg-scale", type=float, default=1.75)
    ap.add_argument("--goal", type=float, default=1.9)
    add_timing_args(ap, repeats=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = GPT(GPTConfig.from_dict({"size": args.size, "grid": args.grid}))
    torch.nn.init.normal_(model.output.weight, std=0.02)  # random logits (the init zeroes the layer)
    model.eval()
    guidances = {"free": Guidance("none"), "cfg": Guidance("cfg", args.cfg_scale)}
    rows = []
    for batch in args.batches:
        labels = torch.from_numpy(ar.class_balanced_labels(batch, model.cfg.num_classes, args.seed))
        cfg = ar.SamplerConfig(batch_size=batch)

        def run(g, r):
            return ar.sample_batch(model, labels, g, cfg, torch.Generator().manual_seed(args.seed + r))

        for g in guidances.values():  # warm-up pass each
            run(g, 0)
        times = interleaved_times({name: (lambda r, g=g: run(g, r)) for name, g in guidances.items()},
                                  args.repeats, clock=CLOCKS[args.clock])
        free, guided = min(times["free"]), min(times["cfg"])
        n_tok = batch * model.cfg.seq_len
        rows.append({"batch": batch, "free_seconds_best": free, "cfg_seconds_best": guided,
                     "free_seconds_all": times["free"], "cfg_seconds_all": times["cfg"],
                     "free_ms_per_token_step": 1e3 * free / model.cfg.seq_len,
                     "free_tokens_per_s": n_tok / free, "cfg_over_free_time": guided / free})
        print(f"batch {batch:4d}: guidance-free {free:.3f} s, CFG {guided:.3f} s, ratio {guided / free:.2f}",
              flush=True)
    reached = next((r["batch"] for r in rows if r["cfg_over_free_time"] >= args.goal), None)
    result = {
        "benchmark": "ar_cfg_ratio",
        "model": {"source": f"random {args.size}", "params": num_params(model), "config": model.cfg.to_dict(),
                  "tokens_drawn": model.cfg.seq_len, "tokens_at_paper_shape": 576},
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "device": "cpu", "load_average_1min": os.getloadavg()[0],
                    "note": "shared CPU (2 cores, other workers running): figures move with their load"},
        "clock": args.clock,
        "cfg_scale": args.cfg_scale, "goal_cfg_over_free_time": args.goal, "rows": rows,
        "first_batch_reaching_goal": reached,
    }
    write_json(Path(args.out), result)
    print(json.dumps({"first_batch_reaching_goal": reached,
                      "ratios": {r["batch"]: round(r["cfg_over_free_time"], 3) for r in rows}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
