"""Benchmark the 2-D toy's training step (CPU time per step, per batch size and model) and the
exact-score evaluation (torch vs the float64 numpy reference), and save the figures as JSON.

    python benchmarks/autoguidance_toy.py [--out results/benchmarks/autoguidance_toy.json]

Used to size the toy tier: the paper trains every toy model with batch 4096; the toy tier uses
1024 (config/config.yaml). Each figure is the median (and minimum) CPU time of single calls, which
is robust to other processes sharing the cores; steps/s = 1000 / median ms.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from guidance_repro.data import tree_gaussians as tg
from guidance_repro.io import write_json
from guidance_repro.toy2d.exact import TorchTree
from guidance_repro.toy2d.tasks import ToyDensityTask


def cpu_ms(fn, repeats: int) -> tuple[float, float]:
    """(median, minimum) CPU milliseconds of one call of ``fn`` over ``repeats`` calls."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append((time.process_time() - t0) * 1000)
    return float(np.median(times)), float(np.min(times))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="results/benchmarks/autoguidance_toy.json")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for classes, width in (("A", 64), ("A", 32), ("AB", 32)):
        task = ToyDensityTask({"width": width, "classes": classes}, {})
        model = task.build_model()
        opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.9, 0.99))
        for batch in (1024, 4096):
            y = task.get_batch(np.arange(batch))

            def step():
                loss = task.loss(model, y, 0)
                loss.backward()
                opt.step()
                opt.zero_grad()

            ms, ms_min = cpu_ms(step, args.repeats)
            rows.append({"classes": classes, "width": width, "batch": batch, "step_cpu_ms": ms,
                         "step_cpu_ms_min": ms_min, "steps_per_s": 1000 / ms})
            print(f"train step classes={classes} width={width} batch={batch}: {ms:.1f} ms CPU "
                  f"(min {ms_min:.1f}; {1000 / ms:.0f} steps/s)")
    x = np.random.default_rng(0).normal(scale=0.5, size=(4096, 2))
    s = np.full(4096, 0.05)
    ms_np, _ = cpu_ms(lambda: tg.score(x, s, cls=0), 1)
    tree = TorchTree(0)
    xt, st = torch.from_numpy(x).float(), torch.from_numpy(s).float()
    ms_t, ms_t_min = cpu_ms(lambda: tree.score(xt, st), args.repeats)
    print(f"exact score, 4096 points, class A: numpy float64 {ms_np:.0f} ms, torch float32 {ms_t:.1f} ms CPU"
          f" (min {ms_t_min:.1f})")
    write_json(args.out, {"train_steps": rows,
                          "exact_score_4096": {"numpy_ms": ms_np, "torch_ms": ms_t, "torch_ms_min": ms_t_min},
                          "threads": args.threads, "torch": torch.__version__,
                          "machine": platform.machine(), "processor": platform.processor()})


if __name__ == "__main__":
    main()
