"""Benchmark glibc's default malloc settings against the ones the CLI applies
(guidance_repro.allocator) on two workloads of the default tier, and save the figures as JSON.

    python benchmarks/allocator.py [--out results/benchmarks/allocator.json]

Workloads (random weights: only the tensor sizes matter): encoding Fashion-MNIST-sized images with
the LlamaGen-style VQ encoder at the batch sizes the code used before (1000) and uses now (256),
and training steps of the same tokenizer at batch 64. Each runs in a fresh one-thread process,
once with ``GUIDANCE_REPRO_MALLOC=default`` (glibc's defaults) and once tuned; the figures are wall,
user and system seconds of the work alone (imports excluded), best of ``--repeats`` processes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

from guidance_repro.io import write_json

WORKER = r"""
import json, resource, sys, time
import torch
from guidance_repro.allocator import tune_malloc
tuned = tune_malloc()
from guidance_repro.llamagen.tokenizer import VQModel
from guidance_repro.nn.toy_conv import VQConfig
torch.manual_seed(0)
kind, n, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model = VQModel(VQConfig())
images = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8).numpy()
def work():
    if kind == "encode":
        model.encode(images, batch_size=batch)
        return
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 1, 28, 28) * 2 - 1
    for _ in range(n):
        rec, _, vq_loss = model(x)
        loss = (rec - x).pow(2).mean() + vq_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
work()
r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
print(json.dumps({"tuned": tuned, "wall_s": t1 - t0, "user_s": r1.ru_utime - r0.ru_utime,
                  "sys_s": r1.ru_stime - r0.ru_stime}))
"""

WORKLOADS = (("encode", 5000, 1000), ("encode", 5000, 256), ("train", 100, 64))


def run(kind: str, n: int, batch: int, tuned: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(OMP_NUM_THREADS="1", GUIDANCE_REPRO_MALLOC="tuned" if tuned else "default")
    out = subprocess.run([sys.executable, "-c", WORKER, kind, str(n), str(batch)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="results/benchmarks/allocator.json")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for kind, n, batch in WORKLOADS:
        for tuned in (False, True):
            best = min((run(kind, n, batch, tuned) for _ in range(args.repeats)), key=lambda r: r["wall_s"])
            row = {"workload": kind, "n": n, "batch": batch, "settings": "tuned" if tuned else "glibc default",
                   "applied": best["tuned"], **{k: round(best[k], 3) for k in ("wall_s", "user_s", "sys_s")}}
            rows.append(row)
            print(f"{kind:6s} n={n:5d} batch={batch:4d} {row['settings']:13s} wall {row['wall_s']:6.2f} s "
                  f"user {row['user_s']:6.2f} s sys {row['sys_s']:6.2f} s", flush=True)
    write_json(args.out, {"machine": platform.platform(), "cpus": os.cpu_count(), "repeats": args.repeats,
                          "rows": rows})
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
