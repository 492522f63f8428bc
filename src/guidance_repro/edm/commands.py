"""CLI of image-level autoguidance (Fashion-MNIST toy tier; EDM2 pickles on the paper tier).

    guidance-repro autoguidance-sample --main M.pt [--guide G.pt --guide-name autoguide] \
        --method {none,cfg,autoguidance} --w 2.0 --num 1000 --seed 0 --out samples.npz
    guidance-repro autoguidance-report --metrics a.json b.json ... --out-dir DIR
    guidance-repro autoguidance-edm2-check --config JSON     (paper tier: files + trust_pickle)

Models are trained by the generic ``train`` command (task ``edm-fmnist``); metrics come from the
shared ``evaluate`` command.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from guidance_repro.errors import ReproError
from guidance_repro.io import atomic_path, write_json


def _sample(args: argparse.Namespace) -> None:
    import torch

    from guidance_repro.data import samples as samples_io
    from guidance_repro.edm.sample import generate
    from guidance_repro.edm.task import load_denoiser
    from guidance_repro.sampling.edm import HeunConfig

    try:
        sampler = HeunConfig.from_dict(json.loads(args.sampler), key="--sampler")
    except json.JSONDecodeError as exc:
        raise ReproError(f"--sampler: not valid JSON ({exc})") from None
    if args.num < 1:
        raise ReproError(f"--num: must be >= 1, got {args.num}")
    if args.method != "none" and not args.guide:
        raise ReproError(f"--guide: method {args.method} needs a guide model")
    main = load_denoiser(args.main)
    guide = load_denoiser(args.guide) if args.guide and args.method != "none" else None
    if args.method == "cfg" and guide is not None and guide.label_dim:
        raise ReproError(f"{args.guide}: CFG needs an unconditional guide (label_dim 0)")
    if args.method == "autoguidance" and guide is not None and not guide.label_dim:
        raise ReproError(f"{args.guide}: autoguidance needs a class-conditional guide")
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    w = 1.0 if args.method == "none" else args.w
    images, labels = generate(main, guide, args.method, w, args.num, sampler, args.seed,
                              args.batch, progress=not args.no_progress)
    meta = {"method": args.method, "guide": args.guide_name if args.method != "none" else "",
            "w": w, "main": str(args.main), "guide_file": str(args.guide or ""),
            "sampler": "edm-heun", **sampler.__dict__, "nfe_per_network": 2 * sampler.steps - 1,
            "seed": args.seed, "labels": "balanced", "seconds": time.perf_counter() - t0}
    samples_io.write(args.out, images, labels, meta=meta)
    print(f"[autoguidance-sample] {args.method} w={w:g} {args.num} images in "
          f"{meta['seconds']:.1f} s -> {args.out}")


def _mechanism(args: argparse.Namespace) -> None:
    from guidance_repro.edm.mechanism import WEIGHTS, SIGMA, ema_gap, fixed_inputs, guided_distances
    from guidance_repro.edm.task import load_denoiser
    from guidance_repro.train.checkpoint import load_model_file
    from guidance_repro.train.commands import parse_inputs

    guides = parse_inputs(args.guide)
    unknown = sorted(set(guides) - {"cfg", "autoguidance"})
    if unknown:
        raise ReproError(f"--guide {unknown[0]}=...: the method must be cfg or autoguidance")
    main = load_denoiser(args.main)
    x, sigma, labels = fixed_inputs()
    out = {"guided_distance": {m: guided_distances(main, load_denoiser(p), m, x, sigma, labels)
                               for m, p in sorted(guides.items())},
           "ema_gap": {name: ema_gap(load_model_file(p)) for name, p in
                       sorted({"main": Path(args.main), **guides}.items())},
           "protocol": {"sigma": SIGMA, "weights": list(WEIGHTS), "inputs": int(len(x)), "seed": 0}}
    write_json(args.out, out)
    print(f"[autoguidance-mechanism] {len(guides)} guide(s) -> {args.out}")


def _report(args: argparse.Namespace) -> None:
    import numpy as np

    from guidance_repro.data import samples as samples_io
    from guidance_repro.edm import report

    df = report.collect(args.metrics)
    b = report.best(df)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "points.csv", suffix=".csv.tmp") as tmp:
        df.to_csv(tmp, index=False)
    with atomic_path(out / "best.csv", suffix=".csv.tmp") as tmp:
        b.to_csv(tmp, index=False)
    with atomic_path(out / "ablation.md", suffix=".md.tmp") as tmp:
        tmp.write_text("# Autoguidance on Fashion-MNIST: Table 1 layout (best FID over the w sweep)\n\n"
                       + report.ablation_markdown(b))
    rows = report.claims(b)
    with atomic_path(out / "claims.csv", suffix=".csv.tmp") as tmp:
        import pandas as pd
        pd.DataFrame(rows).to_csv(tmp, index=False)
    report.fid_figure(df, b, out / "fid_vs_w.png")
    grids = {}
    for _, r in b.iterrows():
        path = read_samples_path(r["metrics_file"])
        imgs = samples_io.read(path).images
        order = np.argsort(samples_io.read(path).labels[:200], kind="stable")
        grids[f"{r['curve']} w={r['w']:g}\nFID {r['fid']:.2f}"] = imgs[:200][order][::5][:40]
    report.grid_figure(grids, out / "samples.png")
    write_json(out / "summary.json", {"best": b.to_dict(orient="records"), "claims": rows})
    print(report.ablation_markdown(b))
    for r in rows:
        state = "NOT RUN" if r["holds"] is None else ("HOLDS" if r["holds"] else "FAILS")
        print(f"[autoguidance-report] claim {state}: {r['claim']} ({r['measured']})")


def read_samples_path(metrics_file: str) -> str:
    from guidance_repro.io import read_json
    return read_json(metrics_file)["protocol"]["samples"]


def _edm2_check(args: argparse.Namespace) -> None:
    from guidance_repro.edm import edm2_pickles

    try:
        cfg = json.loads(args.config)
    except json.JSONDecodeError as exc:
        raise ReproError(f"--config: not valid JSON ({exc})") from None
    write_json(args.out, edm2_pickles.check_preset_files(cfg))
    print(f"[autoguidance-edm2-check] files present, trust_pickle set -> {args.out}")


def _register_mechanism(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("autoguidance-mechanism", help="mechanism metrics: |D_w - D_1| at fixed (x, sigma) "
                       "per w and guide, EMA vs raw weights")
    p.add_argument("--main", required=True, help="the main model file")
    p.add_argument("--guide", action="append", default=[], metavar="METHOD=PATH",
                   help="cfg=UNCOND.pt and/or autoguidance=AUTOGUIDE.pt")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_mechanism)


def register(sub: argparse._SubParsersAction) -> None:
    _register_mechanism(sub)
    p = sub.add_parser("autoguidance-sample", help="sample a Fashion-MNIST EDM model with guidance")
    p.add_argument("--main", required=True, help="main model (edm-fmnist, conditional)")
    p.add_argument("--guide", default="", help="guide model (autoguidance: conditional; cfg: uncond)")
    p.add_argument("--guide-name", default="", help="name of the guide recorded in the metadata")
    p.add_argument("--method", choices=["none", "cfg", "autoguidance"], required=True)
    p.add_argument("--w", type=float, default=1.0, help="guidance weight (1 = main model alone)")
    p.add_argument("--num", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--sampler", default='{"steps": 32, "sigma_min": 0.002, "sigma_max": 80, "rho": 7}')
    p.add_argument("--out", required=True, help="samples .npz")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_sample)

    p = sub.add_parser("autoguidance-report", help="tables, figures and claims of the w sweeps")
    p.add_argument("--metrics", nargs="+", required=True, help="metrics JSON of every sweep point")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=_report)

    p = sub.add_parser("autoguidance-edm2-check",
                       help="paper tier: check the EDM2 pickles of a preset (needs trust_pickle)")
    p.add_argument("--config", required=True, help="JSON: the autoguidance.edm2 config section")
    p.add_argument("--out", required=True, help="JSON written when every file is present")
    p.set_defaults(func=_edm2_check)
