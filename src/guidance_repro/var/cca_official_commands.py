"""Paper-tier CCA fine-tuning of VAR from the official files: ``var-cca-official``.

    torchrun --nproc_per_node=8 -m guidance_repro var-cca-official --depth 16 \
        --pretrained var_d16.pth --vae vae_ch160v4096z32.pth --imagenet ImageNet/train \
        --out results/cca_var/d16.pt --out-official results/cca_var/VAR_d16_CCA.pth

The recipe is the official VAR CCA run's (cca.md §1.2/§1.3) unless a flag says otherwise:
β 0.02 and λ per depth (50/50/100/1000), uncond_ratio 0.1, label dropout 0, drop-path per depth;
lr 2e-5 (= ac·tblr·256/256) with VAR's lin0 (warm-up over ep/50 of the steps from 0.005×, hold 5 %,
linear decay to 0.1× for d16/d20, 0.01× for d24/d30); AdamW (0.9, 0.95), wd 0.05 on VAR's decay
groups, cosine-annealed to 0.08 for d30 (``twde``); grad clip 2.0; micro-batch losses × 1/ac
(accumulation ``mean``); one epoch at global batch 256 with the official per-process micro-batch
(d16 8, d20/d24 4, d30 2) within which the negatives are rolled; fp16 autocast + GradScaler
(``--precision bfloat16`` is the alternative; both are recorded).

Two files come out: ``--out`` (the training loop's model file with 'recipe'; resumable from
``<out>.ckpt/`` after a kill) and ``--out-official`` (a raw state dict with the official key
names, as the released ``var_d*.pth``), with the recipe as text in ``<out-official>.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from guidance_repro.errors import ReproError
from guidance_repro.train.official_finetune import add_official_finetune_args

MICRO_BATCH = {16: 8, 20: 4, 24: 4, 30: 2}            # per process: 256 / 8 GPUs / ac (4, 8, 8, 16)
FINAL_LR_FACTOR = {16: 0.1, 20: 0.1, 24: 0.01, 30: 0.01}
WEIGHT_DECAY_END = {30: 0.08}                          # twde; the other depths keep 0.05


def recipe_params(args: argparse.Namespace, world: int) -> tuple[dict, dict]:
    """(task params, train config) of the run, from the flags and the per-depth defaults."""
    from guidance_repro.train.config import accumulation_for
    d = args.depth
    micro = args.micro_batch or MICRO_BATCH[d]
    task = {"depth": d, "beta": args.beta, "uncond_ratio": args.uncond_ratio, "method": args.method,
            "resize": args.resize, "crop": args.crop}
    if args.lam is not None:
        task["lam"] = args.lam
    if args.model_overrides:
        task["model_overrides"] = json.loads(args.model_overrides)
    train = {"steps": args.steps, "batch_size": args.global_batch, "lr": args.lr, "optimizer": "adamw",
             "betas": [0.9, 0.95], "weight_decay": 0.05,
             "weight_decay_end": WEIGHT_DECAY_END.get(d, -1.0),
             "schedule": "lin0", "lin0_warmup_frac": 1 / 50, "lin0_warmup_start": 0.005,
             "lin0_hold_frac": 0.05, "final_lr_factor": FINAL_LR_FACTOR[d], "grad_clip": 2.0,
             "accumulation": accumulation_for(args.global_batch, micro, world),
             "accumulation_reduce": "mean", "precision": args.precision, "seed": args.seed,
             "device": args.device, "checkpoint_every": args.checkpoint_every, "log_every": args.log_every}
    return task, train


def _run(args: argparse.Namespace) -> None:
    from guidance_repro.train.official_finetune import require_inputs, run_official_finetune, world_size
    from guidance_repro.var.cca_official import VAROfficialCCATask
    from guidance_repro.var.model import VAR, VARConfig
    from guidance_repro.var.official import save_official_var

    task_params, train_params = recipe_params(args, world_size(args.threads))
    inputs = {"pretrained": Path(args.pretrained), "vae": Path(args.vae), "imagenet": Path(args.imagenet)}
    for key in ("reference", "labels_file"):
        if getattr(args, key):
            inputs[key] = Path(getattr(args, key))
    require_inputs(inputs)

    done = run_official_finetune(
        VAROfficialCCATask(task_params, inputs), train_params, args.global_batch, args.imagenet, args.out,
        args.out_official, (VAR, VARConfig), lambda m, path, recipe: save_official_var(m, path),
        {"pretrained": str(args.pretrained), "reference": str(args.reference or args.pretrained),
         "vae": str(args.vae)}, progress=not args.no_progress)
    if done is not None:
        summary, cfg, official = done
        print(f"[var-cca-official] d{args.depth}: {summary['steps']} steps on {summary['world_size']} "
              f"process(es), accumulation {cfg.accumulation}, {cfg.precision}, final loss "
              f"{summary['final_loss']:.6g} -> {args.out}, {official}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("var-cca-official",
                       help="paper tier: CCA fine-tune of an official var_d*.pth (torchrun), ImageNet encoded on the fly")
    p.add_argument("--depth", type=int, required=True, choices=sorted(MICRO_BATCH))
    p.add_argument("--pretrained", required=True, help="official var_d{16,20,24,30}.pth: the initial policy")
    p.add_argument("--vae", required=True, help="official vae_ch160v4096z32.pth")
    p.add_argument("--imagenet", required=True, help="ImageNet train folder (one sub-folder per wnid)")
    p.add_argument("--labels-file", default="", help="class order, one wnid per line (default: sorted folders)")
    p.add_argument("--micro-batch", type=int, default=0,
                   help="per-process micro-batch; negatives are rolled within it (default: official 8/4/4/2)")
    p.add_argument("--resize", type=int, default=288, help="short side before the random crop (LANCZOS)")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--precision", choices=("float16", "bfloat16", "float32"), default="float16",
                   help="float16 + GradScaler (official) or bfloat16 autocast")
    add_official_finetune_args(p, lr=2e-5, lam_of="--depth", model_fields="VARConfig")
    p.set_defaults(func=_run)
