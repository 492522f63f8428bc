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
from guidance_repro.io import atomic_path, json_object_arg, write_json


def _sampler(text: str):
    from guidance_repro.sampling.edm import HeunConfig

    try:
        return HeunConfig.from_dict(json.loads(text), key="--sampler")
    except json.JSONDecodeError as exc:
        raise ReproError(f"--sampler: not valid JSON ({exc})") from None


def _check_guide(method: str, guide, where: str) -> None:
    if method != "none" and guide is None:
        raise ReproError(f"{where}: method {method} needs a guide model")
    if method == "cfg" and guide.label_dim:
        raise ReproError(f"{where}: CFG needs an unconditional guide (label_dim 0)")
    if method == "autoguidance" and not guide.label_dim:
        raise ReproError(f"{where}: autoguidance needs a class-conditional guide")


def _train_seed(path) -> int | None:
    from guidance_repro.train.checkpoint import load_model_file

    return load_model_file(path).get("train_config", {}).get("seed")


def _sample_point(main, guide, point: dict, args, sampler, seeds: dict) -> None:
    """One sweep point (method, guide, w) -> its samples file, with what made it in the meta."""
    import torch

    from guidance_repro.data import samples as samples_io
    from guidance_repro.edm.sample import generate

    method = point["method"]
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    w = 1.0 if method == "none" else float(point["w"])
    images, labels = generate(main, guide, method, w, args.num, sampler, args.seed, args.batch,
                              progress=not args.no_progress)
    meta = {"method": method, "guide": point.get("guide", "") if method != "none" else "",
            "w": w, "main": str(args.main), "guide_file": str(point.get("guide_file", "")),
            "sampler": "edm-heun", **sampler.__dict__, "nfe_per_network": 2 * sampler.steps - 1,
            "seed": args.seed, "replicate": args.replicate, "train_seeds": seeds,
            "labels": "balanced", "seconds": time.perf_counter() - t0}
    samples_io.write(point["out"], images, labels, meta=meta)
    print(f"[autoguidance-sample] {method} w={w:g} {args.num} images in "
          f"{meta['seconds']:.1f} s -> {point['out']}")


def _check_num(args) -> None:
    if args.num < 1:
        raise ReproError(f"--num: must be >= 1, got {args.num}")


def _sample(args: argparse.Namespace) -> None:
    from guidance_repro.edm.task import load_denoiser

    sampler = _sampler(args.sampler)
    _check_num(args)
    main = load_denoiser(args.main)
    guide = load_denoiser(args.guide) if args.guide and args.method != "none" else None
    _check_guide(args.method, guide, args.guide or "--guide")
    seeds = {"main": _train_seed(args.main)}
    if guide is not None:
        seeds[args.guide_name or "guide"] = _train_seed(args.guide)
    point = {"method": args.method, "guide": args.guide_name, "w": args.w, "out": args.out,
             "guide_file": args.guide or ""}
    _sample_point(main, guide, point, args, sampler, seeds)


def parse_points(text: str, guides: dict) -> list[dict]:
    """The --points JSON: a list of {method, guide, w, out}; each guide one of --guide NAME=PATH."""
    from guidance_repro.guidance.autoguidance import METHODS

    try:
        points = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReproError(f"--points: not valid JSON ({exc})") from None
    if not isinstance(points, list) or not points:
        raise ReproError("--points: a non-empty JSON list of {method, guide, w, out} expected")
    for i, p in enumerate(points):
        if not isinstance(p, dict) or not {"method", "out"} <= set(p):
            raise ReproError(f"--points[{i}]: needs at least 'method' and 'out', got {p!r}")
        if p["method"] not in METHODS or p["method"] == "score-scaling":
            raise ReproError(f"--points[{i}].method: none, cfg or autoguidance, got {p['method']!r}")
        if p["method"] != "none" and p.get("guide") not in guides:
            raise ReproError(f"--points[{i}].guide: {p.get('guide')!r} is not one of the --guide "
                             f"names {sorted(guides)}")
    return points


