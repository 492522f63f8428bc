"""CLI of the 2-D toy: ``autoguidance-toy-figure`` (Figure 1 panels + numbers + claims).

    guidance-repro autoguidance-toy-figure --main M.pt --autoguide G.pt --uncond U.pt \
        --out-figure fig.png --out-metrics metrics.json --out-claims claims.csv --out-samples s.npz

The models are trained by the generic ``train`` command with task ``toy2d-density``.
"""

from __future__ import annotations

import argparse
import csv
import time

import numpy as np

from guidance_repro.errors import ReproError
from guidance_repro.io import atomic_path, json_object_arg, save_npz, timing_path, write_json


def write_claims_csv(path, rows: list[dict]) -> None:
    with atomic_path(path, suffix=".csv.tmp") as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def _figure(args: argparse.Namespace) -> None:
    import torch

    from guidance_repro.sampling.edm import HeunConfig
    from guidance_repro.toy2d import panels
    from guidance_repro.toy2d.tasks import load_denoiser

    t0 = time.perf_counter()
    if args.num_samples < 1:
        raise ReproError(f"--num-samples: must be >= 1, got {args.num_samples}")
    if args.threshold_samples < 100:
        raise ReproError(f"--threshold-samples: must be >= 100, got {args.threshold_samples}")
    if not 0 < args.outlier_quantile < 1:
        raise ReproError(f"--outlier-quantile: must be in (0, 1), got {args.outlier_quantile}")
    sampler = HeunConfig.from_dict(json_object_arg(args.sampler, "--sampler"), key="--sampler")
    weights = {"cfg": args.cfg_w, "score_scaling": args.score_scale, "autoguidance": args.autoguidance_w}
    torch.manual_seed(args.seed)
    main, guide, uncond = (load_denoiser(p) for p in (args.main, args.autoguide, args.uncond))
    samples = panels.draw_panels(main, guide, uncond, args.num_samples, sampler, weights, args.seed,
                                 args.tree_seed)
    tau = panels.outlier_threshold(args.outlier_quantile, n=args.threshold_samples, tree_seed=args.tree_seed)
    metrics = {k: panels.panel_metrics(x, tau, args.coverage_min_count, args.tree_seed)
               for k, x in samples.items()}
    rows = panels.claims(metrics)
    csv_rows = []
    for r in rows:
        csv_rows.append({"experiment": "autoguidance-toy2d", **r})
    result = {"panels": metrics, "claims": rows, "weights": weights,
              "protocol": {"num_samples": args.num_samples, "seed": args.seed,
                           "tree_seed": args.tree_seed, "sampler": sampler.__dict__,
                           "outlier_quantile": args.outlier_quantile, "outlier_log_p_threshold": tau,
                           "threshold_samples": args.threshold_samples,
                           "coverage_min_count": args.coverage_min_count, "class": "A",
                           "models": {"main": str(args.main), "autoguide": str(args.autoguide),
                                      "uncond": str(args.uncond)}}}
    panels.figure(samples, metrics, weights, args.out_figure, args.tree_seed)
    save_npz(args.out_samples, **{k: v.astype(np.float32) for k, v in samples.items()})
    write_claims_csv(args.out_claims, csv_rows)
    write_json(args.out_metrics, result)
    write_json(timing_path(args.out_metrics), {"seconds": time.perf_counter() - t0})
    for k, m in metrics.items():
        print(f"[toy2d] {k:14s} outliers {m['outlier_share']:.4f}  log p {m['mean_log_likelihood']:.3f}"
              f"  branches {m['branches_covered']}/127")
    for r in rows:
        print(f"[toy2d] claim {'HOLDS' if r['holds'] else 'FAILS'}: {r['claim']}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("autoguidance-toy-figure",
                       help="2-D toy: Fig. 1 panels, exact-density numbers and claims")
    p.add_argument("--main", required=True, help="main model (toy2d-density, class A)")
    p.add_argument("--autoguide", required=True, help="autoguidance guide (smaller, shorter, class A)")
    p.add_argument("--uncond", required=True, help="CFG guide (trained on both classes)")
    p.add_argument("--num-samples", type=int, default=8192)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tree-seed", type=int, default=2)
    p.add_argument("--sampler", default='{"steps": 32, "sigma_min": 0.002, "sigma_max": 5, "rho": 7}',
                   help="JSON: EDM Heun settings")
    p.add_argument("--cfg-w", type=float, default=4.0)
    p.add_argument("--autoguidance-w", type=float, default=3.0)
    p.add_argument("--score-scale", type=float, default=1.4)
    p.add_argument("--outlier-quantile", type=float, default=0.01)
    p.add_argument("--coverage-min-count", type=int, default=1)
    p.add_argument("--threshold-samples", type=int, default=100_000,
                   help="exact samples that set the outlier threshold (its quantile)")
    p.add_argument("--out-figure", required=True)
    p.add_argument("--out-metrics", required=True)
    p.add_argument("--out-claims", required=True)
    p.add_argument("--out-samples", required=True)
    p.set_defaults(func=_figure)
