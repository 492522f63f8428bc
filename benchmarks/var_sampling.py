"""Benchmark the next-scale sampler (sampling/next_scale.py) and save the figures as JSON.

1. Guidance-free vs CFG: seconds per image for the same VAR model and batch. CFG runs the
   [cond; uncond] doubled batch, so CCA's guidance-free sampling should cost about half.
2. KV cache vs per-scale recompute of the prefix (the justification for either default).

    python benchmarks/var_sampling.py [--model d6.pt --tokenizer tok.pt] [--out results/benchmarks/var_sampling.json]

Without --model/--tokenizer the weights are random (speed does not depend on them) at the toy
sizes (28x28, patch_nums 1,2,3,4,5,7, depth 6, width 192).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import numpy as np
import torch

from guidance_repro.guidance.cfg import Guidance
from guidance_repro.io import write_json
from guidance_repro.sampling import next_scale as ns
from guidance_repro.sampling.bench_script import interleaved_times
from guidance_repro.var.model import VAR, VARConfig, num_params
from guidance_repro.var.msvq import MSVQConfig, MSVQModel, load_msvq
from guidance_repro.var.tasks import load_var


def timed(model, tok, n: int, batch: int, setups: dict[str, tuple[Guidance, bool]], repeats: int) -> dict:
    """Each (guidance, use_cache) setup's best of ``repeats`` passes, the passes taken in turns."""
    labels = ns.class_balanced_labels(n, model.cfg.num_classes, 0)
    configs = {name: ns.SamplerConfig(batch_size=batch, use_cache=cache) for name, (_, cache) in setups.items()}
    for name, (g, _) in setups.items():  # warm-up
        ns.sample_images(model, tok, labels[:min(n, batch)], g, configs[name], 0, progress=False)
    times = interleaved_times({name: (lambda r, g=g, c=configs[name]: ns.sample_images(
        model, tok, labels, g, c, r, progress=False)) for name, (g, _) in setups.items()}, repeats)
    return {name: {"images": n, "batch": batch, "use_cache": setups[name][1], "guidance": setups[name][0].method,
                   "seconds_best": min(t), "seconds_all": t, "seconds_per_image": min(t) / n}
            for name, t in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="")
    ap.add_argument("--tokenizer", default="")
    ap.add_argument("--num", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default="results/benchmarks/var_sampling.json")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.model:
        model, tok = load_var(args.model), load_msvq(args.tokenizer)
    else:
        tok = MSVQModel(MSVQConfig()).eval()
        model = VAR(VARConfig(depth=6, width_per_depth=32, head_dim=32)).eval()
    runs = timed(model, tok, args.num, args.batch,
                 {"guidance_free_cache": (Guidance("none"), True), "cfg_cache": (Guidance("cfg", 1.0), True),
                  "guidance_free_recompute": (Guidance("none"), False),
                  "cfg_recompute": (Guidance("cfg", 1.0), False)}, args.repeats)
    for name, run in runs.items():
        print(f"{name:26s} {run['seconds_per_image'] * 1e3:8.3f} ms/image", flush=True)
    out = {
        "family": "var", "model": f"d{model.cfg.depth}", "params": num_params(model),
        "seq_len": model.cfg.seq_len, "patch_nums": list(model.cfg.patch_nums), "runs": runs,
        "cfg_over_guidance_free_time": runs["cfg_cache"]["seconds_best"] / runs["guidance_free_cache"]["seconds_best"],
        "recompute_over_cache_time": runs["guidance_free_recompute"]["seconds_best"] / runs["guidance_free_cache"]["seconds_best"],
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
        "torch": torch.__version__, "python": sys.version.split()[0], "platform": platform.platform(),
        "weights": "trained" if args.model else "random",
    }
    print(json.dumps({k: out[k] for k in ("cfg_over_guidance_free_time", "recompute_over_cache_time")}))
    write_json(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
