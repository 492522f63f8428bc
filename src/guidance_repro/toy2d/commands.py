"""CLI of the 2-D toy: ``autoguidance-toy-figure`` (Figure 1 panels of replicate 0, the numbers of
every replicate, the claims over them).

    guidance-repro autoguidance-toy-figure --main M.pt M-r1.pt --autoguide G.pt G-r1.pt \
        --uncond U.pt U-r1.pt --seeds 0 1000 \
        --out-figure fig.png --out-metrics metrics.json --out-claims claims.csv --out-samples s.npz

The models are trained by the generic ``train`` command with task ``toy2d-density``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from guidance_repro.errors import ReproError
from guidance_repro.io import json_object_arg, save_npz, timing_path, write_json


def _check(args: argparse.Namespace) -> None:
    if args.num_samples < 1:
        raise ReproError(f"--num-samples: must be >= 1, got {args.num_samples}")
    if args.threshold_samples < 100:
        raise ReproError(f"--threshold-samples: must be >= 100, got {args.threshold_samples}")
    if not 0 < args.outlier_quantile < 1:
        raise ReproError(f"--outlier-quantile: must be in (0, 1), got {args.outlier_quantile}")
    counts = {len(args.main), len(args.autoguide), len(args.uncond), len(args.seeds)}
    if len(counts) != 1:
        raise ReproError(f"--main/--autoguide/--uncond/--seeds: one per replicate, got {len(args.main)}/"
                         f"{len(args.autoguide)}/{len(args.uncond)}/{len(args.seeds)}")


def _figure(args: argparse.Namespace) -> None:
    import torch

    from guidance_repro.report.claims import write_slice_csv
    from guidance_repro.sampling.edm import HeunConfig
    from guidance_repro.toy2d import claims, panels
    from guidance_repro.toy2d.tasks import load_denoiser

    t0 = time.perf_counter()
    _check(args)
    sampler = HeunConfig.from_dict(json_object_arg(args.sampler, "--sampler"), key="--sampler")
    weights = {"cfg": args.cfg_w, "score_scaling": args.score_scale, "autoguidance": args.autoguidance_w}
    tau = panels.outlier_threshold(args.outlier_quantile, n=args.threshold_samples, tree_seed=args.tree_seed)
    per_replicate, first_samples = [], None
    for r, (m, g, u, seed) in enumerate(zip(args.main, args.autoguide, args.uncond, args.seeds)):
        torch.manual_seed(seed)
        main, guide, uncond = (load_denoiser(p) for p in (m, g, u))
        samples = panels.draw_panels(main, guide, uncond, args.num_samples, sampler, weights, seed,
                                     args.tree_seed)
        metrics = {k: panels.panel_metrics(x, tau, args.coverage_min_count, args.tree_seed)
                   for k, x in samples.items()}
        per_replicate.append({"replicate": r, "seed": seed, "panels": metrics,
                              "models": {"main": m, "autoguide": g, "uncond": u},
                              "train_seeds": {k: _train_seed(p) for k, p in
                                              (("main", m), ("autoguide", g), ("uncond", u))}})
        first_samples = samples if r == 0 else first_samples
        for k, mm in metrics.items():
            print(f"[toy2d] r{r} {k:14s} outliers {mm['outlier_share']:.4f}  log p "
                  f"{mm['mean_log_likelihood']:.3f}  branches {mm['branches_covered']}/127")
    rows = claims.claims([r["panels"] for r in per_replicate],
                         f"; panel weights fixed by config (CFG w = {args.cfg_w:g}, autoguidance w = "
                         f"{args.autoguidance_w:g}, score x {args.score_scale:g}), paired per replicate")
    metrics0 = per_replicate[0]["panels"]
    result = {"panels": metrics0, "claims": rows, "weights": weights, "replicates": per_replicate,
              "protocol": {"num_samples": args.num_samples, "seed": args.seeds[0],
                           "replicate_seeds": list(args.seeds),
                           "tree_seed": args.tree_seed, "sampler": sampler.__dict__,
                           "outlier_quantile": args.outlier_quantile, "outlier_log_p_threshold": tau,
                           "threshold_samples": args.threshold_samples,
                           "coverage_min_count": args.coverage_min_count, "class": "A",
                           "models": per_replicate[0]["models"]}}
    panels.figure(first_samples, metrics0, weights, args.out_figure, args.tree_seed)
    save_npz(args.out_samples, **{k: v.astype(np.float32) for k, v in first_samples.items()})
    write_slice_csv(rows, args.out_claims)
    write_json(args.out_metrics, result)
    write_json(timing_path(args.out_metrics), {"seconds": time.perf_counter() - t0})
    for r in rows:
        print(f"[toy2d] claim {r['verdict']}: {r['claim']} ({r['measured']})")


def _train_seed(path):
    from guidance_repro.train.checkpoint import load_model_file

    return load_model_file(path).get("train_config", {}).get("seed")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("autoguidance-toy-figure",
                       help="2-D toy: Fig. 1 panels, exact-density numbers and claims")
    p.add_argument("--main", nargs="+", required=True,
                   help="main model (toy2d-density, class A) of every replicate, replicate 0 first")
    p.add_argument("--autoguide", nargs="+", required=True,
                   help="autoguidance guide (smaller, shorter, class A) of every replicate")
    p.add_argument("--uncond", nargs="+", required=True,
                   help="CFG guide (trained on both classes) of every replicate")
    p.add_argument("--num-samples", type=int, default=8192)
    p.add_argument("--seeds", nargs="+", type=int, default=[0],
                   help="sampling seed of every replicate (one per --main)")
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