def _sample_points(args: argparse.Namespace) -> None:
    from guidance_repro.edm.task import load_denoiser
    from guidance_repro.train.commands import parse_inputs

    sampler = _sampler(args.sampler)
    _check_num(args)
    guide_files = {k: str(v) for k, v in parse_inputs(args.guide).items()}
    points = parse_points(args.points, guide_files)
    main = load_denoiser(args.main)
    guides = {name: load_denoiser(path) for name, path in guide_files.items()}
    seeds = {"main": _train_seed(args.main), **{n: _train_seed(p) for n, p in guide_files.items()}}
    for i, p in enumerate(points):
        guide = guides.get(p.get("guide")) if p["method"] != "none" else None
        _check_guide(p["method"], guide, f"--points[{i}] ({guide_files.get(p.get('guide'), '')})")
        _sample_point(main, guide, {**p, "guide_file": guide_files.get(p.get("guide"), "")}, args,
                      sampler, seeds)


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
    from guidance_repro.edm import claims as ag_claims
    from guidance_repro.edm import report
    from guidance_repro.io import read_json
    from guidance_repro.report.claims import write_slice_csv

    claim_w = {k: float(v) for k, v in json_object_arg(args.claim_w, "--claim-w").items()}
    df = report.collect(args.metrics)
    sweep = report.sweep(df)
    b = report.best(sweep)
    table = ag_claims.claim_table(df, claim_w)
    floor = read_json(args.floor)
    rows = ag_claims.claims(table, claim_w, ag_claims.floor_text(floor))
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in (("points", sweep), ("best", b), ("replicates", table)):
        with atomic_path(out / f"{name}.csv", suffix=".csv.tmp") as tmp:
            frame.drop(columns=["train_seeds"], errors="ignore").to_csv(tmp, index=False)
    with atomic_path(out / "ablation.md", suffix=".md.tmp") as tmp:
        tmp.write_text("# Autoguidance on Fashion-MNIST: Table 1 layout (best FID over the w sweep, "
                       "single seed: replicate 0)\n\n" + report.ablation_markdown(b))
    write_slice_csv(rows, out / "claims.csv")
    report.fid_figure(sweep, b, out / "fid_vs_w.png")
    grids = {}
    for _, r in b.iterrows():
        path = read_samples_path(r["metrics_file"])
        imgs = samples_io.read(path).images
        order = np.argsort(samples_io.read(path).labels[:200], kind="stable")
        grids[f"{r['curve']} w={r['w']:g}\nFID {r['fid']:.2f}"] = imgs[:200][order][::5][:40]
    report.grid_figure(grids, out / "samples.png")
    seeds = table[["replicate", "curve", "seed", "train_seeds"]].to_dict(orient="records")
    write_json(out / "summary.json", {"best": b.to_dict(orient="records"), "claims": rows,
                                      "claim_w": claim_w, "replicate_seeds": seeds,
                                      "floor": {k: floor.get(k) for k in ("fid", "precision", "recall")}})
    print(report.ablation_markdown(b))
    for r in rows:
        print(f"[autoguidance-report] {r['verdict'] or 'not measured'}: {r['claim']} ({r['measured']})")


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
    p.add_argument("--replicate", type=int, default=0, help="recorded in the samples' metadata")
    p.add_argument("--out", required=True, help="samples .npz")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_sample)

    p = sub.add_parser("autoguidance-sample-points",
                       help="sample several (method, guide, w) points of one replicate in one process")
    p.add_argument("--main", required=True, help="main model (edm-fmnist, conditional)")
    p.add_argument("--guide", action="append", default=[], metavar="NAME=PATH",
                   help="a guide model the points name (repeatable)")
    p.add_argument("--points", required=True, help="JSON list of {method, guide, w, out}")
    p.add_argument("--num", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replicate", type=int, default=0, help="recorded in the samples' metadata")
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--sampler", default='{"steps": 32, "sigma_min": 0.002, "sigma_max": 80, "rho": 7}')
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_sample_points, no_progress=True)

    p = sub.add_parser("autoguidance-report", help="tables, figures and claims of the w sweeps")
    p.add_argument("--metrics", nargs="+", required=True,
                   help="metrics JSON of every sweep point of every replicate")
    p.add_argument("--floor", required=True, help="metrics JSON of real training images (the floor)")
    p.add_argument("--claim-w", required=True,
                   help="JSON: curve (cfg or a guide name) -> the w the claims compare")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=_report)

    p = sub.add_parser("autoguidance-edm2-check",
                       help="paper tier: check the EDM2 pickles of a preset (needs trust_pickle)")
    p.add_argument("--config", required=True, help="JSON: the autoguidance.edm2 config section")
    p.add_argument("--out", required=True, help="JSON written when every file is present")
    p.set_defaults(func=_edm2_check)
