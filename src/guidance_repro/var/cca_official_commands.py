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
import os
from pathlib import Path

from guidance_repro.errors import ReproError

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
    import torch

    from guidance_repro.io import write_json
    from guidance_repro.train.checkpoint import load_model_file, load_state_strict
    from guidance_repro.train.config import TrainConfig
    from guidance_repro.train.loop import train
    from guidance_repro.var.cca_official import VAROfficialCCATask
    from guidance_repro.var.model import VAR, VARConfig
    from guidance_repro.var.official import save_official_var

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    task_params, train_params = recipe_params(args, world)
    inputs = {"pretrained": Path(args.pretrained), "vae": Path(args.vae), "imagenet": Path(args.imagenet)}
    for key in ("reference", "labels_file"):
        if getattr(args, key):
            inputs[key] = Path(getattr(args, key))
    for key, path in inputs.items():
        if not path.exists():
            raise ReproError(f"--{key.replace('_', '-')}: {path} does not exist")
    task = VAROfficialCCATask(task_params, inputs)
    if train_params["steps"] is None:  # one epoch of whole global batches
        train_params["steps"] = task.num_examples() // args.global_batch
        if train_params["steps"] < 1:
            raise ReproError(f"{args.imagenet}: {task.num_examples()} images, fewer than one global "
                             f"batch of {args.global_batch}")
    cfg = TrainConfig.from_dict(train_params, key="train")
    out = Path(args.out)
    summary = train(task, cfg, out, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    done = load_model_file(out)
    model = VAR(VARConfig.from_dict(done["model_config"]))
    load_state_strict(model, done["model"], out)
    recipe = {**done["recipe"], "train_config": done["train_config"], "steps": done["summary"]["steps"],
              "pretrained": str(args.pretrained), "reference": str(args.reference or args.pretrained),
              "vae": str(args.vae)}
    official = Path(args.out_official)
    official.parent.mkdir(parents=True, exist_ok=True)
    save_official_var(model, official)
    write_json(official.with_name(official.name + ".json"), recipe)
    print(f"[var-cca-official] d{args.depth}: {summary['steps']} steps on {summary['world_size']} "
          f"process(es), accumulation {cfg.accumulation}, {cfg.precision}, final loss "
          f"{summary['final_loss']:.6g} -> {out}, {official}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("var-cca-official",
                       help="paper tier: CCA fine-tune of an official var_d*.pth (torchrun), ImageNet encoded on the fly")
    p.add_argument("--depth", type=int, required=True, choices=sorted(MICRO_BATCH))
    p.add_argument("--pretrained", required=True, help="official var_d{16,20,24,30}.pth: the initial policy")
    p.add_argument("--reference", default="", help="the frozen reference p_phi (default: --pretrained)")
    p.add_argument("--vae", required=True, help="official vae_ch160v4096z32.pth")
    p.add_argument("--imagenet", required=True, help="ImageNet train folder (one sub-folder per wnid)")
    p.add_argument("--labels-file", default="", help="class order, one wnid per line (default: sorted folders)")
    p.add_argument("--out", required=True, help="the training loop's model file (.pt)")
    p.add_argument("--out-official", required=True, help="the fine-tuned VAR as a raw state dict (.pth)")
    p.add_argument("--global-batch", type=int, default=256)
    p.add_argument("--micro-batch", type=int, default=0,
                   help="per-process micro-batch; negatives are rolled within it (default: official 8/4/4/2)")
    p.add_argument("--steps", type=int, default=None, help="default: one epoch of whole global batches")
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--beta", type=float, default=0.02)
    p.add_argument("--lam", type=float, default=None, help="default: the paper's λ of --depth")
    p.add_argument("--uncond-ratio", type=float, default=0.1)
    p.add_argument("--method", choices=("cca", "dpo", "unlearning"), default="cca")
    p.add_argument("--resize", type=int, default=288, help="short side before the random crop (LANCZOS)")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--precision", choices=("float16", "bfloat16", "float32"), default="float16",
                   help="float16 + GradScaler (official) or bfloat16 autocast")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--model-overrides", default="",
                   help="JSON VARConfig fields over the official size (tiny test files only)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run)
