"""Benchmark our next-token sampler against the official LlamaGen ``generate()`` on the same weights.

The official GPT and sampler are imported at run time from a local clone of
FoundationVision/LlamaGen (``--official-root``: its ``autoregressive/models/gpt.py`` and
``generate.py``); nothing official is in this repository. The official GPT (LlamaGen-B by default)
is built with random weights (its zeroed output layer drawn too, so that the logits are not
uniform); its state dict goes through our official-layout loader (``load_official_gpt``: the key
names are the official ones) into our GPT. Both sample the same labels guidance-free and with CFG,
eager, top-k/top-p off, temperature 1; the passes are taken in turns (A B C D A B C D ...), best of
``--repeats``. Before timing, the two models' logits are compared over a few teacher-forced
decoding steps (the same weights must give the same numbers).

    python benchmarks/ar_vs_official.py --official-root ~/src/LlamaGen [--size B] [--image-size 384] \
        [--batch 4] [--clock cpu] [--out docs/benchmarks/ar_vs_official.json]

Goal (issue 20): ours >= 1.2x the official's images/s, guidance-free and CFG (CPU, one thread).
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
from guidance_repro.llamagen.official import PAPER_SIZES, load_official_gpt
from guidance_repro.official_clone import import_from_clone
from guidance_repro.sampling import ar
from guidance_repro.sampling.bench_script import CLOCKS, add_timing_args, interleaved_times

GOAL = 1.2
REPO = "FoundationVision/LlamaGen"


def official_gpt(gpt_module, size: str, grid: int, seed: int):
    """The official c2i GPT as its sampler builds it (``sample_c2i.py``), with random weights."""
    torch.manual_seed(seed)
    model = gpt_module.GPT_models[f"GPT-{size}"](vocab_size=16384, block_size=grid * grid, num_classes=1000,
                                                 cls_token_num=1, model_type="c2i")
    torch.nn.init.normal_(model.output.weight, std=0.02)  # the official init zeroes it
    return model.eval()


@torch.no_grad()
def max_logit_difference(official, ours, labels: torch.Tensor, steps: int, seed: int) -> float:
    """Largest |official - ours| logit over ``steps`` decoding steps on the same random tokens."""
    tokens = torch.randint(0, ours.cfg.vocab_size, (len(labels), steps), generator=torch.Generator().manual_seed(seed))
    official.setup_caches(max_batch_size=len(labels), max_seq_length=steps, dtype=torch.float32)
    ours.setup_cache(len(labels))
    worst = 0.0
    for t in range(steps):
        pos = torch.tensor([t])
        if t == 0:
            theirs, _ = official(None, labels, input_pos=pos)
        else:
            theirs, _ = official(tokens[:, t - 1:t], None, input_pos=pos)
        mine = ours.step(labels, tokens[:, t - 1] if t else None, t)
        worst = max(worst, (theirs[:, -1] - mine).abs().max().item())
    ours.clear_cache()
    return worst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official-root", required=True, help=f"a local clone of {REPO}")
    ap.add_argument("--size", default="B", choices=PAPER_SIZES)
    ap.add_argument("--image-size", type=int, default=384, help="384 -> 24x24 tokens, 256 -> 16x16")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--cfg-scale", type=float, default=2.0)
    ap.add_argument("--check-steps", type=int, default=8, help="decoding steps whose logits are compared")
    ap.add_argument("--out", default="results/benchmarks/ar_vs_official.json")
    add_timing_args(ap, repeats=3)
    args = ap.parse_args(argv)
    gpt_module, generate_module = import_from_clone(
        args.official_root, ["autoregressive.models.gpt", "autoregressive.models.generate"], "--official-root", REPO)
    torch.set_num_threads(args.threads)
    grid = args.image_size // 16
    official = official_gpt(gpt_module, args.size, grid, args.seed)
    ours = load_official_gpt(size=args.size, image_size=args.image_size, state_dict={"model": official.state_dict()})
    n = ours.cfg.seq_len
    labels = torch.from_numpy(ar.class_balanced_labels(args.batch, ours.cfg.num_classes, args.seed))
    logit_diff = max_logit_difference(official, ours, labels, args.check_steps, args.seed)

    sampler = ar.SamplerConfig(batch_size=args.batch)
    guidances = {"free": Guidance("none"), "cfg": Guidance("cfg", args.cfg_scale)}
    scales = {"free": 1.0, "cfg": args.cfg_scale}  # the official sampler: cfg_scale > 1 doubles the batch

    def theirs(name):
        return lambda r: generate_module.generate(official, labels, n, cfg_scale=scales[name], temperature=1.0,
                                                  top_k=0, top_p=1.0, sample_logits=True)

    def mine(name):
        return lambda r: ar.sample_batch(ours, labels, guidances[name], sampler,
                                         torch.Generator().manual_seed(args.seed + r))

    runs = {f"{side}_{name}": make(name) for name in guidances
            for side, make in (("official", theirs), ("ours", mine))}
    shapes = {}
    for key, run in runs.items():  # warm-up pass each (allocator, first touch of the weights)
        torch.manual_seed(args.seed)
        shapes[key] = tuple(run(0).shape)
    times = interleaved_times(runs, args.repeats, clock=CLOCKS[args.clock])
    best = {key: min(t) for key, t in times.items()}
    speed = {name: best[f"official_{name}"] / best[f"ours_{name}"] for name in guidances}
    result = {
        "benchmark": "ar_vs_official",
        "official": {"repo": REPO, "root": str(Path(args.official_root).expanduser().resolve()),
                     "sampler": "autoregressive/models/generate.py generate() (eager: no torch.compile), "
                                "static KV cache padded to a multiple of 8"},
        "ours": "sampling/ar.py sample_batch (eager, growing KV cache)",
        "model": {"size": args.size, "image_size": args.image_size, "tokens": n,
                  "params": sum(p.numel() for p in ours.parameters()), "weights": "random (official init, output layer drawn)"},
        "max_abs_logit_difference": logit_diff, "logit_check_steps": args.check_steps,
        "batch": args.batch, "cfg_scale": args.cfg_scale, "sampling": "temperature 1, top-k/top-p off",
        "clock": args.clock, "repeats": args.repeats,
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "device": "cpu", "load_average_1min": os.getloadavg()[0]},
        "passes": {key: {"seconds_best": best[key], "seconds_all": times[key], "images_per_s": args.batch / best[key],
                         "output_shape": shapes[key]} for key in runs},
        "ours_over_official_speed": speed,
        "goal_ours_over_official": GOAL,
        "goals_met": {name: s >= GOAL for name, s in speed.items()},
    }
    write_json(Path(args.out), result)
    print(json.dumps({k: result[k] for k in ("max_abs_logit_difference", "ours_over_official_speed", "goals_met")},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
